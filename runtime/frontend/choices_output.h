// The output line of a request with n > 1 choices (Request::n): one response whose `choices` holds every
// choice with `index` 0..n-1, each written exactly as a single choice would be (text or chat message,
// logprobs, finish_reason), and whose `usage` counts the prompt once and the completion tokens of all choices
// (as OpenAI does). Stateless; thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "ringmoe/engine.h"
#include "runtime/frontend/batch_io.h"

namespace ringmoe {

// `result` is OK and has other_choices; `created_unix_seconds` is shared by the whole line.
std::string FormatChoicesLine(const BatchLine& line, const Result& result, std::string_view model_name,
                              std::string_view batch_request_id, int64_t created_unix_seconds);

}  // namespace ringmoe
