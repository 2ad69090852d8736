#include "cpu/group_routing.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

namespace ringmoe::cpu {

void RouteGroupLimited(const float* logits, int tokens, int num_experts, int top_k,
                       const GroupRouting& routing, int32_t* expert_ids, float* weights) {
  const int per_group = num_experts / routing.n_group;
  assert(num_experts % routing.n_group == 0 && routing.topk_group <= routing.n_group);
  assert(top_k <= routing.topk_group * per_group);
  const bool sigmoid = routing.scoring == GroupScoring::kSigmoidTopTwoSum;
  std::vector<float> scores(num_experts), choice(num_experts), group_scores(routing.n_group);
  std::vector<int32_t> order(num_experts), groups(routing.n_group);
  std::vector<char> eligible(num_experts);
  for (int t = 0; t < tokens; ++t) {
    const float* row = logits + static_cast<int64_t>(t) * num_experts;
    if (sigmoid) {
      for (int e = 0; e < num_experts; ++e) {
        scores[e] = 1.0f / (1.0f + std::exp(-row[e]));
        choice[e] = scores[e] + (routing.correction_bias != nullptr ? routing.correction_bias[e] : 0.0f);
      }
    } else {
      const float max_logit = *std::max_element(row, row + num_experts);
      float sum = 0.0f;
      for (int e = 0; e < num_experts; ++e) sum += scores[e] = std::exp(row[e] - max_logit);
      for (int e = 0; e < num_experts; ++e) choice[e] = scores[e] /= sum;
    }
    // Group scores, then the best topk_group groups.
    for (int g = 0; g < routing.n_group; ++g) {
      const float* group = choice.data() + static_cast<int64_t>(g) * per_group;
      float best = -std::numeric_limits<float>::infinity(), second = best;
      for (int i = 0; i < per_group; ++i) {
        if (group[i] > best) {
          second = best;
          best = group[i];
        } else if (group[i] > second) {
          second = group[i];
        }
      }
      group_scores[g] = sigmoid ? best + second : best;
    }
    std::iota(groups.begin(), groups.end(), 0);
    std::partial_sort(
        groups.begin(), groups.begin() + routing.topk_group, groups.end(), [&](int32_t a, int32_t b) {
          return group_scores[a] > group_scores[b] || (group_scores[a] == group_scores[b] && a < b);
        });
    std::fill(eligible.begin(), eligible.end(), 0);
    for (int j = 0; j < routing.topk_group; ++j) {
      std::fill_n(eligible.begin() + static_cast<int64_t>(groups[j]) * per_group, per_group, 1);
    }
    // Top-k among the eligible experts (the others rank below every eligible one: masked to -inf).
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + top_k, order.end(), [&](int32_t a, int32_t b) {
      if (eligible[a] != eligible[b]) return eligible[a] > eligible[b];
      return choice[a] > choice[b] || (choice[a] == choice[b] && a < b);
    });
    int32_t* ids = expert_ids + static_cast<int64_t>(t) * top_k;
    float* w = weights + static_cast<int64_t>(t) * top_k;
    float sum = 0.0f;
    for (int j = 0; j < top_k; ++j) {
      ids[j] = order[j];
      sum += w[j] = scores[order[j]];
    }
    for (int j = 0; j < top_k; ++j) {
      if (routing.renormalize) w[j] /= sum + 1e-20f;
      w[j] *= routing.routed_scaling_factor;
    }
  }
}

}  // namespace ringmoe::cpu
