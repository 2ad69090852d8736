#include "cpu/mla_attention.h"

#include <algorithm>
#include <atomic>
#include <cassert>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "cpu/cpu_features.h"
#include "cpu/linear.h"
#include "io/dtype.h"

namespace ringmoe::cpu {
namespace {

std::atomic<internal::MlaMatmuls> forced_matmuls{internal::MlaMatmuls::kAuto};

// Cached tokens per tile: the tile's rows are widened to f32 once and serve every query row and head of the
// call through two matmuls, its scores live in [query rows x heads, kTileTokens].
constexpr int kTileTokens = 512;

// Where token `token`'s row starts in the cache's pool (elements).
int64_t RowOffset(const PagedKvView& cache, int token) {
  return static_cast<int64_t>(cache.block_ids[token / cache.block_tokens]) * cache.block_stride +
         static_cast<int64_t>(token % cache.block_tokens) * cache.head_dim;
}

// Widens cache rows [first, first + count) (f32 or bf16) into rows [count, width]; their leading latent
// values serve the output matmul as W^T (Matrix::in_major_stride), without a transposed copy.
void ReadTile(const PagedKvView& cache, int first, int count, float* rows) {
  const int width = cache.head_dim;
  for (int j = 0; j < count; ++j) {
    const int64_t offset = RowOffset(cache, first + j);
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
  }
}

// Copies cache rows [first, first + count) of a bf16 cache as they are into rows [count, width].
void ReadTileBf16(const PagedKvView& cache, int first, int count, uint16_t* rows) {
  const int width = cache.head_dim;
  for (int j = 0; j < count; ++j) {
    const int64_t offset = RowOffset(cache, first + j);
    const uint16_t* src = static_cast<const uint16_t*>(cache.k_pool) + offset;
    std::memcpy(rows + static_cast<int64_t>(j) * width, src, width * sizeof(uint16_t));
  }
}

// x = hi + lo with hi = bf16(x) (as f32) and lo = x - hi: Linear rounds its input to bf16, exactly for hi
// and to 8 more bits of x for lo. hi may be x itself.
void SplitBf16(const float* x, int64_t count, float* hi, float* lo) {
  for (int64_t i = 0; i < count; ++i) {
    const float value = x[i];
    const float high = io::BF16ToF32(io::F32ToBF16(value));
    hi[i] = high;
    lo[i] = value - high;
  }
}

// y = x W^T for W bf16 [rows, cols], as the sum of the two halves' products.
void SplitLinear(const float* hi, const float* lo, int m, const Matrix& w, float* y, float* scratch) {
  Linear(hi, m, w, nullptr, y);
  Linear(lo, m, w, nullptr, scratch);
  const int64_t count = static_cast<int64_t>(m) * w.rows;
  for (int64_t k = 0; k < count; ++k) y[k] += scratch[k];
}

}  // namespace

bool MlaSplitBf16Matmuls() {
  static const bool amx = OneDnnHasAmxBf16() && OneDnnHasBf16Matmul();
  return amx;
}

namespace internal {
void SetMlaMatmulsForTesting(MlaMatmuls matmuls) { forced_matmuls.store(matmuls); }
}  // namespace internal

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
  const internal::MlaMatmuls forced = forced_matmuls.load();
  const bool split = cache.dtype == io::DType::kBF16 &&
                     (forced == internal::MlaMatmuls::kAuto ? MlaSplitBf16Matmuls()
                                                            : forced == internal::MlaMatmuls::kSplitBf16);
  std::vector<float> rows;
  std::vector<uint16_t> rows_bf16;
  std::vector<float> queries_lo, split_hi, split_lo, split_scratch;
  if (split) {
    rows_bf16.resize(static_cast<size_t>(tile) * width);
    queries_lo.resize(queries.size());
    SplitBf16(queries.data(), static_cast<int64_t>(queries.size()), queries.data(), queries_lo.data());
    split_hi.resize(static_cast<size_t>(m) * tile);
    split_lo.resize(static_cast<size_t>(m) * tile);
    split_scratch.resize(static_cast<size_t>(m) * std::max(tile, latent));
  } else {
    rows.resize(static_cast<size_t>(tile) * width);
  }
  std::vector<float> scores(static_cast<size_t>(m) * tile), tile_out(static_cast<size_t>(m) * latent);
  for (int first = 0; first < cache.num_tokens; first += kTileTokens) {
    const int count = std::min(kTileTokens, cache.num_tokens - first);
    // scores = queries . rows^T: every query row against the whole cached row [c ; k_rope].
    if (split) {
      ReadTileBf16(cache, first, count, rows_bf16.data());
      SplitLinear(queries.data(), queries_lo.data(), m,
                  Matrix{io::DType::kBF16, rows_bf16.data(), count, width}, scores.data(),
                  split_scratch.data());
    } else {
      ReadTile(cache, first, count, rows.data());
      Linear(queries.data(), m, Matrix{io::DType::kF32, rows.data(), count, width}, nullptr, scores.data());
    }
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
    // accumulator += p . latent: the tile's rows [count, width] are W^T of y = x W^T for W [latent, count],
    // read as the leading latent values of each row.
    if (split) {
      SplitBf16(scores.data(), static_cast<int64_t>(m) * count, split_hi.data(), split_lo.data());
      SplitLinear(split_hi.data(), split_lo.data(), m,
                  Matrix{io::DType::kBF16, rows_bf16.data(), latent, count, width}, tile_out.data(),
                  split_scratch.data());
    } else {
      Linear(scores.data(), m, Matrix{io::DType::kF32, rows.data(), latent, count, width}, nullptr,
             tile_out.data());
    }
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
