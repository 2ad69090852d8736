// Logits processors: the per-request changes to one row of logits before a token is chosen (SamplingParams'
// min_tokens, logit_bias, repetition / presence / frequency penalties, min_p and top_k), each as vLLM and
// OpenAI define it, and SampleProcessed, which applies them and then samples as sampler.h does.
//
// Order (vLLM's): min_tokens and logit_bias, then the penalties, then (for sampling only) temperature, min_p
// and top_k, then top_p in SampleToken. Greedy decoding sees the processed logits too, so logit_bias and the
// penalties steer it; min_p and top_k never change the argmax and are skipped there.
// Stateless: every function works on the row and the token history it is given. Thread-compatible.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "ringmoe/engine.h"
#include "runtime/engine/sampler.h"

namespace ringmoe {

// What a request's processors may look at for the row being processed.
struct TokenHistory {
  std::span<const int32_t> tokens;  // prompt, then the tokens generated so far
  int prompt_length = 0;            // tokens[0 .. prompt_length) are the prompt
  std::span<const int32_t>
      stop_ids;  // EOS (unless ignore_eos) and stop_token_ids: what min_tokens holds back
  int generated() const { return static_cast<int>(tokens.size()) - prompt_length; }
};

// The most choices one request may ask for (Request::n).
inline constexpr int kMaxChoices = 128;

// Checks the request's processor settings and n (the C++ API's callers bypass the batch parser): an
// InvalidArgument naming the field and its allowed range, e.g. a logit_bias id outside the vocabulary.
absl::Status CheckSamplingRequest(const Request& request, int vocab);

// Whether any processor changes the row, so that the host must see the logits before a token is chosen
// (also for greedy decoding: then the GPU may not pick the argmax itself).
bool ChangesGreedyChoice(const SamplingParams& params, int generated);
// Whether SampleProcessed differs from SampleToken at all for this row.
bool HasActiveProcessors(const SamplingParams& params, int generated);

// Each processor on its own (for tests and for SampleProcessed). `logits` holds `vocab` values.
void SuppressStopTokens(float* logits, int vocab, std::span<const int32_t> stop_ids);
void AddLogitBias(float* logits, int vocab, std::span<const std::pair<int32_t, float>> bias);
// HF / vLLM: every distinct token of prompt and output: a positive logit divided by `penalty`, a negative one
// multiplied by it.
void ApplyRepetitionPenalty(float* logits, int vocab, float penalty, std::span<const int32_t> tokens);
// OpenAI: logit[t] -= frequency * count(t) + presence * (count(t) > 0), counting the generated tokens only.
void ApplyPresenceFrequencyPenalties(float* logits, int vocab, float presence, float frequency,
                                     std::span<const int32_t> generated, std::vector<int32_t>& scratch);
// Sets to -inf every logit below the k-th largest (ties with it are kept). k <= 0 or k >= vocab: no change.
void KeepTopK(float* logits, int vocab, int k, std::vector<float>& scratch);
// Sets to -inf every token whose tempered probability is below min_p times the largest one's:
// (logit - max) / temperature < log(min_p).
void KeepMinP(float* logits, int vocab, float min_p, float temperature);

// The processors, then SampleToken. As after SampleToken, `logits` is left holding the model's own
// log-probabilities, before any processor (vLLM's default "raw" logprobs), and the returned logprob is the
// chosen token's among them: top alternatives read from the row agree with it.
struct ProcessorScratch {
  std::vector<float> raw;
  std::vector<float> values;
  std::vector<int32_t> ids;
};
SampledToken SampleProcessed(float* logits, int vocab, const SamplingParams& params,
                             const TokenHistory& history, SeededRandom& random, ProcessorScratch& scratch);

}  // namespace ringmoe
