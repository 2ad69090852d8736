// Scoring against the goldens, without transformers: for each golden prompt P with its recorded greedy
// continuation C (logprobs L, from transformers in f32), scoring the text P + C (Request::echo with logprobs
// and max_tokens 0) must give, at C's positions, L within the golden tolerance (1e-4 on the CPU in f32). The
// prompt logprobs come from the prefill's every-position logits, the reference's from decode steps: this ties
// the new path to the one the goldens already check. At the same positions the top alternative must be C's
// token (it was the greedy pick) wherever the reference's top-2 margin is clear.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "ringmoe/engine.h"

namespace ringmoe {
namespace {

struct Schedule {
  const char* name;
  int max_batch;
  int max_step_tokens;
};

class ScoringGoldenTest : public testing::TestWithParam<std::tuple<std::string, Schedule>> {};

TEST_P(ScoringGoldenTest, ScoringTheContinuationGivesItsRecordedLogprobs) {
  const auto& [case_dir, schedule] = GetParam();
  const std::string dir = std::string(RINGMOE_SOURCE_DIR) + "/tests/data/" + case_dir;
  if (!std::filesystem::exists(dir + "/golden.json")) GTEST_SKIP() << dir << "/golden.json is absent";
  const nlohmann::json golden = nlohmann::json::parse(std::ifstream(dir + "/golden.json"));

  EngineOptions options;
  options.cpu_compute = ComputeType::kF32;
  options.plan.batch = schedule.max_batch;
  options.plan.prefill_chunk = schedule.max_step_tokens - schedule.max_batch;
  options.threads = 2;
  options.plan.kv.block_tokens = 8;
  absl::StatusOr<Engine> engine = Engine::Open(dir, options);
  ASSERT_TRUE(engine.ok()) << engine.status();

  std::vector<Request> requests;
  for (const auto& prompt : golden["prompts"]) {
    Request request;
    request.id = "score-" + std::to_string(requests.size());
    request.prompt_ids = prompt["prompt_ids"].get<std::vector<int32_t>>();
    for (int32_t token : prompt["tokens"].get<std::vector<int32_t>>()) request.prompt_ids.push_back(token);
    request.max_tokens = 0;
    request.echo = true;
    request.logprobs = true;
    request.top_logprobs = 2;
    requests.push_back(request);
  }
  // A request that generates rides along, so scoring rows share steps with decodes.
  Request generating;
  generating.id = "generating";
  generating.prompt_ids = golden["prompts"][0]["prompt_ids"].get<std::vector<int32_t>>();
  generating.max_tokens = golden["max_new_tokens"];
  generating.logprobs = true;
  requests.push_back(generating);

  absl::StatusOr<std::vector<Result>> results = engine->Generate(requests);
  ASSERT_TRUE(results.ok()) << results.status();
  double worst = 0;
  int compared = 0;
  for (size_t i = 0; i + 1 < requests.size(); ++i) {
    const Result& result = (*results)[i];
    const auto& expected = golden["prompts"][i];
    ASSERT_TRUE(result.status.ok()) << result.status;
    const size_t prompt_length = expected["prompt_ids"].size();
    const auto tokens = expected["tokens"].get<std::vector<int32_t>>();
    const auto logprobs = expected["logprobs"].get<std::vector<double>>();
    const auto margins = expected["top2_margins"].get<std::vector<double>>();
    EXPECT_TRUE(result.token_ids.empty()) << "scoring generated tokens";
    EXPECT_EQ(result.finish_reason, FinishReason::kLength);
    ASSERT_EQ(result.prompt_logprobs.size(), requests[i].prompt_ids.size());
    ASSERT_EQ(result.prompt_top_logprobs.size(), requests[i].prompt_ids.size());
    EXPECT_TRUE(std::isnan(result.prompt_logprobs[0]));
    EXPECT_TRUE(result.prompt_top_logprobs[0].empty());
    for (size_t p = 1; p < result.prompt_logprobs.size(); ++p) {
      EXPECT_LE(result.prompt_logprobs[p], 0.0f) << "prompt " << i << " position " << p;
      ASSERT_EQ(result.prompt_top_logprobs[p].size(), 2u);
      EXPECT_GE(result.prompt_top_logprobs[p][0].logprob, result.prompt_top_logprobs[p][1].logprob);
      EXPECT_GE(result.prompt_top_logprobs[p][0].logprob, result.prompt_logprobs[p]);
    }
    for (size_t t = 0; t < tokens.size(); ++t) {
      const size_t position = prompt_length + t;
      const double error = std::abs(result.prompt_logprobs[position] - logprobs[t]);
      worst = std::max(worst, error);
      EXPECT_LT(error, 1e-4) << "prompt " << i << " continuation token " << t;
      if (margins[t] > 1e-3) {
        EXPECT_EQ(result.prompt_top_logprobs[position][0].token, tokens[t])
            << "prompt " << i << " token " << t;
        EXPECT_EQ(result.prompt_top_logprobs[position][0].logprob, result.prompt_logprobs[position]);
      }
      ++compared;
    }
  }
  // The generating request is unaffected by the scoring beside it.
  const Result& generated = results->back();
  ASSERT_TRUE(generated.status.ok()) << generated.status;
  EXPECT_EQ(generated.token_ids, golden["prompts"][0]["tokens"].get<std::vector<int32_t>>());
  EXPECT_TRUE(generated.prompt_logprobs.empty());
  EXPECT_GT(compared, 8);
  RecordProperty("max_scoring_logprob_error", std::to_string(worst));
  std::printf("%s %s: %d continuation tokens scored, max logprob error %.2e\n", case_dir.c_str(),
              schedule.name, compared, worst);
}

constexpr Schedule kOneBatch{"one_batch", 64, 4096};
// Steps of 24 tokens: long prompts are scored over several prefill chunks, beside decodes.
constexpr Schedule kChunked{"chunked_prefill", 3, 24};

INSTANTIATE_TEST_SUITE_P(AllModels, ScoringGoldenTest,
                         testing::Combine(testing::Values("golden/mixtral", "golden/qwen2_moe",
                                                          "golden/qwen3_moe", "golden/olmoe",
                                                          "models/tiny-qwen3-moe", "golden_fp8/qwen3_moe_fp8",
                                                          "golden_fp8/mixtral_fp8"),
                                          testing::Values(kOneBatch, kChunked)),
                         [](const testing::TestParamInfo<ScoringGoldenTest::ParamType>& info) {
                           std::string name = std::get<0>(info.param) + "_" + std::get<1>(info.param).name;
                           for (char& c : name) c = std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
                           return name;
                         });

}  // namespace
}  // namespace ringmoe
