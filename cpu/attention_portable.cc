// The portable paged-attention kernel: plain loops that the compiler vectorises over head_dim. It runs any
// head_dim, on any x86-64 (and wherever else the engine builds), and is the reference the AVX-512 kernel is
// tested against.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "cpu/activation.h"
#include "cpu/attention_internal.h"

namespace ringmoe::cpu::internal {
namespace {

inline float Widen(float value) { return value; }
inline float Widen(uint16_t bf16) {
  const uint32_t bits = static_cast<uint32_t>(bf16) << 16;
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

// e4m3 -> f32 times `scale`, exact before the scaling: the sign and the seven other bits moved into an f32's
// place (exponent bias 7 -> 127 is a factor 2^120, which subnormals get right too), no table and no branch,
// so that a row's loop vectorises. The NaN codes (0x7f, 0xff) read as +-480: the cache never writes them
// for finite K/V.
inline float WidenE4M3(uint8_t value, float scale) {
  const uint32_t bits =
      (static_cast<uint32_t>(value & 0x80u) << 24) | (static_cast<uint32_t>(value & 0x7fu) << 20);
  float magnitude;
  std::memcpy(&magnitude, &bits, sizeof(magnitude));
  return magnitude * 0x1p120f * scale;  // left to right: 2^120 * scale alone could overflow
}

// Element: the cache's K/V type, float (read in place), bf16 (uint16_t) or e4m3 with per-(token, head)
// scales (uint8_t), the last two widened once per chunk into f32 rows, so that the inner loops are plain f32
// multiply-adds.
template <typename Element>
class PortableKernel {
 public:
  PortableKernel(const PagedKvView& kv, float scale, int max_vectors)
      : k_pool_(static_cast<const Element*>(kv.k_pool)),
        v_pool_(static_cast<const Element*>(kv.v_pool)),
        k_scales_(kv.k_scales),
        v_scales_(kv.v_scales),
        scale_(scale) {
    thread_local std::vector<float> storage;
    const size_t rows =
        std::is_same_v<Element, float> ? 0 : 2 * kChunkTokens * static_cast<size_t>(kv.head_dim);
    scores_ = AlignedScratch(storage, static_cast<size_t>(max_vectors) * (kChunkTokens + 1) + rows);
    corr_ = scores_ + static_cast<size_t>(max_vectors) * kChunkTokens;
    widened_ = corr_ + max_vectors;
  }

  void Attend(const AttentionTile& tile, const AttentionChunk& chunk, int local_head, int kv_head,
              ChunkPrefetcher& prefetch) {
    const int head_dim = tile.head_dim, vectors = tile.vectors;
    const int lane_begin = chunk.lane_begin, lane_end = chunk.lane_end;
    const int64_t head = static_cast<int64_t>(kv_head) * head_dim;
    const float* k[kChunkTokens];
    const float* v[kChunkTokens];
    for (int t = lane_begin; t < lane_end; ++t) {
      const int64_t offset = chunk.row_offset[t] + head;
      if constexpr (std::is_same_v<Element, uint8_t>) {
        const int64_t row = offset / head_dim;  // the (token, kv head) scale
        k[t] = Row(k_pool_ + offset, widened_ + t * head_dim, head_dim, k_scales_[row]);
        v[t] = Row(v_pool_ + offset, widened_ + (kChunkTokens + t) * head_dim, head_dim, v_scales_[row]);
      } else {
        k[t] = Row(k_pool_ + offset, widened_ + t * head_dim, head_dim);
        v[t] = Row(v_pool_ + offset, widened_ + (kChunkTokens + t) * head_dim, head_dim);
      }
    }
    prefetch.Step();
    // Scores, four tokens per pass over a query vector.
    const float* q = tile.q_of(local_head);
    for (int m = 0; m < vectors; ++m) {
      if (m % 8 == 0) prefetch.Step();
      const float* qm = q + static_cast<int64_t>(m) * head_dim;
      float* s = scores_ + m * kChunkTokens;
      int t = lane_begin;
      for (; t + 4 <= lane_end; t += 4) {
        const float *k0 = k[t], *k1 = k[t + 1], *k2 = k[t + 2], *k3 = k[t + 3];
        float d0 = 0.0f, d1 = 0.0f, d2 = 0.0f, d3 = 0.0f;
#pragma omp simd reduction(+ : d0, d1, d2, d3)
        for (int d = 0; d < head_dim; ++d) {
          d0 += qm[d] * k0[d];
          d1 += qm[d] * k1[d];
          d2 += qm[d] * k2[d];
          d3 += qm[d] * k3[d];
        }
        s[t] = d0 * scale_, s[t + 1] = d1 * scale_, s[t + 2] = d2 * scale_, s[t + 3] = d3 * scale_;
      }
      for (; t < lane_end; ++t) {
        const float* kt = k[t];
        float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
        for (int d = 0; d < head_dim; ++d) dot += qm[d] * kt[d];
        s[t] = dot * scale_;
      }
    }
    // Online softmax: rescale the running sums (and below the accumulators) when the maximum moves.
    float* max = tile.max_of(local_head);
    float* sum = tile.sum_of(local_head);
    for (int m = 0; m < vectors; ++m) {
      const uint32_t mask = tile.row_masks[m / tile.group];
      float* s = scores_ + m * kChunkTokens;
      corr_[m] = 1.0f;
      if (mask == 0) {
        for (int t = lane_begin; t < lane_end; ++t) s[t] = 0.0f;
        continue;
      }
      float chunk_max = -INFINITY;
      for (int t = lane_begin; t < lane_end; ++t) {
        if ((mask >> t & 1) && s[t] > chunk_max) chunk_max = s[t];
      }
      if (chunk_max > max[m]) {
        corr_[m] = ExpNonPositive(max[m] - chunk_max);
        max[m] = chunk_max;
      }
      const float row_max = max[m], c = corr_[m];
      float* lane_sum = sum + m * kChunkTokens;
#pragma omp simd
      for (int t = 0; t < kChunkTokens; ++t) {
        const bool attended = t >= lane_begin && t < lane_end && (mask >> t & 1);
        const float p = attended ? ExpNonPositive(s[t] - row_max) : 0.0f;
        s[t] = p;
        lane_sum[t] = lane_sum[t] * c + p;
      }
    }
    // Weighted V rows, four per pass over an accumulator (lanes a row does not attend to weigh 0).
    float* acc = tile.acc_of(local_head);
    for (int m = 0; m < vectors; ++m) {
      if (m % 8 == 0) prefetch.Step();
      float* a = acc + static_cast<int64_t>(m) * head_dim;
      const float* p = scores_ + m * kChunkTokens;
      if (const float c = corr_[m]; c != 1.0f) {
#pragma omp simd
        for (int d = 0; d < head_dim; ++d) a[d] *= c;
      }
      int t = lane_begin;
      for (; t + 4 <= lane_end; t += 4) {
        const float *v0 = v[t], *v1 = v[t + 1], *v2 = v[t + 2], *v3 = v[t + 3];
        const float p0 = p[t], p1 = p[t + 1], p2 = p[t + 2], p3 = p[t + 3];
#pragma omp simd
        for (int d = 0; d < head_dim; ++d) a[d] += p0 * v0[d] + p1 * v1[d] + p2 * v2[d] + p3 * v3[d];
      }
      for (; t < lane_end; ++t) {
        const float* vt = v[t];
        const float pt = p[t];
#pragma omp simd
        for (int d = 0; d < head_dim; ++d) a[d] += pt * vt[d];
      }
    }
  }

 private:
  // The row as f32: in place, or widened into `scratch`.
  static const float* Row(const float* row, float*, int) { return row; }
  static const float* Row(const uint16_t* row, float* scratch, int head_dim) {
#pragma omp simd
    for (int d = 0; d < head_dim; ++d) scratch[d] = Widen(row[d]);
    return scratch;
  }
  static const float* Row(const uint8_t* row, float* scratch, int head_dim, float scale) {
#pragma omp simd
    for (int d = 0; d < head_dim; ++d) scratch[d] = WidenE4M3(row[d], scale);
    return scratch;
  }

  const Element* k_pool_;
  const Element* v_pool_;
  const float* k_scales_;
  const float* v_scales_;
  float scale_;
  float* scores_;   // [vectors, kChunkTokens]: scores, then probabilities
  float* corr_;     // [vectors]: this chunk's rescaling of the row's previous terms
  float* widened_;  // bf16, e4m3: [2, kChunkTokens, head_dim], the chunk's K then V rows as f32
};

template <typename Element>
void Run(const float* q, int n_new, int heads, const PagedKvView& kv, float scale, int sliding_window,
         float* out, int kv_head_begin, int kv_head_end) {
  const int group = heads / kv.kv_heads;
  PortableKernel<Element> kernel(kv, scale, TileRows(n_new, group) * group);
  RunPagedAttention(q, n_new, heads, kv, sliding_window, out, kv_head_begin, kv_head_end, kernel);
}

}  // namespace

void PagedAttentionPortable(const float* q, int n_new, int heads, const PagedKvView& kv, float scale,
                            int sliding_window, float* out, int kv_head_begin, int kv_head_end) {
  if (kv.dtype == io::DType::kF32) {
    Run<float>(q, n_new, heads, kv, scale, sliding_window, out, kv_head_begin, kv_head_end);
  } else if (kv.dtype == io::DType::kF8E4M3) {
    Run<uint8_t>(q, n_new, heads, kv, scale, sliding_window, out, kv_head_begin, kv_head_end);
  } else {
    Run<uint16_t>(q, n_new, heads, kv, scale, sliding_window, out, kv_head_begin, kv_head_end);
  }
}

}  // namespace ringmoe::cpu::internal
