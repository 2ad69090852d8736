// Log-probability reports beyond the chosen token's: the most likely alternatives at a position
// (Request::top_logprobs) and the prompt's own tokens' log-probabilities (Request::echo with logprobs, the
// scoring of a given text), both read from the same full-vocabulary log-softmax the sampler uses, before
// temperature and top-p.
// Threading: stateless functions; the tokenizer is only read.
#pragma once

#include <cstdint>
#include <vector>

#include "ringmoe/engine.h"
#include "ringmoe/tokenizer.h"

namespace ringmoe {

// The `count` largest entries of a row of log-probabilities, largest first, ties to the lower id (as the
// greedy pick breaks them); each with its text piece when `tokenizer` is not null. `scratch` is the caller's.
std::vector<TokenLogprob> TopLogprobs(const float* logprobs, int vocab, int count, const Tokenizer* tokenizer,
                                      std::vector<int32_t>& scratch);

// Scores one prompt position from the logits row computed at position `position` (which predicts the token at
// position + 1): turns the row into log-probabilities in place and writes result->prompt_logprobs[position +
// 1] and, with top_logprobs > 0, result->prompt_top_logprobs[position + 1]. The Result's prompt vectors must
// already hold one entry per prompt token (SizePromptLogprobs). Rows of different positions may be scored
// from different threads at once.
void ScorePromptPosition(float* logits, int vocab, int position, const std::vector<int32_t>& prompt,
                         int top_logprobs, const Tokenizer* tokenizer, Result* result,
                         std::vector<int32_t>& scratch);

// Sizes result's prompt vectors for ScorePromptPosition: one entry per prompt token, the first NaN (no
// context), with each token's text piece.
void SizePromptLogprobs(const std::vector<int32_t>& prompt, const Tokenizer* tokenizer, Result* result);

}  // namespace ringmoe
