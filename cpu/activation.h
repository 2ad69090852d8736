// SwiGLU and softmax helpers.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace ringmoe::cpu {

inline float Silu(float x) { return x / (1.0f + std::exp(-x)); }

// exp(x) for x <= 0 (softmax after subtracting the maximum), in plain arithmetic so that loops over it
// vectorise: 2^n * p(r) with n = round(x / ln 2), r = x - n ln 2 in two parts, p the degree-6 Taylor
// polynomial (relative error below 2e-7 on |r| <= ln2 / 2). Inputs below -87 give about 1.6e-38, not 0.
// rint (to nearest, ties to even) rather than round: it vectorises to one vroundps, round to a libm call.
inline float ExpNonPositive(float x) {
  x = x < -87.0f ? -87.0f : x;
  const float n = __builtin_rintf(x * 1.44269504088896341f);
  const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
  float p = 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

// out[i] = silu(gate[i]) * up[i] for count elements (out may alias gate or up).
void SwiGlu(const float* gate, const float* up, float* out, size_t count);

// Numerically stable log-softmax of one row, in place; returns log-sum-exp.
double LogSoftmaxInPlace(float* row, int count);

}  // namespace ringmoe::cpu
