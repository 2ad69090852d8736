// Whether a usable GPU is present, and what it is. Plain C++ (no CUDA types): runtime/ and planner/ include
// it.
//
// The engine uses one GPU, device 0 (CUDA_VISIBLE_DEVICES picks which); every gpu/ call runs on it.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace ringmoe::gpu {

// True when this build has CUDA, a device is present, and its compute capability is one this build compiled
// kernels for. Otherwise false, with the reason in *why_not (when non-null), e.g. "built without CUDA",
// "no CUDA device: cudaErrorNoDevice ...", "GPU NVIDIA X has compute capability 8.6; this build has kernels
// for 90 (rebuild with -DCMAKE_CUDA_ARCHITECTURES=86)". Cheap after the first call; safe from any thread.
bool GpuAvailable(std::string* why_not = nullptr);
// OkStatus when GpuAvailable(), else UnavailableError with the reason. Every gpu/ entry point starts with it.
absl::Status RequireGpu();

struct DeviceProperties {
  std::string name;
  int compute_capability_major = 0;
  int compute_capability_minor = 0;
  int sm_count = 0;
  int64_t memory_bytes = 0;
};
absl::StatusOr<DeviceProperties> QueryDeviceProperties();

struct DeviceMemoryInfo {
  int64_t free_bytes = 0;
  int64_t total_bytes = 0;
};
// cudaMemGetInfo for device 0: what the whole process (and others) left free, not only the arena's share.
absl::StatusOr<DeviceMemoryInfo> QueryDeviceMemory();

// Waits for all work on the device (tests and teardown; the engine waits on events instead).
absl::Status SynchronizeDevice();

// The CUDA architectures this build compiled kernels for ("90"), or "" without CUDA.
std::string CompiledCudaArchitectures();

// What every gpu/ entry point returns in a build without CUDA.
inline absl::Status NotBuiltWithCuda() { return absl::UnavailableError("built without CUDA"); }

}  // namespace ringmoe::gpu
