// SwiGLU and softmax helpers.
#pragma once

#include <cmath>
#include <cstddef>

namespace ringmoe::cpu {

inline float Silu(float x) { return x / (1.0f + std::exp(-x)); }

// out[i] = silu(gate[i]) * up[i] for count elements (out may alias gate or up).
void SwiGlu(const float* gate, const float* up, float* out, size_t count);

// Numerically stable log-softmax of one row, in place; returns log-sum-exp.
double LogSoftmaxInPlace(float* row, int count);

}  // namespace ringmoe::cpu
