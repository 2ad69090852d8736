#include "runtime/engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "cpu/activation.h"

namespace ringmoe {

uint64_t SeededRandom::Next() {
  uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

double SeededRandom::Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }

SampledToken SampleToken(float* logits, int vocab, const SamplingParams& params, SeededRandom& random,
                         std::vector<int32_t>& scratch) {
  cpu::LogSoftmaxInPlace(logits, vocab);
  if (params.temperature <= 0.0f) {
    // Greedy; ties go to the lowest id, as torch.argmax does.
    int32_t best = static_cast<int32_t>(std::max_element(logits, logits + vocab) - logits);
    return {best, logits[best]};
  }
  // Tempered probabilities p_i ~ exp(logprob_i / T); keep the smallest top set whose mass reaches top_p.
  scratch.resize(vocab);
  std::iota(scratch.begin(), scratch.end(), 0);
  std::sort(scratch.begin(), scratch.end(), [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  const double inv_temperature = 1.0 / params.temperature;
  const double top = logits[scratch[0]];
  std::vector<double> mass;
  mass.reserve(64);
  double total = 0.0;
  for (int i = 0; i < vocab; ++i) {
    mass.push_back(std::exp((logits[scratch[i]] - top) * inv_temperature));
    total += mass.back();
  }
  double kept = 0.0;
  size_t keep = 0;
  while (keep < mass.size()) {
    kept += mass[keep++];
    if (kept >= params.top_p * total) break;
  }
  double target = random.Uniform() * kept;
  size_t choice = 0;
  for (double running = mass[0]; running <= target && choice + 1 < keep; running += mass[++choice]) {
  }
  const int32_t token = scratch[choice];
  return {token, logits[token]};
}

}  // namespace ringmoe
