// The pre-attention work and the prefill attention of fresh prompts on the GPU, each with a CPU twin:
//   ApplyRope          cpu::ApplyRope (cpu/rope.h): the same f32 inv_freq and angles; tested to 1e-5 at 32k.
//   ClampInPlace       std::clamp per element (OLMoE clip_qkv), exact.
//   PrefillAttention   cpu::PagedAttention (cpu/attention.h) of a sequence whose whole prompt is new.
// All pointers are device pointers (f32 unless said); everything is queued on `stream` (no host wait).
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "gpu/stream.h"

namespace ringmoe::gpu {

// x: [tokens, heads, head_dim], rotated in place ("rotate half": pairs (i, i + head_dim / 2)) by
// positions[t] * theta^(-2i / head_dim), inv_freq and angle in f32 as Hugging Face computes them.
// positions: device [tokens]. head_dim even, <= 512.
absl::Status ApplyRope(float* x, int tokens, int heads, int head_dim, const int32_t* positions, double theta,
                       const Stream& stream);

// x[i] = clamp(x[i], -limit, limit); NaN stays NaN, as with std::clamp. limit >= 0.
absl::Status ClampInPlace(float* x, int64_t count, float limit, const Stream& stream);

// Causal self-attention of `chunks` fresh prompts (nothing cached before them): rows chunk_rows[c] ..
// chunk_rows[c + 1] - 1 hold positions 0, 1, ... of chunk c (chunk_rows: device [chunks + 1], ascending).
// q, out: [rows, heads, head_dim]; k, v: [rows, kv_heads, head_dim]; out must not overlap q, k or v. GQA maps
// head h to kv head h / (heads / kv_heads). sliding_window > 0 limits each query to the last sliding_window
// positions, itself included (<= 0: full causal). head_dim <= 256 (fastest when a multiple of 4 with
// 16-byte aligned tensors, and 128 or less). f32 throughout with an online softmax.
// max_chunk_rows: the longest chunk, which sizes the grid (a longer chunk is still computed, only with less
// parallelism); 0 with chunks > 0 means every chunk is empty.
absl::Status PrefillAttention(const float* q, const float* k, const float* v, const int32_t* chunk_rows,
                              int chunks, int max_chunk_rows, int heads, int kv_heads, int head_dim,
                              float scale, int sliding_window, float* out, const Stream& stream);

}  // namespace ringmoe::gpu
