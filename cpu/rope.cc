#include "cpu/rope.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace ringmoe::cpu {

void ApplyRope(float* x, int tokens, int heads, int head_dim, const int32_t* positions, double theta) {
  const int half = head_dim / 2;
  // inv_freq as transformers computes it: float32 exponent, then base ** exponent in float32.
  std::vector<float> inv_freq(half);
  for (int i = 0; i < half; ++i) {
    float exponent = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    inv_freq[i] = 1.0f / std::pow(static_cast<float>(theta), exponent);
  }
  std::vector<float> cos_table(half), sin_table(half);
  for (int t = 0; t < tokens; ++t) {
    for (int i = 0; i < half; ++i) {
      float angle = static_cast<float>(positions[t]) * inv_freq[i];
      cos_table[i] = std::cos(angle);
      sin_table[i] = std::sin(angle);
    }
    for (int h = 0; h < heads; ++h) {
      float* v = x + (static_cast<int64_t>(t) * heads + h) * head_dim;
      for (int i = 0; i < half; ++i) {
        float a = v[i];
        float b = v[i + half];
        v[i] = a * cos_table[i] - b * sin_table[i];
        v[i + half] = b * cos_table[i] + a * sin_table[i];
      }
    }
  }
}

}  // namespace ringmoe::cpu

namespace ringmoe::cpu {

RotaryEmbedding DefaultRotary(int dim, double theta, bool interleaved) {
  RotaryEmbedding rope;
  rope.dim = dim;
  rope.interleaved = interleaved;
  rope.inv_freq.resize(dim / 2);
  for (int i = 0; i < dim / 2; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(dim);
    rope.inv_freq[i] = 1.0f / std::pow(static_cast<float>(theta), exponent);
  }
  return rope;
}

RotaryEmbedding YarnRotary(int dim, double theta, bool interleaved, double factor, int original_max_positions,
                           double beta_fast, double beta_slow, bool truncate, double attention_factor) {
  RotaryEmbedding rope;
  rope.dim = dim;
  rope.interleaved = interleaved;
  rope.attention_factor = static_cast<float>(attention_factor);
  // The dimension whose wavelength makes `rotations` turns over the original context (in double, as Python).
  auto correction_dim = [&](double rotations) {
    return dim * std::log(original_max_positions / (rotations * 2 * M_PI)) / (2 * std::log(theta));
  };
  double low = correction_dim(beta_fast), high = correction_dim(beta_slow);
  if (truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, static_cast<double>(dim - 1));
  if (low == high) high += 0.001;  // no division by zero in the ramp
  const int half = dim / 2;
  rope.inv_freq.resize(half);
  for (int i = 0; i < half; ++i) {
    const float pos_freq =
        std::pow(static_cast<float>(theta), static_cast<float>(2 * i) / static_cast<float>(dim));
    const float extrapolation = 1.0f / pos_freq;
    const float interpolation = 1.0f / (static_cast<float>(factor) * pos_freq);
    const float ramp = std::clamp((static_cast<float>(i) - static_cast<float>(low)) /
                                      (static_cast<float>(high) - static_cast<float>(low)),
                                  0.0f, 1.0f);
    const float extrapolation_factor = 1.0f - ramp;
    rope.inv_freq[i] = interpolation * (1.0f - extrapolation_factor) + extrapolation * extrapolation_factor;
  }
  return rope;
}

void ApplyRotary(const RotaryEmbedding& rope, float* x, int tokens, int heads, int64_t token_stride,
                 int64_t head_stride, const int32_t* positions) {
  const int half = rope.dim / 2;
  std::vector<float> cos_table(half), sin_table(half);
  for (int t = 0; t < tokens; ++t) {
    for (int i = 0; i < half; ++i) {
      const float angle = static_cast<float>(positions[t]) * rope.inv_freq[i];
      cos_table[i] = std::cos(angle) * rope.attention_factor;
      sin_table[i] = std::sin(angle) * rope.attention_factor;
    }
    for (int h = 0; h < heads; ++h) {
      float* v = x + t * token_stride + h * head_stride;
      // Interleaved: pair i is (2i, 2i+1); else (i, i + half).
      const int step = rope.interleaved ? 2 : 1;
      const int partner = rope.interleaved ? 1 : half;
      for (int i = 0; i < half; ++i) {
        float& a = v[i * step];
        float& b = v[i * step + partner];
        const float a0 = a, b0 = b;
        a = a0 * cos_table[i] - b0 * sin_table[i];
        b = b0 * cos_table[i] + a0 * sin_table[i];
      }
    }
  }
}

}  // namespace ringmoe::cpu
