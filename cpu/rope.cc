#include "cpu/rope.h"

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
