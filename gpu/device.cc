#include "gpu/device.h"

#include <mutex>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "io/status_macros.h"

#if RINGMOE_HAVE_CUDA
#include <cuda_runtime.h>

#include "gpu/cuda_status.cuh"
#include "gpu/kernels.cuh"
#endif

namespace ringmoe::gpu {

std::string CompiledCudaArchitectures() {
#if RINGMOE_HAVE_CUDA && defined(RINGMOE_CUDA_ARCHITECTURES)
  return RINGMOE_CUDA_ARCHITECTURES;
#else
  return "";
#endif
}

#if RINGMOE_HAVE_CUDA
namespace {

// "90", "90-real", "90a", "80,90" -> {90, 80}; empty when the list is symbolic ("native", "all").
std::vector<int> ParseArchitectures(const std::string& list) {
  std::vector<int> archs;
  for (absl::string_view item : absl::StrSplit(list, ',', absl::SkipEmpty())) {
    int value = 0;
    size_t digits = 0;
    while (digits < item.size() && item[digits] >= '0' && item[digits] <= '9') {
      value = value * 10 + (item[digits] - '0');
      ++digits;
    }
    if (digits == 0) return {};
    archs.push_back(value);
  }
  return archs;
}

absl::Status CheckGpu() {
  int count = 0;
  cudaError_t error = cudaGetDeviceCount(&count);
  if (error != cudaSuccess) {
    return absl::UnavailableError(absl::StrCat("no usable CUDA device: ", cudaGetErrorName(error), " (",
                                               cudaGetErrorString(error), ")"));
  }
  if (count == 0) return absl::UnavailableError("no CUDA device");
  cudaDeviceProp props{};
  RINGMOE_CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&props, 0), "cudaGetDeviceProperties(0)");
  int capability = props.major * 10 + props.minor;
  std::string compiled = CompiledCudaArchitectures();
  std::vector<int> archs = ParseArchitectures(compiled);
  bool listed = archs.empty();
  for (int arch : archs) listed = listed || arch == capability;
  if (!listed) {
    return absl::UnavailableError(absl::StrCat("GPU ", props.name, " has compute capability ", props.major,
                                               ".", props.minor, "; this build has kernels for ", compiled,
                                               " (rebuild with -DCMAKE_CUDA_ARCHITECTURES=", capability,
                                               ")"));
  }
  // The arch list can be symbolic ("native"); loading a kernel is the final word.
  error = kernels::CheckKernelImage();
  if (error != cudaSuccess) {
    return absl::UnavailableError(absl::StrCat(
        "GPU ", props.name, " (compute capability ", props.major, ".", props.minor,
        ") cannot run this build's kernels (compiled for ", compiled, "): ", cudaGetErrorString(error)));
  }
  return absl::OkStatus();
}

}  // namespace

bool GpuAvailable(std::string* why_not) {
  static std::once_flag once;
  static absl::Status* status = nullptr;
  std::call_once(once, [] { status = new absl::Status(CheckGpu()); });
  if (!status->ok() && why_not != nullptr) *why_not = std::string(status->message());
  return status->ok();
}

absl::Status RequireGpu() {
  std::string why_not;
  if (!GpuAvailable(&why_not)) return absl::UnavailableError(why_not);
  return absl::OkStatus();
}

absl::StatusOr<DeviceProperties> QueryDeviceProperties() {
  RINGMOE_RETURN_IF_ERROR(RequireGpu());
  cudaDeviceProp props{};
  RINGMOE_CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&props, 0), "cudaGetDeviceProperties(0)");
  DeviceProperties result;
  result.name = props.name;
  result.compute_capability_major = props.major;
  result.compute_capability_minor = props.minor;
  result.sm_count = props.multiProcessorCount;
  result.memory_bytes = static_cast<int64_t>(props.totalGlobalMem);
  return result;
}

absl::StatusOr<DeviceMemoryInfo> QueryDeviceMemory() {
  RINGMOE_RETURN_IF_ERROR(RequireGpu());
  size_t free_bytes = 0, total_bytes = 0;
  RINGMOE_CUDA_RETURN_IF_ERROR(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo");
  return DeviceMemoryInfo{static_cast<int64_t>(free_bytes), static_cast<int64_t>(total_bytes)};
}

absl::Status SynchronizeDevice() {
  RINGMOE_RETURN_IF_ERROR(RequireGpu());
  RINGMOE_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  return absl::OkStatus();
}

#else  // !RINGMOE_HAVE_CUDA

bool GpuAvailable(std::string* why_not) {
  if (why_not != nullptr) *why_not = "built without CUDA";
  return false;
}
absl::Status RequireGpu() { return NotBuiltWithCuda(); }
absl::StatusOr<DeviceProperties> QueryDeviceProperties() { return NotBuiltWithCuda(); }
absl::StatusOr<DeviceMemoryInfo> QueryDeviceMemory() { return NotBuiltWithCuda(); }
absl::Status SynchronizeDevice() { return NotBuiltWithCuda(); }

#endif

}  // namespace ringmoe::gpu
