#include "cpu/routing.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace ringmoe::cpu {

void RouteTopK(const float* logits, int tokens, int num_experts, int top_k, RouterScoring scoring,
               bool renormalize, int32_t* expert_ids, float* weights) {
  std::vector<float> probs(num_experts);
  std::vector<int32_t> order(num_experts);
  for (int t = 0; t < tokens; ++t) {
    const float* row = logits + static_cast<int64_t>(t) * num_experts;
    float max_logit = *std::max_element(row, row + num_experts);
    if (scoring == RouterScoring::kSoftmaxThenTopK) {
      float sum = 0.0f;
      for (int e = 0; e < num_experts; ++e) sum += probs[e] = std::exp(row[e] - max_logit);
      for (int e = 0; e < num_experts; ++e) probs[e] /= sum;
    } else {
      std::copy(row, row + num_experts, probs.begin());
    }
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + top_k, order.end(), [&](int32_t a, int32_t b) {
      return probs[a] > probs[b] || (probs[a] == probs[b] && a < b);
    });
    int32_t* ids = expert_ids + static_cast<int64_t>(t) * top_k;
    float* w = weights + static_cast<int64_t>(t) * top_k;
    for (int j = 0; j < top_k; ++j) ids[j] = order[j];
    if (scoring == RouterScoring::kTopKThenSoftmax) {
      float sum = 0.0f;
      for (int j = 0; j < top_k; ++j) sum += w[j] = std::exp(probs[ids[j]] - max_logit);
      for (int j = 0; j < top_k; ++j) w[j] /= sum;
    } else {
      float sum = 0.0f;
      for (int j = 0; j < top_k; ++j) sum += w[j] = probs[ids[j]];
      if (renormalize) {
        for (int j = 0; j < top_k; ++j) w[j] /= sum;
      }
    }
  }
}

}  // namespace ringmoe::cpu
