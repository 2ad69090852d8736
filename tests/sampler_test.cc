// Token choice (runtime/engine/sampler.h) on small vocabularies whose probabilities are round numbers, so
// that every expected token and log-probability is worked out by hand: greedy is the argmax (lowest id on
// ties) with its log-softmax value; sampling inverts the generator's uniform draw over the tempered,
// top-p-cut cumulative mass, so a seed picks a token that the test computes independently; the same seed
// repeats exactly; a set whose mass reaches top_p exactly is enough; a tiny top_p is greedy; and the
// log-probability reported is the untempered one.
#include "runtime/engine/sampler.h"

#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace ringmoe {
namespace {

constexpr double kLogTolerance = 1e-6;

// Logits (up to a constant) of a distribution: log p_i + 3.
std::vector<float> LogitsOf(const std::vector<double>& probabilities) {
  std::vector<float> logits;
  for (double p : probabilities) logits.push_back(static_cast<float>(std::log(p) + 3.0));
  return logits;
}

SampledToken Sample(std::vector<float> logits, float temperature, float top_p, SeededRandom& random) {
  SamplingParams params;
  params.temperature = temperature;
  params.top_p = top_p;
  std::vector<int32_t> scratch;
  return SampleToken(logits.data(), static_cast<int>(logits.size()), params, random, scratch);
}

// The first uniform draw of a generator seeded with `seed`.
double FirstUniform(uint64_t seed) {
  SeededRandom random(seed);
  return random.Uniform();
}

// p = {0.1, 0.2, 0.5, 0.2}: in the sampler's order (most likely first, lower id first on ties) tokens
// 2, 1, 3, 0.
const std::vector<double> kProbabilities = {0.1, 0.2, 0.5, 0.2};

// Which token a uniform draw u picks from cumulative masses `bounds` (already scaled to [0, 1)) over `order`.
// -1 where u lies within 1e-6 of a bound, where the sampler's float rounding may go either way.
int32_t Pick(double u, const std::vector<double>& bounds, const std::vector<int32_t>& order) {
  for (size_t i = 0; i < bounds.size(); ++i) {
    if (std::abs(u - bounds[i]) < 1e-6) return -1;
    if (u < bounds[i]) return order[i];
  }
  return order.back();
}

TEST(SeededRandomTest, IsSplitMix64) {
  // Reference outputs of splitmix64 (Steele, Lea and Flood; Vigna's splitmix64.c) for seeds 0 and 42.
  SeededRandom zero(0);
  EXPECT_EQ(zero.Next(), 0xe220a8397b1dcdafULL);
  EXPECT_EQ(zero.Next(), 0x6e789e6aa1b965f4ULL);
  EXPECT_EQ(zero.Next(), 0x06c45d188009454fULL);
  SeededRandom answer(42);
  EXPECT_EQ(answer.Next(), 0xbdd732262feb6e95ULL);
  // Uniform is the top 53 bits over 2^53.
  SeededRandom again(0);
  EXPECT_EQ(again.Uniform(), static_cast<double>(0xe220a8397b1dcdafULL >> 11) / 9007199254740992.0);
}

TEST(SamplerTest, GreedyIsTheArgmaxWithItsLogSoftmax) {
  std::vector<float> logits = LogitsOf(kProbabilities);
  SeededRandom random(1);
  SamplingParams params;  // temperature 0: greedy
  std::vector<int32_t> scratch;
  const SampledToken token = SampleToken(logits.data(), 4, params, random, scratch);
  EXPECT_EQ(token.token, 2);
  EXPECT_NEAR(token.logprob, std::log(0.5), kLogTolerance);
  // The row is left holding the log-probabilities.
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(logits[i], std::log(kProbabilities[i]), kLogTolerance) << i;
}

TEST(SamplerTest, GreedyTiesGoToTheLowestId) {
  SeededRandom random(1);
  const SampledToken token = Sample(LogitsOf({0.2, 0.4, 0.4}), 0.0f, 1.0f, random);
  EXPECT_EQ(token.token, 1);
  EXPECT_NEAR(token.logprob, std::log(0.4), kLogTolerance);
  // A negative temperature is greedy too.
  const SampledToken negative = Sample(LogitsOf({0.1, 0.3, 0.6}), -1.0f, 1.0f, random);
  EXPECT_EQ(negative.token, 2);
  EXPECT_NEAR(negative.logprob, std::log(0.6), kLogTolerance);
}

TEST(SamplerTest, TemperatureOneSamplesTheModelsDistribution) {
  // Cumulative mass in the order 2, 1, 3, 0: 0.5, 0.7, 0.9, 1.0.
  const std::vector<double> bounds = {0.5, 0.7, 0.9};
  const std::vector<int32_t> order = {2, 1, 3, 0};
  int seen[4] = {0, 0, 0, 0};
  for (uint64_t seed = 0; seed < 400; ++seed) {
    const int32_t want = Pick(FirstUniform(seed), bounds, order);
    if (want < 0) continue;
    SeededRandom random(seed);
    const SampledToken token = Sample(LogitsOf(kProbabilities), 1.0f, 1.0f, random);
    ASSERT_EQ(token.token, want) << "seed " << seed;
    EXPECT_NEAR(token.logprob, std::log(kProbabilities[want]), kLogTolerance);
    ++seen[want];
  }
  for (int i = 0; i < 4; ++i) EXPECT_GT(seen[i], 0) << "token " << i << " never drawn";
}

TEST(SamplerTest, TemperatureSharpensButTheLogprobIsUntempered) {
  // T = 0.5 squares the probabilities: 0.25, 0.04, 0.04, 0.01 of 0.34, so the cumulative bounds in the order
  // 2, 1, 3, 0 are 25/34, 29/34 and 33/34. The reported logprob stays log p (not log of the tempered p).
  const std::vector<double> bounds = {25.0 / 34, 29.0 / 34, 33.0 / 34};
  const std::vector<int32_t> order = {2, 1, 3, 0};
  int seen[4] = {0, 0, 0, 0};
  for (uint64_t seed = 0; seed < 400; ++seed) {
    const int32_t want = Pick(FirstUniform(seed), bounds, order);
    if (want < 0) continue;
    SeededRandom random(seed);
    const SampledToken token = Sample(LogitsOf(kProbabilities), 0.5f, 1.0f, random);
    ASSERT_EQ(token.token, want) << "seed " << seed;
    EXPECT_NEAR(token.logprob, std::log(kProbabilities[want]), kLogTolerance);
    ++seen[want];
  }
  for (int i = 0; i < 4; ++i) EXPECT_GT(seen[i], 0) << "token " << i << " never drawn";
}

TEST(SamplerTest, TopPKeepsTheSmallestSetReachingIt) {
  // top_p 0.6: token 2 (0.5) falls short, tokens 2 and 1 (0.7) reach it; renormalised, 2 has 5/7.
  const std::vector<double> bounds = {5.0 / 7};
  const std::vector<int32_t> order = {2, 1};
  int seen[4] = {0, 0, 0, 0};
  for (uint64_t seed = 0; seed < 400; ++seed) {
    const int32_t want = Pick(FirstUniform(seed), bounds, order);
    if (want < 0) continue;
    SeededRandom random(seed);
    const SampledToken token = Sample(LogitsOf(kProbabilities), 1.0f, 0.6f, random);
    ASSERT_EQ(token.token, want) << "seed " << seed;
    EXPECT_NEAR(token.logprob, std::log(kProbabilities[want]), kLogTolerance);
    ++seen[want];
  }
  EXPECT_GT(seen[2], 0);
  EXPECT_GT(seen[1], 0);
  EXPECT_EQ(seen[3] + seen[0], 0);
}

TEST(SamplerTest, ASetReachingTopPExactlyIsEnough) {
  // Two tokens of probability 1/2 each (the third's mass underflows to exactly 0): token 0 alone reaches
  // top_p 0.5, so it is always the one drawn, never token 1.
  for (uint64_t seed = 0; seed < 100; ++seed) {
    SeededRandom random(seed);
    const SampledToken token = Sample({0.0f, 0.0f, -1000.0f}, 1.0f, 0.5f, random);
    ASSERT_EQ(token.token, 0) << "seed " << seed;
    EXPECT_NEAR(token.logprob, std::log(0.5), kLogTolerance);
  }
}

TEST(SamplerTest, TinyTopPIsGreedy) {
  for (uint64_t seed = 0; seed < 100; ++seed) {
    SeededRandom random(seed);
    const SampledToken token = Sample(LogitsOf(kProbabilities), 1.3f, 1e-6f, random);
    ASSERT_EQ(token.token, 2) << "seed " << seed;
    EXPECT_NEAR(token.logprob, std::log(0.5), kLogTolerance);
    // On a tie the kept token is the lowest id, as with greedy.
    const SampledToken tie = Sample(LogitsOf({0.2, 0.4, 0.4}), 0.7f, 1e-6f, random);
    ASSERT_EQ(tie.token, 1) << "seed " << seed;
  }
}

TEST(SamplerTest, TheSameSeedRepeatsExactlyAndAnotherSeedDiffers) {
  // A 64-token vocabulary with uneven logits; 200 draws each from one generator per seed.
  std::vector<float> logits(64);
  for (int i = 0; i < 64; ++i) logits[i] = static_cast<float>(std::sin(i * 1.7) * 3.0 + (i % 5) * 0.3);
  auto draw = [&](uint64_t seed) {
    SeededRandom random(seed);
    std::vector<int32_t> tokens;
    std::vector<float> logprobs;
    for (int i = 0; i < 200; ++i) {
      const SampledToken token = Sample(logits, 0.8f, 0.9f, random);
      tokens.push_back(token.token);
      logprobs.push_back(token.logprob);
    }
    return std::make_pair(tokens, logprobs);
  };
  const auto first = draw(1234);
  const auto second = draw(1234);
  EXPECT_EQ(first.first, second.first);
  EXPECT_EQ(first.second, second.second);
  EXPECT_NE(draw(1235).first, first.first);
}

}  // namespace
}  // namespace ringmoe
