// DeepSeek's group-limited routing (cpu/group_routing.h) on hand-computed cases.
#include "cpu/group_routing.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace ringmoe::cpu {
namespace {

float Logit(double p) { return static_cast<float>(std::log(p / (1 - p))); }

struct Routed {
  std::vector<int32_t> ids;
  std::vector<float> weights;
};

Routed Route(const std::vector<float>& logits, int top_k, const GroupRouting& routing) {
  Routed routed{std::vector<int32_t>(top_k), std::vector<float>(top_k)};
  RouteGroupLimited(logits.data(), 1, static_cast<int>(logits.size()), top_k, routing, routed.ids.data(),
                    routed.weights.data());
  return routed;
}

// Sigmoid scores p, 4 groups of 2. The bias lifts expert 2 (0.5 + 0.35) and 7 (0.05 + 0.5):
//   choice = [0.9, 0.1 | 0.85, 0.6 | 0.2, 0.3 | 0.8, 0.55], group sums 1.0, 1.45, 0.5, 1.35.
// Groups 1 and 3 win, so expert 0 (the best single choice) is out; experts 2 (0.85) and 6 (0.8) are chosen,
// weighted by their unbiased scores 0.5 and 0.8.
TEST(GroupRouting, SigmoidBiasChoosesGroupsAndExpertsButNotWeights) {
  const std::vector<double> p = {0.9, 0.1, 0.5, 0.6, 0.2, 0.3, 0.8, 0.05};
  std::vector<float> logits;
  for (double v : p) logits.push_back(Logit(v));
  const std::vector<float> bias = {0, 0, 0.35f, 0, 0, 0, 0, 0.5f};
  GroupRouting routing;
  routing.scoring = GroupScoring::kSigmoidTopTwoSum;
  routing.n_group = 4;
  routing.topk_group = 2;
  routing.renormalize = true;
  routing.routed_scaling_factor = 2.5f;
  routing.correction_bias = bias.data();
  Routed routed = Route(logits, 2, routing);
  EXPECT_EQ(routed.ids, (std::vector<int32_t>{2, 6}));
  EXPECT_NEAR(routed.weights[0], 2.5 * 0.5 / 1.3, 1e-6);
  EXPECT_NEAR(routed.weights[1], 2.5 * 0.8 / 1.3, 1e-6);

  routing.renormalize = false;  // norm_topk_prob false: the scores times routed_scaling_factor
  routed = Route(logits, 2, routing);
  EXPECT_EQ(routed.ids, (std::vector<int32_t>{2, 6}));
  EXPECT_NEAR(routed.weights[0], 2.5 * 0.5, 1e-6);
  EXPECT_NEAR(routed.weights[1], 2.5 * 0.8, 1e-6);

  routing.topk_group = 4;  // every group eligible: plain top-2 of the biased scores
  routing.renormalize = true;
  routed = Route(logits, 2, routing);
  EXPECT_EQ(routed.ids, (std::vector<int32_t>{0, 2}));
  EXPECT_NEAR(routed.weights[0], 2.5 * 0.9 / 1.4, 1e-6);
  EXPECT_NEAR(routed.weights[1], 2.5 * 0.5 / 1.4, 1e-6);
}

// Two groups of 4: group 0 = [0.95, 0.1, 0.1, 0.1] (top-2 sum 1.05), group 1 = [0.6, 0.55, 0.5, 0.1] (1.15).
// V3 scores groups by their top-2 sum, so group 1 wins although group 0 holds the best expert.
TEST(GroupRouting, GroupsScoreByTheirTopTwoSum) {
  const std::vector<double> p = {0.95, 0.1, 0.1, 0.1, 0.6, 0.55, 0.5, 0.1};
  std::vector<float> logits;
  for (double v : p) logits.push_back(Logit(v));
  GroupRouting routing;
  routing.n_group = 2;
  routing.topk_group = 1;
  routing.renormalize = true;
  Routed routed = Route(logits, 2, routing);
  EXPECT_EQ(routed.ids, (std::vector<int32_t>{4, 5}));
  EXPECT_NEAR(routed.weights[0], 0.6 / 1.15, 1e-6);
  EXPECT_NEAR(routed.weights[1], 0.55 / 1.15, 1e-6);
}

// DeepSeek-V2: softmax over all experts; group_limited_greedy scores a group by its best probability.
TEST(GroupRouting, SoftmaxGroupLimitedAndGreedy) {
  const std::vector<float> logits = {2.0f, 0.0f, 0.0f, 0.0f, 1.5f, 1.4f, 1.3f, 0.0f};
  double sum = 0;
  for (float l : logits) sum += std::exp(static_cast<double>(l));
  auto prob = [&](int e) { return std::exp(static_cast<double>(logits[e])) / sum; };
  GroupRouting routing;
  routing.scoring = GroupScoring::kSoftmaxMax;
  routing.n_group = 2;
  routing.topk_group = 1;
  routing.renormalize = false;
  routing.routed_scaling_factor = 1.5f;
  // Group 0's best (expert 0) beats group 1's (expert 4): experts 0 and then 1 (ties go to the lower id).
  Routed routed = Route(logits, 2, routing);
  EXPECT_EQ(routed.ids, (std::vector<int32_t>{0, 1}));
  EXPECT_NEAR(routed.weights[0], 1.5 * prob(0), 1e-6);
  EXPECT_NEAR(routed.weights[1], 1.5 * prob(1), 1e-6);

  routing.n_group = 1;  // greedy: top-2 over all experts
  routed = Route(logits, 2, routing);
  EXPECT_EQ(routed.ids, (std::vector<int32_t>{0, 4}));
  EXPECT_NEAR(routed.weights[0], 1.5 * prob(0), 1e-6);
  EXPECT_NEAR(routed.weights[1], 1.5 * prob(4), 1e-6);
}

TEST(GroupRouting, EveryTokenOfABatchIsRoutedOnItsOwn) {
  // Token 0 prefers group 0, token 1 group 1 (two groups of 2, one group each, top-1).
  const std::vector<float> logits = {Logit(0.9), Logit(0.8), Logit(0.1), Logit(0.2),
                                     Logit(0.1), Logit(0.2), Logit(0.7), Logit(0.9)};
  GroupRouting routing;
  routing.n_group = 2;
  routing.topk_group = 1;
  std::vector<int32_t> ids(2);
  std::vector<float> weights(2);
  RouteGroupLimited(logits.data(), 2, 4, 1, routing, ids.data(), weights.data());
  EXPECT_EQ(ids, (std::vector<int32_t>{0, 3}));
  EXPECT_NEAR(weights[0], 1.0, 1e-6);  // renormalised over one expert
  EXPECT_NEAR(weights[1], 1.0, 1e-6);
}

}  // namespace
}  // namespace ringmoe::cpu
