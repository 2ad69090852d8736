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
// disjoint head ranges may run on different threads. Causal; online softmax over blocks of 16 cached rows,
// each row read once for all the rows and heads of the call; f32 accumulation.
// Single-threaded.
void PagedMlaAttention(const float* q, int n_new, int heads, int head_begin, int head_end,
                       const PagedKvView& cache, int latent, float scale, float* out);

}  // namespace ringmoe::cpu
