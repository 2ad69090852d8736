#include "cpu/mla_attention.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace ringmoe::cpu {
namespace {

constexpr int kBlockRows = 16;

// Sixteen independent partial sums (two AVX2 vectors), so the compiler vectorises without reassociating.
inline float Dot(const float* a, const float* b, int n) {
  float partial[16] = {};
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    for (int k = 0; k < 16; ++k) partial[k] += a[i + k] * b[i + k];
  }
  float sum = 0.0f;
  for (; i < n; ++i) sum += a[i] * b[i];
  for (int k = 0; k < 16; ++k) sum += partial[k];
  return sum;
}

// Widens cache row `token` (f32 or bf16) into dst [width].
void ReadRow(const PagedKvView& cache, int token, float* dst) {
  const int width = cache.head_dim;
  const int64_t offset =
      static_cast<int64_t>(cache.block_ids[token / cache.block_tokens]) * cache.block_stride +
      static_cast<int64_t>(token % cache.block_tokens) * width;
  if (cache.dtype == io::DType::kF32) {
    std::memcpy(dst, static_cast<const float*>(cache.k_pool) + offset, width * sizeof(float));
    return;
  }
  const uint16_t* src = static_cast<const uint16_t*>(cache.k_pool) + offset;
  for (int i = 0; i < width; ++i) {
    const uint32_t bits = static_cast<uint32_t>(src[i]) << 16;
    std::memcpy(dst + i, &bits, sizeof(float));
  }
}

}  // namespace

void PagedMlaAttention(const float* q, int n_new, int heads, int head_begin, int head_end,
                       const PagedKvView& cache, int latent, float scale, float* out) {
  assert(cache.kv_heads == 1 && cache.head_dim > latent);
  assert(cache.dtype == io::DType::kF32 || cache.dtype == io::DType::kBF16);
  const int width = cache.head_dim;
  const int used_heads = head_end - head_begin;
  if (n_new <= 0 || used_heads <= 0) return;
  const int first_position = cache.num_tokens - n_new;
  // Online-softmax state per (row, head): running max, running sum, latent accumulator.
  const size_t states = static_cast<size_t>(n_new) * used_heads;
  std::vector<float> running_max(states, -std::numeric_limits<float>::infinity()), running_sum(states, 0.0f);
  std::vector<float> accumulator(states * latent, 0.0f);
  std::vector<float> rows(static_cast<size_t>(kBlockRows) * width);
  float scores[kBlockRows];
  for (int block = 0; block < cache.num_tokens; block += kBlockRows) {
    const int count = std::min(kBlockRows, cache.num_tokens - block);
    for (int j = 0; j < count; ++j) ReadRow(cache, block + j, rows.data() + static_cast<int64_t>(j) * width);
    for (int r = 0; r < n_new; ++r) {
      // Causal: query row r sees cached tokens 0 .. first_position + r.
      const int visible = std::min(count, first_position + r + 1 - block);
      if (visible <= 0) continue;
      for (int h = 0; h < used_heads; ++h) {
        const float* query = q + (static_cast<int64_t>(r) * heads + head_begin + h) * width;
        float block_max = -std::numeric_limits<float>::infinity();
        for (int j = 0; j < visible; ++j) {
          scores[j] = Dot(query, rows.data() + static_cast<int64_t>(j) * width, width) * scale;
          block_max = std::max(block_max, scores[j]);
        }
        const size_t state = static_cast<size_t>(r) * used_heads + h;
        float* acc = accumulator.data() + state * latent;
        const float new_max = std::max(running_max[state], block_max);
        const float rescale = std::exp(running_max[state] - new_max);  // 0 on the first block (-inf)
        if (rescale != 1.0f) {
          for (int i = 0; i < latent; ++i) acc[i] *= rescale;
        }
        float sum = running_sum[state] * rescale;
        for (int j = 0; j < visible; ++j) {
          const float p = std::exp(scores[j] - new_max);
          sum += p;
          const float* row = rows.data() + static_cast<int64_t>(j) * width;
          for (int i = 0; i < latent; ++i) acc[i] += p * row[i];
        }
        running_sum[state] = sum;
        running_max[state] = new_max;
      }
    }
  }
  for (int r = 0; r < n_new; ++r) {
    for (int h = 0; h < used_heads; ++h) {
      const size_t state = static_cast<size_t>(r) * used_heads + h;
      const float inverse = 1.0f / running_sum[state];
      const float* acc = accumulator.data() + state * latent;
      float* dst = out + (static_cast<int64_t>(r) * heads + head_begin + h) * latent;
      for (int i = 0; i < latent; ++i) dst[i] = acc[i] * inverse;
    }
  }
}

}  // namespace ringmoe::cpu
