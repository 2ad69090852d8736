#include "gpu/host_memory.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cstdint>
#include <utility>

#include "absl/strings/str_cat.h"
#include "gpu/device.h"
#include "gpu/device_arena.h"
#include "io/status_macros.h"

#if RINGMOE_HAVE_CUDA
#include <cuda_runtime.h>

#include "gpu/cuda_status.cuh"
#endif

namespace ringmoe::gpu {

std::string MemlockLimitText() {
  rlimit limit{};
  if (getrlimit(RLIMIT_MEMLOCK, &limit) != 0) return "RLIMIT_MEMLOCK (ulimit -l): unknown";
  auto text = [](rlim_t value) {
    return value == RLIM_INFINITY ? std::string("unlimited") : FormatBytes(static_cast<int64_t>(value));
  };
  return absl::StrCat("RLIMIT_MEMLOCK (ulimit -l): soft ", text(limit.rlim_cur), ", hard ",
                      text(limit.rlim_max));
}

PinnedHostBuffer::PinnedHostBuffer(PinnedHostBuffer&& other) noexcept
    : base_(std::exchange(other.base_, nullptr)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)) {}

PinnedHostBuffer& PinnedHostBuffer::operator=(PinnedHostBuffer&& other) noexcept {
  if (this != &other) {
    PinnedHostBuffer dying(std::move(*this));
    base_ = std::exchange(other.base_, nullptr);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

HostRegistration::HostRegistration(HostRegistration&& other) noexcept
    : chunks_(std::move(other.chunks_)), bytes_(std::exchange(other.bytes_, 0)) {
  other.chunks_.clear();
}

HostRegistration& HostRegistration::operator=(HostRegistration&& other) noexcept {
  if (this != &other) {
    HostRegistration dying(std::move(*this));
    chunks_ = std::move(other.chunks_);
    other.chunks_.clear();
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

std::vector<HostSpan> HostRegistration::Split(const void* data, int64_t bytes) const {
  std::vector<HostSpan> spans;
  const auto begin = reinterpret_cast<uintptr_t>(data);
  const uintptr_t end = begin + static_cast<uintptr_t>(bytes);
  uintptr_t covered = begin;
  for (const HostSpan& chunk : chunks_) {
    const auto chunk_begin = reinterpret_cast<uintptr_t>(chunk.data);
    const uintptr_t chunk_end = chunk_begin + static_cast<uintptr_t>(chunk.bytes);
    const uintptr_t from = std::max(covered, chunk_begin), to = std::min(end, chunk_end);
    if (from >= to) continue;
    if (from != covered) return {};  // A hole: part of the range is not registered.
    spans.push_back({reinterpret_cast<const void*>(from), static_cast<int64_t>(to - from)});
    covered = to;
  }
  if (covered != end) return {};
  return spans;
}

#if RINGMOE_HAVE_CUDA

bool DeviceReadsHostDirectly(const void* host) {
  cudaPointerAttributes attributes{};
  if (cudaPointerGetAttributes(&attributes, host) != cudaSuccess) {
    cudaGetLastError();  // clear it: a pointer CUDA does not know is an answer, not a failure
    return false;
  }
  return attributes.type == cudaMemoryTypeHost && attributes.devicePointer == host;
}

absl::StatusOr<PinnedHostBuffer> PinnedHostBuffer::Allocate(int64_t bytes, std::string_view purpose,
                                                            int64_t alignment) {
  assert(alignment >= 0 && (alignment & (alignment - 1)) == 0);
  if (bytes < 0)
    return absl::InvalidArgumentError(
        absl::StrCat("pinned buffer for ", std::string(purpose), ": negative size"));
  if (bytes == 0) return PinnedHostBuffer();
  RINGMOE_RETURN_IF_ERROR(RequireGpu());
  const int64_t padding = alignment > 1 ? alignment - 1 : 0;
  void* base = nullptr;
  cudaError_t error = cudaHostAlloc(&base, static_cast<size_t>(bytes + padding), cudaHostAllocPortable);
  if (error != cudaSuccess) {
    cudaGetLastError();
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot allocate ", FormatBytes(bytes), " of pinned host memory for ",
                     std::string(purpose), ": ", cudaGetErrorString(error), "; ", MemlockLimitText()));
  }
  const uintptr_t address = reinterpret_cast<uintptr_t>(base);
  const uintptr_t aligned = padding > 0 ? (address + padding) & ~static_cast<uintptr_t>(padding) : address;
  return PinnedHostBuffer(base, reinterpret_cast<void*>(aligned), bytes);
}

PinnedHostBuffer::~PinnedHostBuffer() {
  if (base_ != nullptr) cudaFreeHost(base_);
}

absl::StatusOr<HostRegistration> HostRegistration::Register(const void* data, int64_t bytes,
                                                            std::string_view purpose, bool read_only) {
  if (bytes < 0 || (bytes > 0 && data == nullptr)) {
    return absl::InvalidArgumentError(
        absl::StrCat("host registration for ", std::string(purpose), ": bad range"));
  }
  HostRegistration registration;
  if (bytes == 0) return registration;
  RINGMOE_RETURN_IF_ERROR(RequireGpu());
  unsigned flags = cudaHostRegisterPortable;
  if (read_only) {
    int supported = 0;
    cudaDeviceGetAttribute(&supported, cudaDevAttrHostRegisterReadOnlySupported, 0);
    if (supported) flags |= cudaHostRegisterReadOnly;
  }
  // Chunk boundaries fall on page boundaries so that no page is registered twice.
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = reinterpret_cast<uintptr_t>(data);
  const uintptr_t end = begin + static_cast<uintptr_t>(bytes);
  uintptr_t chunk_begin = begin;
  while (chunk_begin < end) {
    uintptr_t chunk_end = std::min<uintptr_t>(end, (chunk_begin + kMaxHostRegisterChunkBytes) / page * page);
    if (chunk_end <= chunk_begin)
      chunk_end = std::min<uintptr_t>(end, chunk_begin + kMaxHostRegisterChunkBytes);
    void* chunk = reinterpret_cast<void*>(chunk_begin);
    cudaError_t error = cudaHostRegister(chunk, chunk_end - chunk_begin, flags);
    if (error != cudaSuccess) {
      cudaGetLastError();
      return absl::ResourceExhaustedError(absl::StrCat(
          "cannot pin ", FormatBytes(bytes), " of host memory for ", std::string(purpose),
          " (cudaHostRegister of the chunk at offset ", chunk_begin - begin, ", ",
          FormatBytes(static_cast<int64_t>(chunk_end - chunk_begin)), "): ", cudaGetErrorString(error), "; ",
          MemlockLimitText(),
          " - raise it (ulimit -l unlimited, or memlock in /etc/security/limits.conf) or pin less"));
      // `registration` unregisters the chunks done so far as it goes out of scope.
    }
    registration.chunks_.push_back({chunk, static_cast<int64_t>(chunk_end - chunk_begin)});
    registration.bytes_ += static_cast<int64_t>(chunk_end - chunk_begin);
    chunk_begin = chunk_end;
  }
  return registration;
}

HostRegistration::~HostRegistration() {
  for (const HostSpan& chunk : chunks_) cudaHostUnregister(const_cast<void*>(chunk.data));
}

#else  // !RINGMOE_HAVE_CUDA

bool DeviceReadsHostDirectly(const void*) { return false; }
absl::StatusOr<PinnedHostBuffer> PinnedHostBuffer::Allocate(int64_t, std::string_view, int64_t) {
  return NotBuiltWithCuda();
}
PinnedHostBuffer::~PinnedHostBuffer() = default;
absl::StatusOr<HostRegistration> HostRegistration::Register(const void*, int64_t, std::string_view, bool) {
  return NotBuiltWithCuda();
}
HostRegistration::~HostRegistration() = default;

#endif

}  // namespace ringmoe::gpu
