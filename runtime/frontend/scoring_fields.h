// The log-probability fields of a batch line, in and out: completions `logprobs: N` (OpenAI's legacy
// top-N form), chat `logprobs: true` with `top_logprobs: N`, and completions `echo` (the prompt returned
// before the completion, its tokens scored first in the logprobs arrays; with `max_tokens: 0`, scoring a
// text without generating). runtime/BATCH_FORMAT.md documents each; keep it in step with this file.
// Stateless; thread-compatible.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"
#include "ringmoe/engine.h"

namespace ringmoe {

// Returns the line's error for `field` with `problem` (it names the line and custom_id).
using FieldErrorFn = std::function<absl::Status(std::string_view field, std::string_view problem)>;

// Reads `logprobs`, `top_logprobs` (chat) and `echo` (completions) from a request body into `request`
// (logprobs, top_logprobs, echo). Null fields are absent. Completions: `logprobs` is true, false or an
// integer 0..kMaxTopLogprobs (the alternatives per position); `echo` true or false. Chat: `logprobs` true or
// false, `top_logprobs` an integer 0..kMaxTopLogprobs that needs `logprobs: true`. Call it before max_tokens
// is read: echo allows max_tokens 0.
absl::Status ParseScoringFields(const nlohmann::json& body, bool chat, const FieldErrorFn& field_error,
                                Request* request);

// A logprob as the shortest decimal that reads back as the same float; NaN and infinities become null.
nlohmann::ordered_json LogprobJson(float value);

// A completion's `logprobs` object (null unless request.logprobs): tokens, token_logprobs, top_logprobs
// (per position the request's top_logprobs most likely tokens and the chosen one, keyed by their text) and
// text_offset (characters into the returned text), the echoed prompt's tokens first (the first one's
// logprob and alternatives null).
nlohmann::ordered_json CompletionLogprobs(const Request& request, const Result& result);

// A completion's `text`: the completion, after the prompt when the request echoes it.
std::string CompletionText(const Request& request, const Result& result);

// A chat choice's `logprobs` object (null unless request.logprobs): {"content": [{token, logprob, bytes,
// top_logprobs: [{token, logprob, bytes}, ...]}, ...]}.
nlohmann::ordered_json ChatLogprobs(const Request& request, const Result& result);

}  // namespace ringmoe
