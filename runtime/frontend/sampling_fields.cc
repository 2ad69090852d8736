#include "runtime/frontend/sampling_fields.h"

#include <charconv>
#include <cmath>
#include <limits>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "runtime/engine/logits_processors.h"

namespace ringmoe {
namespace {

using nlohmann::json;

// Present and not null (OpenAI clients write null for "use the default").
const json* Field(const json& body, const char* key) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

std::string Describe(const json& value) {
  std::string text = value.dump(-1, ' ', false, json::error_handler_t::replace);
  constexpr size_t kMaxShown = 40;
  if (text.size() > kMaxShown) text = absl::StrCat(text.substr(0, kMaxShown), "...");
  return text;
}

std::optional<int64_t> AsInt64(const json& value) {
  if (value.is_number_unsigned()) {
    const uint64_t unsigned_value = value.get<uint64_t>();
    if (unsigned_value > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return static_cast<int64_t>(unsigned_value);
  }
  if (value.is_number_integer()) return value.get<int64_t>();
  return std::nullopt;
}

// A number in [low, high] (either bound open where asked), as a float.
std::optional<float> NumberIn(const json& value, double low, double high, bool low_open = false) {
  if (!value.is_number()) return std::nullopt;
  const double number = value.get<double>();
  if (!std::isfinite(number) || number > high || number < low || (low_open && number == low))
    return std::nullopt;
  return static_cast<float>(number);
}

// A decimal token id as logit_bias keys are written ("50256"); no sign, no spaces.
std::optional<int32_t> TokenIdKey(const std::string& key) {
  int64_t id = 0;
  const auto [end, error] = std::from_chars(key.data(), key.data() + key.size(), id);
  if (key.empty() || error != std::errc() || end != key.data() + key.size() || id < 0 ||
      id > std::numeric_limits<int32_t>::max()) {
    return std::nullopt;
  }
  return static_cast<int32_t>(id);
}

}  // namespace

absl::Status ParseSamplingFields(const json& body, Request& request, OmittedGenerationFields& omitted,
                                 const FieldErrorFunction& field_error) {
  omitted.temperature = Field(body, "temperature") == nullptr;
  omitted.top_p = Field(body, "top_p") == nullptr;
  omitted.max_tokens =
      Field(body, "max_tokens") == nullptr && Field(body, "max_completion_tokens") == nullptr;

  if (const json* n = Field(body, "n")) {
    const std::optional<int64_t> value = AsInt64(*n);
    if (!value || *value < 1 || *value > kMaxChoices) {
      return field_error("n", absl::StrCat("must be an integer in 1..", kMaxChoices, ", got ", Describe(*n)));
    }
    request.n = static_cast<int>(*value);
  }
  omitted.top_k = true;
  if (const json* top_k = Field(body, "top_k")) {
    const std::optional<int64_t> value = AsInt64(*top_k);
    if (!value || *value < -1 || *value > std::numeric_limits<int32_t>::max()) {
      return field_error(
          "top_k", absl::StrCat("must be an integer: -1 or 0 (off) or a count >= 1, got ", Describe(*top_k)));
    }
    request.sampling.top_k = static_cast<int>(*value);
    omitted.top_k = false;
  }
  omitted.min_p = true;
  if (const json* min_p = Field(body, "min_p")) {
    const std::optional<float> value = NumberIn(*min_p, 0.0, 1.0);
    if (!value)
      return field_error("min_p", absl::StrCat("must be a number in [0, 1], got ", Describe(*min_p)));
    request.sampling.min_p = *value;
    omitted.min_p = false;
  }
  for (const char* name : {"presence_penalty", "frequency_penalty"}) {
    const json* penalty = Field(body, name);
    if (penalty == nullptr) continue;
    const std::optional<float> value = NumberIn(*penalty, -2.0, 2.0);
    if (!value)
      return field_error(name, absl::StrCat("must be a number in [-2, 2], got ", Describe(*penalty)));
    (std::string_view(name) == "presence_penalty" ? request.sampling.presence_penalty
                                                  : request.sampling.frequency_penalty) = *value;
  }
  omitted.repetition_penalty = true;
  if (const json* penalty = Field(body, "repetition_penalty")) {
    const std::optional<float> value = NumberIn(*penalty, 0.0, 1e9, /*low_open=*/true);
    if (!value) {
      return field_error("repetition_penalty",
                         absl::StrCat("must be a number > 0 (1 is off), got ", Describe(*penalty)));
    }
    request.sampling.repetition_penalty = *value;
    omitted.repetition_penalty = false;
  }
  if (const json* min_tokens = Field(body, "min_tokens")) {
    const std::optional<int64_t> value = AsInt64(*min_tokens);
    if (!value || *value < 0 || *value > std::numeric_limits<int32_t>::max()) {
      return field_error("min_tokens", absl::StrCat("must be an integer >= 0, got ", Describe(*min_tokens)));
    }
    // Without max_tokens the engine checks it against the default that applies (generation_defaults.h).
    if (!omitted.max_tokens && *value > request.max_tokens) {
      return field_error("min_tokens",
                         absl::StrCat("must not exceed max_tokens (", request.max_tokens, "), got ", *value));
    }
    request.sampling.min_tokens = static_cast<int>(*value);
  }
  if (const json* bias = Field(body, "logit_bias")) {
    if (!bias->is_object()) {
      return field_error("logit_bias", absl::StrCat("must be an object mapping token ids to numbers in "
                                                    "[-100, 100], got ",
                                                    Describe(*bias)));
    }
    for (const auto& [key, value] : bias->items()) {
      const std::optional<int32_t> token = TokenIdKey(key);
      if (!token) {
        return field_error("logit_bias", absl::StrCat("key \"", key.substr(0, 40),
                                                      "\" is not a token id (a non-negative integer)"));
      }
      const std::optional<float> number = NumberIn(value, -100.0, 100.0);
      if (!number) {
        return field_error("logit_bias",
                           absl::StrCat("value for token id ", *token,
                                        " must be a number in [-100, 100], got ", Describe(value)));
      }
      request.sampling.logit_bias.emplace_back(*token, *number);
    }
  }
  return absl::OkStatus();
}

}  // namespace ringmoe
