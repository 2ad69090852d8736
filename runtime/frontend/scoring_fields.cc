#include "runtime/frontend/scoring_fields.h"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"

namespace ringmoe {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;

const json* Field(const json& body, const char* key) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

std::string Shown(const json& value) {
  std::string text = value.dump(-1, ' ', false, json::error_handler_t::replace);
  constexpr size_t kMaxShown = 40;
  if (text.size() > kMaxShown) text = absl::StrCat(text.substr(0, kMaxShown), "...");
  return text;
}

// An integer in 0..kMaxTopLogprobs, or nullopt.
std::optional<int> TopCount(const json& value) {
  if (!value.is_number_integer() && !value.is_number_unsigned()) return std::nullopt;
  if (value.is_number_unsigned() ? value.get<uint64_t>() > kMaxTopLogprobs
                                 : (value.get<int64_t>() < 0 || value.get<int64_t>() > kMaxTopLogprobs)) {
    return std::nullopt;
  }
  return static_cast<int>(value.get<int64_t>());
}

// Characters (code points) of UTF-8 text, counting each byte that does not continue a sequence once: an
// invalid byte is written as one U+FFFD.
int64_t Characters(std::string_view text) {
  int64_t count = 0;
  for (unsigned char byte : text) count += (byte & 0xC0) != 0x80 ? 1 : 0;
  return count;
}

// One position's top_logprobs object of the completions API: the alternatives by text, most likely first,
// then the chosen token when no alternative has its text (OpenAI returns the chosen one's logprob always).
ordered_json CompletionTop(const std::vector<TokenLogprob>* alternatives, const std::string& chosen,
                           float chosen_logprob) {
  ordered_json top = ordered_json::object();
  if (alternatives != nullptr) {
    for (const TokenLogprob& alternative : *alternatives) {
      if (!top.contains(alternative.text)) top[alternative.text] = LogprobJson(alternative.logprob);
    }
  }
  if (!top.contains(chosen)) top[chosen] = LogprobJson(chosen_logprob);
  return top;
}

ordered_json Bytes(std::string_view text) {
  ordered_json bytes = ordered_json::array();
  for (unsigned char byte : text) bytes.push_back(static_cast<int>(byte));
  return bytes;
}

}  // namespace

absl::Status ParseScoringFields(const json& body, bool chat, const FieldErrorFn& field_error,
                                Request* request) {
  if (const json* logprobs = Field(body, "logprobs")) {
    if (logprobs->is_boolean()) {
      request->logprobs = logprobs->get<bool>();
    } else if (std::optional<int> count = TopCount(*logprobs); count && !chat) {
      request->logprobs = true;
      request->top_logprobs = *count;
    } else if (chat) {
      return field_error("logprobs",
                         absl::StrCat("must be true or false (give top_logprobs for alternatives), "
                                      "got ",
                                      Shown(*logprobs)));
    } else {
      return field_error("logprobs", absl::StrCat("must be null, true, false or an integer 0..",
                                                  kMaxTopLogprobs, ", got ", Shown(*logprobs)));
    }
  }
  if (chat) {
    if (const json* top = Field(body, "top_logprobs")) {
      std::optional<int> count = TopCount(*top);
      if (!count) {
        return field_error("top_logprobs",
                           absl::StrCat("must be an integer 0..", kMaxTopLogprobs, ", got ", Shown(*top)));
      }
      if (!request->logprobs) return field_error("top_logprobs", "needs \"logprobs\": true");
      request->top_logprobs = *count;
    }
    return absl::OkStatus();
  }
  if (const json* echo = Field(body, "echo")) {
    if (!echo->is_boolean()) {
      return field_error("echo", absl::StrCat("must be true or false, got ", Shown(*echo)));
    }
    request->echo = echo->get<bool>();
  }
  return absl::OkStatus();
}

ordered_json LogprobJson(float value) {
  if (!std::isfinite(value)) return nullptr;
  char text[32];
  auto [end, error] = std::to_chars(text, text + sizeof(text), value);
  if (error != std::errc()) return static_cast<double>(value);
  *end = '\0';
  return std::strtod(text, nullptr);
}

ordered_json CompletionLogprobs(const Request& request, const Result& result) {
  if (!request.logprobs) return nullptr;
  ordered_json tokens = ordered_json::array(), token_logprobs = ordered_json::array(),
               top_logprobs = ordered_json::array(), text_offset = ordered_json::array();
  int64_t offset = 0;
  auto add = [&](const std::string& token, float logprob, const std::vector<TokenLogprob>* alternatives,
                 bool first_of_prompt) {
    tokens.push_back(token);
    token_logprobs.push_back(LogprobJson(logprob));
    // The first prompt token has no context, hence no distribution: null, as OpenAI writes it.
    top_logprobs.push_back(first_of_prompt ? ordered_json(nullptr)
                                           : CompletionTop(alternatives, token, logprob));
    text_offset.push_back(offset);
    offset += Characters(token);
  };
  if (request.echo) {
    const size_t prompt = result.prompt_logprobs.size();
    const bool have_strings = result.prompt_token_strings.size() == prompt;
    const bool have_tops = result.prompt_top_logprobs.size() == prompt;
    for (size_t i = 0; i < prompt; ++i) {
      add(have_strings ? result.prompt_token_strings[i] : std::string(), result.prompt_logprobs[i],
          have_tops ? &result.prompt_top_logprobs[i] : nullptr, i == 0);
    }
  }
  // Without a tokenizer there is no text per token; token_ids still carries the ids.
  const bool have_strings = result.token_strings.size() == result.logprobs.size();
  const bool have_tops = result.top_logprobs.size() == result.logprobs.size();
  for (size_t i = 0; i < result.logprobs.size(); ++i) {
    add(have_strings ? result.token_strings[i] : std::string(), result.logprobs[i],
        have_tops ? &result.top_logprobs[i] : nullptr, false);
  }
  ordered_json logprobs;
  logprobs["tokens"] = std::move(tokens);
  logprobs["token_logprobs"] = std::move(token_logprobs);
  logprobs["top_logprobs"] = std::move(top_logprobs);
  logprobs["text_offset"] = std::move(text_offset);
  return logprobs;
}

std::string CompletionText(const Request& request, const Result& result) {
  return request.echo ? absl::StrCat(result.prompt_text, result.text) : result.text;
}

ordered_json ChatLogprobs(const Request& request, const Result& result) {
  if (!request.logprobs) return nullptr;
  ordered_json content = ordered_json::array();
  const bool have_strings = result.token_strings.size() == result.logprobs.size();
  const bool have_tops = result.top_logprobs.size() == result.logprobs.size();
  for (size_t i = 0; i < result.logprobs.size(); ++i) {
    const std::string token = have_strings ? result.token_strings[i] : std::string();
    ordered_json alternatives = ordered_json::array();
    if (have_tops) {
      for (const TokenLogprob& alternative : result.top_logprobs[i]) {
        alternatives.push_back({{"token", alternative.text},
                                {"logprob", LogprobJson(alternative.logprob)},
                                {"bytes", Bytes(alternative.text)}});
      }
    }
    content.push_back({{"token", token},
                       {"logprob", LogprobJson(result.logprobs[i])},
                       {"bytes", Bytes(token)},
                       {"top_logprobs", std::move(alternatives)}});
  }
  return {{"content", std::move(content)}};
}

}  // namespace ringmoe
