// The GPU share of the paged KV cache: sequences whose K/V live in device memory keep them there and attend
// there, so their decodes never cross PCIe. Each op has a CPU twin:
//   WriteKvRows          ringmoe::KvCache::Write (runtime/engine/kv_cache.h) into a bf16 pool: the same RNE
//   rounding. PagedAttentionRows   cpu::PagedAttention (cpu/attention.h) over a bf16 paged view, row by row.
// Layout as the host cache's: a layer's pool holds blocks of [block_tokens, kv_heads, head_dim] bf16 at
// block_id * block_stride elements. Rows name their sequence through row_tables[r], an offset into `tables`
// (the concatenated block tables of the step's GPU-attended sequences, device-local block ids), and their
// position through positions[r]; a row with row_tables[r] < 0 is skipped. All pointers are device pointers;
// everything is queued on `stream`.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "gpu/stream.h"

namespace ringmoe::gpu {

struct DevicePagedKv {
  uint16_t* k_pool = nullptr;  // bf16, this layer's
  uint16_t* v_pool = nullptr;
  int64_t block_stride = 0;  // elements per block (block_tokens * kv_heads * head_dim)
  int block_tokens = 0;
  int kv_heads = 0;
  int head_dim = 0;
  const int32_t* tables = nullptr;      // device-local block ids
  const int32_t* row_tables = nullptr;  // per row: offset of its sequence's table in `tables`, or -1
  const int32_t* positions = nullptr;   // per row
};

// Stores rows 0 .. rows - 1 of k and v (f32 [rows, kv_heads * head_dim], row_stride elements apart) at their
// positions, rounded to bf16 to nearest even.
absl::Status WriteKvRows(const float* k, const float* v, int rows, int64_t row_stride,
                         const DevicePagedKv& kv, const Stream& stream);

// Causal attention of q rows 0 .. rows - 1 ([rows, heads, head_dim], f32) over their sequences' cached
// K/V at positions 0 .. positions[r] (the row's own K/V already written; sliding_window > 0 keeps the last
// sliding_window of them). out: [rows, heads, head_dim] f32, must not overlap q. GQA maps head h to kv head
// h / (heads / kv_heads); heads / kv_heads <= 32, head_dim <= 256. f32 with an online softmax.
absl::Status PagedAttentionRows(const float* q, int rows, int heads, const DevicePagedKv& kv, float scale,
                                int sliding_window, float* out, const Stream& stream);

}  // namespace ringmoe::gpu
