#include "runtime/frontend/request_fields.h"

#include <algorithm>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace ringmoe {
namespace {

bool In(std::string_view name, std::initializer_list<std::string_view> names) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

// Fields both endpoints define, plus ringmoe's and vLLM's common sampling extensions.
bool IsCommonField(std::string_view name) {
  return In(name, {"model",
                   "max_tokens",
                   "max_completion_tokens",
                   "temperature",
                   "top_p",
                   "n",
                   "stream",
                   "stream_options",
                   "stop",
                   "presence_penalty",
                   "frequency_penalty",
                   "logit_bias",
                   "logprobs",
                   "user",
                   "seed",
                   "stop_token_ids",
                   "ignore_eos",
                   "top_k",
                   "min_p",
                   "repetition_penalty",
                   "min_tokens"});
}

}  // namespace

bool IsEnvelopeField(std::string_view name) { return In(name, {"custom_id", "method", "url", "body"}); }

bool IsKnownBodyField(std::string_view name, bool chat) {
  if (IsCommonField(name)) return true;
  if (!chat) return In(name, {"prompt", "suffix", "echo", "best_of"});
  return In(name, {"messages",
                   "tools",
                   "tool_choice",
                   "parallel_tool_calls",
                   "documents",
                   "chat_template_kwargs",
                   "add_generation_prompt",
                   "continue_final_message",
                   "top_logprobs",
                   "response_format",
                   "reasoning_effort",
                   "metadata",
                   "store",
                   "service_tier",
                   "modalities",
                   "prediction",
                   "audio",
                   "web_search_options",
                   "functions",
                   "function_call"});
}

void ApplyUnknownFieldPolicy(BatchLine* line, bool lenient, std::set<std::string>* warned,
                             std::FILE* warnings) {
  if (!line->request.ok() || line->unknown_fields.empty()) return;
  if (!lenient) {
    line->request = WithErrorParam(
        absl::InvalidArgumentError(absl::StrCat(
            "line ", line->line_number, " (custom_id '", line->custom_id, "'): field '",
            line->unknown_fields.front(), "' is not a known request field",
            line->unknown_fields.size() > 1 ? " (nor are '" : "",
            line->unknown_fields.size() > 1 ? absl::StrCat(absl::StrJoin(line->unknown_fields.begin() + 1,
                                                                         line->unknown_fields.end(), "', '"),
                                                           "')")
                                            : "",
            "; check its spelling, or pass --lenient to ignore unknown fields")),
        line->unknown_fields.front());
    return;
  }
  for (const std::string& field : line->unknown_fields) {
    if (warned->insert(field).second && warnings != nullptr) {
      std::fprintf(warnings, "ringmoe run: warning: ignoring unknown request field '%s' (first on line %d)\n",
                   field.c_str(), line->line_number);
    }
  }
}

void ApplyUnknownFieldPolicy(std::vector<BatchLine>* lines, bool lenient, std::FILE* warnings) {
  std::set<std::string> warned;
  for (BatchLine& line : *lines) ApplyUnknownFieldPolicy(&line, lenient, &warned, warnings);
}

}  // namespace ringmoe
