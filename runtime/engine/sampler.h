// Token choice from one row of logits: greedy, or seeded temperature / top-p sampling.
#pragma once

#include <cstdint>
#include <vector>

#include "ringmoe/engine.h"

namespace ringmoe {

// A small, portable generator (splitmix64): the same seed gives the same tokens on every platform.
class SeededRandom {
 public:
  explicit SeededRandom(uint64_t seed) : state_(seed) {}
  uint64_t Next();
  double Uniform();  // [0, 1)

 private:
  uint64_t state_;
};

struct SampledToken {
  int32_t token;
  float logprob;  // log-probability under the model's distribution (before temperature and top-p)
};

// Threading: stateless apart from the generator passed in; `scratch` is the caller's.
// logits is overwritten with log-probabilities.
SampledToken SampleToken(float* logits, int vocab, const SamplingParams& params, SeededRandom& random,
                         std::vector<int32_t>& scratch);

}  // namespace ringmoe
