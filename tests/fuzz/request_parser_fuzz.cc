// libFuzzer target: arbitrary bytes through ParseBatchLine and FormatResultLine.
//
// Checks beyond "does not crash": every line yields a custom_id, and every output line is valid JSON of the
// Batch output shape, also when the fuzzed text holds invalid UTF-8.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "nlohmann/json.hpp"
#include "runtime/frontend/batch_io.h"

namespace {

void Check(bool condition) {
  if (!condition) std::abort();
}

// A plausible engine result for a parsed request, carrying bytes from the input as its text.
ringmoe::Result FakeResult(const ringmoe::Request& request, std::string_view input) {
  ringmoe::Result result;
  result.id = request.id;
  result.prompt_ids = request.prompt_ids;
  const size_t tokens = input.size() % 8;
  for (size_t i = 0; i < tokens; ++i) {
    result.token_ids.push_back(static_cast<int32_t>(i));
    if (request.logprobs) {
      result.logprobs.push_back(-static_cast<float>(i) / 3.0f);
      result.token_strings.emplace_back(input.substr(i, 1));
    }
  }
  result.text = std::string(input.substr(0, 64));
  result.finish_reason = input.size() % 2 ? ringmoe::FinishReason::kStop : ringmoe::FinishReason::kLength;
  return result;
}

void CheckOutputLine(const std::string& line, bool expect_response) {
  Check(line.find('\n') == std::string::npos);
  nlohmann::json output = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  Check(!output.is_discarded() && output.is_object());
  Check(output.contains("id") && output.contains("custom_id"));
  if (expect_response) {
    Check(output["error"].is_null() && output["response"]["status_code"] == 200);
  } else {
    // A failed line (error_lines.h): an HTTP error response with OpenAI's error body, or no response.
    if (output["response"].is_null()) {
      Check(output["error"]["code"].is_string() && output["error"]["message"].is_string());
    } else {
      const nlohmann::json& error = output["response"]["body"]["error"];
      Check(output["error"].is_null() && output["response"]["status_code"] != 200);
      Check(error["code"].is_string() && error["message"].is_string() && error["type"].is_string());
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  ringmoe::BatchLine line = ringmoe::ParseBatchLine(input, 1);
  Check(!line.custom_id.empty());
  if (!line.request.ok()) {
    Check(!line.request.status().message().empty());
    CheckOutputLine(ringmoe::FormatResultLine(line, nullptr, "fuzz-model", "batch_req_fuzz_1", 0), false);
    return 0;
  }
  const ringmoe::Request& request = *line.request;
  Check(request.id == line.custom_id);
  Check(request.max_tokens >= 1);
  Check(request.prompt_text.empty() != request.prompt_ids.empty());
  Check(request.stop.size() <= 4);
  ringmoe::Result result = FakeResult(request, input);
  CheckOutputLine(ringmoe::FormatResultLine(line, &result, "fuzz-model", "batch_req_fuzz_1", 0), true);
  result.status = absl::OutOfRangeError(std::string(input.substr(0, 32)));
  CheckOutputLine(ringmoe::FormatResultLine(line, &result, "fuzz-model", "batch_req_fuzz_1", 0), false);
  return 0;
}
