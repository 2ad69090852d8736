// Rotary position embedding, the "rotate half" layout Hugging Face Llama-family models use.
#pragma once

#include <cstdint>

namespace ringmoe::cpu {

// x: [tokens, heads, head_dim]; positions: [tokens]. Rotates pairs (i, i + head_dim/2) by
// position * theta^(-2i/head_dim), with the angle computed as HF does (inv_freq in f32, then cos/sin).
void ApplyRope(float* x, int tokens, int heads, int head_dim, const int32_t* positions, double theta);

}  // namespace ringmoe::cpu
