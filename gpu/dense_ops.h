// Dense ops of a layer on the GPU, each with a CPU twin: bf16 linear (cpu::Linear), RMSNorm (cpu::RmsNorm),
// residual add, f32 <-> bf16 conversion, and greedy argmax with its log-softmax value for lm_head logits.
// All pointers are device pointers; everything is queued on `stream` (no host wait).
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "gpu/blas.h"
#include "gpu/stream.h"

namespace ringmoe::gpu {

// y[m, out_features] = x[m, in_features] * w^T (+ bias[out_features] when non-null). x and w bf16 (w in
// PyTorch's [out, in] layout), f32 accumulation and output, as cpu::Linear with a BF16 matrix.
absl::Status LinearBf16(BlasHandle& blas, const void* x_bf16, int m, const void* w_bf16, int out_features,
                        int in_features, const float* bias, float* y, const Stream& stream);

// The same in f32 throughout (x, w and y f32; no TF32): for small products whose precision matters more than
// their speed, such as the router's logits. Twin: cpu::Linear with an F32 matrix.
absl::Status LinearF32(BlasHandle& blas, const float* x, int m, const float* w, int out_features,
                       int in_features, float* y, const Stream& stream);
// out = x * rsqrt(mean(x^2) + eps) * weight per row of `width`; out may alias x.
absl::Status RmsNorm(const float* x, const float* weight, int rows, int width, float eps, float* out,
                     const Stream& stream);

// x[i] += y[i].
absl::Status ResidualAdd(float* x, const float* y, int64_t count, const Stream& stream);

// Round-to-nearest-even to bf16, and back.
absl::Status ConvertF32ToBf16(const float* in, int64_t count, void* out_bf16, const Stream& stream);
absl::Status ConvertBf16ToF32(const void* in_bf16, int64_t count, float* out, const Stream& stream);

// Per row of `vocab` logits: token_ids[r] = the first index of the maximum, logprobs[r] = its log-softmax
// value.
absl::Status GreedyArgmaxLogSoftmax(const float* logits, int rows, int vocab, int32_t* token_ids,
                                    float* logprobs, const Stream& stream);

// Fills `count` bf16 values with uniform noise in [-scale, scale] from (seed, index): tests and benchmarks.
absl::Status FillRandomBf16(void* out_bf16, int64_t count, uint64_t seed, float scale, const Stream& stream);

}  // namespace ringmoe::gpu
