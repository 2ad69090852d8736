#include "runtime/frontend/error_lines.h"

#include "absl/strings/cord.h"
#include "nlohmann/json.hpp"

namespace ringmoe {
namespace {

using nlohmann::ordered_json;

// Debian's Abseil keeps its own absl::string_view, which does not convert from std::string_view.
absl::string_view Av(std::string_view text) { return absl::string_view(text.data(), text.size()); }

std::string_view DefaultErrorCode(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
      return "invalid_request";
    case absl::StatusCode::kOutOfRange:
      return "prompt_too_long";
    case absl::StatusCode::kResourceExhausted:
      return "out_of_memory";
    case absl::StatusCode::kUnimplemented:
      return "unsupported";
    case absl::StatusCode::kCancelled:
      return "cancelled";
    case absl::StatusCode::kDeadlineExceeded:
      return "timeout";
    default:
      return "internal_error";
  }
}

bool IsDefaultErrorCode(std::string_view code) {
  return code == "invalid_request" || code == "prompt_too_long" || code == "out_of_memory" ||
         code == "unsupported" || code == "cancelled" || code == "timeout" || code == "internal_error";
}

std::string Dump(const ordered_json& value) {
  return value.dump(-1, ' ', false, ordered_json::error_handler_t::replace);
}

}  // namespace

std::string ErrorCodeFor(const absl::Status& status) {
  // absl::optional, not std::optional, with Debian's Abseil.
  if (auto code = status.GetPayload(kErrorCodePayload); code.has_value()) return std::string(*code);
  return std::string(DefaultErrorCode(status.code()));
}

absl::Status WithErrorCode(absl::Status status, std::string_view code) {
  status.SetPayload(kErrorCodePayload, absl::Cord(Av(code)));
  return status;
}

absl::Status WithErrorParam(absl::Status status, std::string_view field) {
  status.SetPayload(kErrorParamPayload, absl::Cord(Av(field)));
  return status;
}

HttpError HttpErrorFor(const absl::Status& status) {
  const std::string code = ErrorCodeFor(status);
  // A code given through WithErrorCode that is none of ringmoe's own is answered as its status's code is.
  const std::string_view kind =
      IsDefaultErrorCode(code) ? std::string_view(code) : DefaultErrorCode(status.code());
  if (kind == "invalid_request" || kind == "unsupported") return {400, "invalid_request_error", code};
  // OpenAI's own code for a prompt longer than the model's context.
  if (kind == "prompt_too_long") {
    return {400, "invalid_request_error", code == "prompt_too_long" ? "context_length_exceeded" : code};
  }
  // The request is valid but did not fit this engine's memory: the server's failure (503 as OpenAI answers
  // when it lacks capacity), which a job with a larger KV-cache budget would not have.
  if (kind == "out_of_memory") return {503, "server_error", code};
  // Never answered: no HTTP response, as OpenAI's batch output writes batch_cancelled and batch_expired.
  if (kind == "cancelled" || kind == "timeout") return {0, "", code};
  return {500, "server_error", code};
}

std::string FormatErrorLine(std::string_view batch_request_id, std::string_view request_id,
                            std::string_view custom_id, const absl::Status& status, bool chat) {
  const HttpError http = HttpErrorFor(status);
  // The request field at fault, as OpenAI's error objects name it; null when the error is not one field's.
  ordered_json param = nullptr;
  if (auto field = status.GetPayload(kErrorParamPayload); field.has_value()) {
    param = std::string(*field);
  } else if (http.code == "context_length_exceeded") {
    param = chat ? "messages" : "prompt";
  }
  ordered_json line;
  line["id"] = batch_request_id;
  line["custom_id"] = custom_id;
  if (http.status_code == 0) {
    line["response"] = nullptr;
    line["error"] = {{"code", http.code}, {"message", status.message()}, {"param", std::move(param)}};
    return Dump(line);
  }
  ordered_json error;
  error["message"] = status.message();
  error["type"] = http.type;
  error["param"] = std::move(param);
  error["code"] = http.code;
  line["response"] = {
      {"status_code", http.status_code}, {"request_id", request_id}, {"body", {{"error", std::move(error)}}}};
  line["error"] = nullptr;
  return Dump(line);
}

}  // namespace ringmoe
