#include "cpu/norm.h"

#include <cmath>

namespace ringmoe::cpu {

void RmsNorm(const float* x, const float* weight, int rows, int width, float eps, float* out) {
  for (int r = 0; r < rows; ++r) {
    const float* row = x + static_cast<int64_t>(r) * width;
    float* dst = out + static_cast<int64_t>(r) * width;
    // Accumulate in double: the reference sums in f32 with pairwise reduction; double stays closer to both.
    double sum_squares = 0.0;
    for (int i = 0; i < width; ++i) sum_squares += static_cast<double>(row[i]) * row[i];
    float inv_rms = 1.0f / std::sqrt(static_cast<float>(sum_squares / width) + eps);
    for (int i = 0; i < width; ++i) dst[i] = weight[i] * (row[i] * inv_rms);
  }
}

}  // namespace ringmoe::cpu
