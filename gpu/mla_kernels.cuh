// Launchers for gpu/mla_kernels.cu (see gpu/mla_ops.h). Arguments are checked by the .cc callers; each
// launcher returns the launch's cudaError_t. All pointers are device pointers.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace ringmoe::gpu::kernels {

// The rotary table travels by value in the kernel's parameters (as RoPE's, attention_kernels.cuh).
inline constexpr int kMaxRotaryDim = 512;
struct RotaryTable {
  float inv_freq[kMaxRotaryDim / 2];
  int dim;
  float attention_factor;
  bool interleaved;
};
cudaError_t LaunchApplyRotary(float* x, int tokens, int heads, int64_t token_stride, int64_t head_stride,
                              const int32_t* positions, const RotaryTable& table, cudaStream_t stream);

cudaError_t LaunchCopyBlocks(const float* src, float* dst, int rows, int groups, int width,
                             int64_t src_row_stride, int64_t src_group_stride, int64_t dst_row_stride,
                             int64_t dst_group_stride, cudaStream_t stream);

}  // namespace ringmoe::gpu::kernels
