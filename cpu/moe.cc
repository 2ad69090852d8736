#include "cpu/moe.h"

#include <vector>

#include "cpu/activation.h"

namespace ringmoe::cpu {

void SwiGluMlp(const float* x, int tokens, const ExpertWeights& mlp, float* out) {
  const int inter = mlp.gate.rows;
  std::vector<float> gate(static_cast<size_t>(tokens) * inter), up(gate.size());
  Linear(x, tokens, mlp.gate, nullptr, gate.data());
  Linear(x, tokens, mlp.up, nullptr, up.data());
  SwiGlu(gate.data(), up.data(), gate.data(), gate.size());
  Linear(gate.data(), tokens, mlp.down, nullptr, out);
}

void MoeForward(const float* x, int tokens, int hidden, const int32_t* expert_ids, const float* weights,
                int top_k, std::span<const ExpertWeights> experts, float* out) {
  const int num_experts = static_cast<int>(experts.size());
  // Bucket (token, slot) pairs by expert so each expert runs one matmul per projection over its tokens.
  std::vector<int> counts(num_experts + 1, 0);
  for (int i = 0; i < tokens * top_k; ++i) ++counts[expert_ids[i] + 1];
  for (int e = 0; e < num_experts; ++e) counts[e + 1] += counts[e];
  std::vector<int> routed(static_cast<size_t>(tokens) * top_k);
  std::vector<int> cursor(counts.begin(), counts.end() - 1);
  for (int i = 0; i < tokens * top_k; ++i) routed[cursor[expert_ids[i]]++] = i;

  std::vector<float> gathered, expert_out;
  for (int e = 0; e < num_experts; ++e) {
    const int begin = counts[e], rows = counts[e + 1] - counts[e];
    if (rows == 0) continue;
    gathered.resize(static_cast<size_t>(rows) * hidden);
    for (int r = 0; r < rows; ++r) {
      const int token = routed[begin + r] / top_k;
      std::copy_n(x + static_cast<int64_t>(token) * hidden, hidden, gathered.data() + static_cast<int64_t>(r) * hidden);
    }
    expert_out.resize(gathered.size());
    SwiGluMlp(gathered.data(), rows, experts[e], expert_out.data());
    for (int r = 0; r < rows; ++r) {
      const int pair = routed[begin + r];
      const float weight = weights[pair];
      float* dst = out + static_cast<int64_t>(pair / top_k) * hidden;
      const float* src = expert_out.data() + static_cast<int64_t>(r) * hidden;
      for (int i = 0; i < hidden; ++i) dst[i] += weight * src[i];
    }
  }
}

}  // namespace ringmoe::cpu
