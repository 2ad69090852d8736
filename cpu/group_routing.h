// DeepSeek's group-limited router: from router logits to (expert id, weight) pairs per token.
//
// Experts split into n_group equal groups of consecutive ids. Each group gets a score; only the best
// topk_group groups stay eligible; top_k experts are chosen among them by their choice score. Weights are the
// chosen experts' unbiased scores, renormalised to sum to one when asked (plus 1e-20, as transformers), then
// multiplied by routed_scaling_factor.
//   kSigmoidTopTwoSum (DeepSeek-V3 noaux_tc): score = sigmoid(logit); choice = score + correction_bias;
//     a group's score is the sum of its two best choice scores.
//   kSoftmaxMax (DeepSeek-V2 greedy with n_group 1, group_limited_greedy): score = softmax(logits) = choice;
//     a group's score is its best score.
#pragma once

#include <cstdint>

namespace ringmoe::cpu {

enum class GroupScoring { kSigmoidTopTwoSum, kSoftmaxMax };

struct GroupRouting {
  GroupScoring scoring = GroupScoring::kSigmoidTopTwoSum;
  int n_group = 1;
  int topk_group = 1;
  bool renormalize = true;
  float routed_scaling_factor = 1.0f;
  const float* correction_bias = nullptr;  // [num_experts], kSigmoidTopTwoSum only; null reads as zeros
};

// logits: [tokens, num_experts]. Writes expert_ids and weights, each [tokens, top_k], in descending choice
// score; ties go to the lower id (groups and experts alike). Requires num_experts % n_group == 0, topk_group
// <= n_group and top_k <= topk_group * num_experts / n_group (the ModelSpec guarantees them).
void RouteGroupLimited(const float* logits, int tokens, int num_experts, int top_k,
                       const GroupRouting& routing, int32_t* expert_ids, float* weights);

}  // namespace ringmoe::cpu
