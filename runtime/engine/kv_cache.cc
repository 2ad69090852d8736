#include "runtime/engine/kv_cache.h"

#include <cassert>
#include <cstring>

#include "cpu/fp8_blocks.h"
#include "planner/execution_plan.h"

namespace ringmoe {

KvCache::KvCache(const ModelSpec& spec, io::DType dtype, int block_tokens, int num_blocks, int device_blocks)
    // MLA: one row of [latent ; rope key] per token, stored as the K of a single "head"; no V.
    : kv_width_(spec.is_mla() ? spec.mla.cache_width() : spec.kv_width()),
      kv_heads_(spec.is_mla() ? 1 : spec.num_kv_heads),
      head_dim_(spec.is_mla() ? spec.mla.cache_width() : spec.head_dim),
      has_v_(!spec.is_mla()),
      dtype_(dtype),
      block_tokens_(block_tokens),
      num_blocks_(num_blocks),
      device_blocks_(device_blocks),
      block_stride_(static_cast<int64_t>(block_tokens) * kv_width_),
      bytes_per_token_(planner::KvBytesPerToken(spec, dtype)) {
  assert(!(spec.is_mla() && dtype == io::DType::kF8E4M3));  // ValidatePlan refuses it
  const size_t pool_bytes = static_cast<size_t>(num_blocks) * block_stride_ * io::DTypeSize(dtype);
  for (int layer = 0; layer < spec.num_layers; ++layer) {
    // Default-initialised: the OS commits pages only when a block is first written.
    k_pools_.push_back(std::unique_ptr<uint8_t[]>(new uint8_t[pool_bytes]));
    if (has_v_) v_pools_.push_back(std::unique_ptr<uint8_t[]>(new uint8_t[pool_bytes]));
    if (dtype == io::DType::kF8E4M3) {
      const size_t scales = static_cast<size_t>(num_blocks) * block_tokens * kv_heads_;
      k_scales_.push_back(std::unique_ptr<float[]>(new float[scales]));
      v_scales_.push_back(std::unique_ptr<float[]>(new float[scales]));
    }
  }
  free_.reserve(num_blocks);
  for (int b = num_blocks - 1; b >= 0; --b) free_.push_back(b);  // hand out low ids first
  free_device_.reserve(device_blocks);
  for (int b = num_blocks + device_blocks - 1; b >= num_blocks; --b) free_device_.push_back(b);
  holders_.assign(static_cast<size_t>(num_blocks) + device_blocks, 0);
}

int64_t KvCache::BytesPerToken(const ModelSpec& spec, io::DType dtype) {
  return planner::KvBytesPerToken(spec, dtype);  // the planner prices the cache with the same count
}

int64_t KvCache::bytes_per_token() const { return bytes_per_token_; }

bool KvCache::Reserve(int tokens, std::vector<int32_t>* table) {
  const int needed = BlocksFor(tokens) - static_cast<int>(table->size());
  if (needed <= 0) return true;
  const bool device = table->empty() ? needed <= free_device_blocks() : OnDevice(*table);
  std::vector<int32_t>& free = device ? free_device_ : free_;
  if (needed > static_cast<int>(free.size())) return false;
  for (int i = 0; i < needed; ++i) {
    table->push_back(free.back());
    holders_[free.back()] = 1;
    free.pop_back();
  }
  return true;
}

void KvCache::Free(std::vector<int32_t>* table) {
  std::vector<int32_t>& free = OnDevice(*table) ? free_device_ : free_;
  for (auto it = table->rbegin(); it != table->rend(); ++it) {
    assert(holders_[*it] > 0);
    if (--holders_[*it] == 0) free.push_back(*it);
  }
  table->clear();
}

std::vector<int32_t> KvCache::Share(const std::vector<int32_t>& table, int blocks) {
  assert(blocks >= 0 && blocks <= static_cast<int>(table.size()));
  std::vector<int32_t> shared(table.begin(), table.begin() + blocks);
  for (int32_t block : shared) ++holders_[block];
  return shared;
}

void KvCache::Write(int layer, const std::vector<int32_t>& table, int first, int count, const float* k,
                    const float* v, int64_t row_stride) {
  assert(!OnDevice(table));
  const size_t element = io::DTypeSize(dtype_);
  for (int i = 0; i < count; ++i) {
    const int position = first + i;
    const int64_t offset = table[position / block_tokens_] * block_stride_ +
                           static_cast<int64_t>(position % block_tokens_) * kv_width_;
    uint8_t* k_dst = k_pools_[layer].get() + offset * element;
    const float* k_src = k + i * row_stride;
    if (!has_v_) {
      if (dtype_ == io::DType::kF32) {
        std::memcpy(k_dst, k_src, kv_width_ * sizeof(float));
      } else {
        io::ConvertF32ToBF16(k_src, reinterpret_cast<uint16_t*>(k_dst), kv_width_);
      }
      continue;
    }
    uint8_t* v_dst = v_pools_[layer].get() + offset * element;
    const float* v_src = v + i * row_stride;
    if (dtype_ == io::DType::kF32) {
      std::memcpy(k_dst, k_src, kv_width_ * sizeof(float));
      std::memcpy(v_dst, v_src, kv_width_ * sizeof(float));
    } else if (dtype_ == io::DType::kF8E4M3) {
      const int64_t scale_index = offset / head_dim_;  // (token, kv head 0)
      for (int h = 0; h < kv_heads_; ++h) {
        k_scales_[layer][scale_index + h] =
            cpu::QuantizeFp8Row(k_src + h * head_dim_, head_dim_, k_dst + h * head_dim_);
        v_scales_[layer][scale_index + h] =
            cpu::QuantizeFp8Row(v_src + h * head_dim_, head_dim_, v_dst + h * head_dim_);
      }
    } else {
      io::ConvertF32ToBF16(k_src, reinterpret_cast<uint16_t*>(k_dst), kv_width_);
      io::ConvertF32ToBF16(v_src, reinterpret_cast<uint16_t*>(v_dst), kv_width_);
    }
  }
}

cpu::PagedKvView KvCache::View(int layer, const std::vector<int32_t>& table, int num_tokens) const {
  cpu::PagedKvView view;
  view.dtype = dtype_;
  view.k_pool = k_pools_[layer].get();
  view.v_pool = has_v_ ? v_pools_[layer].get() : nullptr;
  view.block_stride = block_stride_;
  view.block_tokens = block_tokens_;
  view.kv_heads = kv_heads_;
  view.head_dim = head_dim_;
  view.block_ids = table.data();
  view.num_tokens = num_tokens;
  if (dtype_ == io::DType::kF8E4M3) {
    view.k_scales = k_scales_[layer].get();
    view.v_scales = v_scales_[layer].get();
  }
  return view;
}

}  // namespace ringmoe
