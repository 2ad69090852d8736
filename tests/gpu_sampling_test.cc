// The sampling fields on the GPU path (tiny model, every MoE layer resident), with the KV cache on the host
// and in the GPU's share: the GPU must hand the host its logits rows whenever a processor changes the argmax
// (logit_bias, the penalties, min_tokens) instead of picking greedy tokens itself, and n choices must share
// the prompt's blocks on either side. Skips without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "gpu/device.h"
#include "io/model_spec.h"
#include "planner/execution_plan.h"
#include "ringmoe/engine.h"
#include "runtime/engine/choice_fork.h"

namespace ringmoe {
namespace {

const std::string kTinyModel = std::string(RINGMOE_SOURCE_DIR) + "/tests/data/models/tiny-qwen3-moe";
constexpr int32_t kEos = 997;

class GpuSamplingTest : public testing::TestWithParam<bool> {  // param: KV in the GPU's share of the cache
 protected:
  void SetUp() override {
    std::string why;
    if (!gpu::GpuAvailable(&why)) GTEST_SKIP() << "no GPU: " << why;
    absl::StatusOr<ModelSpec> spec = LoadModelSpec(kTinyModel);
    ASSERT_TRUE(spec.ok()) << spec.status();
    EngineOptions options;
    options.threads = 4;
    planner::ExecutionPlan& plan = options.plan;
    plan = planner::DefaultPlan(planner::PlanDevice::kGpu);
    plan.batch = 8;
    plan.prefill_chunk = 56;
    plan.budgets.gpu_bytes = int64_t{2} << 30;
    plan.expert_tiers = planner::SpreadResidentLayers(*spec, spec->num_layers);
    if (GetParam()) plan.kv.gpu_bytes = planner::KvBytesForSequences(*spec, plan.kv, 16, 128);
    absl::StatusOr<Engine> engine = Engine::Open(kTinyModel, options);
    ASSERT_TRUE(engine.ok()) << engine.status();
    ASSERT_EQ(engine->info().device, "gpu");
    engine_ = std::make_unique<Engine>(std::move(*engine));
  }

  static std::vector<int32_t> Prompt() {
    std::vector<int32_t> prompt;
    for (int i = 0; i < 40; ++i) prompt.push_back(100 + 17 * i % 800);
    return prompt;
  }

  std::unique_ptr<Engine> engine_;
};

TEST_P(GpuSamplingTest, ProcessorsSteerGreedyTokens) {
  Request greedy;
  greedy.prompt_ids = Prompt();
  greedy.max_tokens = 24;
  greedy.id = "greedy";
  Request forced = greedy;
  forced.id = "forced";
  forced.max_tokens = 6;
  forced.sampling.logit_bias = {{500, 100.0f}};
  Request held = greedy;
  held.id = "held";
  held.max_tokens = 30;
  held.sampling.min_tokens = 20;
  Request penalised = greedy;
  penalised.id = "penalised";
  penalised.sampling.frequency_penalty = 2.0f;
  penalised.sampling.presence_penalty = 2.0f;
  absl::StatusOr<std::vector<Result>> results =
      engine_->Generate(std::vector<Request>{greedy, forced, held, penalised});
  ASSERT_TRUE(results.ok()) << results.status();
  for (const Result& result : *results) ASSERT_TRUE(result.status.ok()) << result.id << ": " << result.status;
  EXPECT_EQ((*results)[1].token_ids, std::vector<int32_t>(6, 500));
  const std::vector<int32_t>& held_tokens = (*results)[2].token_ids;
  ASSERT_GE(held_tokens.size(), 20u);
  EXPECT_EQ(std::count(held_tokens.begin(), held_tokens.begin() + 20, kEos), 0);
  // Both penalties at 2 make every generated token unlikely to come again.
  const std::vector<int32_t>& penalised_tokens = (*results)[3].token_ids;
  EXPECT_EQ(std::set<int32_t>(penalised_tokens.begin(), penalised_tokens.end()).size(),
            penalised_tokens.size());
}

TEST_P(GpuSamplingTest, ChoicesShareThePromptBlocks) {
  const int block_tokens = engine_->plan().kv.block_tokens;
  Request request;
  request.id = "n3";
  request.prompt_ids = Prompt();
  request.max_tokens = 8;
  request.ignore_eos = true;
  request.sampling.temperature = 1.0f;
  request.sampling.seed = 11;
  request.n = 3;
  absl::StatusOr<std::vector<Result>> results = engine_->Generate(std::vector<Request>{request});
  ASSERT_TRUE(results.ok()) << results.status();
  const Result& result = (*results)[0];
  ASSERT_TRUE(result.status.ok()) << result.status;
  ASSERT_EQ(result.other_choices.size(), 2u);
  const int prompt = static_cast<int>(request.prompt_ids.size());
  const int shared = SharedPromptBlocks(prompt, block_tokens) * block_tokens;
  EXPECT_EQ(engine_->last_run_stats().prompt_tokens, prompt + 2 * (prompt - shared));
  std::set<std::vector<int32_t>> distinct = {result.token_ids};
  for (const Result& other : result.other_choices) {
    EXPECT_EQ(other.token_ids.size(), 8u);
    distinct.insert(other.token_ids);
  }
  EXPECT_EQ(distinct.size(), 3u);
}

INSTANTIATE_TEST_SUITE_P(KvPlacement, GpuSamplingTest, testing::Values(false, true),
                         [](const testing::TestParamInfo<bool>& info) {
                           return info.param ? std::string("GpuKv") : std::string("HostKv");
                         });

}  // namespace
}  // namespace ringmoe
