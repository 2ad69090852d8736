#include "cpu/moe.h"

#include <vector>

#include "cpu/activation.h"
#include "cpu/thread_pool.h"

namespace ringmoe::cpu {

void SwiGluMlp(const float* x, int tokens, const ExpertWeights& mlp, float* out, CpuWorkers* workers) {
  const int inter = mlp.gate.rows;
  std::vector<float> gate(static_cast<size_t>(tokens) * inter), up(gate.size());
  Linear(x, tokens, mlp.gate, nullptr, gate.data(), workers);
  Linear(x, tokens, mlp.up, nullptr, up.data(), workers);
  SwiGlu(gate.data(), up.data(), gate.data(), gate.size());
  Linear(gate.data(), tokens, mlp.down, nullptr, out, workers);
}

void MoeForward(const float* x, int tokens, int hidden, const int32_t* expert_ids, const float* weights,
                int top_k, std::span<const ExpertWeights> experts, float* out, CpuWorkers* workers) {
  MoeForwardExperts(x, tokens, hidden, expert_ids, weights, top_k, experts, 0,
                    static_cast<int>(experts.size()), out, workers);
}

void MoeForwardExperts(const float* x, int tokens, int hidden, const int32_t* expert_ids,
                       const float* weights, int top_k, std::span<const ExpertWeights> experts,
                       int first_expert, int end_expert, float* out, CpuWorkers* workers) {
  const int num_experts = static_cast<int>(experts.size());
  const int pairs = tokens * top_k;
  // Bucket (token, slot) pairs by expert so each expert runs one matmul per projection over its tokens.
  std::vector<int> counts(num_experts + 1, 0);
  for (int i = 0; i < pairs; ++i) ++counts[expert_ids[i] + 1];
  for (int e = 0; e < num_experts; ++e) counts[e + 1] += counts[e];
  std::vector<int> routed(pairs);
  std::vector<int> cursor(counts.begin(), counts.end() - 1);
  for (int i = 0; i < pairs; ++i) routed[cursor[expert_ids[i]]++] = i;
  std::vector<int> active;
  for (int e = first_expert; e < end_expert; ++e) {
    if (counts[e + 1] > counts[e]) active.push_back(e);
  }

  // Each pair's expert output lands in its own row, so experts can run concurrently without write conflicts.
  std::vector<float> pair_out(static_cast<size_t>(pairs) * hidden);
  auto run_expert = [&](int e, CpuWorkers* matmul_workers) {
    const int begin = counts[e], rows = counts[e + 1] - counts[e];
    std::vector<float> gathered(static_cast<size_t>(rows) * hidden), expert_out(gathered.size());
    for (int r = 0; r < rows; ++r) {
      const int token = routed[begin + r] / top_k;
      std::copy_n(x + static_cast<int64_t>(token) * hidden, hidden, gathered.data() + static_cast<int64_t>(r) * hidden);
    }
    SwiGluMlp(gathered.data(), rows, experts[e], expert_out.data(), matmul_workers);
    for (int r = 0; r < rows; ++r) {
      std::copy_n(expert_out.data() + static_cast<int64_t>(r) * hidden, hidden,
                  pair_out.data() + static_cast<int64_t>(routed[begin + r]) * hidden);
    }
  };
  const int threads = workers != nullptr ? workers->threads() : 1;
  if (threads > 1 && static_cast<int>(active.size()) >= threads) {
    workers->ParallelFor(static_cast<int64_t>(active.size()), 1, [&](int64_t first, int64_t last) {
      for (int64_t i = first; i < last; ++i) run_expert(active[i], nullptr);
    });
  } else {
    for (int e : active) run_expert(e, workers);
  }
  // Combine in token order, slots in routing order: deterministic whatever ran in parallel.
  for (int t = 0; t < tokens; ++t) {
    float* dst = out + static_cast<int64_t>(t) * hidden;
    for (int j = 0; j < top_k; ++j) {
      const int e = expert_ids[t * top_k + j];
      if (e < first_expert || e >= end_expert) continue;  // another shard's expert
      const float weight = weights[t * top_k + j];
      const float* src = pair_out.data() + static_cast<int64_t>(t * top_k + j) * hidden;
      for (int i = 0; i < hidden; ++i) dst[i] += weight * src[i];
    }
  }
}

}  // namespace ringmoe::cpu
