// gpu::RouteGroupLimited against its CPU twin, cpu::RouteGroupLimited, on fresh random logits and correction
// biases in the shapes of DeepSeek-V3, V2, V2-Lite, Kimi-K2 and the golden checkpoints: the same experts in
// the same order, weights within f32 rounding. Skips without a GPU, except the argument checks, which come
// before any device work.
#include <cmath>
#include <vector>

#include "absl/status/status.h"
#include "cpu/group_routing.h"
#include "gpu/group_routing_ops.h"
#include "gtest/gtest.h"
#include "tests/testing/gpu_test_fixture.h"

namespace ringmoe::gpu {
namespace {

struct GroupCase {
  const char* name;
  int experts, top_k, n_group, topk_group;
  cpu::GroupScoring scoring;
  bool renormalize;
  float scaling;
  bool bias;
};

class GpuGroupRoutingTest : public gpu_test::GpuTest {};

TEST_F(GpuGroupRoutingTest, MatchesCpuTwinOnRandomLogits) {
  SCOPED_TRACE(seed_);
  const GroupCase cases[] = {
      {"deepseek_v3", 256, 8, 8, 4, cpu::GroupScoring::kSigmoidTopTwoSum, true, 2.5f, true},
      {"deepseek_v3 without bias", 256, 8, 8, 4, cpu::GroupScoring::kSigmoidTopTwoSum, true, 2.5f, false},
      {"kimi_k2", 384, 8, 1, 1, cpu::GroupScoring::kSigmoidTopTwoSum, true, 2.827f, true},
      {"deepseek_v2", 160, 6, 8, 3, cpu::GroupScoring::kSoftmaxMax, false, 16.0f, false},
      {"deepseek_v2_lite", 64, 6, 1, 1, cpu::GroupScoring::kSoftmaxMax, false, 1.0f, false},
      {"golden v3", 8, 2, 4, 2, cpu::GroupScoring::kSigmoidTopTwoSum, true, 2.5f, true},
      {"one expert a group", 16, 4, 16, 4, cpu::GroupScoring::kSigmoidTopTwoSum, true, 1.0f, true},
      {"the limits", 1024, 32, 64, 64, cpu::GroupScoring::kSoftmaxMax, true, 1.0f, false},
  };
  const int tokens = 300;
  for (const GroupCase& c : cases) {
    SCOPED_TRACE(c.name);
    const std::vector<float> logits = Normal(static_cast<size_t>(tokens) * c.experts, 2.0f);
    const std::vector<float> bias = Uniform(c.experts, 0.05f);
    cpu::GroupRouting routing;
    routing.scoring = c.scoring;
    routing.n_group = c.n_group;
    routing.topk_group = c.topk_group;
    routing.renormalize = c.renormalize;
    routing.routed_scaling_factor = c.scaling;
    routing.correction_bias = c.bias ? bias.data() : nullptr;
    std::vector<int32_t> want_ids(static_cast<size_t>(tokens) * c.top_k);
    std::vector<float> want_weights(want_ids.size());
    cpu::RouteGroupLimited(logits.data(), tokens, c.experts, c.top_k, routing, want_ids.data(),
                           want_weights.data());

    cpu::GroupRouting device_routing = routing;
    device_routing.correction_bias = c.bias ? Upload(bias) : nullptr;
    int32_t* ids = Allocate<int32_t>(want_ids.size());
    float* weights = Allocate<float>(want_ids.size());
    ASSERT_TRUE(
        RouteGroupLimited(Upload(logits), tokens, c.experts, c.top_k, device_routing, ids, weights, stream_)
            .ok());
    const std::vector<int32_t> got_ids = Download(ids, want_ids.size());
    const std::vector<float> got_weights = Download(weights, want_ids.size());
    int mismatched = 0;
    for (size_t i = 0; i < want_ids.size(); ++i) {
      if (got_ids[i] != want_ids[i]) {
        ++mismatched;
        continue;
      }
      EXPECT_NEAR(got_weights[i], want_weights[i], 1e-5 * std::max(1.0f, std::abs(want_weights[i])))
          << "assignment " << i;
    }
    // expf and the CPU's exp may differ in the last bit; on random normal logits that never reorders them.
    EXPECT_EQ(mismatched, 0);
  }
}

TEST_F(GpuGroupRoutingTest, NoTokensQueueNothing) {
  cpu::GroupRouting routing;
  routing.n_group = 4;
  routing.topk_group = 2;
  EXPECT_TRUE(RouteGroupLimited(nullptr, 0, 8, 2, routing, nullptr, nullptr, stream_).ok());
}

// The argument checks come before any device work: they run everywhere.
TEST(GpuGroupRoutingArguments, BadShapesAreInvalidArguments) {
  const Stream stream;
  cpu::GroupRouting routing;
  routing.n_group = 4;
  routing.topk_group = 2;
  float logits = 0, weights = 0;
  int32_t ids = 0;
  auto route = [&](int experts, int top_k, const cpu::GroupRouting& r) {
    return RouteGroupLimited(&logits, 1, experts, top_k, r, &ids, &weights, stream);
  };
  EXPECT_TRUE(absl::IsInvalidArgument(route(10, 2, routing))) << "10 experts in 4 groups";
  EXPECT_TRUE(absl::IsInvalidArgument(route(8, 5, routing))) << "top 5 of 2 groups of 2";
  EXPECT_TRUE(absl::IsInvalidArgument(route(2048, 2, routing))) << "too many experts";
  cpu::GroupRouting too_many_groups = routing;
  too_many_groups.topk_group = 5;
  EXPECT_TRUE(absl::IsInvalidArgument(route(8, 2, too_many_groups))) << "topk_group > n_group";
  cpu::GroupRouting wide = routing;
  wide.n_group = 128;
  wide.topk_group = 1;
  EXPECT_TRUE(absl::IsInvalidArgument(route(256, 2, wide))) << "more groups than the kernel keeps";
  EXPECT_TRUE(absl::IsInvalidArgument(route(64, 33, cpu::GroupRouting{})));
}

}  // namespace
}  // namespace ringmoe::gpu
