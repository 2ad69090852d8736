#include "runtime/engine/logprobs.h"

#include <algorithm>
#include <limits>
#include <numeric>

#include "cpu/activation.h"

namespace ringmoe {

std::vector<TokenLogprob> TopLogprobs(const float* logprobs, int vocab, int count, const Tokenizer* tokenizer,
                                      std::vector<int32_t>& scratch) {
  count = std::clamp(count, 0, vocab);
  std::vector<TokenLogprob> top;
  if (count == 0) return top;
  scratch.resize(vocab);
  std::iota(scratch.begin(), scratch.end(), 0);
  auto more_likely = [logprobs](int32_t a, int32_t b) {
    return logprobs[a] > logprobs[b] || (logprobs[a] == logprobs[b] && a < b);
  };
  std::partial_sort(scratch.begin(), scratch.begin() + count, scratch.end(), more_likely);
  top.reserve(count);
  for (int i = 0; i < count; ++i) {
    const int32_t id = scratch[i];
    top.push_back({id, logprobs[id], tokenizer != nullptr ? tokenizer->TokenToString(id) : std::string()});
  }
  return top;
}

void ScorePromptPosition(float* logits, int vocab, int position, const std::vector<int32_t>& prompt,
                         int top_logprobs, const Tokenizer* tokenizer, Result* result,
                         std::vector<int32_t>& scratch) {
  const size_t next = static_cast<size_t>(position) + 1;
  cpu::LogSoftmaxInPlace(logits, vocab);
  result->prompt_logprobs[next] = logits[prompt[next]];
  if (top_logprobs > 0) {
    result->prompt_top_logprobs[next] = TopLogprobs(logits, vocab, top_logprobs, tokenizer, scratch);
  }
}

void SizePromptLogprobs(const std::vector<int32_t>& prompt, const Tokenizer* tokenizer, Result* result) {
  result->prompt_logprobs.assign(prompt.size(), 0.0f);
  if (!prompt.empty()) result->prompt_logprobs[0] = std::numeric_limits<float>::quiet_NaN();
  result->prompt_top_logprobs.assign(prompt.size(), {});
  result->prompt_token_strings.clear();
  result->prompt_token_strings.reserve(prompt.size());
  for (int32_t id : prompt) {
    result->prompt_token_strings.push_back(tokenizer != nullptr ? tokenizer->TokenToString(id)
                                                                : std::string());
  }
}

}  // namespace ringmoe
