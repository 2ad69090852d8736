// The sampling fields through the C++ API on the tiny model: n choices prefill their prompt once and sample
// as independently seeded requests would, each choice is reported, and bad settings fail their request alone.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "ringmoe/engine.h"
#include "runtime/engine/choice_fork.h"

namespace ringmoe {
namespace {

const std::string kTinyModel = std::string(RINGMOE_SOURCE_DIR) + "/tests/data/models/tiny-qwen3-moe";

Engine OpenTiny() {
  EngineOptions options;
  options.cpu_compute = ComputeType::kF32;
  options.threads = 2;
  options.plan.batch = 8;
  options.plan.prefill_chunk = 56;
  absl::StatusOr<Engine> engine = Engine::Open(kTinyModel, options);
  EXPECT_TRUE(engine.ok()) << engine.status();
  return std::move(*engine);
}

std::vector<int32_t> LongPrompt() {
  std::vector<int32_t> prompt;
  for (int i = 0; i < 40; ++i) prompt.push_back(100 + 17 * i % 800);
  return prompt;
}

TEST(SamplingEngine, ChoicesPrefillThePromptOnceAndSampleAsSeparatelySeededRequests) {
  Engine engine = OpenTiny();
  const int block_tokens = engine.plan().kv.block_tokens;
  const std::vector<int32_t> prompt = LongPrompt();
  ASSERT_GT(static_cast<int>(prompt.size()), block_tokens);  // so that some prompt blocks are shared

  Request request;
  request.id = "n3";
  request.prompt_ids = prompt;
  request.max_tokens = 6;
  request.ignore_eos = true;
  request.sampling.temperature = 1.0f;
  request.sampling.seed = 11;
  request.n = 3;
  std::vector<int> tokens_per_choice(3, 0);
  int results_reported = 0;
  absl::StatusOr<std::vector<Result>> results = engine.Generate(
      std::vector<Request>{request},
      [&](const TokenEvent& event) {
        ASSERT_GE(event.choice, 0);
        ASSERT_LT(event.choice, 3);
        ++tokens_per_choice[event.choice];
      },
      [&](size_t, const Result& result) {
        ++results_reported;
        EXPECT_EQ(result.other_choices.size(), 2u);
      });
  ASSERT_TRUE(results.ok()) << results.status();
  EXPECT_EQ(results_reported, 1);  // once, when all three are done
  EXPECT_EQ(tokens_per_choice, std::vector<int>({6, 6, 6}));
  const Result& result = (*results)[0];
  ASSERT_TRUE(result.status.ok()) << result.status;
  ASSERT_EQ(result.other_choices.size(), 2u);

  // The prompt's full blocks before its last token's block were computed once; each other choice prefilled
  // only the rest.
  const int shared_tokens = SharedPromptBlocks(static_cast<int>(prompt.size()), block_tokens) * block_tokens;
  ASSERT_GT(shared_tokens, 0);
  EXPECT_EQ(engine.last_run_stats().prompt_tokens,
            static_cast<int64_t>(prompt.size()) + 2 * (static_cast<int64_t>(prompt.size()) - shared_tokens));

  // Each choice samples what a lone request with that choice's seed samples.
  std::vector<Request> singles;
  for (int choice = 0; choice < 3; ++choice) {
    Request single = request;
    single.id = "single-" + std::to_string(choice);
    single.n = 1;
    single.sampling.seed = ChoiceSeed(request.sampling.seed, choice);
    singles.push_back(single);
  }
  absl::StatusOr<std::vector<Result>> alone = engine.Generate(singles);
  ASSERT_TRUE(alone.ok()) << alone.status();
  std::set<std::vector<int32_t>> distinct;
  for (int choice = 0; choice < 3; ++choice) {
    const Result& mine = choice == 0 ? result : result.other_choices[choice - 1];
    EXPECT_EQ(mine.id, "n3");
    EXPECT_EQ(mine.prompt_ids, prompt);
    EXPECT_EQ(mine.token_ids, (*alone)[choice].token_ids) << "choice " << choice;
    EXPECT_EQ(mine.text, (*alone)[choice].text);
    distinct.insert(mine.token_ids);
  }
  EXPECT_EQ(distinct.size(), 3u);
}

TEST(SamplingEngine, ManyChoicesWithAKvCacheForFewSequences) {
  // Two sequence slots: eight choices take turns, the later ones still sharing the first one's prompt blocks.
  EngineOptions options;
  options.cpu_compute = ComputeType::kF32;
  options.threads = 2;
  options.plan.batch = 2;
  options.plan.prefill_chunk = 30;
  absl::StatusOr<Engine> engine = Engine::Open(kTinyModel, options);
  ASSERT_TRUE(engine.ok()) << engine.status();
  Request request;
  request.id = "n8";
  request.prompt_ids = LongPrompt();
  request.max_tokens = 4;
  request.sampling.temperature = 0.0f;
  request.ignore_eos = true;
  request.n = 8;
  Request other = request;
  other.id = "after";
  other.n = 1;
  absl::StatusOr<std::vector<Result>> results = engine->Generate(std::vector<Request>{request, other});
  ASSERT_TRUE(results.ok()) << results.status();
  const Result& result = (*results)[0];
  ASSERT_TRUE(result.status.ok()) << result.status;
  ASSERT_EQ(result.other_choices.size(), 7u);
  for (const Result& choice : result.other_choices) EXPECT_EQ(choice.token_ids, result.token_ids);  // greedy
  EXPECT_EQ((*results)[1].token_ids, result.token_ids);
}

TEST(SamplingEngine, MinTokensDefersStopStringsAndEos) {
  // Greedy "warranty" on the tiny model: "\x1e This Software..." and EOS after 6 tokens.
  Engine engine = OpenTiny();
  Request stopped;
  stopped.id = "stopped";
  stopped.prompt_text = "warranty";
  stopped.max_tokens = 40;
  stopped.stop = {" This"};
  Request deferred = stopped;
  deferred.id = "deferred";
  deferred.sampling.min_tokens = 4;  // the stop string's tokens are out before then: no stop at it
  Request held = stopped;
  held.id = "held";
  held.stop.clear();
  held.sampling.min_tokens = 10;
  Request plain = held;
  plain.id = "plain";
  plain.sampling.min_tokens = 0;
  absl::StatusOr<std::vector<Result>> results =
      engine.Generate(std::vector<Request>{stopped, deferred, held, plain});
  ASSERT_TRUE(results.ok()) << results.status();
  const Result& first = (*results)[0];
  EXPECT_EQ(first.finish_reason, FinishReason::kStop);
  EXPECT_EQ(first.text.find(" This"), std::string::npos);
  ASSERT_LT(first.token_ids.size(), 4u);
  const Result& later = (*results)[1];
  EXPECT_EQ(later.text.rfind(first.text + " This", 0), 0u) << later.text;  // went on past the stop string
  EXPECT_GT(later.token_ids.size(), 4u);
  const Result& eos = (*results)[3];
  ASSERT_EQ(eos.token_ids.back(), 997);
  ASSERT_LT(eos.token_ids.size(), 10u);
  const Result& past_eos = (*results)[2];
  EXPECT_GT(past_eos.token_ids.size(), 10u);
  EXPECT_EQ(std::count(past_eos.token_ids.begin(), past_eos.token_ids.begin() + 10, 997), 0);
}

TEST(SamplingEngine, ACancelledRequestWithChoicesIsReportedOnce) {
  Engine engine = OpenTiny();
  Request request;
  request.id = "n4";
  request.prompt_ids = LongPrompt();
  request.max_tokens = 50;
  request.ignore_eos = true;
  request.n = 4;
  Request next = request;
  next.id = "next";
  int reports = 0;
  absl::StatusOr<std::vector<Result>> results = engine.Generate(
      std::vector<Request>{request, next},
      [&](const TokenEvent& event) {
        if (event.choice == 0 && event.request_index == 0) engine.Cancel(0);  // its other choices wait
      },
      [&](size_t, const Result& result) {
        ++reports;
        EXPECT_TRUE(absl::IsCancelled(result.status)) << result.id << ": " << result.status;
      });
  ASSERT_TRUE(results.ok()) << results.status();
  EXPECT_EQ(reports, 2);
  EXPECT_TRUE(absl::IsCancelled((*results)[0].status));
  EXPECT_TRUE((*results)[0].other_choices.empty());  // no partial choices
  // The same engine runs it again, to the end.
  absl::StatusOr<std::vector<Result>> again = engine.Generate(std::vector<Request>{request});
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_TRUE((*again)[0].status.ok()) << (*again)[0].status;
  EXPECT_EQ((*again)[0].other_choices.size(), 3u);
}

TEST(SamplingEngine, BadSettingsFailTheirRequestAlone) {
  Engine engine = OpenTiny();
  Request good;
  good.id = "good";
  good.prompt_ids = {1, 2, 3};
  good.max_tokens = 3;
  std::vector<Request> requests = {good, good, good, good};
  requests[1].id = "bias";
  requests[1].sampling.logit_bias = {{1000, 5.0f}};  // the tiny vocabulary is 0..999
  requests[2].id = "n";
  requests[2].n = 0;
  requests[3].id = "min";
  requests[3].sampling.min_tokens = 4;
  absl::StatusOr<std::vector<Result>> results = engine.Generate(requests);
  ASSERT_TRUE(results.ok()) << results.status();
  EXPECT_TRUE((*results)[0].status.ok());
  EXPECT_EQ((*results)[1].status.message(),
            "request 'bias': logit_bias: token id 1000 is outside the vocabulary (1000 tokens)");
  EXPECT_TRUE(absl::IsInvalidArgument((*results)[2].status));
  EXPECT_NE(std::string((*results)[2].status.message()).find("n must be an integer in 1..128"),
            std::string::npos);
  EXPECT_NE(std::string((*results)[3].status.message()).find("min_tokens (4) must not exceed max_tokens (3)"),
            std::string::npos);
}

}  // namespace
}  // namespace ringmoe
