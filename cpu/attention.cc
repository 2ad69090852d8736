#include "cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace ringmoe::cpu {
namespace {

// Reads one position's K or V row for a kv head, as f32 (bf16 caches are widened on the fly).
class KvRowReader {
 public:
  KvRowReader(const PagedKvView& kv, const void* pool) : kv_(kv), pool_(pool), row_(kv.head_dim) {}

  const float* Row(int position, int kv_head) {
    const int block = kv_.block_ids[position / kv_.block_tokens];
    const int64_t offset = block * kv_.block_stride +
                           (static_cast<int64_t>(position % kv_.block_tokens) * kv_.kv_heads + kv_head) * kv_.head_dim;
    if (kv_.dtype == io::DType::kF32) return static_cast<const float*>(pool_) + offset;
    const uint16_t* src = static_cast<const uint16_t*>(pool_) + offset;
    for (int i = 0; i < kv_.head_dim; ++i) row_[i] = io::BF16ToF32(src[i]);
    return row_.data();
  }

 private:
  const PagedKvView& kv_;
  const void* pool_;
  std::vector<float> row_;
};

}  // namespace

void PagedAttention(const float* q, int n_new, int heads, const PagedKvView& kv, float scale, int sliding_window,
                    float* out) {
  const int head_dim = kv.head_dim;
  const int group = heads / kv.kv_heads;
  KvRowReader keys(kv, kv.k_pool), values(kv, kv.v_pool);
  std::vector<float> scores(static_cast<size_t>(group) * kv.num_tokens);
  for (int i = 0; i < n_new; ++i) {
    const int position = kv.num_tokens - n_new + i;
    const int first = sliding_window > 0 ? std::max(0, position - sliding_window + 1) : 0;
    const int span = position - first + 1;
    for (int g = 0; g < kv.kv_heads; ++g) {
      const float* q_group = q + (static_cast<int64_t>(i) * heads + g * group) * head_dim;
      for (int j = 0; j < span; ++j) {
        const float* k_row = keys.Row(first + j, g);
        for (int h = 0; h < group; ++h) {
          const float* q_row = q_group + static_cast<int64_t>(h) * head_dim;
          float dot = 0.0f;
          for (int d = 0; d < head_dim; ++d) dot += q_row[d] * k_row[d];
          scores[static_cast<size_t>(h) * span + j] = dot * scale;
        }
      }
      float* out_group = out + (static_cast<int64_t>(i) * heads + g * group) * head_dim;
      for (int h = 0; h < group; ++h) {
        float* s = scores.data() + static_cast<size_t>(h) * span;
        float max_score = *std::max_element(s, s + span);
        float sum = 0.0f;
        for (int j = 0; j < span; ++j) sum += s[j] = std::exp(s[j] - max_score);
        const float inv_sum = 1.0f / sum;
        for (int j = 0; j < span; ++j) s[j] *= inv_sum;
        std::fill_n(out_group + static_cast<int64_t>(h) * head_dim, head_dim, 0.0f);
      }
      for (int j = 0; j < span; ++j) {
        const float* v_row = values.Row(first + j, g);
        for (int h = 0; h < group; ++h) {
          const float p = scores[static_cast<size_t>(h) * span + j];
          float* o = out_group + static_cast<int64_t>(h) * head_dim;
          for (int d = 0; d < head_dim; ++d) o[d] += p * v_row[d];
        }
      }
    }
  }
}

}  // namespace ringmoe::cpu
