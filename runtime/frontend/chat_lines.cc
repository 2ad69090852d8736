#include "runtime/frontend/chat_lines.h"

#include <charconv>
#include <cmath>
#include <cstdlib>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "runtime/frontend/scoring_fields.h"

namespace ringmoe {
namespace {

using nlohmann::ordered_json;

std::string Where(const BatchLine& line) {
  return absl::StrCat("line ", line.line_number, " (custom_id '", line.custom_id, "')");
}

}  // namespace

bool HasChatLines(const std::vector<BatchLine>& lines) {
  for (const BatchLine& line : lines) {
    if (line.request.ok() && !line.chat_request.empty()) return true;
  }
  return false;
}

void RenderChatPrompts(std::vector<BatchLine>* lines, const chat::ChatTemplate* chat_template,
                       const Tokenizer* tokenizer, const std::string& missing_template_reason) {
  for (BatchLine& line : *lines) RenderChatPrompt(&line, chat_template, tokenizer, missing_template_reason);
}

void RenderChatPrompt(BatchLine* line_pointer, const chat::ChatTemplate* chat_template,
                      const Tokenizer* tokenizer, const std::string& missing_template_reason) {
  BatchLine& line = *line_pointer;
  if (!line.request.ok() || line.chat_request.empty()) return;
  if (chat_template == nullptr) {
    line.request = absl::FailedPreconditionError(absl::StrCat(
        Where(line), ": a chat request needs the model's chat template: ", missing_template_reason));
    return;
  }
  if (tokenizer == nullptr) {
    line.request = absl::FailedPreconditionError(absl::StrCat(
        Where(line), ": a chat request needs a tokenizer (none beside the model; pass --tokenizer)"));
    return;
  }
  const ordered_json request = ordered_json::parse(line.chat_request, nullptr, /*allow_exceptions=*/false);
  absl::StatusOr<std::string> text = chat_template->Render(request);
  if (!text.ok()) {
    line.request = absl::InvalidArgumentError(
        absl::StrCat(Where(line), ": the chat template rejected the messages: ", text.status().message()));
    return;
  }
  absl::StatusOr<std::vector<int32_t>> ids = tokenizer->Encode(*text, /*add_special_tokens=*/false);
  if (!ids.ok()) {
    line.request = absl::InvalidArgumentError(absl::StrCat(Where(line), ": ", ids.status().message()));
    return;
  }
  if (ids->empty()) {
    line.request =
        absl::InvalidArgumentError(absl::StrCat(Where(line), ": the chat template rendered nothing"));
    return;
  }
  line.request->prompt_text.clear();
  line.request->prompt_ids = *std::move(ids);
}

ReasoningSplit SplitReasoning(std::string_view text) {
  ReasoningSplit split;
  constexpr std::string_view kOpen = "<think>";
  constexpr std::string_view kClose = "</think>";
  std::string_view rest = text;
  if (const size_t open = rest.find(kOpen); open != std::string_view::npos)
    rest = rest.substr(open + kOpen.size());
  const size_t close = rest.find(kClose);
  if (close == std::string_view::npos) {
    split.content = std::string(text);
    return split;
  }
  split.found = true;
  split.reasoning = std::string(rest.substr(0, close));
  split.content = std::string(rest.substr(close + kClose.size()));
  return split;
}

ordered_json ChatCompletionBody(const BatchLine& line, const Result& result, std::string_view model_name,
                                std::string_view id_suffix, int64_t created_unix_seconds) {
  const ReasoningSplit split = SplitReasoning(result.text);
  ordered_json message;
  message["role"] = "assistant";
  message["content"] = split.content;
  if (split.found) message["reasoning_content"] = split.reasoning;

  ordered_json logprobs = line.request.ok() ? ChatLogprobs(*line.request, result) : ordered_json(nullptr);

  ordered_json choice;
  choice["index"] = 0;
  choice["message"] = std::move(message);
  choice["logprobs"] = std::move(logprobs);
  choice["finish_reason"] = result.finish_reason == FinishReason::kStop ? "stop" : "length";

  const int64_t prompt_tokens = static_cast<int64_t>(result.prompt_ids.size());
  const int64_t completion_tokens = static_cast<int64_t>(result.token_ids.size());
  ordered_json body;
  body["id"] = absl::StrCat("chatcmpl-", absl::string_view(id_suffix.data(), id_suffix.size()));
  body["object"] = "chat.completion";
  body["created"] = created_unix_seconds;
  body["model"] = model_name;
  body["choices"] = ordered_json::array({std::move(choice)});
  body["usage"] = {{"prompt_tokens", prompt_tokens},
                   {"completion_tokens", completion_tokens},
                   {"total_tokens", prompt_tokens + completion_tokens}};
  return body;
}

}  // namespace ringmoe
