// Golden tests: the engine against Hugging Face transformers. tests/golden/make_models.py built each tiny
// random-weight checkpoint under tests/data/golden/ and recorded transformers' greedy tokens and logprobs (f32).
// The engine must reproduce every token and every logprob within 1e-4, with all prompts in one batch, and
// again with small step budgets that force chunked prefill and continuous batching.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "ringmoe/engine.h"

namespace ringmoe {
namespace {

struct GoldenPrompt {
  std::vector<int32_t> prompt;
  std::vector<int32_t> tokens;
  std::vector<double> logprobs;
};

struct GoldenCase {
  std::string dir;
  int max_new_tokens = 0;
  std::vector<GoldenPrompt> prompts;
};

GoldenCase LoadCase(const std::string& dir) {
  std::ifstream in(dir + "/golden.json");
  EXPECT_TRUE(in.good()) << dir;
  nlohmann::json golden = nlohmann::json::parse(in);
  GoldenCase result;
  result.dir = dir;
  result.max_new_tokens = golden["max_new_tokens"];
  for (const auto& prompt : golden["prompts"]) {
    result.prompts.push_back({prompt["prompt_ids"].get<std::vector<int32_t>>(),
                              prompt["tokens"].get<std::vector<int32_t>>(),
                              prompt["logprobs"].get<std::vector<double>>()});
  }
  return result;
}

struct Schedule {
  const char* name;
  int max_batch;
  int max_step_tokens;
};

class GoldenTest : public testing::TestWithParam<std::tuple<std::string, Schedule>> {};

TEST_P(GoldenTest, MatchesTransformers) {
  const auto& [case_dir, schedule] = GetParam();
  GoldenCase golden = LoadCase(std::string(RINGMOE_SOURCE_DIR) + "/tests/data/" + case_dir);
  ASSERT_GE(golden.prompts.size(), 8u);

  EngineOptions options;
  options.cpu_compute = ComputeType::kF32;
  options.plan.batch = schedule.max_batch;
  options.plan.prefill_chunk = schedule.max_step_tokens - schedule.max_batch;
  options.threads = 2;
  options.plan.kv.block_tokens = 8;
  absl::StatusOr<Engine> engine = Engine::Open(golden.dir, options);
  ASSERT_TRUE(engine.ok()) << engine.status();

  std::vector<Request> requests;
  for (size_t i = 0; i < golden.prompts.size(); ++i) {
    Request request;
    request.id = "prompt-" + std::to_string(i);
    request.prompt_ids = golden.prompts[i].prompt;
    request.max_tokens = golden.max_new_tokens;
    request.logprobs = true;
    requests.push_back(request);
  }
  absl::StatusOr<std::vector<Result>> results = engine->Generate(requests);
  ASSERT_TRUE(results.ok()) << results.status();
  ASSERT_EQ(results->size(), requests.size());
  double worst = 0.0;
  for (size_t i = 0; i < requests.size(); ++i) {
    const Result& result = (*results)[i];
    const GoldenPrompt& expected = golden.prompts[i];
    ASSERT_TRUE(result.status.ok()) << result.status;
    EXPECT_EQ(result.id, requests[i].id);
    ASSERT_EQ(result.token_ids, expected.tokens) << "prompt " << i << " (" << expected.prompt.size() << " tokens)";
    ASSERT_EQ(result.logprobs.size(), expected.logprobs.size());
    for (size_t t = 0; t < expected.logprobs.size(); ++t) {
      const double error = std::abs(result.logprobs[t] - expected.logprobs[t]);
      worst = std::max(worst, error);
      EXPECT_LT(error, 1e-4) << "prompt " << i << " token " << t;
    }
    const bool ended_on_eos = result.token_ids.size() < static_cast<size_t>(golden.max_new_tokens);
    EXPECT_EQ(result.finish_reason, ended_on_eos ? FinishReason::kStop : FinishReason::kLength);
  }
  RecordProperty("max_logprob_error", std::to_string(worst));
}

constexpr Schedule kOneBatch{"one_batch", 64, 4096};
constexpr Schedule kChunked{"chunked_prefill", 3, 24};

INSTANTIATE_TEST_SUITE_P(
    AllModels, GoldenTest,
    testing::Combine(testing::Values("golden/mixtral", "golden/qwen2_moe", "golden/qwen3_moe", "golden/olmoe",
                                     "models/tiny-qwen3-moe"),
                     testing::Values(kOneBatch, kChunked)),
    [](const testing::TestParamInfo<GoldenTest::ParamType>& info) {
      std::string name = std::get<0>(info.param) + "_" + std::get<1>(info.param).name;
      for (char& c : name) c = std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
      return name;
    });

}  // namespace
}  // namespace ringmoe
