// The pieces of DeepSeek's MLA prefill attention on the GPU (runtime/engine/gpu_mla_prefill.cc puts them
// together with gpu::LinearBf16, gpu::RmsNorm and gpu::PrefillAttention), each with a CPU twin:
//   ApplyRotary  cpu::ApplyRotary (cpu/rope.h): any rope type (default, YaRN), interleaved or half pairs,
//                strided heads; the same f32 angles.
//   CopyBlocks   the obvious strided loop (tests/gpu_mla_ops_test.cc): MLA's splits and assemblies of rows.
// All pointers are device pointers (f32); everything is queued on `stream`.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "cpu/rope.h"
#include "gpu/stream.h"

namespace ringmoe::gpu {

// Rotates the first rope.dim values of each head vector x + t * token_stride + h * head_stride, t < tokens,
// h < heads, at positions[t] (device int32): angle = position * inv_freq[i] in f32, cos and sin times
// rope.attention_factor, pairs (2i, 2i + 1) when rope.interleaved, else (i, i + dim / 2). rope.dim even and
// at most 512.
absl::Status ApplyRotary(const cpu::RotaryEmbedding& rope, float* x, int tokens, int heads,
                         int64_t token_stride, int64_t head_stride, const int32_t* positions,
                         const Stream& stream);

// dst[r * dst_row_stride + g * dst_group_stride + i] = src[r * src_row_stride + g * src_group_stride + i] for
// r < rows, g < groups, i < width. src_group_stride 0 copies one block of a row into every group. The blocks
// written must not overlap those read.
struct BlockCopy {
  int rows = 0, groups = 1, width = 0;
  int64_t src_row_stride = 0, src_group_stride = 0;
  int64_t dst_row_stride = 0, dst_group_stride = 0;
};
absl::Status CopyBlocks(const float* src, float* dst, const BlockCopy& copy, const Stream& stream);

}  // namespace ringmoe::gpu
