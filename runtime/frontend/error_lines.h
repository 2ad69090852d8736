// Error lines: how the batch output writes a request that failed, in the form OpenAI's batch output uses
// (runtime/BATCH_FORMAT.md, "Failed requests", has the table and the reasons).
//
// A failed request keeps its absl::Status everywhere (the C++ API's Result::status); only here does it become
// an output line. ringmoe's short error code (ErrorCodeFor) picks the line's form:
//   - a request the API would have answered with an HTTP error (a bad field, a prompt too long, an engine
//     fault) gets OpenAI's "response": {"status_code": 400|500|503, "request_id", "body": {"error": {message,
//     type, param, code}}} with "error": null;
//   - a request that got no answer at all (cancelled, timed out) gets "response": null and
//     "error": {code, message, param}, as OpenAI writes its batch_cancelled and batch_expired requests.
// Stateless and thread-compatible.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace ringmoe {

// The short machine-readable code of a failed request. A status carrying a kErrorCodePayload payload uses
// that text; otherwise by status code: InvalidArgument/FailedPrecondition -> "invalid_request", OutOfRange ->
// "prompt_too_long", ResourceExhausted -> "out_of_memory", Unimplemented -> "unsupported", Cancelled ->
// "cancelled", DeadlineExceeded -> "timeout", anything else -> "internal_error".
inline constexpr char kErrorCodePayload[] = "type.ringmoe/error_code";
std::string ErrorCodeFor(const absl::Status& status);
// Returns `status` tagged with an explicit error code for ErrorCodeFor.
absl::Status WithErrorCode(absl::Status status, std::string_view code);
// Returns `status` tagged with the request field at fault: an error line writes it as the error's param (null
// for a status without one).
inline constexpr char kErrorParamPayload[] = "type.ringmoe/error_param";
absl::Status WithErrorParam(absl::Status status, std::string_view field);

// How an error line answers a failed request.
struct HttpError {
  int status_code = 0;  // 400, 500 or 503; 0: no HTTP response ("response": null)
  std::string type;     // "invalid_request_error" or "server_error"; empty when status_code is 0
  std::string code;     // OpenAI's code where it has one ("context_length_exceeded"), else ErrorCodeFor's
};
HttpError HttpErrorFor(const absl::Status& status);

// One output line (no trailing newline) for a request that failed with `status`. `request_id` is the
// response's "req_..." id; `chat` says the request was a chat line (a too-long prompt's param is then
// "messages" rather than "prompt").
std::string FormatErrorLine(std::string_view batch_request_id, std::string_view request_id,
                            std::string_view custom_id, const absl::Status& status, bool chat);

}  // namespace ringmoe
