// ringmoe tokenize: encode JSON-string lines to id arrays, or (--decode) id arrays to JSON strings, or
// (--chat) render chat requests through the model's chat template.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "ringmoe/tokenizer.h"
#include "runtime/chat/chat_template.h"
#include "runtime/cli/commands.h"

namespace ringmoe::cli {
namespace {

// One input line to one output line; returns an error message for a bad line.
std::string EncodeLine(const Tokenizer& tokenizer, const std::string& line, bool add_special_tokens,
                       std::string& out) {
  nlohmann::json value = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded() || !value.is_string()) return "expected a JSON string";
  absl::StatusOr<std::vector<int32_t>> ids =
      tokenizer.Encode(value.get_ref<const std::string&>(), add_special_tokens);
  if (!ids.ok()) return std::string(ids.status().message());
  out = nlohmann::json(*ids).dump();
  return "";
}

std::string DecodeLine(const Tokenizer& tokenizer, const std::string& line, bool skip_special_tokens,
                       std::string& out) {
  nlohmann::json value = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded() || !value.is_array()) return "expected a JSON array of token ids";
  std::vector<int32_t> ids;
  ids.reserve(value.size());
  for (const auto& id : value) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= tokenizer.vocab_size()) {
      return "every element must be a token id in [0, " + std::to_string(tokenizer.vocab_size()) + ")";
    }
    ids.push_back(id.get<int32_t>());
  }
  out = nlohmann::json(tokenizer.Decode(ids, skip_special_tokens))
            .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return "";
}

// A chat request object to its rendered text (a JSON string) or, with `ids`, the text's token ids (encoded
// without added special tokens, as apply_chat_template(tokenize=True) does: the template writes them).
std::string ChatLine(const Tokenizer& tokenizer, const chat::ChatTemplate& chat_template,
                     const std::string& line, bool ids, std::string& out) {
  nlohmann::ordered_json request = nlohmann::ordered_json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (request.is_discarded() || !request.is_object()) return "expected a JSON object with \"messages\"";
  absl::StatusOr<std::string> text = chat_template.Render(request);
  if (!text.ok()) return std::string(text.status().message());
  if (!ids) {
    out = nlohmann::json(*text).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    return "";
  }
  absl::StatusOr<std::vector<int32_t>> encoded = tokenizer.Encode(*text, /*add_special_tokens=*/false);
  if (!encoded.ok()) return std::string(encoded.status().message());
  out = nlohmann::json(*encoded).dump();
  return "";
}

struct TokenizeFlags {
  std::string tokenizer_path;
  bool add_special_tokens = false;
  bool decode = false;
  bool skip_special_tokens = false;
  bool chat_mode = false;
  bool chat_ids = false;
  std::string chat_template_file;
};

// Tokenizes stdin to stdout as `flags` say, once CLI11 has filled them.
int TokenizeFromFlags(const TokenizeFlags& flags) {
  absl::StatusOr<Tokenizer> tokenizer = Tokenizer::Load(flags.tokenizer_path);
  if (!tokenizer.ok()) {
    std::fprintf(stderr, "ringmoe tokenize: %s\n", std::string(tokenizer.status().message()).c_str());
    return 1;
  }
  if ((flags.chat_ids || !flags.chat_template_file.empty()) && !flags.chat_mode) {
    std::fprintf(stderr, "ringmoe tokenize: --ids and --chat-template go with --chat\n");
    return 2;
  }
  if (flags.chat_mode && flags.decode) {
    std::fprintf(stderr, "ringmoe tokenize: --chat and --decode exclude each other\n");
    return 2;
  }
  std::optional<chat::ChatTemplate> chat_template;
  if (flags.chat_mode) {
    absl::StatusOr<chat::ChatTemplate> loaded =
        chat::ChatTemplate::Load(flags.tokenizer_path, flags.chat_template_file);
    if (!loaded.ok()) {
      std::fprintf(stderr, "ringmoe tokenize: %s\n", std::string(loaded.status().message()).c_str());
      return 1;
    }
    chat_template = *std::move(loaded);
  }
  std::ios::sync_with_stdio(false);
  std::string line, out;
  int64_t line_number = 0;
  bool failed = false;
  while (std::getline(std::cin, line)) {
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const std::string error = chat_template  ? ChatLine(*tokenizer, *chat_template, line, flags.chat_ids, out)
                              : flags.decode ? DecodeLine(*tokenizer, line, flags.skip_special_tokens, out)
                                             : EncodeLine(*tokenizer, line, flags.add_special_tokens, out);
    if (!error.empty()) {
      std::fprintf(stderr, "ringmoe tokenize: line %lld: %s\n", static_cast<long long>(line_number),
                   error.c_str());
      failed = true;
      std::cout << "null\n";  // Keeps output line N matching input line N.
      continue;
    }
    std::cout << out << '\n';
  }
  std::cout.flush();
  return failed ? 1 : 0;
}

}  // namespace

Subcommand AddTokenizeCommand(CLI::App& ringmoe) {
  CLI::App& app = *ringmoe.add_subcommand(
      "tokenize",
      "Tokenize stdin: one JSON string per line in, one JSON array of ids per line out "
      "(--decode: id arrays in, JSON strings out; --chat: chat request objects in, rendered text out).");
  auto owned_flags = std::make_shared<TokenizeFlags>();  // filled by the parse, read by the run below
  TokenizeFlags& flags = *owned_flags;
  app.add_option("--tokenizer", flags.tokenizer_path, "tokenizer.json(.gz) or a model folder")->required();
  app.add_flag("--add-special-tokens", flags.add_special_tokens,
               "add the post-processor's special tokens (e.g. BOS)");
  app.add_flag("--decode", flags.decode, "decode id arrays instead of encoding strings");
  app.add_flag("--skip-special-tokens", flags.skip_special_tokens, "with --decode: drop special tokens");
  app.add_flag("--chat", flags.chat_mode,
               "render {\"messages\": [...], \"tools\": [...], \"add_generation_prompt\": true, ...} lines "
               "through the model's chat template; writes the text as a JSON string");
  app.add_option("--chat-template", flags.chat_template_file,
                 "with --chat: a Jinja template file to use instead of the tokenizer's");
  app.add_flag("--ids", flags.chat_ids,
               "with --chat: write the rendered text's token ids instead of the text");
  return {&app, [owned_flags](const std::vector<std::string>&) { return TokenizeFromFlags(*owned_flags); }};
}

}  // namespace ringmoe::cli
