// Reading `ringmoe run` output lines in tests: whether a line answers its request, and the error of one that
// does not, in either form runtime/BATCH_FORMAT.md ("Failed requests") describes: an HTTP error
// ("response": {"status_code": 400|500|503, "body": {"error": {...}}}, "error": null) or no response at all
// ("response": null, "error": {...}, for cancelled requests).
#pragma once

#include "nlohmann/json.hpp"

namespace ringmoe::testing {

// True for a line with a 200 response and a null error.
template <class Json>
bool Succeeded(const Json& line) {
  if (!line.is_object() || !line.contains("response") || !line.contains("error")) return false;
  const Json& response = line["response"];
  return line["error"].is_null() && response.is_object() && response.contains("status_code") &&
         response["status_code"] == 200;
}

// The error object of a failed line ({message, type, param, code} for an HTTP error, {code, message, param}
// without a response); null for a line that succeeded or holds neither.
template <class Json>
Json ErrorOf(const Json& line) {
  if (!line.is_object()) return nullptr;
  if (line.contains("error") && line["error"].is_object()) return line["error"];
  if (!line.contains("response") || !line["response"].is_object()) return nullptr;
  const Json& response = line["response"];
  if (!response.contains("body") || !response["body"].is_object() || !response["body"].contains("error"))
    return nullptr;
  return response["body"]["error"];
}

}  // namespace ringmoe::testing
