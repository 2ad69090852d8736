// KvCache: paged K/V storage in host memory (for MLA models the compressed [latent ; rope key] rows), one
// pool of fixed-size blocks per layer, and the block allocator.
//
// A sequence owns a block table (its block ids in position order). Blocks are handed out at admission and
// returned as soon as the sequence ends (a block that several tables share, see Share, when the last one
// ends). Pools are allocated lazily by the OS (untouched pages cost nothing).
// The GPU path may add device blocks (the plan's GPU share of the cache): ids num_blocks() ..
// num_blocks() + device_blocks() - 1, stored by the GPU forward pass (gpu/kv_cache_ops.h), never here. A
// table is all host or all device; Reserve hands out device blocks while a whole table fits in them, so the
// sequences admitted first keep their KV, and their attention, on the GPU.
// Threading: Allocate/Free are called by the scheduler thread only; Write and View may run concurrently for
// different sequences (they touch disjoint blocks).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "cpu/attention.h"
#include "io/dtype.h"
#include "io/model_spec.h"

namespace ringmoe {

class KvCache {
 public:
  // dtype: kF32, kBF16 or kF8E4M3 (e4m3 with an f32 scale per token and kv head, amax / 448 of that head's
  // row; host blocks only). num_blocks host blocks; device_blocks more that live on the GPU.
  KvCache(const ModelSpec& spec, io::DType dtype, int block_tokens, int num_blocks, int device_blocks = 0);

  int block_tokens() const { return block_tokens_; }
  int num_blocks() const { return num_blocks_; }
  int device_blocks() const { return device_blocks_; }
  int free_blocks() const { return static_cast<int>(free_.size()); }
  int free_device_blocks() const { return static_cast<int>(free_device_.size()); }
  // Whether `table` holds device blocks (then its first id is >= num_blocks()).
  bool OnDevice(const std::vector<int32_t>& table) const { return !table.empty() && table[0] >= num_blocks_; }
  int64_t block_stride() const { return block_stride_; }
  io::DType dtype() const { return dtype_; }
  // Bytes one token occupies across all layers (K and V, or MLA's one row): planner::KvBytesPerToken.
  int64_t bytes_per_token() const;
  static int64_t BytesPerToken(const ModelSpec& spec, io::DType dtype);

  int BlocksFor(int tokens) const { return (tokens + block_tokens_ - 1) / block_tokens_; }
  // Appends blocks to `table` until it covers `tokens` positions, from the side it is on (an empty table:
  // device blocks if enough are free, else host ones); false (and no change) if too few are free.
  bool Reserve(int tokens, std::vector<int32_t>* table);
  // Gives up the table's hold on its blocks: a block returns to the free list once no table holds it.
  void Free(std::vector<int32_t>* table);
  // The first `blocks` blocks of `table`, held once more (copy-free sharing of a prompt's K/V: Request::n
  // choices read the same prompt blocks). Only full blocks that no sequence writes again may be shared; the
  // new table then grows with Reserve from the same side (host or device).
  std::vector<int32_t> Share(const std::vector<int32_t>& table, int blocks);

  // Stores K and V ([count, kv_width] each, f32) for positions first .. first + count - 1 of one layer.
  // MLA models: k is the [latent ; rope key] rows (mla.cache_width() each) and v is unused (null).
  // Host tables only (as View).
  void Write(int layer, const std::vector<int32_t>& table, int first, int count, const float* k,
             const float* v, int64_t row_stride);
  cpu::PagedKvView View(int layer, const std::vector<int32_t>& table, int num_tokens) const;

 private:
  int kv_width_;
  int kv_heads_;
  int head_dim_;
  bool has_v_;  // false for MLA: the cache holds K rows only
  io::DType dtype_;
  int block_tokens_;
  int num_blocks_;
  int device_blocks_;
  int64_t block_stride_;  // elements per block
  int64_t bytes_per_token_;
  std::vector<std::unique_ptr<uint8_t[]>> k_pools_, v_pools_;
  std::vector<std::unique_ptr<float[]>> k_scales_, v_scales_;  // kF8E4M3: [blocks, block_tokens, kv_heads]
  std::vector<int32_t> free_, free_device_;
  std::vector<int32_t> holders_;  // per block id (host, then device): how many tables hold it
};

}  // namespace ringmoe
