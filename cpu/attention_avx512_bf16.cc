// The AVX512-BF16 paged-attention kernel, for bf16 and e4m3 caches (head_dim a multiple of 32). The f32
// kernel (attention_avx512.cc) widens every K and V value to f32 and spends one FMA per multiply; this one
// keeps K, V, the queries and the probabilities in bf16 and multiplies pairs with VDPBF16PS (two products a
// lane, summed in f32), so a chunk takes half the multiply instructions and its staging half the bytes. An
// e4m3 cache is widened to bf16 exactly (a table of the 128 magnitudes) and its per-(token, head) scales are
// applied to the scores (K) and to the probabilities (V), not to every value.
//
// Precision: the queries and the probabilities are rounded to bf16 (relative 2^-9), as a bf16 model's own
// attention rounds them; products and sums are f32. Callers with an f32 cache keep the f32 kernel.
//
// Per (chunk of 16 tokens, kv head): K is staged as kt[d/2][t], the pair (K[t][d], K[t][d+1]) in one 32-bit
// lane, by the same 16x16 transpose of 32-bit units the f32 kernel uses; V as vt[t/2][d], the pair
// (V[t][d], V[t+1][d]), by one two-source permute per 16 dimensions and token pair.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "cpu/attention_avx512_common.h"
#include "cpu/attention_internal.h"

#define RINGMOE_AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

namespace ringmoe::cpu::internal {
namespace {

using avx512::kLanes;
using avx512::OnlineSoftmax16;
using avx512::Transpose16x16;
constexpr int kMaxBlock = 8;  // query vectors per register tile

// bf16 bits of every e4m3 magnitude (the low seven bits): exact, since e4m3 has three mantissa bits. The NaN
// code reads as 480, as in the other kernels.
struct E4m3ToBf16Table {
  alignas(64) uint16_t bits[128];
  E4m3ToBf16Table() {
    for (int code = 0; code < 128; ++code) {
      const int exponent = code >> 3, mantissa = code & 7;
      const float value = exponent == 0 ? static_cast<float>(mantissa) * 0x1p-9f
                                        : (1.0f + static_cast<float>(mantissa) / 8.0f) *
                                              static_cast<float>(1 << exponent) * 0x1p-7f;
      uint32_t f32_bits;
      std::memcpy(&f32_bits, &value, sizeof(f32_bits));
      bits[code] = static_cast<uint16_t>(f32_bits >> 16);
    }
  }
};
const E4m3ToBf16Table& E4m3Table() {
  static const E4m3ToBf16Table table;
  return table;
}

// 32 consecutive values as bf16 bits.
RINGMOE_AVX512BF16 inline __m512i Load32(const uint16_t* p, const __m512i*) { return _mm512_loadu_si512(p); }
RINGMOE_AVX512BF16 inline __m512i Load32(const uint8_t* p, const __m512i* table) {
  const __m512i b = _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  const __m512i magnitude = _mm512_and_si512(b, _mm512_set1_epi16(0x7f));
  // Index bits 0-5 pick one of 64 entries of a table pair; bit 6 picks the pair.
  const __m512i low = _mm512_permutex2var_epi16(table[0], magnitude, table[1]);
  const __m512i high = _mm512_permutex2var_epi16(table[2], magnitude, table[3]);
  const __mmask32 upper = _mm512_test_epi16_mask(b, _mm512_set1_epi16(0x40));
  const __m512i sign = _mm512_slli_epi16(_mm512_and_si512(b, _mm512_set1_epi16(0x80)), 8);
  return _mm512_or_si512(_mm512_mask_blend_epi16(upper, low, high), sign);
}

RINGMOE_AVX512BF16 inline __m512bh AsBh(__m512i x) { return reinterpret_cast<__m512bh>(x); }

// s[j][t] = q[j] . k[t] for MB query vectors (bf16 pairs, stride half_dim) and the 16 staged tokens of kt.
// Two sets of accumulators (even and odd dimension pairs) keep 2 MB chains in flight.
template <int MB>
RINGMOE_AVX512BF16 void ScoreBlock(const uint32_t* q, int half_dim, const uint32_t* kt, float* s) {
  __m512 acc[2][MB];
#pragma GCC unroll 8
  for (int j = 0; j < MB; ++j) acc[0][j] = acc[1][j] = _mm512_setzero_ps();
  for (int p = 0; p < half_dim; p += 2) {
#pragma GCC unroll 2
    for (int e = 0; e < 2; ++e) {
      const __m512bh k = AsBh(_mm512_load_si512(kt + (p + e) * kLanes));
#pragma GCC unroll 8
      for (int j = 0; j < MB; ++j) {
        const __m512bh qq = AsBh(_mm512_set1_epi32(static_cast<int>(q[j * half_dim + p + e])));
        acc[e][j] = _mm512_dpbf16_ps(acc[e][j], qq, k);
      }
    }
  }
#pragma GCC unroll 8
  for (int j = 0; j < MB; ++j) _mm512_store_ps(s + j * kLanes, _mm512_add_ps(acc[0][j], acc[1][j]));
}

RINGMOE_AVX512BF16 void Scores(int mb, const uint32_t* q, int half_dim, const uint32_t* kt, float* s) {
  switch (mb) {
    case 1:
      return ScoreBlock<1>(q, half_dim, kt, s);
    case 2:
      return ScoreBlock<2>(q, half_dim, kt, s);
    case 3:
      return ScoreBlock<3>(q, half_dim, kt, s);
    case 4:
      return ScoreBlock<4>(q, half_dim, kt, s);
    case 5:
      return ScoreBlock<5>(q, half_dim, kt, s);
    case 6:
      return ScoreBlock<6>(q, half_dim, kt, s);
    case 7:
      return ScoreBlock<7>(q, half_dim, kt, s);
    default:
      return ScoreBlock<8>(q, half_dim, kt, s);
  }
}

// acc[j][d0 .. d0 + 32) = corr[j] * acc[j][...] + sum over token pairs of p[j][pair] . vt[pair][...].
template <int MB>
RINGMOE_AVX512BF16 void AccumulateBlock(const uint32_t* p, const float* corr, const uint32_t* vt,
                                        int pair_begin, int pair_end, int d0, float* acc, int head_dim) {
  __m512 a[MB][2];
#pragma GCC unroll 8
  for (int j = 0; j < MB; ++j) {
    const __m512 c = _mm512_set1_ps(corr[j]);
    a[j][0] = _mm512_mul_ps(_mm512_loadu_ps(acc + j * head_dim + d0), c);
    a[j][1] = _mm512_mul_ps(_mm512_loadu_ps(acc + j * head_dim + d0 + kLanes), c);
  }
  for (int t = pair_begin; t < pair_end; ++t) {
    const __m512bh v0 = AsBh(_mm512_load_si512(vt + t * head_dim + d0));
    const __m512bh v1 = AsBh(_mm512_load_si512(vt + t * head_dim + d0 + kLanes));
#pragma GCC unroll 8
    for (int j = 0; j < MB; ++j) {
      const __m512bh w = AsBh(_mm512_set1_epi32(static_cast<int>(p[j * (kLanes / 2) + t])));
      a[j][0] = _mm512_dpbf16_ps(a[j][0], w, v0);
      a[j][1] = _mm512_dpbf16_ps(a[j][1], w, v1);
    }
  }
#pragma GCC unroll 8
  for (int j = 0; j < MB; ++j) {
    _mm512_storeu_ps(acc + j * head_dim + d0, a[j][0]);
    _mm512_storeu_ps(acc + j * head_dim + d0 + kLanes, a[j][1]);
  }
}

RINGMOE_AVX512BF16 void Accumulate(int mb, const uint32_t* p, const float* corr, const uint32_t* vt,
                                   int pair_begin, int pair_end, int d0, float* acc, int head_dim) {
  switch (mb) {
    case 1:
      return AccumulateBlock<1>(p, corr, vt, pair_begin, pair_end, d0, acc, head_dim);
    case 2:
      return AccumulateBlock<2>(p, corr, vt, pair_begin, pair_end, d0, acc, head_dim);
    case 3:
      return AccumulateBlock<3>(p, corr, vt, pair_begin, pair_end, d0, acc, head_dim);
    case 4:
      return AccumulateBlock<4>(p, corr, vt, pair_begin, pair_end, d0, acc, head_dim);
    case 5:
      return AccumulateBlock<5>(p, corr, vt, pair_begin, pair_end, d0, acc, head_dim);
    case 6:
      return AccumulateBlock<6>(p, corr, vt, pair_begin, pair_end, d0, acc, head_dim);
    case 7:
      return AccumulateBlock<7>(p, corr, vt, pair_begin, pair_end, d0, acc, head_dim);
    default:
      return AccumulateBlock<8>(p, corr, vt, pair_begin, pair_end, d0, acc, head_dim);
  }
}

// Element: the cache's type, bf16 (uint16_t) or e4m3 with per-(token, head) scales (uint8_t).
template <typename Element>
class Avx512Bf16Kernel {
 public:
  static constexpr bool kFp8 = std::is_same_v<Element, uint8_t>;

  RINGMOE_AVX512BF16 Avx512Bf16Kernel(const PagedKvView& kv, float scale, int max_vectors, int local_heads)
      : k_pool_(static_cast<const Element*>(kv.k_pool)),
        v_pool_(static_cast<const Element*>(kv.v_pool)),
        k_scales_(kv.k_scales),
        v_scales_(kv.v_scales),
        scale_(scale) {
    const int64_t head_dim = kv.head_dim, half_dim = head_dim / 2;
    thread_local std::vector<float> storage;  // 32-bit units, 64-byte aligned
    uint32_t* base = reinterpret_cast<uint32_t*>(AlignedScratch(
        storage, static_cast<size_t>(kLanes * half_dim + (kLanes / 2) * head_dim + head_dim +
                                     static_cast<int64_t>(max_vectors) * (kLanes + kLanes / 2 + 1) +
                                     static_cast<int64_t>(local_heads) * max_vectors * half_dim + 64)));
    kt_ = base;
    vt_ = kt_ + kLanes * half_dim;
    zeros_ = vt_ + (kLanes / 2) * head_dim;
    p_ = reinterpret_cast<float*>(zeros_ + head_dim);
    p_bf16_ = reinterpret_cast<uint32_t*>(p_ + static_cast<int64_t>(max_vectors) * kLanes);
    corr_ = reinterpret_cast<float*>(p_bf16_ + static_cast<int64_t>(max_vectors) * (kLanes / 2));
    // The queries (bf16 pairs) start 64-byte aligned after corr_.
    const uintptr_t after = reinterpret_cast<uintptr_t>(corr_ + max_vectors);
    q_bf16_ = reinterpret_cast<uint32_t*>((after + 63) / 64 * 64);
    std::fill_n(zeros_, head_dim, 0u);
    if constexpr (kFp8) {
      const uint16_t* bits = E4m3Table().bits;
      for (int i = 0; i < 4; ++i) table_[i] = _mm512_load_si512(bits + 32 * i);
    }
  }

  // The tile's queries of every kv head in range, rounded to bf16 pairs once for all its chunks.
  RINGMOE_AVX512BF16 void BeginTile(const AttentionTile& tile, int local_heads) {
    const int64_t values = static_cast<int64_t>(local_heads) * tile.vectors * tile.head_dim;
    int64_t i = 0;
    for (; i + 2 * kLanes <= values; i += 2 * kLanes) {
      const __m512bh pairs =
          _mm512_cvtne2ps_pbh(_mm512_loadu_ps(tile.q + i + kLanes), _mm512_loadu_ps(tile.q + i));
      _mm512_storeu_si512(q_bf16_ + i / 2, reinterpret_cast<__m512i>(pairs));
    }
    // head_dim is a multiple of 32, so nothing is left over.
  }

  RINGMOE_AVX512BF16 void Attend(const AttentionTile& tile, const AttentionChunk& chunk, int local_head,
                                 int kv_head, ChunkPrefetcher& prefetch) {
    const int head_dim = tile.head_dim, half_dim = head_dim / 2, vectors = tile.vectors;
    const int pair_begin = chunk.lane_begin / 2, pair_end = (chunk.lane_end + 1) / 2;
    __m512 k_scale = _mm512_set1_ps(1.0f), v_scale = _mm512_set1_ps(1.0f);
    Stage(chunk, kv_head, head_dim, &k_scale, &v_scale);
    prefetch.Step();
    const uint32_t* q = q_bf16_ + static_cast<int64_t>(local_head) * vectors * half_dim;
    for (int m = 0; m < vectors; m += kMaxBlock) {
      Scores(std::min(kMaxBlock, vectors - m), q + static_cast<int64_t>(m) * half_dim, half_dim, kt_,
             p_ + m * kLanes);
      prefetch.Step();
    }
    // Online softmax, as in the f32 kernel; the probabilities go on in bf16 pairs, times V's scales.
    float* max = tile.max_of(local_head);
    float* sum = tile.sum_of(local_head);
    const __m512 scale = _mm512_mul_ps(_mm512_set1_ps(scale_), k_scale);
    for (int m = 0; m < vectors; ++m) {
      const __mmask16 mask = tile.row_masks[m / tile.group];
      uint32_t* p_pairs = p_bf16_ + m * (kLanes / 2);
      if (mask == 0) {
        corr_[m] = 1.0f;
        _mm256_store_si256(reinterpret_cast<__m256i*>(p_pairs), _mm256_setzero_si256());
        continue;
      }
      const __m512 s = _mm512_mul_ps(_mm512_load_ps(p_ + m * kLanes), scale);
      const __m512 e = OnlineSoftmax16(s, mask, &max[m], sum + m * kLanes, &corr_[m]);
      const __m256bh pairs = _mm512_cvtneps_pbh(kFp8 ? _mm512_mul_ps(e, v_scale) : e);
      _mm256_store_si256(reinterpret_cast<__m256i*>(p_pairs), reinterpret_cast<__m256i>(pairs));
    }
    float* acc = tile.acc_of(local_head);
    for (int m = 0; m < vectors; m += kMaxBlock) {
      prefetch.Step();
      const int mb = std::min(kMaxBlock, vectors - m);
      for (int d = 0; d < head_dim; d += 2 * kLanes) {
        Accumulate(mb, p_bf16_ + m * (kLanes / 2), corr_ + m, vt_, pair_begin, pair_end, d,
                   acc + static_cast<int64_t>(m) * head_dim, head_dim);
      }
    }
  }

 private:
  // kt_ and vt_ for the chunk's lanes (zero rows elsewhere, so that a zero probability meets no NaN); for an
  // e4m3 cache also the lanes' K and V scales (0 for lanes not read).
  RINGMOE_AVX512BF16 void Stage(const AttentionChunk& chunk, int kv_head, int head_dim, __m512* k_scale,
                                __m512* v_scale) {
    const int64_t head = static_cast<int64_t>(kv_head) * head_dim;
    const Element* zero_row = reinterpret_cast<const Element*>(zeros_);
    const Element* k_rows[kLanes];
    const Element* v_rows[kLanes];
    alignas(64) float k_scales[kLanes], v_scales[kLanes];
    for (int t = 0; t < kLanes; ++t) {
      const bool read = t >= chunk.lane_begin && t < chunk.lane_end;
      k_rows[t] = read ? k_pool_ + chunk.row_offset[t] + head : zero_row;
      v_rows[t] = read ? v_pool_ + chunk.row_offset[t] + head : zero_row;
      if constexpr (kFp8) {
        const int64_t row = (chunk.row_offset[t] + head) / head_dim;
        k_scales[t] = read ? k_scales_[row] : 0.0f;
        v_scales[t] = read ? v_scales_[row] : 0.0f;
      }
    }
    if constexpr (kFp8) {
      *k_scale = _mm512_load_ps(k_scales);
      *v_scale = _mm512_load_ps(v_scales);
    }
    for (int d = 0; d < head_dim; d += 2 * kLanes) {
      __m512 r[kLanes];
#pragma GCC unroll 16
      for (int t = 0; t < kLanes; ++t) r[t] = _mm512_castsi512_ps(Load32(k_rows[t] + d, table_));
      Transpose16x16(r);
#pragma GCC unroll 16
      for (int i = 0; i < kLanes; ++i)
        _mm512_store_ps(reinterpret_cast<float*>(kt_ + (d / 2 + i) * kLanes), r[i]);
    }
    // Token pairs: lane 2i of a 32-bit unit from the even token's row, 2i + 1 from the odd one's.
    const __m512i first_half = _mm512_set_epi16(47, 15, 46, 14, 45, 13, 44, 12, 43, 11, 42, 10, 41, 9, 40, 8,
                                                39, 7, 38, 6, 37, 5, 36, 4, 35, 3, 34, 2, 33, 1, 32, 0);
    const __m512i second_half = _mm512_add_epi16(first_half, _mm512_set1_epi16(16));
    for (int t = chunk.lane_begin / 2; t < (chunk.lane_end + 1) / 2; ++t) {
      uint32_t* row = vt_ + t * head_dim;
      for (int d = 0; d < head_dim; d += 2 * kLanes) {
        const __m512i even = Load32(v_rows[2 * t] + d, table_);
        const __m512i odd = Load32(v_rows[2 * t + 1] + d, table_);
        _mm512_store_si512(row + d, _mm512_permutex2var_epi16(even, first_half, odd));
        _mm512_store_si512(row + d + kLanes, _mm512_permutex2var_epi16(even, second_half, odd));
      }
    }
  }

  const Element* k_pool_;
  const Element* v_pool_;
  const float* k_scales_;  // e4m3 only
  const float* v_scales_;
  float scale_;
  __m512i table_[4] = {};  // e4m3 only: E4m3Table() in four registers' worth
  uint32_t* kt_;           // [head_dim / 2, 16]: K pairs by token
  uint32_t* vt_;           // [8, head_dim]: V pairs of tokens by dimension
  uint32_t* zeros_;        // [head_dim]: the row of lanes not read
  float* p_;               // [vectors, 16]: scores
  uint32_t* p_bf16_;       // [vectors, 8]: probabilities (times V's scales) as bf16 pairs of tokens
  float* corr_;            // [vectors]: this chunk's rescaling of the previous terms
  uint32_t* q_bf16_;       // [local heads, vectors, head_dim / 2]: the tile's queries as bf16 pairs
};

template <typename Element>
RINGMOE_AVX512BF16 void Run(const float* q, int n_new, int heads, const PagedKvView& kv, float scale,
                            int sliding_window, float* out, int kv_head_begin, int kv_head_end) {
  const int group = heads / kv.kv_heads;
  Avx512Bf16Kernel<Element> kernel(kv, scale, TileRows(n_new, group) * group, kv_head_end - kv_head_begin);
  RunPagedAttention(q, n_new, heads, kv, sliding_window, out, kv_head_begin, kv_head_end, kernel);
}

}  // namespace

bool CpuHasAvx512Bf16() {
  static const bool has = __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl");
  return has;
}

void PagedAttentionAvx512Bf16(const float* q, int n_new, int heads, const PagedKvView& kv, float scale,
                              int sliding_window, float* out, int kv_head_begin, int kv_head_end) {
  if (kv.dtype == io::DType::kF8E4M3) {
    Run<uint8_t>(q, n_new, heads, kv, scale, sliding_window, out, kv_head_begin, kv_head_end);
  } else {
    Run<uint16_t>(q, n_new, heads, kv, scale, sliding_window, out, kv_head_begin, kv_head_end);
  }
}

}  // namespace ringmoe::cpu::internal
