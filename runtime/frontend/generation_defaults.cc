#include "runtime/frontend/generation_defaults.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"

namespace ringmoe {
namespace {

using nlohmann::json;

absl::string_view Av(std::string_view text) { return absl::string_view(text.data(), text.size()); }

absl::Status BadValue(std::string_view source, std::string_view field, std::string_view range,
                      const json& value) {
  return absl::InvalidArgumentError(absl::StrCat(Av(source), ": '", Av(field), "' must be ", Av(range),
                                                 ", got ",
                                                 value.dump(-1, ' ', false, json::error_handler_t::replace)));
}

}  // namespace

std::string GenerationDefaults::Describe() const {
  std::vector<std::string> parts;
  if (temperature) parts.push_back(absl::StrCat("temperature ", *temperature));
  if (top_p) parts.push_back(absl::StrCat("top_p ", *top_p));
  if (top_k) parts.push_back(absl::StrCat("top_k ", *top_k));
  if (min_p) parts.push_back(absl::StrCat("min_p ", *min_p));
  if (repetition_penalty) parts.push_back(absl::StrCat("repetition_penalty ", *repetition_penalty));
  if (max_tokens) parts.push_back(absl::StrCat("max_tokens ", *max_tokens));
  return absl::StrJoin(parts, ", ");
}

absl::StatusOr<GenerationDefaults> ParseGenerationDefaults(std::string_view json_text,
                                                           std::string_view source) {
  const json root = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (!root.is_object()) return absl::InvalidArgumentError(absl::StrCat(Av(source), ": not a JSON object"));
  GenerationDefaults defaults;
  auto number = [&](const char* field, double low, double high, bool low_open, const char* range,
                    std::optional<float>* out) -> absl::Status {
    auto it = root.find(field);
    if (it == root.end() || it->is_null()) return absl::OkStatus();
    const double value = it->is_number() ? it->get<double>() : std::nan("");
    if (!(value >= low && value <= high) || (low_open && value == low))
      return BadValue(source, field, range, *it);
    *out = static_cast<float>(value);
    return absl::OkStatus();
  };
  auto integer = [&](const char* field, int64_t low, const char* range,
                     std::optional<int>* out) -> absl::Status {
    auto it = root.find(field);
    if (it == root.end() || it->is_null()) return absl::OkStatus();
    if (!it->is_number_integer() || it->get<int64_t>() < low ||
        it->get<int64_t>() > std::numeric_limits<int32_t>::max()) {
      return BadValue(source, field, range, *it);
    }
    *out = static_cast<int>(it->get<int64_t>());
    return absl::OkStatus();
  };
  for (absl::Status status :
       {number("temperature", 0.0, 2.0, false, "a number in [0, 2]", &defaults.temperature),
        number("top_p", 0.0, 1.0, true, "a number in (0, 1]", &defaults.top_p),
        number("min_p", 0.0, 1.0, false, "a number in [0, 1]", &defaults.min_p),
        number("repetition_penalty", 0.0, 1e9, true, "a number > 0", &defaults.repetition_penalty),
        integer("top_k", -1, "an integer >= -1", &defaults.top_k),
        integer("max_new_tokens", 1, "an integer >= 1", &defaults.max_tokens)}) {
    if (!status.ok()) return status;
  }
  return defaults;
}

absl::StatusOr<GenerationDefaults> LoadGenerationDefaults(const std::string& model_dir) {
  const std::filesystem::path path = std::filesystem::path(model_dir) / "generation_config.json";
  std::error_code error;
  if (!std::filesystem::exists(path, error)) return GenerationDefaults{};
  std::ifstream in(path, std::ios::binary);
  if (!in.is_open()) return absl::NotFoundError(absl::StrCat("cannot read ", path.string()));
  std::stringstream text;
  text << in.rdbuf();
  return ParseGenerationDefaults(text.str(), path.string());
}

void ApplyGenerationDefaults(const GenerationDefaults& defaults, BatchLine* line) {
  if (defaults.empty() || !line->request.ok()) return;
  Request& request = *line->request;
  const OmittedGenerationFields& omitted = line->omitted;
  if (omitted.temperature && defaults.temperature) request.sampling.temperature = *defaults.temperature;
  if (omitted.top_p && defaults.top_p) request.sampling.top_p = *defaults.top_p;
  if (omitted.top_k && defaults.top_k) request.sampling.top_k = *defaults.top_k;
  if (omitted.min_p && defaults.min_p) request.sampling.min_p = *defaults.min_p;
  if (omitted.repetition_penalty && defaults.repetition_penalty)
    request.sampling.repetition_penalty = *defaults.repetition_penalty;
  if (omitted.max_tokens && defaults.max_tokens) request.max_tokens = *defaults.max_tokens;
}

void ApplyGenerationDefaults(const GenerationDefaults& defaults, std::vector<BatchLine>* lines) {
  for (BatchLine& line : *lines) ApplyGenerationDefaults(defaults, &line);
}

}  // namespace ringmoe
