// runtime/chat/: a model's chat template, found and rendered the way transformers' apply_chat_template does
// (library ringmoe_chat, on top of ringmoe_jinja).
//
// This folder owns:
//   chat_template.h  ChatTemplate: where the template comes from, the variables it sees, rendering.
//
// Where the template comes from, first found wins:
//   1. an explicit file (--chat-template FILE);
//   2. chat_template.jinja beside the tokenizer (what transformers writes since 4.43, and prefers on load);
//   3. "chat_template" in tokenizer_config.json beside the tokenizer: a string, or a list of {name, template}
//      of which the one named "default" is used.
// "Beside the tokenizer": for a folder, inside it; for a file named <prefix>tokenizer.json(.gz), the files
// <prefix>tokenizer_config.json and <prefix>chat_template.jinja in the same folder.
//
// What the template sees: the request's own fields (messages, tools, add_generation_prompt, documents and any
// other keyword, e.g. enable_thinking, plus the members of a "chat_template_kwargs" object), and the
// tokenizer's special tokens from tokenizer_config.json (bos_token, eos_token, unk_token, pad_token,
// sep_token, cls_token, mask_token, additional_special_tokens; strings or AddedToken objects, whose
// "content" is used), as transformers' special_tokens_map passes them. Request fields override special
// tokens. "continue_final_message": true renders without a generation prompt and cuts the text right after
// the final (assistant) message's content, so that generation continues it (transformers' assistant prefill).
//
// Threading: immutable after Load; Render is safe from many threads at once.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "runtime/jinja/jinja.h"

namespace ringmoe::chat {

class ChatTemplate {
 public:
  // tokenizer_path: a tokenizer.json(.gz) file or a model folder (as Tokenizer::Load takes). template_file:
  // empty, or a template file that takes precedence. Errors name the files looked at.
  static absl::StatusOr<ChatTemplate> Load(const std::string& tokenizer_path,
                                           const std::string& template_file = "");

  // A template given as text, with the tokenizer_config.json object whose special tokens it sees (may be
  // an empty object).
  static absl::StatusOr<ChatTemplate> FromSource(const std::string& source,
                                                 const nlohmann::ordered_json& config, std::string name);

  // Renders one request object ({"messages": [...], ...}). Errors name the problem (and the template line for
  // errors the template raises).
  absl::StatusOr<std::string> Render(const nlohmann::ordered_json& request,
                                     const jinja::RenderOptions& options = {}) const;

  const std::string& source_name() const { return template_.name(); }

 private:
  jinja::Template template_;
  nlohmann::ordered_json special_tokens_ = nlohmann::ordered_json::object();
};

}  // namespace ringmoe::chat
