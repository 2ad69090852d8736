// Row gathers, small uploads read by a kernel, and the sigmoid gate, for the engine's step on the GPU; twins
// are the obvious host loops (tests/gpu_row_ops_test.cc). All pointers are device pointers; queued on
// `stream`.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "gpu/stream.h"

namespace ringmoe::gpu {

// dst[i, :] = src[rows[i], :] for i < count; rows of `width` f32.
absl::Status GatherRowsF32(const float* src, const int32_t* rows, int count, int width, float* dst,
                           const Stream& stream);
// dst[0, bytes) = host_src[0, bytes), read by a kernel straight from pinned host memory, for small uploads on
// a compute stream: a copy would queue on the copy engines behind the ring's fills (up to one 64 MiB piece,
// about 1.2 ms at PCIe speed), a kernel's reads do not. host_src must be one the device reads directly
// (gpu::DeviceReadsHostDirectly); the caller keeps it unchanged until the kernel has run.
absl::Status CopyHostToDeviceByKernel(void* device_dst, const void* host_src, int64_t bytes,
                                      const Stream& stream);
// x[i] = 1 / (1 + exp(-x[i])): Qwen2-MoE's shared-expert gate.
absl::Status SigmoidInPlace(float* x, int64_t count, const Stream& stream);

}  // namespace ringmoe::gpu
