// Launchers for gpu/row_kernels.cu (see gpu/row_ops.h).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace ringmoe::gpu::kernels {

cudaError_t LaunchGatherRowsF32(const float* src, const int32_t* rows, int count, int width, float* dst,
                                cudaStream_t stream);
cudaError_t LaunchCopyBytes(const void* src, int64_t bytes, void* dst, cudaStream_t stream);
cudaError_t LaunchSigmoid(float* x, int64_t count, cudaStream_t stream);

}  // namespace ringmoe::gpu::kernels
