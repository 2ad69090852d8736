#include "runtime/frontend/choices_output.h"

#include "nlohmann/json.hpp"

namespace ringmoe {

std::string FormatChoicesLine(const BatchLine& line, const Result& result, std::string_view model_name,
                              std::string_view batch_request_id, int64_t created_unix_seconds) {
  using nlohmann::ordered_json;
  // Each choice is formatted as the one choice of a line of its own (so every per-choice field is written the
  // same way whatever the endpoint), then gathered into choice 0's line.
  auto single_line = [&](const Result& choice) {
    return ordered_json::parse(
        FormatResultLine(line, &choice, model_name, batch_request_id, created_unix_seconds));
  };
  Result first = result;
  first.other_choices.clear();
  ordered_json output = single_line(first);
  ordered_json& body = output["response"]["body"];
  int64_t completion_tokens = body["usage"]["completion_tokens"].get<int64_t>();
  for (size_t i = 0; i < result.other_choices.size(); ++i) {
    ordered_json other = single_line(result.other_choices[i]);
    ordered_json& other_body = other["response"]["body"];
    completion_tokens += other_body["usage"]["completion_tokens"].get<int64_t>();
    ordered_json choice = std::move(other_body["choices"][0]);
    choice["index"] = static_cast<int64_t>(i + 1);
    body["choices"].push_back(std::move(choice));
  }
  const int64_t prompt_tokens = body["usage"]["prompt_tokens"].get<int64_t>();
  body["usage"]["completion_tokens"] = completion_tokens;
  body["usage"]["total_tokens"] = prompt_tokens + completion_tokens;
  return output.dump(-1, ' ', false, ordered_json::error_handler_t::replace);
}

}  // namespace ringmoe
