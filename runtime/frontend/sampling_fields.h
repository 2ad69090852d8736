// The sampling fields of a batch line beyond temperature / top_p / seed (which batch_io.cc reads): `n`,
// `top_k`, `min_p`, `presence_penalty`, `frequency_penalty`, `repetition_penalty`, `min_tokens` and
// `logit_bias`, with OpenAI's and vLLM's types and ranges (runtime/BATCH_FORMAT.md). It also records which
// generation fields a line left out, so that generation_defaults.h can fill them from the model's
// generation_config.json as vLLM does. Stateless; thread-compatible.
#pragma once

#include <functional>
#include <string_view>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"
#include "ringmoe/engine.h"

namespace ringmoe {

// The fields whose default may come from generation_config.json: true where the line gave no value (absent
// or null). max_tokens counts max_completion_tokens as given too.
struct OmittedGenerationFields {
  bool temperature = true;
  bool top_p = true;
  bool top_k = true;
  bool min_p = true;
  bool repetition_penalty = true;
  bool max_tokens = true;
};

// Builds the error for a bad field: the caller's message prefix (line, custom_id) + "field 'x' <problem>".
using FieldErrorFunction = std::function<absl::Status(std::string_view field, std::string_view problem)>;

// Reads the fields above from a request body into `request` (after max_tokens is known: min_tokens may not
// exceed it) and fills `omitted`. The first bad field is returned through `field_error`.
absl::Status ParseSamplingFields(const nlohmann::json& body, Request& request,
                                 OmittedGenerationFields& omitted, const FieldErrorFunction& field_error);

}  // namespace ringmoe
