// Launchers for gpu/attention_kernels.cu (see gpu/attention_ops.h). Arguments are checked by the .cc callers;
// each launcher returns the launch's cudaError_t. All pointers are device pointers.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace ringmoe::gpu::kernels {

// RoPE's inv_freq table travels by value in the kernel's parameters: computed on the host exactly as
// cpu::ApplyRope does (bit-identical), with no upload and no constant-memory race between streams.
inline constexpr int kMaxRopeHeadDim = 512;
struct RopeInvFreq {
  float values[kMaxRopeHeadDim / 2];
};
cudaError_t LaunchApplyRope(float* x, int tokens, int heads, int head_dim, const int32_t* positions,
                            const RopeInvFreq& inv_freq, cudaStream_t stream);

// x = clamp(x, -limit, limit), NaN kept as std::clamp keeps it.
cudaError_t LaunchClamp(float* x, int64_t count, float limit, cudaStream_t stream);

// Causal prefill attention of fresh chunks (gpu::PrefillAttention). head_dim <= kMaxAttentionHeadDim.
inline constexpr int kMaxAttentionHeadDim = 256;
cudaError_t LaunchPrefillAttention(const float* q, const float* k, const float* v, const int32_t* chunk_rows,
                                   int chunks, int max_chunk_rows, int heads, int kv_heads, int head_dim,
                                   float scale, int sliding_window, float* out, cudaStream_t stream);

}  // namespace ringmoe::gpu::kernels
