// Causal attention for one sequence over its paged KV cache (prefill chunks and decode alike).
#pragma once

#include <cstdint>

#include "io/dtype.h"

namespace ringmoe::cpu {

// One layer's view of a sequence's KV cache. Blocks hold `block_tokens` tokens; a block's K (and V) is laid
// out [block_tokens, kv_heads, head_dim] at pool + block_id * block_stride elements. F32, BF16 or F8_E4M3;
// F8_E4M3 rows carry one f32 scale per (token, kv head) (value = e4m3 * scale), at k_scales / v_scales +
// (element offset of the row) / head_dim, i.e. laid out [blocks, block_tokens, kv_heads].
struct PagedKvView {
  io::DType dtype = io::DType::kF32;
  const void* k_pool = nullptr;
  const void* v_pool = nullptr;
  int64_t block_stride = 0;  // elements per block (block_tokens * kv_heads * head_dim)
  int block_tokens = 0;
  int kv_heads = 0;
  int head_dim = 0;
  const int32_t* block_ids = nullptr;  // the sequence's block table
  int num_tokens = 0;                  // tokens in the cache, including the new ones
  const float* k_scales = nullptr;     // F8_E4M3 only
  const float* v_scales = nullptr;
};

// q: [n_new, heads, head_dim] for positions num_tokens - n_new .. num_tokens - 1, whose K/V are already
// written to the cache. out: [n_new, heads, head_dim]. GQA maps head h to kv head h / (heads / kv_heads).
// sliding_window > 0 limits each query to the last sliding_window positions (itself included).
//
// Flash-decoding style: an online softmax over chunks of 16 tokens, f32 accumulation, bf16 K/V widened
// exactly, each K and V row read once per tile of query rows (one row for decode, about 64 / group rows for
// prefill) for the whole GQA group. AVX-512 when KernelIsa() allows it (cpu/cpu_features.h) and
// head_dim % 16 == 0, else portable loops (compiled for AVX2: x86-64-v3, the AVX2 kernel). Both read an
// F8_E4M3 cache directly, widening each row once per chunk with integer bit operations (no table) and its
// per-(token, head) scale.
// Single-threaded: callers parallelise over sequences (or over kv heads with PagedAttentionHeads).
void PagedAttention(const float* q, int n_new, int heads, const PagedKvView& kv, float scale,
                    int sliding_window, float* out);

// PagedAttention for the query heads of kv heads [kv_head_begin, kv_head_end) only (heads
// kv_head_begin * group .. kv_head_end * group - 1 of each row); q and out keep their full shape and out's
// other heads are left untouched. Disjoint ranges may run on different threads, so one long prefill chunk can
// be spread over several cores.
void PagedAttentionHeads(const float* q, int n_new, int heads, const PagedKvView& kv, float scale,
                         int sliding_window, float* out, int kv_head_begin, int kv_head_end);

}  // namespace ringmoe::cpu
