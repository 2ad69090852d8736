#include "runtime/engine/request_state.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "runtime/engine/choice_fork.h"
#include "runtime/engine/logits_processors.h"

namespace ringmoe {

RequestState::RequestState(const Request& request, const ModelSpec& spec, const Tokenizer* tokenizer)
    : request_(request), tokenizer_(tokenizer) {
  stop_ids_ = request.stop_token_ids;
  if (!request.ignore_eos) stop_ids_.insert(stop_ids_.end(), spec.eos_token_ids.begin(), spec.eos_token_ids.end());
  if (tokenizer_ != nullptr) decoder_.emplace(*tokenizer_, /*skip_special_tokens=*/true);
}

absl::Status RequestState::Error(absl::StatusCode code, absl::string_view message) const {
  return absl::Status(code, absl::StrCat("request '", request_.id, "': ", message));
}

absl::StatusOr<std::unique_ptr<Sequence>> RequestState::Prepare(size_t request_index, const ModelSpec& spec,
                                                                 const KvCache& kv_cache,
                                                                 std::vector<int32_t>* prompt_ids) {
  auto sequence = std::make_unique<Sequence>();
  sequence->request_index = request_index;
  if (!request_.prompt_text.empty()) {
    if (tokenizer_ == nullptr) {
      return Error(absl::StatusCode::kFailedPrecondition,
                   "a text prompt needs a tokenizer, and the model folder has no tokenizer.json; send token ids");
    }
    absl::StatusOr<std::vector<int32_t>> ids = tokenizer_->Encode(request_.prompt_text, true);
    if (!ids.ok()) return Error(ids.status().code(), ids.status().message());
    sequence->tokens = std::move(*ids);
  } else {
    sequence->tokens = request_.prompt_ids;
  }
  if (sequence->tokens.empty()) return Error(absl::StatusCode::kInvalidArgument, "the prompt is empty");
  for (size_t i = 0; i < sequence->tokens.size(); ++i) {
    const int32_t id = sequence->tokens[i];
    if (id < 0 || id >= spec.vocab_size) {
      return Error(absl::StatusCode::kInvalidArgument, absl::StrCat("token id ", id, " at prompt position ", i,
                                                                    " is outside the vocabulary (", spec.vocab_size,
                                                                    " tokens)"));
    }
  }
  if (!request_.stop.empty() && tokenizer_ == nullptr) {
    return Error(absl::StatusCode::kFailedPrecondition, "stop strings need a tokenizer; use stop_token_ids");
  }
  if (request_.max_tokens < 0 || (request_.max_tokens == 0 && !request_.echo)) {
    return Error(absl::StatusCode::kInvalidArgument, "max_tokens must be at least 1 (0 only with echo)");
  }
  if (request_.max_tokens == 0 && request_.n > 1) {
    return Error(absl::StatusCode::kInvalidArgument, "n must be 1 when max_tokens is 0 (scoring the prompt)");
  }
  if (request_.top_logprobs < 0 || request_.top_logprobs > kMaxTopLogprobs) {
    return Error(absl::StatusCode::kInvalidArgument,
                 absl::StrCat("top_logprobs must be 0..", kMaxTopLogprobs, ", got ", request_.top_logprobs));
  }
  if (absl::Status sampling = CheckSamplingRequest(request_, spec.vocab_size); !sampling.ok())
    return Error(sampling.code(), sampling.message());
  const int context = spec.max_position_embeddings;
  const int prompt_length = static_cast<int>(sequence->tokens.size());
  if (request_.max_tokens == 0 && prompt_length > context) {
    return Error(absl::StatusCode::kOutOfRange, absl::StrCat("the prompt has ", prompt_length,
                                                             " tokens but the model's context is ", context));
  }
  if (request_.max_tokens > 0 && prompt_length >= context) {
    return Error(absl::StatusCode::kOutOfRange, absl::StrCat("the prompt has ", prompt_length,
                                                             " tokens but the model's context is ", context,
                                                             " (at least one must be left to generate)"));
  }
  sequence->prompt_length = prompt_length;
  // Generation that would run past the context ends there with finish_reason "length".
  sequence->max_new_tokens = std::min(request_.max_tokens, context - prompt_length);
  if (kv_cache.BlocksFor(sequence->lifetime_tokens()) > kv_cache.num_blocks()) {
    return Error(absl::StatusCode::kResourceExhausted,
                 absl::StrCat("needs ", sequence->lifetime_tokens(), " tokens of KV cache but the cache holds ",
                              static_cast<int64_t>(kv_cache.num_blocks()) * kv_cache.block_tokens(),
                              "; give the engine a larger KV-cache budget"));
  }
  sequence->seed = request_.sampling.seed;
  sequence->random = SeededRandom(ChoiceSeed(request_.sampling.seed, 0));
  sequence->choices_to_fork = request_.n - 1;
  sequence->prompt_logits = request_.echo && request_.logprobs;
  *prompt_ids = sequence->tokens;
  return sequence;
}

void RequestState::Accept(const SampledToken& sampled, Sequence& sequence, Result* result) {
  result->token_ids.push_back(sampled.token);
  if (request_.logprobs) {
    result->logprobs.push_back(sampled.logprob);
    result->token_strings.push_back(tokenizer_ != nullptr ? tokenizer_->TokenToString(sampled.token) : "");
  }
  // Before min_tokens, nothing stops generation but the length (vLLM): the stop ids were suppressed (up to
  // and including token min_tokens), and stop strings are looked for once min_tokens tokens are out.
  const bool may_stop = sequence.generated() >= request_.sampling.min_tokens;
  if (decoder_) {
    const size_t searched = text_.size();
    text_ += decoder_->Append(sampled.token);
    for (const std::string& stop : request_.stop) {
      if (!may_stop) break;
      // Only matches that end in the new text; start early enough to catch one spanning tokens.
      const size_t from = searched >= stop.size() ? searched - stop.size() + 1 : 0;
      const size_t at = text_.find(stop, from);
      if (at != std::string::npos) {
        text_.resize(at);
        stopped_by_string_ = true;
      }
    }
  }
  if (stopped_by_string_ ||
      (may_stop && std::find(stop_ids_.begin(), stop_ids_.end(), sampled.token) != stop_ids_.end())) {
    finish_reason_ = FinishReason::kStop;
    sequence.finished = true;
  } else if (sequence.generated() >= sequence.max_new_tokens) {
    finish_reason_ = FinishReason::kLength;
    sequence.finished = true;
  }
}

void RequestState::Finish(const Sequence&, Result* result) {
  if (decoder_ && !stopped_by_string_) text_ += decoder_->Flush();
  result->text = std::move(text_);
  result->finish_reason = finish_reason_;
  if (request_.echo) {
    result->prompt_text = !request_.prompt_text.empty() || tokenizer_ == nullptr
                              ? request_.prompt_text
                              : tokenizer_->Decode(result->prompt_ids, /*skip_special_tokens=*/true);
  }
}

}  // namespace ringmoe
