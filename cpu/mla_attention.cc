#include "cpu/mla_attention.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "cpu/linear.h"

namespace ringmoe::cpu {
namespace {

// Cached tokens per tile: the tile's rows are widened to f32 once and serve every query row and head of the
// call through two matmuls, its scores live in [query rows x heads, kTileTokens].
constexpr int kTileTokens = 512;

// Widens cache rows [first, first + count) (f32 or bf16) into rows [count, width] and their latent parts,
// transposed, into latent_t [latent, count].
void ReadTile(const PagedKvView& cache, int first, int count, int latent, float* rows, float* latent_t) {
  const int width = cache.head_dim;
  for (int j = 0; j < count; ++j) {
    const int token = first + j;
    const int64_t offset =
        static_cast<int64_t>(cache.block_ids[token / cache.block_tokens]) * cache.block_stride +
        static_cast<int64_t>(token % cache.block_tokens) * width;
    float* dst = rows + static_cast<int64_t>(j) * width;
    if (cache.dtype == io::DType::kF32) {
      std::memcpy(dst, static_cast<const float*>(cache.k_pool) + offset, width * sizeof(float));
    } else {
      const uint16_t* src = static_cast<const uint16_t*>(cache.k_pool) + offset;
      for (int i = 0; i < width; ++i) {
        const uint32_t bits = static_cast<uint32_t>(src[i]) << 16;
        std::memcpy(dst + i, &bits, sizeof(float));
      }
    }
    for (int i = 0; i < latent; ++i) latent_t[static_cast<int64_t>(i) * count + j] = dst[i];
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
  // Query rows (row r, head h) gathered contiguously: [m, width], m = n_new * used_heads.
  const int m = n_new * used_heads;
  std::vector<float> queries(static_cast<size_t>(m) * width);
  for (int r = 0; r < n_new; ++r) {
    std::memcpy(queries.data() + static_cast<int64_t>(r) * used_heads * width,
                q + (static_cast<int64_t>(r) * heads + head_begin) * width,
                static_cast<size_t>(used_heads) * width * sizeof(float));
  }
  // Online softmax over tiles: running max and sum per query row, the latent accumulator [m, latent].
  std::vector<float> running_max(m, -std::numeric_limits<float>::infinity()), running_sum(m, 0.0f);
  std::vector<float> accumulator(static_cast<size_t>(m) * latent, 0.0f);
  const int tile = std::min(kTileTokens, cache.num_tokens);
  std::vector<float> rows(static_cast<size_t>(tile) * width), latent_t(static_cast<size_t>(latent) * tile);
  std::vector<float> scores(static_cast<size_t>(m) * tile), tile_out(static_cast<size_t>(m) * latent);
  for (int first = 0; first < cache.num_tokens; first += kTileTokens) {
    const int count = std::min(kTileTokens, cache.num_tokens - first);
    ReadTile(cache, first, count, latent, rows.data(), latent_t.data());
    // scores = queries . rows^T: every query row against the whole cached row [c ; k_rope].
    Linear(queries.data(), m, Matrix{io::DType::kF32, rows.data(), count, width}, nullptr, scores.data());
    for (int i = 0; i < m; ++i) {
      float* row_scores = scores.data() + static_cast<int64_t>(i) * count;
      // Causal: query row r sees cached tokens 0 .. first_position + r; masked ones get probability 0.
      const int visible = std::clamp(first_position + i / used_heads + 1 - first, 0, count);
      float tile_max = -std::numeric_limits<float>::infinity();
      for (int j = 0; j < visible; ++j) tile_max = std::max(tile_max, row_scores[j] *= scale);
      const float new_max = std::max(running_max[i], tile_max);
      float sum = 0.0f;
      for (int j = 0; j < visible; ++j) sum += row_scores[j] = std::exp(row_scores[j] - new_max);
      std::fill(row_scores + visible, row_scores + count, 0.0f);
      const float rescale = visible > 0 ? std::exp(running_max[i] - new_max) : 1.0f;  // 0 after -inf
      running_sum[i] = running_sum[i] * rescale + sum;
      if (visible > 0) running_max[i] = new_max;
      float* acc = accumulator.data() + static_cast<int64_t>(i) * latent;
      if (rescale != 1.0f) {
        for (int c = 0; c < latent; ++c) acc[c] *= rescale;
      }
    }
    // accumulator += p . latent (latent_t is W [latent, count] of y = x W^T).
    Linear(scores.data(), m, Matrix{io::DType::kF32, latent_t.data(), latent, count}, nullptr,
           tile_out.data());
    for (size_t k = 0; k < accumulator.size(); ++k) accumulator[k] += tile_out[k];
  }
  for (int r = 0; r < n_new; ++r) {
    for (int h = 0; h < used_heads; ++h) {
      const int i = r * used_heads + h;
      const float inverse = 1.0f / running_sum[i];
      const float* acc = accumulator.data() + static_cast<int64_t>(i) * latent;
      float* dst = out + (static_cast<int64_t>(r) * heads + head_begin + h) * latent;
      for (int c = 0; c < latent; ++c) dst[c] = acc[c] * inverse;
    }
  }
}

}  // namespace ringmoe::cpu
