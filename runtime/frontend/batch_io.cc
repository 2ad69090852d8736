#include "runtime/frontend/batch_io.h"

#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <istream>
#include <limits>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "io/regular_file.h"
#include "nlohmann/json.hpp"
#include "runtime/frontend/batch_reader.h"
#include "runtime/frontend/chat_lines.h"
#include "runtime/frontend/choices_output.h"
#include "runtime/frontend/request_fields.h"
#include "runtime/frontend/scoring_fields.h"

namespace ringmoe {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;

constexpr int kDefaultMaxTokens = 16;
constexpr double kDefaultTemperature = 1.0;  // The OpenAI completions default (not greedy).
constexpr int kMaxStopStrings = 4;

// Debian's Abseil keeps its own absl::string_view (ABSL_OPTION_USE_STD_STRING_VIEW 0), which does not convert
// from std::string_view.
absl::string_view Av(std::string_view text) { return absl::string_view(text.data(), text.size()); }

std::string FallbackCustomId(int line_number) { return absl::StrCat("line-", line_number); }

// A short rendering of a JSON value for messages; never throws on invalid UTF-8.
std::string Describe(const json& value) {
  std::string text = value.dump(-1, ' ', false, json::error_handler_t::replace);
  constexpr size_t kMaxShown = 40;
  if (text.size() > kMaxShown) text = absl::StrCat(text.substr(0, kMaxShown), "...");
  return text;
}

std::string_view StripJsonExceptionPrefix(std::string_view what) {
  // nlohmann prefixes "[json.exception.parse_error.101] "; the rest is the useful part.
  if (!what.empty() && what.front() == '[') {
    size_t end = what.find("] ");
    if (end != std::string_view::npos) what.remove_prefix(end + 2);
  }
  return what;
}

// nlohmann's message without its bracketed prefix; "line 1" is dropped since the input is a single line.
std::string ParseErrorText(const char* what) {
  std::string text(StripJsonExceptionPrefix(what));
  constexpr std::string_view kLineOne = "at line 1, column ";
  if (size_t at = text.find(kLineOne); at != std::string::npos)
    text.replace(at, kLineOne.size(), "at column ");
  // nlohmann quotes the offending token whole: a megabyte-long number must not make a megabyte message.
  constexpr size_t kMaxText = 300;
  if (text.size() > kMaxText) text = absl::StrCat(text.substr(0, kMaxText), "... (", text.size(), " bytes)");
  return text;
}

// The value of a JSON integer when it fits in int64_t.
std::optional<int64_t> AsInt64(const json& value) {
  if (value.is_number_unsigned()) {
    uint64_t unsigned_value = value.get<uint64_t>();
    if (unsigned_value > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return static_cast<int64_t>(unsigned_value);
  }
  if (value.is_number_integer()) return value.get<int64_t>();
  return std::nullopt;
}

// Builds the typed Request from one parsed line, collecting the first error with the line, custom_id and
// field named.
class LineParser {
 public:
  LineParser(int line_number, std::string custom_id)
      : line_number_(line_number), custom_id_(std::move(custom_id)) {}

  absl::Status FieldError(std::string_view field, std::string_view problem) const {
    return WithErrorParam(
        absl::InvalidArgumentError(absl::StrCat(Where(), ": field '", Av(field), "' ", Av(problem))), field);
  }

  std::string Where() const { return absl::StrCat("line ", line_number_, " (custom_id '", custom_id_, "')"); }

  // `line` is the raw text (chat lines re-read it to keep the key order of messages and tools); a chat line's
  // template input goes to *chat_request.
  absl::StatusOr<Request> Parse(const json& root, std::string_view line, std::string* chat_request,
                                std::vector<std::string>* unknown_fields, OmittedGenerationFields* omitted) {
    const json* body = &root;
    if (root.contains("body")) {
      const json& wrapped = root["body"];
      if (!wrapped.is_object()) {
        return FieldError("body", absl::StrCat("must be an object, got ", wrapped.type_name()));
      }
      if (root.contains("prompt")) {
        return FieldError("prompt", "appears both at top level and in 'body'; use one form");
      }
      body = &wrapped;
    }
    if (absl::Status status = CheckEndpoint(root); !status.ok()) return status;

    const bool chat = is_chat_ || (Field(root, "url") == nullptr && body->contains("messages"));
    Request request;
    request.id = custom_id_;
    if (chat) {
      if (absl::Status status = ParseChat(*body, root.contains("body"), line, chat_request); !status.ok()) {
        return status;
      }
    } else if (absl::Status status = ParsePrompt(*body, request); !status.ok()) {
      return status;
    }
    // Before the limits: echo allows max_tokens 0.
    if (absl::Status status = ParseScoringFields(
            *body, chat,
            [this](std::string_view field, std::string_view problem) { return FieldError(field, problem); },
            &request);
        !status.ok()) {
      return status;
    }
    if (absl::Status status = ParseLimits(*body, request); !status.ok()) return status;
    if (absl::Status status = ParseSampling(*body, request); !status.ok()) return status;
    if (absl::Status status = ParseSamplingFields(
            *body, request, *omitted,
            [this](std::string_view field, std::string_view problem) { return FieldError(field, problem); });
        !status.ok()) {
      return status;
    }
    if (absl::Status status = ParseStops(*body, request); !status.ok()) return status;
    if (absl::Status status = RejectUnsupported(*body); !status.ok()) return status;
    for (const auto& [key, value] : root.items()) {
      const bool known = IsEnvelopeField(key) || (body == &root && IsKnownBodyField(key, chat));
      if (!known) unknown_fields->push_back(key);
    }
    if (body != &root) {
      for (const auto& [key, value] : body->items()) {
        if (!IsKnownBodyField(key, chat)) unknown_fields->push_back(key);
      }
    }
    return request;
  }

 private:
  // Present and not null: OpenAI clients write null for "use the default".
  static const json* Field(const json& object, const char* key) {
    auto it = object.find(key);
    if (it == object.end() || it->is_null()) return nullptr;
    return &*it;
  }

  absl::Status CheckEndpoint(const json& root) {
    if (const json* method = Field(root, "method")) {
      if (!method->is_string() || method->get<std::string>() != "POST") {
        return FieldError("method", absl::StrCat("must be \"POST\", got ", Describe(*method)));
      }
    }
    if (const json* url = Field(root, "url")) {
      std::string text = url->is_string() ? url->get<std::string>() : "";
      if (text == "/v1/chat/completions") {
        is_chat_ = true;
      } else if (text != "/v1/completions") {
        return FieldError("url", absl::StrCat("must be \"/v1/completions\" or \"/v1/chat/completions\", got ",
                                              Describe(*url)));
      }
    }
    return absl::OkStatus();
  }

  absl::Status ParsePrompt(const json& body, Request& request) const {
    const json* prompt = Field(body, "prompt");
    if (prompt == nullptr) return FieldError("prompt", "is missing");
    if (prompt->is_string()) {
      request.prompt_text = prompt->get<std::string>();
      if (request.prompt_text.empty()) return FieldError("prompt", "is an empty string");
      return absl::OkStatus();
    }
    if (!prompt->is_array()) {
      return FieldError("prompt",
                        absl::StrCat("must be a string or an array of token ids, got ", prompt->type_name()));
    }
    if (prompt->empty()) return FieldError("prompt", "is an empty array");
    bool all_strings = true, all_arrays = true;
    for (const json& element : *prompt) {
      all_strings = all_strings && element.is_string();
      all_arrays = all_arrays && element.is_array();
    }
    if (all_strings || all_arrays) {
      return FieldError("prompt", absl::StrCat("holds ", prompt->size(), all_strings ? " strings" : " arrays",
                                               ": only one prompt per request is supported; write one line "
                                               "per prompt"));
    }
    request.prompt_ids.reserve(prompt->size());
    for (size_t i = 0; i < prompt->size(); ++i) {
      const json& element = (*prompt)[i];
      std::optional<int64_t> id = AsInt64(element);
      if (!id || *id < 0 || *id > std::numeric_limits<int32_t>::max()) {
        return FieldError(
            "prompt",
            absl::StrCat("element ", i, " must be a non-negative integer token id, got ", Describe(element)));
      }
      request.prompt_ids.push_back(static_cast<int32_t>(*id));
    }
    return absl::OkStatus();
  }

  // A chat line's template input: messages (required, objects with a string role) and the fields templates
  // read; add_generation_prompt defaults to true (the chat API asks for the assistant's turn) unless
  // continue_final_message is set.
  absl::Status ParseChat(const json& body, bool wrapped, std::string_view line,
                         std::string* chat_request) const {
    if (Field(body, "prompt") != nullptr) {
      return FieldError("prompt", "is a completions field; a chat request gives 'messages'");
    }
    const json* messages = Field(body, "messages");
    if (messages == nullptr) return FieldError("messages", "is missing");
    if (!messages->is_array() || messages->empty()) {
      return FieldError("messages",
                        absl::StrCat("must be a non-empty array of messages, got ", Describe(*messages)));
    }
    for (size_t i = 0; i < messages->size(); ++i) {
      const json& message = (*messages)[i];
      if (!message.is_object() || !message.contains("role") || !message["role"].is_string()) {
        return FieldError(
            "messages",
            absl::StrCat("element ", i, " must be an object with a string 'role', got ", Describe(message)));
      }
    }
    for (const char* flag : {"add_generation_prompt", "continue_final_message"}) {
      if (const json* value = Field(body, flag); value != nullptr && !value->is_boolean()) {
        return FieldError(flag, absl::StrCat("must be true or false, got ", Describe(*value)));
      }
    }
    if (const json* kwargs = Field(body, "chat_template_kwargs"); kwargs != nullptr && !kwargs->is_object()) {
      return FieldError("chat_template_kwargs", absl::StrCat("must be an object, got ", Describe(*kwargs)));
    }
    ordered_json ordered = ordered_json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (wrapped) ordered = ordered["body"];
    ordered_json input = ordered_json::object();
    for (const char* key : {"messages", "tools", "documents", "add_generation_prompt",
                            "continue_final_message", "chat_template_kwargs"}) {
      if (auto it = ordered.find(key); it != ordered.end() && !it->is_null()) input[key] = *it;
    }
    if (!input.contains("add_generation_prompt")) {
      const bool continuing =
          input.contains("continue_final_message") && input["continue_final_message"].get<bool>();
      input["add_generation_prompt"] = !continuing;
    }
    *chat_request = input.dump(-1, ' ', false, ordered_json::error_handler_t::replace);
    return absl::OkStatus();
  }

  absl::Status ParseLimits(const json& body, Request& request) const {
    request.max_tokens = kDefaultMaxTokens;
    const int least = request.echo ? 0 : 1;  // echo with max_tokens 0 scores the prompt alone
    if (const json* max_completion = Field(body, "max_completion_tokens")) {
      // Both given: the same value is fine (a client that fills both), different ones are an error.
      if (const json* max_tokens = Field(body, "max_tokens");
          max_tokens != nullptr && *max_tokens != *max_completion) {
        return FieldError("max_completion_tokens",
                          absl::StrCat("is ", Describe(*max_completion), " but 'max_tokens' is ",
                                       Describe(*max_tokens), "; give one, or the same value"));
      }
      std::optional<int64_t> value = AsInt64(*max_completion);
      if (!value || *value < least || *value > std::numeric_limits<int>::max()) {
        return FieldError("max_completion_tokens",
                          absl::StrCat("must be an integer >= 1 (at most 2147483647; 0 with echo), got ",
                                       Describe(*max_completion)));
      }
      request.max_tokens = static_cast<int>(*value);
    }
    if (const json* max_tokens = Field(body, "max_tokens")) {
      std::optional<int64_t> value = AsInt64(*max_tokens);
      if (!value || *value < least || *value > std::numeric_limits<int>::max()) {
        return FieldError("max_tokens",
                          absl::StrCat("must be an integer >= 1 (at most 2147483647; 0 with echo), got ",
                                       Describe(*max_tokens)));
      }
      request.max_tokens = static_cast<int>(*value);
    }
    if (const json* ids = Field(body, "stop_token_ids")) {
      if (!ids->is_array()) {
        return FieldError("stop_token_ids",
                          absl::StrCat("must be an array of token ids, got ", ids->type_name()));
      }
      for (size_t i = 0; i < ids->size(); ++i) {
        std::optional<int64_t> id = AsInt64((*ids)[i]);
        if (!id || *id < 0 || *id > std::numeric_limits<int32_t>::max()) {
          return FieldError(
              "stop_token_ids",
              absl::StrCat("element ", i, " must be a non-negative integer, got ", Describe((*ids)[i])));
        }
        request.stop_token_ids.push_back(static_cast<int32_t>(*id));
      }
    }
    if (const json* ignore_eos = Field(body, "ignore_eos")) {
      if (!ignore_eos->is_boolean()) {
        return FieldError("ignore_eos", absl::StrCat("must be true or false, got ", Describe(*ignore_eos)));
      }
      request.ignore_eos = ignore_eos->get<bool>();
    }
    return absl::OkStatus();
  }

  absl::Status ParseSampling(const json& body, Request& request) const {
    request.sampling.temperature = static_cast<float>(kDefaultTemperature);
    if (const json* temperature = Field(body, "temperature")) {
      double value = temperature->is_number() ? temperature->get<double>() : -1.0;
      if (!temperature->is_number() || !(value >= 0.0 && value <= 2.0)) {
        return FieldError("temperature",
                          absl::StrCat("must be a number in [0, 2], got ", Describe(*temperature)));
      }
      request.sampling.temperature = static_cast<float>(value);
    }
    request.sampling.top_p = 1.0f;
    if (const json* top_p = Field(body, "top_p")) {
      double value = top_p->is_number() ? top_p->get<double>() : -1.0;
      if (!top_p->is_number() || !(value > 0.0 && value <= 1.0)) {
        return FieldError("top_p", absl::StrCat("must be a number in (0, 1], got ", Describe(*top_p)));
      }
      request.sampling.top_p = static_cast<float>(value);
    }
    request.sampling.seed = DefaultSeedForCustomId(custom_id_);
    if (const json* seed = Field(body, "seed")) {
      if (seed->is_number_unsigned()) {
        request.sampling.seed = seed->get<uint64_t>();
      } else if (seed->is_number_integer()) {
        request.sampling.seed = static_cast<uint64_t>(seed->get<int64_t>());
      } else {
        return FieldError("seed", absl::StrCat("must be an integer, got ", Describe(*seed)));
      }
    }
    return absl::OkStatus();
  }

  absl::Status ParseStops(const json& body, Request& request) const {
    const json* stop = Field(body, "stop");
    if (stop == nullptr) return absl::OkStatus();
    if (stop->is_string()) {
      if (stop->get_ref<const std::string&>().empty())
        return FieldError("stop", "must not be an empty string");
      request.stop.push_back(stop->get<std::string>());
      return absl::OkStatus();
    }
    if (!stop->is_array()) {
      return FieldError("stop",
                        absl::StrCat("must be a string or an array of strings, got ", stop->type_name()));
    }
    if (stop->size() > kMaxStopStrings) {
      return FieldError("stop", absl::StrCat("has ", stop->size(), " strings; at most ", kMaxStopStrings));
    }
    for (size_t i = 0; i < stop->size(); ++i) {
      const json& element = (*stop)[i];
      if (!element.is_string() || element.get_ref<const std::string&>().empty()) {
        return FieldError(
            "stop", absl::StrCat("element ", i, " must be a non-empty string, got ", Describe(element)));
      }
      request.stop.push_back(element.get<std::string>());
    }
    return absl::OkStatus();
  }

  // OpenAI options that would change the shape of the answer; silently ignoring them would mislead.
  absl::Status RejectUnsupported(const json& body) const {
    if (const json* best_of = Field(body, "best_of")) {
      if (AsInt64(*best_of) != std::optional<int64_t>(1)) {
        return FieldError("best_of",
                          absl::StrCat("must be 1 (best_of is not supported), got ", Describe(*best_of)));
      }
    }
    // Structured output is not implemented: only plain text may be asked for.
    if (const json* format = Field(body, "response_format");
        format != nullptr && !format->is_null() && *format != json{{"type", "text"}}) {
      return FieldError("response_format", absl::StrCat("is not supported (only {\"type\": \"text\"}), got ",
                                                        Describe(*format)));
    }
    if (const json* stream = Field(body, "stream"); stream != nullptr && *stream != json(false)) {
      return FieldError(
          "stream", absl::StrCat("is not supported in batch files (only false), got ", Describe(*stream)));
    }
    return absl::OkStatus();
  }

  int line_number_;
  std::string custom_id_;
  bool is_chat_ = false;  // the url names the chat endpoint
};

constexpr int kMaxRequestNesting = 64;

// ParseBatchLine, also saying whether custom_id came from the input (duplicates are checked only for those).
BatchLine ParseLine(std::string_view line, int line_number, bool* custom_id_known) {
  BatchLine parsed;
  parsed.line_number = line_number;
  parsed.custom_id = FallbackCustomId(line_number);
  *custom_id_known = false;
  std::string where = absl::StrCat("line ", line_number);
  if (line.size() > kMaxBatchLineBytes) {
    parsed.request =
        absl::InvalidArgumentError(absl::StrCat(where, ": ", line.size(), " bytes is longer than the ",
                                                kMaxBatchLineBytes, "-byte limit for one line"));
    return parsed;
  }
  // A request nests 3 levels (body, prompt, a list); far deeper input would reach nlohmann's recursive
  // printer (an error message's dump) and destructor: refused before parsing.
  if (absl::Status nesting = io::CheckJsonNesting(line, kMaxRequestNesting, where); !nesting.ok()) {
    parsed.request = absl::InvalidArgumentError(absl::StrCat(
        where, ": not valid JSON for a request (nested deeper than ", kMaxRequestNesting, " levels)"));
    return parsed;
  }
  // nlohmann stops at a NUL byte as if the text ended there, and would accept what comes before it.
  if (const size_t nul = line.find('\0'); nul != std::string_view::npos) {
    parsed.request = absl::InvalidArgumentError(
        absl::StrCat(where, ": not valid JSON (a NUL byte at column ", nul + 1, ")"));
    return parsed;
  }
  json root;
  try {
    root = json::parse(line);
  } catch (const json::exception& error) {
    parsed.request = absl::InvalidArgumentError(
        absl::StrCat(where, ": not valid JSON (", ParseErrorText(error.what()), ")"));
    return parsed;
  }
  if (!root.is_object()) {
    parsed.request =
        absl::InvalidArgumentError(absl::StrCat(where, ": expected a JSON object, got ", root.type_name()));
    return parsed;
  }
  const json* custom_id = nullptr;
  if (auto it = root.find("custom_id"); it != root.end()) custom_id = &*it;
  if (custom_id == nullptr) {
    parsed.request = WithErrorParam(
        absl::InvalidArgumentError(absl::StrCat(where, ": field 'custom_id' is missing")), "custom_id");
    return parsed;
  }
  if (!custom_id->is_string()) {
    parsed.request =
        WithErrorParam(absl::InvalidArgumentError(absl::StrCat(
                           where, ": field 'custom_id' must be a string, got ", Describe(*custom_id))),
                       "custom_id");
    return parsed;
  }
  if (custom_id->get_ref<const std::string&>().empty()) {
    parsed.request = WithErrorParam(
        absl::InvalidArgumentError(absl::StrCat(where, ": field 'custom_id' is an empty string")),
        "custom_id");
    return parsed;
  }
  parsed.custom_id = custom_id->get<std::string>();
  *custom_id_known = true;
  try {
    parsed.request = LineParser(line_number, parsed.custom_id)
                         .Parse(root, line, &parsed.chat_request, &parsed.unknown_fields, &parsed.omitted);
    if (!parsed.request.ok()) {
      parsed.chat_request.clear();
      parsed.unknown_fields.clear();
    }
  } catch (const json::exception& error) {
    // Every access above is type-checked first; this is a safety net so bad input never aborts the batch.
    parsed.request = absl::InvalidArgumentError(
        absl::StrCat(LineParser(line_number, parsed.custom_id).Where(), ": ", error.what()));
  }
  return parsed;
}

// "batch_req_<suffix>" -> "<suffix>", from which the response's "req_<suffix>" and "cmpl-<suffix>" are built.
std::string_view IdSuffix(std::string_view batch_request_id) {
  constexpr std::string_view kPrefix = "batch_req_";
  if (absl::StartsWith(Av(batch_request_id), Av(kPrefix))) batch_request_id.remove_prefix(kPrefix.size());
  return batch_request_id;
}

std::string Dump(const ordered_json& value) {
  return value.dump(-1, ' ', false, ordered_json::error_handler_t::replace);
}

std::string ErrorLine(const BatchLine& line, std::string_view batch_request_id, const absl::Status& status) {
  return FormatErrorLine(batch_request_id, absl::StrCat("req_", Av(IdSuffix(batch_request_id))),
                         line.custom_id, status, !line.chat_request.empty());
}

}  // namespace

BatchLine ParseBatchLine(std::string_view line, int line_number) {
  bool custom_id_known = false;
  return ParseLine(line, line_number, &custom_id_known);
}

BatchLine ParseBatchLine(std::string_view line, int line_number, bool* custom_id_known) {
  return ParseLine(line, line_number, custom_id_known);
}

absl::StatusOr<std::vector<BatchLine>> ReadBatchFile(std::istream& in, std::string_view source) {
  std::vector<BatchLine> lines;
  absl::flat_hash_map<std::string, int> first_line_of_id;
  BatchLineStream stream([&in](char* buffer, size_t size) -> int64_t {
    if (!in) return in.bad() ? -1 : 0;
    in.read(buffer, static_cast<std::streamsize>(size));
    if (in.bad()) return -1;
    return static_cast<int64_t>(in.gcount());
  });
  BatchLine parsed;
  bool custom_id_known = false;
  while (stream.Next(&parsed, &custom_id_known)) {
    if (custom_id_known) {
      auto [it, inserted] = first_line_of_id.try_emplace(parsed.custom_id, parsed.line_number);
      if (!inserted && parsed.request.ok()) parsed.request = DuplicateIdError(parsed, it->second);
    }
    lines.push_back(std::move(parsed));
  }
  if (stream.read_error() || in.bad()) {
    return absl::DataLossError(
        absl::StrCat("error reading ", Av(source), " after line ", stream.line_number()));
  }
  return lines;
}

absl::Status DuplicateIdError(const BatchLine& line, int first_line) {
  return WithErrorParam(
      absl::InvalidArgumentError(absl::StrCat("line ", line.line_number, ": custom_id '", line.custom_id,
                                              "' also on line ", first_line)),
      "custom_id");
}

absl::StatusOr<std::vector<BatchLine>> ReadBatchFile(const std::string& path) {
  absl::StatusOr<int> fd = io::OpenRegularFileForReading(path);
  if (!fd.ok()) return fd.status();
  std::vector<BatchLine> lines;
  absl::flat_hash_map<std::string, int> first_line_of_id;
  BatchLineStream stream(ReadFromDescriptor(*fd));
  BatchLine parsed;
  bool custom_id_known = false;
  while (stream.Next(&parsed, &custom_id_known)) {
    if (custom_id_known) {
      auto [it, inserted] = first_line_of_id.try_emplace(parsed.custom_id, parsed.line_number);
      if (!inserted && parsed.request.ok()) parsed.request = DuplicateIdError(parsed, it->second);
    }
    lines.push_back(std::move(parsed));
  }
  ::close(*fd);
  if (stream.read_error()) {
    return absl::DataLossError(absl::StrCat("error reading ", path, " after line ", stream.line_number(),
                                            ": ", std::strerror(stream.read_errno())));
  }
  return lines;
}

std::string FormatResultLine(const BatchLine& line, const Result* result, std::string_view model_name,
                             std::string_view batch_request_id, std::optional<int64_t> created_unix_seconds) {
  if (!line.request.ok()) {
    return ErrorLine(line, batch_request_id, line.request.status());
  }
  if (result == nullptr) {
    return ErrorLine(
        line, batch_request_id,
        absl::InternalError(absl::StrCat("line ", line.line_number, " (custom_id '", line.custom_id,
                                         "'): the engine returned no result for this request")));
  }
  if (!result->status.ok()) {
    return ErrorLine(line, batch_request_id, result->status);
  }

  const int64_t created = created_unix_seconds.value_or(static_cast<int64_t>(std::time(nullptr)));
  if (!result->other_choices.empty())
    return FormatChoicesLine(line, *result, model_name, batch_request_id, created);
  if (!line.chat_request.empty()) {
    ordered_json output;
    output["id"] = batch_request_id;
    output["custom_id"] = line.custom_id;
    output["response"] = {
        {"status_code", 200},
        {"request_id", absl::StrCat("req_", Av(IdSuffix(batch_request_id)))},
        {"body", ChatCompletionBody(line, *result, model_name, IdSuffix(batch_request_id), created)}};
    output["error"] = nullptr;
    return Dump(output);
  }

  ordered_json choice;
  choice["index"] = 0;
  choice["text"] = CompletionText(*line.request, *result);
  choice["token_ids"] = result->token_ids;
  choice["logprobs"] = CompletionLogprobs(*line.request, *result);
  choice["finish_reason"] = result->finish_reason == FinishReason::kStop ? "stop" : "length";

  const int64_t prompt_tokens = static_cast<int64_t>(result->prompt_ids.size());
  const int64_t completion_tokens = static_cast<int64_t>(result->token_ids.size());
  ordered_json body;
  body["id"] = absl::StrCat("cmpl-", Av(IdSuffix(batch_request_id)));
  body["object"] = "text_completion";
  body["created"] = created;
  body["model"] = model_name;
  body["choices"] = ordered_json::array({std::move(choice)});
  body["usage"] = {{"prompt_tokens", prompt_tokens},
                   {"completion_tokens", completion_tokens},
                   {"total_tokens", prompt_tokens + completion_tokens}};

  ordered_json output;
  output["id"] = batch_request_id;
  output["custom_id"] = line.custom_id;
  output["response"] = {{"status_code", 200},
                        {"request_id", absl::StrCat("req_", Av(IdSuffix(batch_request_id)))},
                        {"body", std::move(body)}};
  output["error"] = nullptr;
  return Dump(output);
}

std::string MakeBatchRequestId(std::string_view run_id, int line_number) {
  return absl::StrCat("batch_req_", Av(run_id), "_", line_number);
}

uint64_t DefaultSeedForCustomId(std::string_view custom_id) {
  uint64_t hash = 14695981039346656037ull;  // FNV-1a 64-bit offset basis and prime: fixed forever.
  for (unsigned char byte : custom_id) {
    hash ^= byte;
    hash *= 1099511628211ull;
  }
  return hash;
}

}  // namespace ringmoe
