#include "runtime/chat/chat_template.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"

namespace ringmoe::chat {
namespace {

namespace fs = std::filesystem;

bool ReadFile(const fs::path& path, std::string& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream buffer;
  buffer << in.rdbuf();
  out = buffer.str();
  return true;
}

// The files beside a tokenizer: (tokenizer_config.json, chat_template.jinja).
std::pair<fs::path, fs::path> CompanionFiles(const std::string& tokenizer_path) {
  const fs::path path(tokenizer_path);
  std::error_code error;
  if (fs::is_directory(path, error)) return {path / "tokenizer_config.json", path / "chat_template.jinja"};
  std::string file = path.filename().string();
  std::string prefix;
  for (const char* suffix : {"tokenizer.json.gz", "tokenizer.json"}) {
    const std::string s(suffix);
    if (file.size() >= s.size() && file.compare(file.size() - s.size(), s.size(), s) == 0) {
      prefix = file.substr(0, file.size() - s.size());
      break;
    }
  }
  const fs::path folder = path.parent_path();
  return {folder / (prefix + "tokenizer_config.json"), folder / (prefix + "chat_template.jinja")};
}

// The content of a special-token entry: a string, or an AddedToken object's "content"; null if neither.
const nlohmann::ordered_json* TokenContent(const nlohmann::ordered_json& entry) {
  if (entry.is_string()) return &entry;
  if (entry.is_object()) {
    const auto it = entry.find("content");
    if (it != entry.end() && it->is_string()) return &*it;
  }
  return nullptr;
}

nlohmann::ordered_json SpecialTokens(const nlohmann::ordered_json& config) {
  nlohmann::ordered_json tokens = nlohmann::ordered_json::object();
  if (!config.is_object()) return tokens;
  for (const char* name :
       {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"}) {
    const auto it = config.find(name);
    if (it == config.end()) continue;
    if (const nlohmann::ordered_json* content = TokenContent(*it)) tokens[name] = *content;
  }
  const auto extra = config.find("additional_special_tokens");
  if (extra != config.end() && extra->is_array() && !extra->empty()) {
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (const auto& entry : *extra) {
      if (const nlohmann::ordered_json* content = TokenContent(entry)) list.push_back(*content);
    }
    tokens["additional_special_tokens"] = std::move(list);
  }
  return tokens;
}

// transformers' continue_final_message: cut after the final message's content (stripped if the template
// trimmed it).
absl::StatusOr<std::string> CutAfterFinalMessage(const std::string& rendered,
                                                 const nlohmann::ordered_json& messages) {
  const nlohmann::ordered_json& last = messages.back();
  std::string final_message;
  const auto content = last.find("content");
  if (content != last.end() && content->is_string()) {
    final_message = content->get<std::string>();
  } else if (content != last.end() && content->is_array()) {
    bool found = false;
    for (auto it = content->rbegin(); it != content->rend() && !found; ++it) {
      if (it->is_object() && it->contains("text") && (*it)["text"].is_string()) {
        final_message = (*it)["text"].get<std::string>();
        found = true;
      }
    }
    if (!found)
      return absl::InvalidArgumentError("continue_final_message: the final message has no text part");
  } else {
    return absl::InvalidArgumentError("continue_final_message: the final message has no content");
  }
  const auto is_space = [](char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
  };
  size_t begin = 0, end = final_message.size();
  while (begin < end && is_space(final_message[begin])) ++begin;
  while (end > begin && is_space(final_message[end - 1])) --end;
  const std::string stripped = final_message.substr(begin, end - begin);
  const std::string lstripped = final_message.substr(begin);
  const size_t at = rendered.rfind(stripped);
  if (at == std::string::npos) {
    return absl::InvalidArgumentError(
        "continue_final_message is set but the final message does not appear in the rendered chat");
  }
  // As transformers 5.17: keep the message's trailing spacing when the template kept it.
  if (rendered.compare(at, lstripped.size(), lstripped) == 0)
    return rendered.substr(0, at + lstripped.size());
  return rendered.substr(0, at + stripped.size());
}

}  // namespace

absl::StatusOr<ChatTemplate> ChatTemplate::FromSource(const std::string& source,
                                                      const nlohmann::ordered_json& config,
                                                      std::string name) {
  absl::StatusOr<jinja::Template> parsed = jinja::Template::Parse(source, std::move(name));
  if (!parsed.ok()) return parsed.status();
  ChatTemplate result;
  result.template_ = *std::move(parsed);
  result.special_tokens_ = SpecialTokens(config);
  return result;
}

absl::StatusOr<ChatTemplate> ChatTemplate::Load(const std::string& tokenizer_path,
                                                const std::string& template_file) {
  const auto [config_path, jinja_path] = CompanionFiles(tokenizer_path);
  nlohmann::ordered_json config = nlohmann::ordered_json::object();
  std::string text;
  if (ReadFile(config_path, text)) {
    config = nlohmann::ordered_json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (config.is_discarded() || !config.is_object()) {
      return absl::InvalidArgumentError(config_path.string() + ": not a JSON object");
    }
  }
  if (!template_file.empty()) {
    if (!ReadFile(template_file, text))
      return absl::NotFoundError(template_file + ": cannot read the chat template");
    return FromSource(text, config, template_file);
  }
  if (ReadFile(jinja_path, text)) return FromSource(text, config, jinja_path.string());
  const auto entry = config.find("chat_template");
  if (entry != config.end() && entry->is_string()) {
    return FromSource(entry->get<std::string>(), config, config_path.string() + " chat_template");
  }
  if (entry != config.end() && entry->is_array()) {
    for (const auto& named : *entry) {
      if (named.is_object() && named.value("name", "") == "default" && named.contains("template") &&
          named["template"].is_string()) {
        return FromSource(named["template"].get<std::string>(), config,
                          config_path.string() + " chat_template \"default\"");
      }
    }
    return absl::InvalidArgumentError(config_path.string() +
                                      ": chat_template is a list without an entry named \"default\"");
  }
  return absl::NotFoundError("no chat template: neither " + jinja_path.string() +
                             " nor a \"chat_template\" in " + config_path.string() +
                             "; pass --chat-template FILE");
}

absl::StatusOr<std::string> ChatTemplate::Render(const nlohmann::ordered_json& request,
                                                 const jinja::RenderOptions& options) const {
  if (!request.is_object()) return absl::InvalidArgumentError("a chat request must be a JSON object");
  const auto messages = request.find("messages");
  if (messages == request.end() || !messages->is_array()) {
    return absl::InvalidArgumentError("a chat request needs \"messages\", an array of message objects");
  }
  for (size_t k = 0; k < messages->size(); ++k) {
    if (!(*messages)[k].is_object()) {
      return absl::InvalidArgumentError("messages[" + std::to_string(k) + "] is not an object");
    }
  }
  nlohmann::ordered_json context = special_tokens_;
  bool continue_final = false;
  for (const auto& [key, value] : request.items()) {
    if (key == "chat_template_kwargs") {
      if (!value.is_object()) return absl::InvalidArgumentError("chat_template_kwargs must be an object");
      for (const auto& [name, item] : value.items()) context[name] = item;
    } else if (key == "continue_final_message") {
      continue_final = value.is_boolean() && value.get<bool>();
    } else {
      context[key] = value;
    }
  }
  // transformers always passes these three (tools and documents as None when absent).
  if (!context.contains("add_generation_prompt")) context["add_generation_prompt"] = false;
  if (!context.contains("tools")) context["tools"] = nullptr;
  if (!context.contains("documents")) context["documents"] = nullptr;
  if (continue_final) {
    if (context["add_generation_prompt"].is_boolean() && context["add_generation_prompt"].get<bool>()) {
      return absl::InvalidArgumentError(
          "continue_final_message and add_generation_prompt cannot both be true (the first continues the "
          "final "
          "message, the second starts a new one)");
    }
    if (messages->empty()) return absl::InvalidArgumentError("continue_final_message needs a final message");
  }
  absl::StatusOr<std::string> rendered = template_.Render(context, options);
  if (!rendered.ok() || !continue_final) return rendered;
  return CutAfterFinalMessage(*rendered, *messages);
}

}  // namespace ringmoe::chat
