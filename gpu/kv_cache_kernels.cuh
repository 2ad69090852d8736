// Launchers for gpu/kv_cache_kernels.cu (see gpu/kv_cache_ops.h); arguments are checked by the .cc callers.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "gpu/kv_cache_ops.h"

namespace ringmoe::gpu::kernels {

inline constexpr int kMaxPagedHeadDim = 256;
inline constexpr int kMaxPagedGroup = 32;

cudaError_t LaunchWriteKvRows(const float* k, const float* v, int rows, int64_t row_stride,
                              const DevicePagedKv& kv, cudaStream_t stream);
cudaError_t LaunchPagedAttentionRows(const float* q, int rows, int heads, const DevicePagedKv& kv,
                                     float scale, int sliding_window, float* out, cudaStream_t stream);

}  // namespace ringmoe::gpu::kernels
