// The logits processors (runtime/engine/logits_processors.h) on hand-made logits, the choice seeds, and the
// KV-block sharing and scheduler fork behind Request::n.
#include "runtime/engine/logits_processors.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "io/model_spec.h"
#include "runtime/engine/choice_fork.h"
#include "runtime/engine/kv_cache.h"
#include "runtime/engine/scheduler.h"

namespace ringmoe {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

TEST(LogitsProcessors, SuppressStopTokensMasksOnlyThem) {
  std::vector<float> logits = {1, 2, 3, 4};
  const std::vector<int32_t> stops = {1, 3, 99};  // 99 is outside: ignored
  SuppressStopTokens(logits.data(), 4, stops);
  EXPECT_EQ(logits, (std::vector<float>{1, -kInf, 3, -kInf}));
}

TEST(LogitsProcessors, LogitBiasIsAdded) {
  std::vector<float> logits = {1, 2, 3};
  const std::vector<std::pair<int32_t, float>> bias = {{0, 100.0f}, {2, -2.5f}};
  AddLogitBias(logits.data(), 3, bias);
  EXPECT_EQ(logits, (std::vector<float>{101, 2, 0.5f}));
}

TEST(LogitsProcessors, RepetitionPenaltyDividesPositiveMultipliesNegativeOncePerToken) {
  std::vector<float> logits = {2.0f, -1.0f, 3.0f, 0.0f};
  const std::vector<int32_t> seen = {0, 1, 0, 0, 3};  // token 0 three times: penalised once
  ApplyRepetitionPenalty(logits.data(), 4, 2.0f, seen);
  EXPECT_EQ(logits, (std::vector<float>{1.0f, -2.0f, 3.0f, 0.0f}));
  // A penalty below 1 favours repeats instead.
  std::vector<float> favoured = {2.0f, -1.0f};
  ApplyRepetitionPenalty(favoured.data(), 2, 0.5f, std::vector<int32_t>{0, 1});
  EXPECT_EQ(favoured, (std::vector<float>{4.0f, -0.5f}));
}

TEST(LogitsProcessors, PresenceOnceFrequencyPerOccurrence) {
  std::vector<float> logits = {0, 0, 0, 0};
  const std::vector<int32_t> generated = {2, 0, 2, 2};
  std::vector<int32_t> scratch;
  ApplyPresenceFrequencyPenalties(logits.data(), 4, 0.5f, 0.25f, generated, scratch);
  EXPECT_FLOAT_EQ(logits[0], -(0.5f + 0.25f));
  EXPECT_FLOAT_EQ(logits[1], 0.0f);
  EXPECT_FLOAT_EQ(logits[2], -(0.5f + 3 * 0.25f));
  EXPECT_FLOAT_EQ(logits[3], 0.0f);
  // Negative values reward repeats.
  std::vector<float> rewarded = {0, 0};
  ApplyPresenceFrequencyPenalties(rewarded.data(), 2, -1.0f, 0.0f, std::vector<int32_t>{1}, scratch);
  EXPECT_EQ(rewarded, (std::vector<float>{0.0f, 1.0f}));
}

TEST(LogitsProcessors, TopKKeepsTheKLargestAndTies) {
  std::vector<float> logits = {0.5f, 3.0f, 1.0f, 2.0f, 2.0f};
  std::vector<float> scratch;
  KeepTopK(logits.data(), 5, 2, scratch);
  EXPECT_EQ(logits, (std::vector<float>{-kInf, 3.0f, -kInf, 2.0f, 2.0f}));  // 2.0 ties with the 2nd largest
  std::vector<float> off = {1, 2, 3};
  KeepTopK(off.data(), 3, 0, scratch);
  KeepTopK(off.data(), 3, -1, scratch);
  KeepTopK(off.data(), 3, 3, scratch);
  EXPECT_EQ(off, (std::vector<float>{1, 2, 3}));
}

TEST(LogitsProcessors, MinPComparesTemperedProbabilitiesWithTheLargest) {
  // At temperature 1, p_i / p_max = exp(l_i - l_max): 1, e^-1 = 0.37, e^-3 = 0.05.
  std::vector<float> logits = {5.0f, 4.0f, 2.0f};
  KeepMinP(logits.data(), 3, 0.1f, 1.0f);
  EXPECT_EQ(logits, (std::vector<float>{5.0f, 4.0f, -kInf}));
  // At temperature 2 the ratios are e^-0.5 = 0.61 and e^-1.5 = 0.22: min_p 0.5 keeps the first two.
  std::vector<float> hot = {5.0f, 4.0f, 2.0f};
  KeepMinP(hot.data(), 3, 0.5f, 2.0f);
  EXPECT_EQ(hot, (std::vector<float>{5.0f, 4.0f, -kInf}));
  std::vector<float> hotter = {5.0f, 4.0f, 2.0f};
  KeepMinP(hotter.data(), 3, 0.2f, 2.0f);
  EXPECT_EQ(hotter, (std::vector<float>{5.0f, 4.0f, 2.0f}));
}

// A row whose argmax is token 2, with enough mass elsewhere that temperature-1 sampling often differs.
std::vector<float> FlatRow() { return {1.0f, 0.8f, 1.2f, 0.9f, 1.1f, 0.7f}; }

TEST(LogitsProcessors, TopKOneAndMinPOneAtTemperatureOneAreGreedy) {
  SamplingParams sampled;
  sampled.temperature = 1.0f;
  int differs = 0;
  ProcessorScratch scratch;
  const std::vector<int32_t> tokens = {0};
  const TokenHistory history{tokens, 1, {}};
  for (uint64_t seed = 0; seed < 200; ++seed) {
    std::vector<float> row = FlatRow();
    SeededRandom random(seed);
    if (SampleProcessed(row.data(), 6, sampled, history, random, scratch).token != 2) ++differs;
  }
  EXPECT_GT(differs, 50);  // plain sampling is far from greedy here
  for (const bool use_top_k : {true, false}) {
    SamplingParams filtered = sampled;
    if (use_top_k) {
      filtered.top_k = 1;
    } else {
      filtered.min_p = 1.0f;
    }
    for (uint64_t seed = 0; seed < 200; ++seed) {
      std::vector<float> row = FlatRow();
      SeededRandom random(seed);
      const SampledToken token = SampleProcessed(row.data(), 6, filtered, history, random, scratch);
      ASSERT_EQ(token.token, 2) << (use_top_k ? "top_k" : "min_p") << " seed " << seed;
      // The reported logprob is the model's own (before the filter), not log(1), and the row is left holding
      // the model's log-probabilities.
      const std::vector<float> raw = FlatRow();
      double total = 0;
      for (float value : raw) total += std::exp(value);
      EXPECT_NEAR(token.logprob, 1.2 - std::log(total), 1e-5);
      for (int i = 0; i < 6; ++i) EXPECT_NEAR(row[i], raw[i] - std::log(total), 1e-5);
    }
  }
}

TEST(LogitsProcessors, GreedyFollowsBiasPenaltiesAndMinTokens) {
  SamplingParams greedy;  // temperature 0
  ProcessorScratch scratch;
  SeededRandom random(1);
  const std::vector<int32_t> prompt_and_two = {5, 2, 2};  // prompt {5}, generated {2, 2}
  const std::vector<int32_t> stops = {2};
  const TokenHistory history{prompt_and_two, 1, stops};

  std::vector<float> row = FlatRow();
  EXPECT_EQ(SampleProcessed(row.data(), 6, greedy, history, random, scratch).token, 2);
  EXPECT_FALSE(ChangesGreedyChoice(greedy, history.generated()));

  SamplingParams biased = greedy;
  biased.logit_bias = {{5, 100.0f}};
  row = FlatRow();
  EXPECT_TRUE(ChangesGreedyChoice(biased, 2));
  EXPECT_EQ(SampleProcessed(row.data(), 6, biased, history, random, scratch).token, 5);

  SamplingParams frequency = greedy;
  frequency.frequency_penalty = 0.1f;  // token 2 seen twice: 1.2 - 0.2 = 1.0 < 1.1
  row = FlatRow();
  EXPECT_EQ(SampleProcessed(row.data(), 6, frequency, history, random, scratch).token, 4);

  SamplingParams repetition = greedy;
  repetition.repetition_penalty = 1.2f;  // token 2: 1.2 / 1.2 = 1.0 < 1.1
  row = FlatRow();
  EXPECT_EQ(SampleProcessed(row.data(), 6, repetition, history, random, scratch).token, 4);

  SamplingParams held = greedy;
  held.min_tokens = 3;  // two generated so far: the stop id 2 is still impossible
  row = FlatRow();
  EXPECT_TRUE(ChangesGreedyChoice(held, 2));
  EXPECT_EQ(SampleProcessed(row.data(), 6, held, history, random, scratch).token, 4);
  EXPECT_FALSE(ChangesGreedyChoice(held, 3));
  const std::vector<int32_t> three_tokens = {5, 2, 2, 2};
  const TokenHistory three_out{three_tokens, 1, stops};
  row = FlatRow();
  EXPECT_EQ(SampleProcessed(row.data(), 6, held, three_out, random, scratch).token, 2);
}

TEST(LogitsProcessors, CheckSamplingRequestNamesTheField) {
  Request request;
  request.max_tokens = 8;
  EXPECT_TRUE(CheckSamplingRequest(request, 100).ok());
  auto message = [&](auto change) {
    Request bad = request;
    change(bad);
    return std::string(CheckSamplingRequest(bad, 100).message());
  };
  EXPECT_NE(message([](Request& r) { r.n = 0; }).find("n must be an integer in 1..128"), std::string::npos);
  EXPECT_NE(message([](Request& r) { r.n = 129; }).find("n must"), std::string::npos);
  EXPECT_NE(message([](Request& r) { r.sampling.top_k = -2; }).find("top_k"), std::string::npos);
  EXPECT_NE(message([](Request& r) { r.sampling.min_p = 1.5f; }).find("min_p"), std::string::npos);
  EXPECT_NE(message([](Request& r) { r.sampling.presence_penalty = 2.5f; }).find("presence_penalty"),
            std::string::npos);
  EXPECT_NE(message([](Request& r) { r.sampling.frequency_penalty = -3; }).find("frequency_penalty"),
            std::string::npos);
  EXPECT_NE(message([](Request& r) { r.sampling.repetition_penalty = 0; }).find("repetition_penalty"),
            std::string::npos);
  EXPECT_NE(message([](Request& r) { r.sampling.repetition_penalty = NAN; }).find("repetition_penalty"),
            std::string::npos);
  EXPECT_NE(message([](Request& r) { r.sampling.min_tokens = 9; }).find("min_tokens (9) must not exceed"),
            std::string::npos);
  EXPECT_NE(message([](Request& r) {
              r.sampling.logit_bias = {{100, 1.0f}};
            }).find("logit_bias: token id 100 is outside the vocabulary (100 tokens)"),
            std::string::npos);
  EXPECT_NE(message([](Request& r) {
              r.sampling.logit_bias = {{3, 101.0f}};
            }).find("[-100, 100]"),
            std::string::npos);
}

TEST(ChoiceFork, SeedsAreDistinctAndChoiceZeroKeepsTheRequestSeed) {
  EXPECT_EQ(ChoiceSeed(42, 0), 42u);
  std::set<uint64_t> seeds;
  for (int choice = 0; choice < 128; ++choice) seeds.insert(ChoiceSeed(42, choice));
  EXPECT_EQ(seeds.size(), 128u);
  EXPECT_NE(ChoiceSeed(42, 1), ChoiceSeed(43, 1));
}

ModelSpec TinySpec() {
  ModelSpec spec;
  spec.num_layers = 1;
  spec.num_kv_heads = 1;
  spec.head_dim = 4;
  spec.num_heads = 1;
  spec.hidden_size = 4;
  return spec;
}

TEST(ChoiceFork, SharedBlocksReturnWhenTheLastHolderFrees) {
  KvCache cache(TinySpec(), io::DType::kF32, 4, 8);
  std::vector<int32_t> parent;
  ASSERT_TRUE(cache.Reserve(12, &parent));  // 3 blocks
  std::vector<int32_t> child = cache.Share(parent, 2);
  EXPECT_EQ(child, (std::vector<int32_t>{parent[0], parent[1]}));
  EXPECT_EQ(cache.free_blocks(), 5);
  ASSERT_TRUE(cache.Reserve(12, &child));  // one block of its own
  EXPECT_EQ(cache.free_blocks(), 4);
  cache.Free(&parent);
  EXPECT_EQ(cache.free_blocks(), 5);  // only the parent's unshared block came back
  cache.Free(&child);
  EXPECT_EQ(cache.free_blocks(), 8);
}

TEST(ChoiceFork, SchedulerForksTheOtherChoicesOnceThePromptIsIn) {
  KvCache cache(TinySpec(), io::DType::kF32, 4, 16);
  Scheduler scheduler(cache, 8, 64);
  auto parent = std::make_unique<Sequence>();
  parent->tokens = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};  // 10 tokens: blocks 0 and 1 full, block 2 holds 2
  parent->prompt_length = 10;
  parent->max_new_tokens = 4;
  parent->choices_to_fork = 2;
  parent->seed = 7;
  Sequence* first = parent.get();
  scheduler.Enqueue(std::move(parent));
  std::vector<StepChunk> chunks;
  std::vector<Sequence*> owners;
  scheduler.NextStep(&chunks, &owners);
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0].count, 10);
  EXPECT_EQ(scheduler.waiting(), 0);
  scheduler.Commit(chunks, owners);
  EXPECT_EQ(scheduler.waiting(), 2);
  EXPECT_EQ(first->choices_to_fork, 0);
  first->tokens.push_back(11);  // its first generated token
  scheduler.NextStep(&chunks, &owners);
  // The parent's decode, then each child's prefill of the prompt's last block only (2 tokens).
  ASSERT_EQ(chunks.size(), 3u);
  EXPECT_EQ(owners[0], first);
  std::set<int> choices;
  for (int i = 1; i < 3; ++i) {
    EXPECT_EQ(chunks[i].start, 8);
    EXPECT_EQ(chunks[i].count, 2);
    EXPECT_TRUE(chunks[i].want_logits);
    EXPECT_EQ(owners[i]->block_table[0], first->block_table[0]);  // shared, not copied
    EXPECT_EQ(owners[i]->block_table[1], first->block_table[1]);
    EXPECT_NE(owners[i]->block_table[2], first->block_table[2]);
    choices.insert(owners[i]->choice);
  }
  EXPECT_EQ(choices, (std::set<int>{1, 2}));
  // Prompt blocks are held once per sequence: 2 shared + 3 sequences' own 2 blocks (14 tokens = 4 blocks).
  EXPECT_EQ(cache.free_blocks(), 16 - 2 - 3 * 2);
  for (Sequence* owner : owners) owner->finished = true;
  scheduler.Retire();
  EXPECT_EQ(cache.free_blocks(), 16);
}

TEST(ChoiceFork, CancellingFreesTheBlocksThatWaitingChoicesShare) {
  KvCache cache(TinySpec(), io::DType::kF32, 4, 16);
  Scheduler scheduler(cache, 8, 64);
  auto parent = std::make_unique<Sequence>();
  parent->tokens = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  parent->prompt_length = 9;
  parent->max_new_tokens = 3;
  parent->choices_to_fork = 3;
  scheduler.Enqueue(std::move(parent));
  std::vector<StepChunk> chunks;
  std::vector<Sequence*> owners;
  scheduler.NextStep(&chunks, &owners);
  scheduler.Commit(chunks, owners);
  ASSERT_EQ(scheduler.waiting(), 3);
  EXPECT_EQ(cache.free_blocks(), 16 - 3);  // the parent's 3 blocks; 2 of them held by the waiting choices too
  EXPECT_EQ(scheduler.TakeWaiting().size(), 3u);
  EXPECT_EQ(scheduler.TakeRunning().size(), 1u);
  EXPECT_EQ(cache.free_blocks(), 16);
}

}  // namespace
}  // namespace ringmoe
