#include "gpu/device_arena.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gpu/device.h"
#include "io/status_macros.h"

#if RINGMOE_HAVE_CUDA
#include <cuda_runtime.h>

#include "gpu/cuda_status.cuh"
#endif

namespace ringmoe::gpu {

std::string FormatBytes(int64_t bytes) {
  constexpr double kKiB = 1024.0;
  double value = static_cast<double>(bytes);
  if (std::abs(value) >= kKiB * kKiB * kKiB) return absl::StrFormat("%.2f GiB", value / (kKiB * kKiB * kKiB));
  if (std::abs(value) >= kKiB * kKiB) return absl::StrFormat("%.2f MiB", value / (kKiB * kKiB));
  if (std::abs(value) >= kKiB) return absl::StrFormat("%.2f KiB", value / kKiB);
  return absl::StrCat(bytes, " B");
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : arena_(std::exchange(other.arena_, nullptr)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      charged_(std::exchange(other.charged_, 0)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    Reset();
    arena_ = std::exchange(other.arena_, nullptr);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    charged_ = std::exchange(other.charged_, 0);
  }
  return *this;
}

void DeviceBuffer::Reset() {
  if (arena_ != nullptr && data_ != nullptr) arena_->Free(data_, charged_);
  arena_ = nullptr;
  data_ = nullptr;
  size_ = 0;
  charged_ = 0;
}

DeviceArena::DeviceArena(int64_t cap_bytes) : cap_bytes_(cap_bytes > 0 ? cap_bytes : 0) {}

int64_t DeviceArena::used_bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return used_bytes_;
}

int64_t DeviceArena::peak_bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return peak_bytes_;
}

int64_t DeviceArena::available_bytes() const {
  if (cap_bytes_ == 0) return std::numeric_limits<int64_t>::max();
  std::lock_guard<std::mutex> lock(mutex_);
  return cap_bytes_ - used_bytes_;
}

absl::StatusOr<DeviceBuffer> DeviceArena::Allocate(int64_t bytes, std::string_view purpose) {
  if (bytes < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("device allocation for ", std::string(purpose), ": negative size ", bytes));
  }
  if (bytes == 0) return DeviceBuffer();
#if RINGMOE_HAVE_CUDA
  RINGMOE_RETURN_IF_ERROR(RequireGpu());
  const int64_t charged = (bytes + kGranularity - 1) / kGranularity * kGranularity;
  {
    // Reserve first so that concurrent allocations cannot jointly overshoot the cap.
    std::lock_guard<std::mutex> lock(mutex_);
    if (cap_bytes_ > 0 && used_bytes_ + charged > cap_bytes_) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "device allocation for ", std::string(purpose), " of ", FormatBytes(bytes), " (", bytes,
          " bytes) exceeds the GPU memory cap (--gpu-mem ", FormatBytes(cap_bytes_), "): ",
          FormatBytes(used_bytes_), " already in use, ", FormatBytes(cap_bytes_ - used_bytes_), " left"));
    }
    used_bytes_ += charged;
    peak_bytes_ = std::max(peak_bytes_, used_bytes_);
  }
  void* data = nullptr;
  cudaError_t error = cudaMalloc(&data, static_cast<size_t>(bytes));
  if (error != cudaSuccess) {
    cudaGetLastError();  // cudaMalloc failures are not sticky; clear them so later calls do not see them.
    Free(nullptr, charged);
    size_t free_bytes = 0, total_bytes = 0;
    cudaMemGetInfo(&free_bytes, &total_bytes);
    return absl::ResourceExhaustedError(absl::StrCat(
        "cudaMalloc of ", FormatBytes(bytes), " for ", std::string(purpose), " failed: ",
        cudaGetErrorString(error), " (device has ", FormatBytes(static_cast<int64_t>(free_bytes)),
        " free of ", FormatBytes(static_cast<int64_t>(total_bytes)), ")"));
  }
  return DeviceBuffer(this, data, bytes, charged);
#else
  (void)purpose;
  return NotBuiltWithCuda();
#endif
}

void DeviceArena::Free(void* data, int64_t charged) {
#if RINGMOE_HAVE_CUDA
  if (data != nullptr) cudaFree(data);
#endif
  std::lock_guard<std::mutex> lock(mutex_);
  used_bytes_ -= charged;
  assert(used_bytes_ >= 0);
}

}  // namespace ringmoe::gpu
