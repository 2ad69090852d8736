// Engine behaviour beyond the golden numbers: mixed batches with continuous batching, sampling, stops,
// callbacks, and per-request errors that leave the rest of the batch alone.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "ringmoe/engine.h"
#include "ringmoe/tokenizer.h"

namespace ringmoe {
namespace {

const std::string kTinyModel = std::string(RINGMOE_SOURCE_DIR) + "/tests/data/models/tiny-qwen3-moe";
const std::string kMixtral = std::string(RINGMOE_SOURCE_DIR) + "/tests/data/golden/mixtral";

struct Golden {
  std::vector<std::vector<int32_t>> prompts, tokens;
};

Golden LoadGolden(const std::string& dir) {
  std::ifstream in(dir + "/golden.json");
  nlohmann::json json = nlohmann::json::parse(in);
  Golden golden;
  for (const auto& prompt : json["prompts"]) {
    golden.prompts.push_back(prompt["prompt_ids"].get<std::vector<int32_t>>());
    golden.tokens.push_back(prompt["tokens"].get<std::vector<int32_t>>());
  }
  return golden;
}

Engine OpenOrDie(const std::string& dir, int max_batch = 16, int max_step_tokens = 64) {
  EngineOptions options;
  options.cpu_compute = ComputeType::kF32;
  options.plan.batch = max_batch;
  options.plan.prefill_chunk = max_step_tokens - max_batch;
  options.threads = 2;
  absl::StatusOr<Engine> engine = Engine::Open(dir, options);
  EXPECT_TRUE(engine.ok()) << engine.status();
  return std::move(*engine);
}

// At least 64 requests of different prompt lengths, max_tokens and sampling settings through 16 slots: every
// id comes back once, greedy requests reproduce the golden tokens, seeded sampling is reproducible.
TEST(Engine, MixedBatchOfSeventyRequests) {
  Golden golden = LoadGolden(kTinyModel);
  Engine engine = OpenOrDie(kTinyModel);
  std::mt19937 rng(7);
  std::vector<Request> requests;
  for (int i = 0; i < 70; ++i) {
    Request request;
    request.id = "req-" + std::to_string(i);
    const size_t g = i % golden.prompts.size();
    request.prompt_ids = golden.prompts[g];
    if (i % 3 == 0) {  // greedy, full golden length
      request.max_tokens = static_cast<int>(golden.tokens[g].size());
    } else if (i % 3 == 1) {  // greedy, shorter
      request.max_tokens = 1 + i % 5;
    } else {  // sampled
      request.max_tokens = 3 + i % 17;
      request.sampling.temperature = 0.5f + 0.1f * (i % 7);
      request.sampling.top_p = i % 2 ? 0.9f : 1.0f;
      request.sampling.seed = 1000 + i;
      request.ignore_eos = true;
      // random-length prompts too
      request.prompt_ids.clear();
      const int length = 1 + static_cast<int>(rng() % 90);
      for (int t = 0; t < length; ++t) request.prompt_ids.push_back(3 + static_cast<int32_t>(rng() % 900));
    }
    request.logprobs = i % 2 == 0;
    requests.push_back(request);
  }
  std::map<size_t, int> callback_tokens;
  std::set<size_t> finished_callbacks;
  absl::StatusOr<std::vector<Result>> results = engine.Generate(requests, [&](const TokenEvent& event) {
    ++callback_tokens[event.request_index];
    EXPECT_EQ(finished_callbacks.count(event.request_index), 0u) << "token after finished";
    if (event.finished) finished_callbacks.insert(event.request_index);
  });
  ASSERT_TRUE(results.ok()) << results.status();
  ASSERT_EQ(results->size(), requests.size());
  std::set<std::string> ids;
  for (size_t i = 0; i < requests.size(); ++i) {
    const Result& result = (*results)[i];
    ASSERT_TRUE(result.status.ok()) << result.status;
    EXPECT_TRUE(ids.insert(result.id).second) << result.id;
    EXPECT_EQ(result.id, requests[i].id);
    EXPECT_EQ(callback_tokens[i], static_cast<int>(result.token_ids.size()));
    EXPECT_EQ(finished_callbacks.count(i), 1u);
    EXPECT_EQ(result.logprobs.size(), requests[i].logprobs ? result.token_ids.size() : 0u);
    if (requests[i].sampling.temperature == 0.0f) {
      const auto& want = golden.tokens[i % golden.prompts.size()];
      const size_t n = std::min<size_t>(requests[i].max_tokens, want.size());
      ASSERT_GE(result.token_ids.size(), n);
      EXPECT_TRUE(std::equal(want.begin(), want.begin() + n, result.token_ids.begin())) << "request " << i;
    } else {
      EXPECT_EQ(result.token_ids.size(), static_cast<size_t>(requests[i].max_tokens));
      EXPECT_EQ(result.finish_reason, FinishReason::kLength);
    }
    EXPECT_FALSE(result.text.empty() && !result.token_ids.empty() && result.token_ids.back() != 997)
        << "the tiny model has a tokenizer: text expected";
  }
  EXPECT_EQ(ids.size(), 70u);

  // The same seeds give the same samples; other seeds give other samples.
  std::vector<Request> sampled;
  for (const Request& request : requests) {
    if (request.sampling.temperature > 0) sampled.push_back(request);
  }
  auto again = engine.Generate(sampled);
  ASSERT_TRUE(again.ok());
  int differing = 0;
  for (Request& request : sampled) request.sampling.seed += 1;
  auto reseeded = engine.Generate(sampled);
  ASSERT_TRUE(reseeded.ok());
  for (size_t i = 0, j = 0; i < requests.size(); ++i) {
    if (requests[i].sampling.temperature == 0) continue;
    EXPECT_EQ((*again)[j].token_ids, (*results)[i].token_ids);
    differing += (*reseeded)[j].token_ids != (*results)[i].token_ids;
    ++j;
  }
  EXPECT_GT(differing, static_cast<int>(sampled.size()) / 2);
}

TEST(Engine, BadRequestsFailAloneAndTheRestComplete) {
  Engine engine = OpenOrDie(kMixtral);  // no tokenizer in this folder
  Golden golden = LoadGolden(kMixtral);
  std::vector<Request> requests(7);
  for (size_t i = 0; i < requests.size(); ++i) {
    requests[i].id = "r" + std::to_string(i);
    requests[i].prompt_ids = golden.prompts[4];
    requests[i].max_tokens = 4;
  }
  requests[1].prompt_ids.assign(300, 5);  // context is 256
  requests[2].prompt_ids.clear();
  requests[3].prompt_ids = {5, 384, 6};  // vocab is 384
  requests[4].prompt_ids.clear();
  requests[4].prompt_text = "text needs a tokenizer";
  requests[5].stop = {"x"};
  requests[6].prompt_ids.assign(250, 5);  // fits, but only 6 positions are left to generate
  requests[6].max_tokens = 100;
  auto results = engine.Generate(requests);
  ASSERT_TRUE(results.ok()) << results.status();
  EXPECT_TRUE((*results)[0].status.ok());
  EXPECT_EQ((*results)[0].token_ids,
            std::vector<int32_t>(golden.tokens[4].begin(), golden.tokens[4].begin() + 4));
  EXPECT_EQ((*results)[1].status.code(), absl::StatusCode::kOutOfRange);
  EXPECT_NE((*results)[1].status.message().find("r1"), std::string::npos);
  EXPECT_NE((*results)[1].status.message().find("300"), std::string::npos);
  EXPECT_EQ((*results)[2].status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE((*results)[3].status.message().find("384"), std::string::npos);
  EXPECT_EQ((*results)[4].status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*results)[5].status.code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE((*results)[6].status.ok());
  EXPECT_LE((*results)[6].token_ids.size(), 6u);
  EXPECT_EQ((*results)[6].finish_reason, FinishReason::kLength) << "stops at the context";
}

// The result callback reports every request exactly once, the moment its Result is final: the ones that
// fail before they are scheduled first (they are final at once), then the rest as they retire, each Result
// equal to what Generate returns, and reported before the last token of any request that finishes later.
TEST(Engine, ResultCallbackReportsEachRequestOnceAsItFinishes) {
  Engine engine = OpenOrDie(kTinyModel, /*max_batch=*/4, /*max_step_tokens=*/32);
  Golden golden = LoadGolden(kTinyModel);
  std::vector<Request> requests(12);
  for (size_t i = 0; i < requests.size(); ++i) {
    requests[i].id = "r" + std::to_string(i);
    requests[i].prompt_ids = golden.prompts[i % golden.prompts.size()];
    requests[i].max_tokens = 1 + static_cast<int>(i % 6);
    requests[i].ignore_eos = true;
  }
  requests[5].prompt_ids.clear();  // fails in preparation: no prompt
  requests[9].prompt_ids = {5, 1 << 30};  // fails in preparation: a token id past the vocabulary
  std::vector<size_t> order;
  std::map<size_t, Result> reported;
  std::set<size_t> finished_by_token;
  size_t tokens_seen = 0;
  std::map<size_t, size_t> tokens_when_reported;
  absl::StatusOr<std::vector<Result>> results = engine.Generate(
      requests,
      [&](const TokenEvent& event) {
        ++tokens_seen;
        if (event.finished) finished_by_token.insert(event.request_index);
      },
      [&](size_t index, const Result& result) {
        order.push_back(index);
        EXPECT_TRUE(reported.emplace(index, result).second) << "reported twice: " << index;
        tokens_when_reported[index] = tokens_seen;
        if (result.status.ok()) {
          EXPECT_EQ(finished_by_token.count(index), 1u) << "reported before it finished";
        }
      });
  ASSERT_TRUE(results.ok()) << results.status();
  ASSERT_EQ(reported.size(), requests.size());
  ASSERT_EQ(order.size(), requests.size());
  EXPECT_EQ(order[0], 5u);
  EXPECT_EQ(order[1], 9u);
  EXPECT_FALSE(reported[5].status.ok());
  EXPECT_FALSE(reported[9].status.ok());
  for (size_t i = 0; i < requests.size(); ++i) {
    const Result& mine = reported[i];
    const Result& returned = (*results)[i];
    EXPECT_EQ(mine.id, returned.id);
    EXPECT_EQ(mine.status, returned.status);
    EXPECT_EQ(mine.token_ids, returned.token_ids);
    EXPECT_EQ(mine.text, returned.text);
    EXPECT_EQ(mine.prompt_ids, returned.prompt_ids);
  }
  // Short requests are reported while longer ones still generate: before the run's last token.
  EXPECT_LT(tokens_when_reported[0], tokens_seen) << "max_tokens 1 finishes long before max_tokens 6";
}

TEST(Engine, StopTokenIdsAndStopStringsAcrossTokens) {
  Engine engine = OpenOrDie(kTinyModel);
  Request base;
  base.id = "base";
  base.prompt_text = "The license";
  base.max_tokens = 24;
  base.ignore_eos = true;
  auto first = engine.Generate(std::vector<Request>{base});
  ASSERT_TRUE(first.ok() && (*first)[0].status.ok());
  const Result& full = (*first)[0];
  ASSERT_EQ(full.token_ids.size(), 24u);
  ASSERT_GT(full.text.size(), 8u);

  Request by_id = base;
  by_id.stop_token_ids = {full.token_ids[5]};
  auto stopped = engine.Generate(std::vector<Request>{by_id});
  ASSERT_TRUE(stopped.ok());
  const auto first_hit = std::find(full.token_ids.begin(), full.token_ids.end(), full.token_ids[5]);
  EXPECT_EQ((*stopped)[0].token_ids, std::vector<int32_t>(full.token_ids.begin(), first_hit + 1));
  EXPECT_EQ((*stopped)[0].finish_reason, FinishReason::kStop);

  // A stop string made of the end of one token's text and the start of the next.
  const Tokenizer* tokenizer = engine.tokenizer();
  ASSERT_NE(tokenizer, nullptr);
  std::string prefix;
  size_t boundary = 0;
  for (size_t t = 0; t < full.token_ids.size(); ++t) {
    prefix = tokenizer->Decode(std::span(full.token_ids.data(), t + 1), true);
    if (t >= 3 && prefix.size() >= 2 && prefix.size() + 2 <= full.text.size()) {
      boundary = prefix.size();
      break;
    }
  }
  ASSERT_GT(boundary, 0u);
  const std::string stop = full.text.substr(boundary - 1, 3);
  const size_t expected_cut = full.text.find(stop);
  Request by_string = base;
  by_string.stop = {"never appears \x01", stop};
  auto cut = engine.Generate(std::vector<Request>{by_string});
  ASSERT_TRUE(cut.ok() && (*cut)[0].status.ok());
  EXPECT_EQ((*cut)[0].text, full.text.substr(0, expected_cut));
  EXPECT_EQ((*cut)[0].finish_reason, FinishReason::kStop);
  EXPECT_LT((*cut)[0].token_ids.size(), full.token_ids.size());
}

TEST(Engine, LogprobTokensAreTokenTexts) {
  Engine engine = OpenOrDie(kTinyModel);
  Request request;
  request.id = "lp";
  request.prompt_text = "Hello";
  request.max_tokens = 5;
  request.logprobs = true;
  request.ignore_eos = true;
  auto results = engine.Generate(std::vector<Request>{request});
  ASSERT_TRUE(results.ok());
  const Result& result = (*results)[0];
  ASSERT_EQ(result.token_strings.size(), 5u);
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(result.token_strings[i], engine.tokenizer()->TokenToString(result.token_ids[i]));
    EXPECT_LE(result.logprobs[i], 0.0f);
  }
}

}  // namespace
}  // namespace ringmoe
