// The AVX-512 paged-attention kernel (head_dim a multiple of 16). The library is built for a baseline target,
// so every function here carries its own target attribute and attention.cc calls in only after a CPU check.
//
// Per (chunk of 16 tokens, kv head): K is staged transposed, kt[d][t], so that the scores of a query vector
// are one 16-lane register built with head_dim broadcast-FMAs and need no horizontal sums (bf16 K is
// transposed as 32-bit pairs of dimensions, then split, which halves the shuffles). Scores of up to 8 query
// vectors are computed together (8 independent FMA chains per K load); the weighted V sum runs on register
// tiles of 8 query vectors x 32 dimensions, reading bf16 V in place for a decode and from a widened copy when
// a prefill tile's several blocks of query vectors reuse it. An e4m3 cache is widened (and scaled by its
// per-(token, head) factors) as it is staged: K into the transpose, V always into the staged copy.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "cpu/activation.h"
#include "cpu/attention_avx512_common.h"
#include "cpu/attention_internal.h"

namespace ringmoe::cpu::internal {
namespace {

using avx512::kLanes;
using avx512::OnlineSoftmax16;
using avx512::Transpose16x16;
constexpr int kMaxBlock = 8;  // query vectors per register tile

RINGMOE_AVX512 inline __m512 Load16(const float* p) { return _mm512_loadu_ps(p); }
// bf16 -> f32 exactly: the bits, shifted up by 16.
RINGMOE_AVX512 inline __m512 Load16(const uint16_t* p) {
  const __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
}

// e4m3 -> f32 exactly (unscaled): sign and the other seven bits moved into an f32's place, times 2^120 to
// rebias the exponent (7 -> 127; subnormals included). The NaN codes read as +-480 (the cache never writes
// them for finite K/V), as in the portable kernel.
RINGMOE_AVX512 inline __m512 Load16(const uint8_t* p) {
  const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  const __m512i sign = _mm512_slli_epi32(_mm512_and_si512(b, _mm512_set1_epi32(0x80)), 24);
  const __m512i rest = _mm512_slli_epi32(_mm512_and_si512(b, _mm512_set1_epi32(0x7f)), 20);
  return _mm512_mul_ps(_mm512_castsi512_ps(_mm512_or_si512(sign, rest)), _mm512_set1_ps(0x1p120f));
}

// s[j][t] = q[j] . k[t] for MB query vectors (rows of q, stride head_dim) and the 16 staged tokens of kt.
// MB <= 4 leaves too few independent FMA chains to hide latency, so even and odd dimensions then get their
// own.
template <int MB>
RINGMOE_AVX512 void ScoreBlock(const float* q, int head_dim, const float* kt, float* s) {
  constexpr int kSets = MB <= 4 ? 2 : 1;
  __m512 acc[kSets][MB];
#pragma GCC unroll 8
  for (int j = 0; j < MB; ++j) {
    for (int e = 0; e < kSets; ++e) acc[e][j] = _mm512_setzero_ps();
  }
  for (int d = 0; d < head_dim; d += kSets) {
#pragma GCC unroll 2
    for (int e = 0; e < kSets; ++e) {
      const __m512 k = _mm512_load_ps(kt + (d + e) * kLanes);
#pragma GCC unroll 8
      for (int j = 0; j < MB; ++j) {
        acc[e][j] = _mm512_fmadd_ps(_mm512_set1_ps(q[j * head_dim + d + e]), k, acc[e][j]);
      }
    }
  }
#pragma GCC unroll 8
  for (int j = 0; j < MB; ++j) {
    const __m512 total = kSets == 2 ? _mm512_add_ps(acc[0][j], acc[kSets - 1][j]) : acc[0][j];
    _mm512_store_ps(s + j * kLanes, total);
  }
}

RINGMOE_AVX512 void Scores(int mb, const float* q, int head_dim, const float* kt, float* s) {
  switch (mb) {
    case 1:
      return ScoreBlock<1>(q, head_dim, kt, s);
    case 2:
      return ScoreBlock<2>(q, head_dim, kt, s);
    case 3:
      return ScoreBlock<3>(q, head_dim, kt, s);
    case 4:
      return ScoreBlock<4>(q, head_dim, kt, s);
    case 5:
      return ScoreBlock<5>(q, head_dim, kt, s);
    case 6:
      return ScoreBlock<6>(q, head_dim, kt, s);
    case 7:
      return ScoreBlock<7>(q, head_dim, kt, s);
    default:
      return ScoreBlock<8>(q, head_dim, kt, s);
  }
}

// acc[j][d0 .. d0 + 16 ND) = corr[j] * acc[j][...] + sum over lanes t of p[j][t] * v[t][...], for MB query
// vectors: the register tile is loaded and stored once per chunk. V rows are f32 or bf16 (widened here).
template <int MB, int ND, typename Element>
RINGMOE_AVX512 void AccumulateBlock(const float* p, const float* corr, const Element* const* v_rows,
                                    int lane_begin, int lane_end, int d0, float* acc, int head_dim) {
  __m512 a[MB][ND];
#pragma GCC unroll 8
  for (int j = 0; j < MB; ++j) {
    const __m512 c = _mm512_set1_ps(corr[j]);
#pragma GCC unroll 2
    for (int n = 0; n < ND; ++n)
      a[j][n] = _mm512_mul_ps(_mm512_loadu_ps(acc + j * head_dim + d0 + n * kLanes), c);
  }
  for (int t = lane_begin; t < lane_end; ++t) {
    __m512 v[ND];
#pragma GCC unroll 2
    for (int n = 0; n < ND; ++n) v[n] = Load16(v_rows[t] + d0 + n * kLanes);
#pragma GCC unroll 8
    for (int j = 0; j < MB; ++j) {
      const __m512 weight = _mm512_set1_ps(p[j * kLanes + t]);
#pragma GCC unroll 2
      for (int n = 0; n < ND; ++n) a[j][n] = _mm512_fmadd_ps(weight, v[n], a[j][n]);
    }
  }
#pragma GCC unroll 8
  for (int j = 0; j < MB; ++j) {
#pragma GCC unroll 2
    for (int n = 0; n < ND; ++n) _mm512_storeu_ps(acc + j * head_dim + d0 + n * kLanes, a[j][n]);
  }
}

template <int ND, typename Element>
RINGMOE_AVX512 void Accumulate(int mb, const float* p, const float* corr, const Element* const* v_rows,
                               int lane_begin, int lane_end, int d0, float* acc, int head_dim) {
  switch (mb) {
    case 1:
      return AccumulateBlock<1, ND>(p, corr, v_rows, lane_begin, lane_end, d0, acc, head_dim);
    case 2:
      return AccumulateBlock<2, ND>(p, corr, v_rows, lane_begin, lane_end, d0, acc, head_dim);
    case 3:
      return AccumulateBlock<3, ND>(p, corr, v_rows, lane_begin, lane_end, d0, acc, head_dim);
    case 4:
      return AccumulateBlock<4, ND>(p, corr, v_rows, lane_begin, lane_end, d0, acc, head_dim);
    case 5:
      return AccumulateBlock<5, ND>(p, corr, v_rows, lane_begin, lane_end, d0, acc, head_dim);
    case 6:
      return AccumulateBlock<6, ND>(p, corr, v_rows, lane_begin, lane_end, d0, acc, head_dim);
    case 7:
      return AccumulateBlock<7, ND>(p, corr, v_rows, lane_begin, lane_end, d0, acc, head_dim);
    default:
      return AccumulateBlock<8, ND>(p, corr, v_rows, lane_begin, lane_end, d0, acc, head_dim);
  }
}

// Over every query vector and dimension; V rows read in place (bf16 widened on the fly) or from staging.
template <typename Element>
RINGMOE_AVX512 void AccumulateAll(int vectors, const float* p, const float* corr,
                                  const Element* const* v_rows, int lane_begin, int lane_end, float* acc,
                                  int head_dim, ChunkPrefetcher& prefetch) {
  for (int m = 0; m < vectors; m += kMaxBlock) {
    prefetch.Step();
    const int mb = std::min(kMaxBlock, vectors - m);
    float* acc_m = acc + static_cast<int64_t>(m) * head_dim;
    const float* p_m = p + m * kLanes;
    if (head_dim % (2 * kLanes) == 0) {
      for (int d = 0; d < head_dim; d += 2 * kLanes) {
        Accumulate<2>(mb, p_m, corr + m, v_rows, lane_begin, lane_end, d, acc_m, head_dim);
        prefetch.Step();
      }
    } else {
      for (int d = 0; d < head_dim; d += kLanes) {
        Accumulate<1>(mb, p_m, corr + m, v_rows, lane_begin, lane_end, d, acc_m, head_dim);
        prefetch.Step();
      }
    }
  }
}

// Element: the cache's K/V type, float, bf16 (uint16_t) or e4m3 with per-(token, head) scales (uint8_t).
template <typename Element>
class Avx512Kernel {
 public:
  static constexpr bool kFp8 = std::is_same_v<Element, uint8_t>;

  RINGMOE_AVX512 Avx512Kernel(const PagedKvView& kv, float scale, int max_vectors)
      : k_pool_(static_cast<const Element*>(kv.k_pool)),
        v_pool_(static_cast<const Element*>(kv.v_pool)),
        k_scales_(kv.k_scales),
        v_scales_(kv.v_scales),
        scale_(scale) {
    const int64_t head_dim = kv.head_dim;
    thread_local std::vector<float> storage;
    kt_ = AlignedScratch(storage, static_cast<size_t>(2 * kLanes * head_dim + head_dim +
                                                      static_cast<int64_t>(max_vectors) * (kLanes + 1)));
    v_ = kt_ + kLanes * head_dim;
    zeros_ = v_ + kLanes * head_dim;
    p_ = zeros_ + head_dim;
    corr_ = p_ + static_cast<int64_t>(max_vectors) * kLanes;
    for (int64_t d = 0; d < head_dim; ++d) zeros_[d] = 0.0f;
  }

  // prefetch.Step() runs between the phases below (about ChunkPrefetcher::kSteps times for a decode).
  RINGMOE_AVX512 void Attend(const AttentionTile& tile, const AttentionChunk& chunk, int local_head,
                             int kv_head, ChunkPrefetcher& prefetch) {
    const int head_dim = tile.head_dim, vectors = tile.vectors;
    const int lane_begin = chunk.lane_begin, lane_end = chunk.lane_end;
    Stage(chunk, kv_head, head_dim, vectors > kMaxBlock);
    prefetch.Step();
    const float* q = tile.q_of(local_head);
    for (int m = 0; m < vectors; m += kMaxBlock) {
      Scores(std::min(kMaxBlock, vectors - m), q + static_cast<int64_t>(m) * head_dim, head_dim, kt_,
             p_ + m * kLanes);
      prefetch.Step();
    }
    // Online softmax: each query vector's 16 scores are one register, its running sum one per lane.
    float* max = tile.max_of(local_head);
    float* sum = tile.sum_of(local_head);
    const __m512 scale = _mm512_set1_ps(scale_);
    for (int m = 0; m < vectors; ++m) {
      const __mmask16 mask = tile.row_masks[m / tile.group];
      float* p = p_ + m * kLanes;
      if (mask == 0) {
        corr_[m] = 1.0f;
        _mm512_store_ps(p, _mm512_setzero_ps());
        continue;
      }
      const __m512 s = _mm512_mul_ps(_mm512_load_ps(p), scale);
      _mm512_store_ps(p, OnlineSoftmax16(s, mask, &max[m], sum + m * kLanes, &corr_[m]));
    }
    float* acc = tile.acc_of(local_head);
    // One block of query vectors (decode) reads each V row once anyway: widen it in the loop, no staging.
    if constexpr (kFp8) {  // scaled rows: always from staging
      AccumulateAll(vectors, p_, corr_, v_staged_, lane_begin, lane_end, acc, head_dim, prefetch);
    } else if (std::is_same_v<Element, float> || vectors <= kMaxBlock) {
      AccumulateAll(vectors, p_, corr_, v_in_place_, lane_begin, lane_end, acc, head_dim, prefetch);
    } else {
      AccumulateAll(vectors, p_, corr_, v_staged_, lane_begin, lane_end, acc, head_dim, prefetch);
    }
  }

 private:
  // kt_[d][t] = K[t][d] (zero outside the lanes read); V rows of the lanes, in place and, for bf16 feeding
  // several blocks of query vectors, widened into v_.
  RINGMOE_AVX512 void Stage(const AttentionChunk& chunk, int kv_head, int head_dim, bool stage_v) {
    const int64_t head = static_cast<int64_t>(kv_head) * head_dim;
    const Element* k_rows[kLanes];
    const Element* zero_row = reinterpret_cast<const Element*>(zeros_);
    __m512 k_scale[kLanes];  // e4m3 only: the rows' scales (0 for lanes not read)
    for (int t = 0; t < kLanes; ++t) {
      const bool read = t >= chunk.lane_begin && t < chunk.lane_end;
      k_rows[t] = read ? k_pool_ + chunk.row_offset[t] + head : zero_row;
      if constexpr (kFp8)
        k_scale[t] = _mm512_set1_ps(read ? k_scales_[(chunk.row_offset[t] + head) / head_dim] : 0.0f);
    }
    int d = 0;
    if constexpr (std::is_same_v<Element, uint16_t>) {
      // bf16 pairs as 32-bit units: one transpose serves 32 dimensions, then the even dimension is the low
      // half shifted up and the odd one the high half masked.
      const __m512i high = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
      for (; d + 2 * kLanes <= head_dim; d += 2 * kLanes) {
        __m512 r[kLanes];
#pragma GCC unroll 16
        for (int t = 0; t < kLanes; ++t)
          r[t] = _mm512_loadu_ps(reinterpret_cast<const float*>(k_rows[t] + d));
        Transpose16x16(r);
#pragma GCC unroll 16
        for (int i = 0; i < kLanes; ++i) {
          const __m512i pair = _mm512_castps_si512(r[i]);
          _mm512_store_ps(kt_ + (d + 2 * i) * kLanes, _mm512_castsi512_ps(_mm512_slli_epi32(pair, 16)));
          _mm512_store_ps(kt_ + (d + 2 * i + 1) * kLanes, _mm512_castsi512_ps(_mm512_and_si512(pair, high)));
        }
      }
    }
    for (; d < head_dim; d += kLanes) {
      __m512 r[kLanes];
#pragma GCC unroll 16
      for (int t = 0; t < kLanes; ++t) {
        r[t] = Load16(k_rows[t] + d);
        if constexpr (kFp8) r[t] = _mm512_mul_ps(r[t], k_scale[t]);
      }
      Transpose16x16(r);
#pragma GCC unroll 16
      for (int i = 0; i < kLanes; ++i) _mm512_store_ps(kt_ + (d + i) * kLanes, r[i]);
    }
    for (int t = chunk.lane_begin; t < chunk.lane_end; ++t) {
      const Element* v = v_pool_ + chunk.row_offset[t] + head;
      v_in_place_[t] = v;
      if constexpr (kFp8) {
        float* row = v_ + t * head_dim;
        const __m512 v_scale = _mm512_set1_ps(v_scales_[(chunk.row_offset[t] + head) / head_dim]);
        for (int e = 0; e < head_dim; e += kLanes)
          _mm512_store_ps(row + e, _mm512_mul_ps(Load16(v + e), v_scale));
        v_staged_[t] = row;
      } else if (!std::is_same_v<Element, float> && stage_v) {
        float* row = v_ + t * head_dim;
        for (int e = 0; e < head_dim; e += kLanes) _mm512_store_ps(row + e, Load16(v + e));
        v_staged_[t] = row;
      }
    }
  }

  const Element* k_pool_;
  const Element* v_pool_;
  const float* k_scales_;  // e4m3 only
  const float* v_scales_;
  float scale_;
  float* kt_;     // [head_dim, 16]
  float* v_;      // [16, head_dim]: widened bf16 (or scaled e4m3) V
  float* zeros_;  // [head_dim]: the K row of lanes not read
  float* p_;      // [vectors, 16]: scores, then probabilities
  float* corr_;   // [vectors]: this chunk's rescaling of the previous terms
  const Element* v_in_place_[kLanes] = {};
  const float* v_staged_[kLanes] = {};
};

template <typename Element>
RINGMOE_AVX512 void Run(const float* q, int n_new, int heads, const PagedKvView& kv, float scale,
                        int sliding_window, float* out, int kv_head_begin, int kv_head_end) {
  const int group = heads / kv.kv_heads;
  Avx512Kernel<Element> kernel(kv, scale, TileRows(n_new, group) * group);
  RunPagedAttention(q, n_new, heads, kv, sliding_window, out, kv_head_begin, kv_head_end, kernel);
}

}  // namespace

void PagedAttentionAvx512(const float* q, int n_new, int heads, const PagedKvView& kv, float scale,
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
