// Multi-head latent attention (DeepSeek-V2/V3) over a paged cache of compressed rows, in the absorbed form:
// each cached token is one row [c ; k_rope] (the normed kv latent, kv_lora_rank values, then the rotated
// rope key shared by all heads), and each query head arrives already projected into that space,
// [W_UK_h^T q_nope_h ; q_rope_h]. Then attention is multi-query attention whose key is the whole row and
// whose value is its latent part; the caller takes each head's latent output through W_UV_h.
#pragma once

#include <cstdint>

#include "cpu/attention.h"

namespace ringmoe::cpu {

// q: [n_new, heads, cache.head_dim] for positions cache.num_tokens - n_new .. num_tokens - 1, whose rows are
// already in the cache (cache.kv_heads == 1, rows of cache.head_dim = latent + rope values; F32 or BF16).
// out: [n_new, heads, latent]; only heads [head_begin, head_end) are computed (the others are untouched), so
// disjoint head ranges may run on different threads. Causal. The cache is read in tiles of 512 rows, each
// widened to f32 once for every query row and head of the call; per tile two oneDNN f32 matmuls (the scores
// of all query rows against the tile's rows, then the probabilities against its latents, read in place as
// the leading values of the same rows: no transposed copy) and an online
// softmax across tiles; f32 throughout. Absorbed MLA does ~240 FLOPs per cached byte, so matmuls, not
// bandwidth, set its speed (bench/mla_bench). Where oneDNN has AMX and the cache is bf16, the tile stays bf16
// and each f32 operand is split into two bf16 terms (x = hi + lo): four bf16 matmuls with f32 accumulation,
// the f32 products to about 2^-16 of each operand, at AMX's rate (MlaSplitBf16Matmuls).
// Single-threaded (oneDNN on the calling thread).
void PagedMlaAttention(const float* q, int n_new, int heads, int head_begin, int head_end,
                       const PagedKvView& cache, int latent, float scale, float* out);

// Whether PagedMlaAttention takes the split-bf16 matmuls for bf16 caches here (oneDNN with AMX-BF16).
bool MlaSplitBf16Matmuls();

namespace internal {
enum class MlaMatmuls { kAuto, kF32, kSplitBf16 };
// Forces the matmuls of later PagedMlaAttention calls over bf16 caches, so tests cover both on any CPU.
void SetMlaMatmulsForTesting(MlaMatmuls matmuls);
}  // namespace internal

}  // namespace ringmoe::cpu
