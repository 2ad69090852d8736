// AVX-512 pieces the two paged-attention kernels share (attention_avx512.cc, f32 multiplies;
// attention_avx512_bf16.cc, bf16 pairs): the exponential, the 16x16 transpose and the online-softmax update
// of a query vector's chunk of 16 scores. Included only by those two files, which call in only after a CPU
// check; each function carries its own target attribute (a subset of both callers').
#pragma once

#include <immintrin.h>

#define RINGMOE_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))

namespace ringmoe::cpu::internal::avx512 {

constexpr int kLanes = 16;

// ExpNonPositive (cpu/activation.h) on 16 lanes: the same reduction and polynomial, with FMAs.
RINGMOE_AVX512 inline __m512 ExpNonPositive16(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.0f / 720);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);  // p * 2^n
}

// In place: r[i] lane j becomes r[j] lane i.
RINGMOE_AVX512 inline void Transpose16x16(__m512 r[16]) {
  __m512 t[16];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // r[4i + k], 128-bit lane L: column 4L + k of rows 4i .. 4i + 3.
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    r[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
    r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
#pragma GCC unroll 4
  for (int k = 0; k < 4; ++k) {
    const __m512 u0 = _mm512_shuffle_f32x4(r[k], r[4 + k], 0x88);
    const __m512 u1 = _mm512_shuffle_f32x4(r[k], r[4 + k], 0xDD);
    const __m512 u2 = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0x88);
    const __m512 u3 = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0xDD);
    t[k] = _mm512_shuffle_f32x4(u0, u2, 0x88);
    t[8 + k] = _mm512_shuffle_f32x4(u0, u2, 0xDD);
    t[4 + k] = _mm512_shuffle_f32x4(u1, u3, 0x88);
    t[12 + k] = _mm512_shuffle_f32x4(u1, u3, 0xDD);
  }
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i) r[i] = t[i];
}

// One query vector's chunk: s holds its 16 scaled scores, mask the lanes it attends to. Raises *max to the
// chunk's maximum (returning in *corr the factor that rescales the terms so far, 1 when it did not move),
// adds the chunk's exponentials to the per-lane running sums and returns them (0 outside the mask).
RINGMOE_AVX512 inline __m512 OnlineSoftmax16(__m512 s, __mmask16 mask, float* max, float* lane_sum,
                                             float* corr) {
  const float chunk_max = _mm512_mask_reduce_max_ps(mask, s);
  // Once the context's maximum is found (early in a decode) it rarely moves: skip the exponential.
  *corr = 1.0f;
  if (chunk_max > *max) {
    *corr = _mm512_cvtss_f32(ExpNonPositive16(_mm512_set1_ps(*max - chunk_max)));
    *max = chunk_max;
  }
  const __m512 e = _mm512_maskz_mov_ps(mask, ExpNonPositive16(_mm512_sub_ps(s, _mm512_set1_ps(*max))));
  _mm512_storeu_ps(lane_sum, _mm512_fmadd_ps(_mm512_loadu_ps(lane_sum), _mm512_set1_ps(*corr), e));
  return e;
}

}  // namespace ringmoe::cpu::internal::avx512
