// Routed experts on the CPU, grouped by expert: gather the tokens routed to each expert, run its gate and up
// projections as one matmul each, SwiGLU, the down projection, then add the weighted rows back in token order.
#pragma once

#include <cstdint>
#include <span>

#include "cpu/linear.h"

namespace ringmoe::cpu {

struct ExpertWeights {
  Matrix gate;  // [intermediate, hidden]
  Matrix up;    // [intermediate, hidden]
  Matrix down;  // [hidden, intermediate]
};

// For every token t: out[t] += sum_j weights[t, j] * Expert[expert_ids[t, j]](x[t]). Accumulates into out.
// x, out: [tokens, hidden]; expert_ids, weights: [tokens, top_k].
// With workers, experts run in parallel when enough of them have tokens, else each matmul is split.
void MoeForward(const float* x, int tokens, int hidden, const int32_t* expert_ids, const float* weights,
                int top_k, std::span<const ExpertWeights> experts, float* out, CpuWorkers* workers = nullptr);
// The same over only the experts [first_expert, end_expert) (an expert shard; twin of
// gpu::MoeRunner::RunExpertRange): assignments routed to other experts add nothing, and their experts do not
// run. Summing every shard's output is the MoE output up to float rounding.
void MoeForwardExperts(const float* x, int tokens, int hidden, const int32_t* expert_ids,
                       const float* weights, int top_k, std::span<const ExpertWeights> experts,
                       int first_expert, int end_expert, float* out, CpuWorkers* workers = nullptr);

// One SwiGLU MLP (a dense layer or a shared expert): out[t] = down(silu(gate(x)) * up(x)). Overwrites out.
void SwiGluMlp(const float* x, int tokens, const ExpertWeights& mlp, float* out, CpuWorkers* workers = nullptr);

}  // namespace ringmoe::cpu
