// RMSNorm, as Hugging Face computes it: x * rsqrt(mean(x^2) + eps) * weight, in f32.
#pragma once

namespace ringmoe::cpu {

// x and out: [rows, width] with row stride `width`; out may alias x.
void RmsNorm(const float* x, const float* weight, int rows, int width, float eps, float* out);

}  // namespace ringmoe::cpu
