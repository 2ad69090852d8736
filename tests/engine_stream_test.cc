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

// Requests with the sampling and scoring fields: n > 1 choices sharing the prompt, top alternatives, echo
// with prompt scoring, and echo with max_tokens 0 (answered when pulled, with nothing to compute).
std::vector<Request> ChoiceAndScoringRequests(int count) {
  std::vector<Request> requests = MixedRequests(count);
  for (int i = 0; i < count; ++i) {
    Request& request = requests[i];
    if (i == 17) continue;  // stays the failing one
    switch (i % 5) {
      case 0:
        request.n = 3;
        request.sampling.temperature = 0.8f;
        request.sampling.seed = 500 + i;
        break;
      case 1:
        request.logprobs = true;
        request.top_logprobs = 2;
        break;
      case 2:
        request.echo = true;
        request.logprobs = true;
        request.max_tokens = 0;
        break;
      case 3:
        request.echo = true;
        request.max_tokens = 0;
        break;
      default:
        break;
    }
  }
  return requests;
}

TEST(EngineStream, ChoicesAndScoringGiveGeneratesResultsEachReportedOnce) {
  Engine engine = OpenOrDie();
  const std::vector<Request> requests = ChoiceAndScoringRequests(60);
  absl::StatusOr<std::vector<Result>> reference = engine.Generate(requests, nullptr, nullptr);
  ASSERT_TRUE(reference.ok()) << reference.status();

  size_t pulled = 0;
  std::map<size_t, Result> reported;
  std::map<size_t, int> finished_choices;
  absl::Status run = engine.GenerateStream(
      [&](Request* request) {
        if (pulled == requests.size()) return false;
        *request = requests[pulled++];
        return true;
      },
      [&](const TokenEvent& event) {
        if (event.finished) ++finished_choices[event.request_index];
      },
      [&](size_t index, const Result& result) {
        EXPECT_TRUE(reported.emplace(index, result).second) << "reported twice: " << index;
      });
  ASSERT_TRUE(run.ok()) << run;
  ASSERT_EQ(reported.size(), requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    const Result& got = reported[i];
    const Result& want = (*reference)[i];
    ASSERT_EQ(got.status, want.status) << i;
    if (!got.status.ok()) continue;
    EXPECT_EQ(got.token_ids, want.token_ids) << i;
    EXPECT_EQ(got.top_logprobs.size(), want.top_logprobs.size()) << i;
    EXPECT_EQ(got.prompt_logprobs.size(), want.prompt_logprobs.size()) << i;
    ASSERT_EQ(got.other_choices.size(), static_cast<size_t>(requests[i].n - 1)) << i;
    for (size_t c = 0; c < got.other_choices.size(); ++c) {
      EXPECT_EQ(got.other_choices[c].token_ids, want.other_choices[c].token_ids) << i << " choice " << c + 1;
      EXPECT_EQ(got.other_choices[c].prompt_ids, got.prompt_ids) << i;
    }
    if (requests[i].logprobs && requests[i].top_logprobs > 0) {
      EXPECT_EQ(got.top_logprobs.size(), got.token_ids.size()) << i;
    }
    if (requests[i].echo && requests[i].logprobs) {
      EXPECT_EQ(got.prompt_logprobs.size(), got.prompt_ids.size()) << i;
    }
    if (requests[i].max_tokens == 0) {
      EXPECT_TRUE(got.token_ids.empty()) << i;
    } else {
      // Every choice of a generating request finished, each with a last token event.
      EXPECT_EQ(finished_choices[i], requests[i].n) << i;
    }
  }
  EXPECT_FALSE(reported[17].status.ok());
}

TEST(EngineStream, CancelWithChoicesRunningReportsEachPulledRequestOnce) {
  Engine engine = OpenOrDie();
  // Three choices each: the first choice forks the other two when its prompt is in, and they wait for the
  // next step. A cancel at that moment (the first choice's first token) finds the request with one choice
  // running and two waiting: it is reported cancelled once, and its running choice runs on, dropped.
  std::vector<Request> requests = MixedRequests(300);
  for (Request& request : requests) {
    request.n = 3;
    request.max_tokens = 24;
    request.sampling.temperature = 0.8f;
  }
  requests[17].prompt_ids = {5, 7};
  size_t pulled = 0;
  bool cancelled = false;
  std::map<size_t, int> reported;
  std::map<size_t, absl::Status> statuses;
  absl::Status run = engine.GenerateStream(
      [&](Request* request) {
        if (pulled == requests.size()) return false;
        *request = requests[pulled++];
        return true;
      },
      [&](const TokenEvent& event) {
        if (!cancelled && event.request_index == 2 && event.choice == 0) {
          engine.Cancel(30);  // a long grace: running choices run on to their end, waiting ones stop
          cancelled = true;
        }
      },
      [&](size_t index, const Result& result) {
        ++reported[index];
        statuses[index] = result.status;
      });
  ASSERT_TRUE(run.ok()) << run;
  EXPECT_LT(pulled, requests.size());
  EXPECT_EQ(reported.size(), pulled) << "every request pulled is reported";
  for (const auto& [index, times] : reported) EXPECT_EQ(times, 1) << "request " << index;
  EXPECT_TRUE(absl::IsCancelled(statuses[2])) << statuses[2];
}
}  // namespace
}  // namespace ringmoe
