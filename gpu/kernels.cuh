// Launchers of the gpu/ CUDA kernels, callable from the .cc files (compiled by the host compiler with the
// CUDA runtime headers). Each returns the launch's cudaError_t; arguments are checked by the .cc callers. All
// pointers are device pointers; bf16 data is passed as its uint16_t bits.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace ringmoe::gpu::kernels {

// Loads a kernel of this build: fails with cudaErrorNoKernelImageForDevice (or similar) when the GPU's
// architecture was not compiled for.
cudaError_t CheckKernelImage();

// Router: one warp per token. softmax_first: softmax over all experts, then top-k (optionally renormalised);
// else top-k of the logits, then softmax over those k. num_experts <= kMaxRouterExperts, top_k <= 32.
inline constexpr int kMaxRouterExperts = 1024;
cudaError_t LaunchRouteTopK(const float* logits, int tokens, int num_experts, int top_k, bool softmax_first,
                            bool renormalize, int32_t* expert_ids, float* weights, cudaStream_t stream);

// DeepSeek's group-limited router (twin: cpu::RouteGroupLimited): one thread per token. sigmoid: noaux_tc's
// sigmoid scores chosen by score + correction_bias (may be null), groups by their top-2 sum; else softmax
// scores, groups by their best. n_group <= 64; top_k <= 32.
cudaError_t LaunchRouteGroupLimited(const float* logits, int tokens, int num_experts, int top_k, int n_group,
                                    int topk_group, bool sigmoid, const float* correction_bias,
                                    bool renormalize, float routed_scaling_factor, int32_t* expert_ids,
                                    float* weights, cudaStream_t stream);

// Sort of token->expert assignments by expert (stable: within an expert, by assignment index t * top_k + j).
// counts: [num_experts + 1], the last entry counts ids outside [0, num_experts). offsets: [num_experts + 1].
// permutation[s]: the assignment at sorted position s. inverse[a]: the sorted position of assignment a.
// host_counts: null, or pinned host memory the device writes directly, which then receives counts too.
size_t SortScratchBytes(int max_assignments, int num_experts);
cudaError_t LaunchSortByExpert(const int32_t* expert_ids, int assignments, int num_experts, int32_t* counts,
                               int32_t* offsets, int32_t* permutation, int32_t* inverse, void* scratch,
                               size_t scratch_bytes, int32_t* host_counts, cudaStream_t stream);

// sorted_x[s, :] = x[permutation[s] / top_k, :] (bf16 rows of `hidden`).
cudaError_t LaunchGatherRows(const uint16_t* x, int hidden, const int32_t* permutation, int assignments,
                             int top_k, uint16_t* sorted_x, cudaStream_t stream);
// h[r, i] = bf16(silu(gate_up[r, i]) * gate_up[r, intermediate + i]); gate_up is [rows, 2 * intermediate],
// f32, or bf16 when gate_up_bf16.
cudaError_t LaunchSwiGlu(const void* gate_up, bool gate_up_bf16, int rows, int intermediate, uint16_t* h,
                         cudaStream_t stream);
// out[t, :] += sum_j weights[t * top_k + j] * expert_out[inverse[t * top_k + j], :], j in order, over the
// assignments whose sorted position inverse[t * top_k + j] lies in [sorted_begin, sorted_end) (an expert
// range; all of them: [0, tokens * top_k)); expert_out f32, or bf16 when expert_out_bf16.
cudaError_t LaunchCombine(const void* expert_out, bool expert_out_bf16, int hidden, const int32_t* inverse,
                          const float* weights, int tokens, int top_k, int sorted_begin, int sorted_end,
                          float* out, cudaStream_t stream);

// FP8-block experts (gpu/expert_packing.h's FP8 layout; offsets relative to an expert's start) dequantised
// into bf16 experts of the bf16 layout: expert j from sources[j] (a device array of device addresses, each
// 16-byte aligned) to dst + j * dst_stride_bytes; value = bf16(float(e4m3) * scale_inv of its block).
struct Fp8ExpertLayout {
  int hidden = 0, intermediate = 0, block_rows = 0, block_cols = 0;
  int64_t gate_scales_offset = 0, up_scales_offset = 0, down_scales_offset = 0;
};
cudaError_t LaunchDequantizeFp8Experts(const uint8_t* const* sources, int experts,
                                       const Fp8ExpertLayout& layout, uint16_t* dst, int64_t dst_stride_bytes,
                                       cudaStream_t stream);

cudaError_t LaunchRmsNorm(const float* x, const float* weight, int rows, int width, float eps, float* out,
                          cudaStream_t stream);
cudaError_t LaunchResidualAdd(float* x, const float* y, int64_t count, cudaStream_t stream);
cudaError_t LaunchAddRowBias(float* y, const float* bias, int rows, int cols, cudaStream_t stream);
cudaError_t LaunchF32ToBf16(const float* in, int64_t count, uint16_t* out, cudaStream_t stream);
cudaError_t LaunchBf16ToF32(const uint16_t* in, int64_t count, float* out, cudaStream_t stream);
// Per row: the first index of the maximum, and its log-softmax value (-log sum exp(x - max)).
cudaError_t LaunchArgmaxLogSoftmax(const float* logits, int rows, int vocab, int32_t* token_ids,
                                   float* logprobs, cudaStream_t stream);
// Uniform values in [-scale, scale] from a counter-based hash of (seed, index): benchmarks and tests.
cudaError_t LaunchFillRandomBf16(uint16_t* out, int64_t count, uint64_t seed, float scale,
                                 cudaStream_t stream);

}  // namespace ringmoe::gpu::kernels
