// Rotary position embedding, the "rotate half" layout Hugging Face Llama-family models use.
#pragma once

#include <cstdint>
#include <vector>

namespace ringmoe::cpu {

// x: [tokens, heads, head_dim]; positions: [tokens]. Rotates pairs (i, i + head_dim/2) by
// position * theta^(-2i/head_dim), with the angle computed as HF does (inv_freq in f32, then cos/sin).
void ApplyRope(float* x, int tokens, int heads, int head_dim, const int32_t* positions, double theta);

}  // namespace ringmoe::cpu

namespace ringmoe::cpu {

// A rotary embedding's frequencies and layout, for any rope type (default, YaRN) and either pairing.
struct RotaryEmbedding {
  int dim = 0;                    // rotated values per head
  std::vector<float> inv_freq;    // [dim / 2]
  float attention_factor = 1.0f;  // multiplies cos and sin (YaRN's mscale ratio)
  bool interleaved = false;  // pairs (2i, 2i+1) (GPT-J, DeepSeek rope_interleave) instead of (i, i + dim/2)
};

// The default rope: inv_freq[i] = theta^(-2i/dim) (f32, as transformers).
RotaryEmbedding DefaultRotary(int dim, double theta, bool interleaved);
// YaRN (transformers' _compute_yarn_parameters): the extrapolated and interpolated (/ factor) frequencies
// blended by a linear ramp between the correction dims of beta_fast and beta_slow.
RotaryEmbedding YarnRotary(int dim, double theta, bool interleaved, double factor, int original_max_positions,
                           double beta_fast, double beta_slow, bool truncate, double attention_factor);

// Rotates the first rope.dim values of each head vector: x + t * token_stride + h * head_stride for t in
// [0, tokens), h in [0, heads), at positions[t]. angle = position * inv_freq[i] (f32), cos and sin scaled by
// attention_factor. Interleaved output stays interleaved (dot products equal transformers' permuted form).
void ApplyRotary(const RotaryEmbedding& rope, float* x, int tokens, int heads, int64_t token_stride,
                 int64_t head_stride, const int32_t* positions);

}  // namespace ringmoe::cpu
