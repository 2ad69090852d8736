#include "cpu/activation.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace ringmoe::cpu {

void SwiGlu(const float* gate, const float* up, float* out, size_t count) {
  for (size_t i = 0; i < count; ++i) out[i] = Silu(gate[i]) * up[i];
}

double LogSoftmaxInPlace(float* row, int count) {
  float max_value = -std::numeric_limits<float>::infinity();
  for (int i = 0; i < count; ++i) max_value = std::max(max_value, row[i]);
  // Vectorised exp, summed in double: a vocabulary of 150k entries would lose digits in an f32 sum.
  double sum = 0.0;
#pragma omp simd reduction(+ : sum)
  for (int i = 0; i < count; ++i) sum += ExpNonPositive(row[i] - max_value);
  double log_sum_exp = max_value + std::log(sum);
  for (int i = 0; i < count; ++i) row[i] = static_cast<float>(row[i] - log_sum_exp);
  return log_sum_exp;
}

}  // namespace ringmoe::cpu
