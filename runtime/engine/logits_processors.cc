#include "runtime/engine/logits_processors.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>

#include "absl/strings/str_cat.h"
#include "cpu/activation.h"

namespace ringmoe {
namespace {

constexpr float kNegativeInfinity = -std::numeric_limits<float>::infinity();

bool InVocab(int32_t token, int vocab) { return token >= 0 && token < vocab; }

}  // namespace

absl::Status CheckSamplingRequest(const Request& request, int vocab) {
  const SamplingParams& params = request.sampling;
  auto range_error = [](const char* field, const char* range, auto value) {
    return absl::InvalidArgumentError(absl::StrCat(field, " must be ", range, ", got ", value));
  };
  if (request.n < 1 || request.n > kMaxChoices)
    return range_error("n", absl::StrCat("an integer in 1..", kMaxChoices).c_str(), request.n);
  if (!(params.temperature >= 0.0f && params.temperature <= 2.0f))  // also NaN
    return range_error("temperature", "a number in [0, 2]", params.temperature);
  if (!(params.top_p > 0.0f && params.top_p <= 1.0f))
    return range_error("top_p", "a number in (0, 1]", params.top_p);
  if (params.top_k < -1) return range_error("top_k", "-1, 0 (both: off) or a positive integer", params.top_k);
  if (!(params.min_p >= 0.0f && params.min_p <= 1.0f))
    return range_error("min_p", "a number in [0, 1]", params.min_p);
  if (!(params.presence_penalty >= -2.0f && params.presence_penalty <= 2.0f))
    return range_error("presence_penalty", "a number in [-2, 2]", params.presence_penalty);
  if (!(params.frequency_penalty >= -2.0f && params.frequency_penalty <= 2.0f))
    return range_error("frequency_penalty", "a number in [-2, 2]", params.frequency_penalty);
  if (!(params.repetition_penalty > 0.0f && std::isfinite(params.repetition_penalty)))
    return range_error("repetition_penalty", "a number > 0", params.repetition_penalty);
  if (params.min_tokens < 0) return range_error("min_tokens", "an integer >= 0", params.min_tokens);
  if (params.min_tokens > request.max_tokens) {
    return absl::InvalidArgumentError(absl::StrCat(
        "min_tokens (", params.min_tokens, ") must not exceed max_tokens (", request.max_tokens, ")"));
  }
  for (const auto& [token, bias] : params.logit_bias) {
    if (token < 0 || token >= vocab) {
      return absl::InvalidArgumentError(
          absl::StrCat("logit_bias: token id ", token, " is outside the vocabulary (", vocab, " tokens)"));
    }
    if (!(bias >= -100.0f && bias <= 100.0f)) {
      return absl::InvalidArgumentError(absl::StrCat("logit_bias: the bias of token id ", token,
                                                     " must be a number in [-100, 100], got ", bias));
    }
  }
  return absl::OkStatus();
}

bool ChangesGreedyChoice(const SamplingParams& params, int generated) {
  return generated < params.min_tokens || !params.logit_bias.empty() || params.presence_penalty != 0.0f ||
         params.frequency_penalty != 0.0f || params.repetition_penalty != 1.0f;
}

bool HasActiveProcessors(const SamplingParams& params, int generated) {
  if (ChangesGreedyChoice(params, generated)) return true;
  return params.temperature > 0.0f && (params.top_k > 0 || params.min_p > 0.0f);
}

void SuppressStopTokens(float* logits, int vocab, std::span<const int32_t> stop_ids) {
  for (int32_t token : stop_ids) {
    if (InVocab(token, vocab)) logits[token] = kNegativeInfinity;
  }
}

void AddLogitBias(float* logits, int vocab, std::span<const std::pair<int32_t, float>> bias) {
  for (const auto& [token, value] : bias) {
    if (InVocab(token, vocab)) logits[token] += value;
  }
}

void ApplyRepetitionPenalty(float* logits, int vocab, float penalty, std::span<const int32_t> tokens) {
  if (penalty == 1.0f) return;
  // Each distinct token once: a token seen twice is not penalised twice (HF and vLLM alike). Marking a
  // visited logit by its sign would be wrong for zero, so the seen set is kept apart.
  std::vector<bool> seen(static_cast<size_t>(vocab), false);
  for (int32_t token : tokens) {
    if (!InVocab(token, vocab) || seen[token]) continue;
    seen[token] = true;
    float& logit = logits[token];
    logit = logit > 0.0f ? logit / penalty : logit * penalty;
  }
}

void ApplyPresenceFrequencyPenalties(float* logits, int vocab, float presence, float frequency,
                                     std::span<const int32_t> generated, std::vector<int32_t>& scratch) {
  if ((presence == 0.0f && frequency == 0.0f) || generated.empty()) return;
  scratch.assign(generated.begin(), generated.end());
  std::sort(scratch.begin(), scratch.end());
  for (size_t i = 0; i < scratch.size();) {
    size_t end = i;
    while (end < scratch.size() && scratch[end] == scratch[i]) ++end;
    const int32_t token = scratch[i];
    if (InVocab(token, vocab)) logits[token] -= frequency * static_cast<float>(end - i) + presence;
    i = end;
  }
}

void KeepTopK(float* logits, int vocab, int k, std::vector<float>& scratch) {
  if (k <= 0 || k >= vocab) return;
  scratch.assign(logits, logits + vocab);
  std::nth_element(scratch.begin(), scratch.begin() + (k - 1), scratch.end(), std::greater<float>());
  const float threshold = scratch[k - 1];
  for (int i = 0; i < vocab; ++i) {
    if (logits[i] < threshold) logits[i] = kNegativeInfinity;
  }
}

void KeepMinP(float* logits, int vocab, float min_p, float temperature) {
  if (min_p <= 0.0f || temperature <= 0.0f) return;
  const float top = *std::max_element(logits, logits + vocab);
  // p_i / p_max = exp((l_i - l_max) / T) < min_p, compared in log space.
  const double floor = std::log(static_cast<double>(min_p)) * temperature;
  for (int i = 0; i < vocab; ++i) {
    if (static_cast<double>(logits[i]) - top < floor) logits[i] = kNegativeInfinity;
  }
}

SampledToken SampleProcessed(float* logits, int vocab, const SamplingParams& params,
                             const TokenHistory& history, SeededRandom& random, ProcessorScratch& scratch) {
  if (!HasActiveProcessors(params, history.generated()))
    return SampleToken(logits, vocab, params, random, scratch.ids);
  scratch.raw.assign(logits, logits + vocab);
  if (history.generated() < params.min_tokens) SuppressStopTokens(logits, vocab, history.stop_ids);
  AddLogitBias(logits, vocab, params.logit_bias);
  ApplyRepetitionPenalty(logits, vocab, params.repetition_penalty, history.tokens);
  ApplyPresenceFrequencyPenalties(logits, vocab, params.presence_penalty, params.frequency_penalty,
                                  history.tokens.subspan(static_cast<size_t>(history.prompt_length)),
                                  scratch.ids);
  if (params.temperature > 0.0f) {
    KeepMinP(logits, vocab, params.min_p, params.temperature);
    KeepTopK(logits, vocab, params.top_k, scratch.values);
  }
  SampledToken sampled = SampleToken(logits, vocab, params, random, scratch.ids);
  cpu::LogSoftmaxInPlace(scratch.raw.data(), vocab);
  std::copy(scratch.raw.begin(), scratch.raw.end(), logits);
  sampled.logprob = logits[sampled.token];
  return sampled;
}

}  // namespace ringmoe
