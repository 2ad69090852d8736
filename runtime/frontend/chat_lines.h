// /v1/chat/completions lines of a batch file: rendering their messages through the model's chat template
// into prompt token ids, and writing their results as chat.completion objects (runtime/BATCH_FORMAT.md).
//
// Stateless; thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "nlohmann/json.hpp"
#include "ringmoe/engine.h"
#include "ringmoe/tokenizer.h"
#include "runtime/chat/chat_template.h"
#include "runtime/frontend/batch_io.h"

namespace ringmoe {

// Whether any line that parsed is a chat line (then the job needs a chat template).
bool HasChatLines(const std::vector<BatchLine>& lines);

// For each good chat line: renders line.chat_request with the template and encodes the text without added
// special tokens (the template writes BOS and the like, as apply_chat_template(tokenize=True) does) into
// request->prompt_ids. A line the template rejects, or any chat line when `chat_template` or `tokenizer` is
// null, becomes an error line naming the line, custom_id and the reason.
void RenderChatPrompts(std::vector<BatchLine>* lines, const chat::ChatTemplate* chat_template,
                       const Tokenizer* tokenizer, const std::string& missing_template_reason);
// The same for one line.
void RenderChatPrompt(BatchLine* line, const chat::ChatTemplate* chat_template, const Tokenizer* tokenizer,
                      const std::string& missing_template_reason);

// Splits generated text into (reasoning, content) at the first "</think>", dropping a leading "<think>" (the
// reasoning format of Qwen3 and DeepSeek-R1, whose templates open the think block or let the model open it).
// Without "</think>" there is no reasoning: {"" , text} and `found` false.
struct ReasoningSplit {
  bool found = false;
  std::string reasoning;
  std::string content;
};
ReasoningSplit SplitReasoning(std::string_view text);

// The response body of a chat line's result: {"id": "chatcmpl-<suffix>", "object": "chat.completion", ...}.
nlohmann::ordered_json ChatCompletionBody(const BatchLine& line, const Result& result,
                                          std::string_view model_name, std::string_view id_suffix,
                                          int64_t created_unix_seconds);

}  // namespace ringmoe
