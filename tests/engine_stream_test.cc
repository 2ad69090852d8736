// Engine::GenerateStream: requests pulled from a feed a window ahead of the engine (the plan's batch), each
// result reported and forgotten, the same steps and results as Generate over the same requests, and a Cancel
// that stops the pulling.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "ringmoe/engine.h"

namespace ringmoe {
namespace {

const std::string kTinyModel = std::string(RINGMOE_SOURCE_DIR) + "/tests/data/models/tiny-qwen3-moe";
constexpr int kBatch = 4;

Engine OpenOrDie() {
  EngineOptions options;
  options.cpu_compute = ComputeType::kF32;
  options.plan.batch = kBatch;
  options.plan.prefill_chunk = 12;
  options.threads = 2;
  absl::StatusOr<Engine> engine = Engine::Open(kTinyModel, options);
  EXPECT_TRUE(engine.ok()) << engine.status();
  return std::move(*engine);
}

std::vector<Request> MixedRequests(int count) {
  std::ifstream in(kTinyModel + "/golden.json");
  const nlohmann::json golden = nlohmann::json::parse(in);
  std::vector<Request> requests(count);
  for (int i = 0; i < count; ++i) {
    requests[i].id = "r" + std::to_string(i);
    requests[i].prompt_ids =
        golden["prompts"][i % golden["prompts"].size()]["prompt_ids"].get<std::vector<int32_t>>();
    requests[i].max_tokens = 1 + i % 7;
    requests[i].ignore_eos = true;
    if (i % 3 == 0) {  // sampled, seeded: the same seed gives the same tokens in either API
      requests[i].sampling.temperature = 0.8f;
      requests[i].sampling.seed = 1000 + i;
    }
  }
  requests[17].prompt_ids = {5, 1 << 30};  // fails when it is pulled: a token id past the vocabulary
  return requests;
}

TEST(EngineStream, PullsAWindowAheadAndGivesGeneratesResultsInItsOrder) {
  Engine engine = OpenOrDie();
  const std::vector<Request> requests = MixedRequests(120);
  std::vector<size_t> generate_order;
  absl::StatusOr<std::vector<Result>> reference =
      engine.Generate(requests, nullptr, [&](size_t index, const Result& result) {
        if (result.status.ok()) generate_order.push_back(index);
      });
  ASSERT_TRUE(reference.ok()) << reference.status();

  size_t pulled = 0, most_held = 0;
  std::map<size_t, Result> reported;
  std::vector<size_t> stream_order;
  absl::Status run = engine.GenerateStream(
      [&](Request* request) {
        if (pulled == requests.size()) return false;
        *request = requests[pulled++];
        most_held = std::max(most_held, pulled - reported.size());
        return true;
      },
      nullptr,
      [&](size_t index, const Result& result) {
        EXPECT_LT(index, pulled);
        EXPECT_TRUE(reported.emplace(index, result).second) << "reported twice: " << index;
        if (result.status.ok()) stream_order.push_back(index);
      });
  ASSERT_TRUE(run.ok()) << run;
  ASSERT_EQ(reported.size(), requests.size());
  // A window of waiting requests (the batch) beside the running batch, and the one being pulled.
  EXPECT_LE(most_held, static_cast<size_t>(2 * kBatch + 1));
  EXPECT_GE(most_held, static_cast<size_t>(kBatch));
  for (size_t i = 0; i < requests.size(); ++i) {
    EXPECT_EQ(reported[i].id, requests[i].id);
    EXPECT_EQ(reported[i].status, (*reference)[i].status) << i;
    EXPECT_EQ(reported[i].token_ids, (*reference)[i].token_ids) << i;
    EXPECT_EQ(reported[i].prompt_ids, (*reference)[i].prompt_ids) << i;
  }
  EXPECT_FALSE(reported[17].status.ok());
  EXPECT_EQ(stream_order, generate_order) << "the same steps: results finish in the same order";
}

TEST(EngineStream, CancelStopsPullingAndReportsWhatWasPulled) {
  Engine engine = OpenOrDie();
  const std::vector<Request> requests = MixedRequests(400);
  size_t pulled = 0;
  bool pulled_after_cancel = false, cancelled = false;
  std::map<size_t, Result> reported;
  absl::Status run = engine.GenerateStream(
      [&](Request* request) {
        pulled_after_cancel = pulled_after_cancel || cancelled;
        if (pulled == requests.size()) return false;
        *request = requests[pulled++];
        return true;
      },
      nullptr,
      [&](size_t index, const Result& result) {
        reported.emplace(index, result);
        if (reported.size() == 20 && !cancelled) {
          engine.Cancel();
          cancelled = true;
        }
      });
  ASSERT_TRUE(run.ok()) << run;
  EXPECT_FALSE(pulled_after_cancel);
  EXPECT_LT(pulled, requests.size()) << "the feed is not drained";
  EXPECT_EQ(reported.size(), pulled) << "every request pulled is reported once";
  int cancelled_results = 0;
  for (const auto& [index, result] : reported) cancelled_results += absl::IsCancelled(result.status);
  EXPECT_GT(cancelled_results, 0);
  EXPECT_LE(cancelled_results, 2 * kBatch);
}

}  // namespace
}  // namespace ringmoe
