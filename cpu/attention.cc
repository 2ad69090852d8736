#include "cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "cpu/activation.h"

namespace ringmoe::cpu {
namespace {

inline float Widen(float value) { return value; }
inline float Widen(uint16_t bf16) {
  const uint32_t bits = static_cast<uint32_t>(bf16) << 16;
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

// The cache's K/V element type: f32, or bf16 widened in the inner loops (which the compiler vectorises: a
// shift and a multiply-add per element, no copy of the row).
template <typename Element>
void Attend(const float* q, int n_new, int heads, const PagedKvView& kv, float scale, int sliding_window,
            float* out) {
  const int head_dim = kv.head_dim;
  const int group = heads / kv.kv_heads;
  const Element* k_pool = static_cast<const Element*>(kv.k_pool);
  const Element* v_pool = static_cast<const Element*>(kv.v_pool);
  auto row = [&](const Element* pool, int position, int kv_head) {
    const int64_t block = kv.block_ids[position / kv.block_tokens];
    return pool + block * kv.block_stride +
           (static_cast<int64_t>(position % kv.block_tokens) * kv.kv_heads + kv_head) * head_dim;
  };
  std::vector<float> scores(static_cast<size_t>(group) * kv.num_tokens);
  for (int i = 0; i < n_new; ++i) {
    const int position = kv.num_tokens - n_new + i;
    const int first = sliding_window > 0 ? std::max(0, position - sliding_window + 1) : 0;
    const int span = position - first + 1;
    for (int g = 0; g < kv.kv_heads; ++g) {
      const float* q_group = q + (static_cast<int64_t>(i) * heads + g * group) * head_dim;
      // Scores: each K row is read once for the whole GQA group of query heads.
      for (int j = 0; j < span; ++j) {
        const Element* k_row = row(k_pool, first + j, g);
        for (int h = 0; h < group; ++h) {
          const float* q_row = q_group + static_cast<int64_t>(h) * head_dim;
          float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
          for (int d = 0; d < head_dim; ++d) dot += q_row[d] * Widen(k_row[d]);
          scores[static_cast<size_t>(h) * span + j] = dot * scale;
        }
      }
      float* out_group = out + (static_cast<int64_t>(i) * heads + g * group) * head_dim;
      for (int h = 0; h < group; ++h) {
        float* s = scores.data() + static_cast<size_t>(h) * span;
        const float max_score = *std::max_element(s, s + span);
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < span; ++j) {
          s[j] = ExpNonPositive(s[j] - max_score);
          sum += s[j];
        }
        const float inv_sum = 1.0f / sum;
#pragma omp simd
        for (int j = 0; j < span; ++j) s[j] *= inv_sum;
        std::fill_n(out_group + static_cast<int64_t>(h) * head_dim, head_dim, 0.0f);
      }
      // Weighted sum of V rows, again one read of each row for the group.
      for (int j = 0; j < span; ++j) {
        const Element* v_row = row(v_pool, first + j, g);
        for (int h = 0; h < group; ++h) {
          const float p = scores[static_cast<size_t>(h) * span + j];
          float* o = out_group + static_cast<int64_t>(h) * head_dim;
#pragma omp simd
          for (int d = 0; d < head_dim; ++d) o[d] += p * Widen(v_row[d]);
        }
      }
    }
  }
}

}  // namespace

void PagedAttention(const float* q, int n_new, int heads, const PagedKvView& kv, float scale,
                    int sliding_window, float* out) {
  if (kv.dtype == io::DType::kF32) {
    Attend<float>(q, n_new, heads, kv, scale, sliding_window, out);
  } else {
    Attend<uint16_t>(q, n_new, heads, kv, scale, sliding_window, out);
  }
}

}  // namespace ringmoe::cpu
