// Defaults from the model's generation_config.json for the fields a request leaves out, as vLLM does with
// its default generation_config="auto": temperature, top_p, top_k, min_p and repetition_penalty, and
// max_new_tokens as the default max_tokens. A field the request gives always wins; a field the file lacks
// keeps the OpenAI default (runtime/BATCH_FORMAT.md). do_sample is ignored, as vLLM ignores it. The file's
// eos_token_id list is the engine's business (io/model_spec.h reads it). Stateless; thread-compatible.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/frontend/batch_io.h"

namespace ringmoe {

struct GenerationDefaults {
  std::optional<float> temperature, top_p, min_p, repetition_penalty;
  std::optional<int> top_k, max_tokens;

  bool empty() const {
    return !temperature && !top_p && !min_p && !repetition_penalty && !top_k && !max_tokens;
  }
  // "temperature 0.6, top_p 0.95, top_k 20" (for the job's log); "" when empty.
  std::string Describe() const;
};

// Reads the defaults from a generation_config.json text; `source` names the file in errors. A value of the
// wrong type or out of range (temperature outside [0, 2], ...) is an error naming the file and the field.
absl::StatusOr<GenerationDefaults> ParseGenerationDefaults(std::string_view json_text,
                                                           std::string_view source);
// From <model_dir>/generation_config.json; no such file: no defaults.
absl::StatusOr<GenerationDefaults> LoadGenerationDefaults(const std::string& model_dir);

// Fills each good line's omitted fields (BatchLine::omitted) from `defaults`.
void ApplyGenerationDefaults(const GenerationDefaults& defaults, std::vector<BatchLine>* lines);
// The same for one line (a streamed job applies them as it reads each line).
void ApplyGenerationDefaults(const GenerationDefaults& defaults, BatchLine* line);

}  // namespace ringmoe
