// Router top-k: from router logits to (expert id, weight) pairs per token.
#pragma once

#include <cstdint>

namespace ringmoe::cpu {

enum class RouterScoring {
  kSoftmaxThenTopK,  // Qwen2/3-MoE, OLMoE: softmax over all experts, top-k; renormalise if asked.
  kTopKThenSoftmax,  // Mixtral: top-k of the logits, softmax over those k.
};

// logits: [tokens, num_experts] row-major. Writes expert_ids and weights, each [tokens, top_k], in
// descending weight order; ties go to the lower expert id (as torch.topk does on CPU).
void RouteTopK(const float* logits, int tokens, int num_experts, int top_k, RouterScoring scoring,
               bool renormalize, int32_t* expert_ids, float* weights);

}  // namespace ringmoe::cpu
