// Batch I/O: the OpenAI Batch API JSONL format that `ringmoe run` reads and writes.
//
// Input: one request per line, either the full Batch form
//   {"custom_id": "a", "method": "POST", "url": "/v1/completions", "body": {"prompt": "Hi", "max_tokens": 8}}
// or the short form with the body fields at top level
//   {"custom_id": "a", "prompt": "Hi", "max_tokens": 8}
// Chat lines ("url": "/v1/chat/completions", or a short form with "messages") carry messages that
// chat_lines.h renders through the model's chat template; both kinds may mix in one file.
// Output: one line per request in the Batch output form (a response, or an error line: error_lines.h).
// runtime/BATCH_FORMAT.md documents every field, default and error code; keep it in step with this file.
//
// A bad line never stops the batch: it becomes a BatchLine whose `request` holds the error, and
// FormatResultLine turns that into an error line. Everything here is stateless and thread-compatible.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "ringmoe/engine.h"
#include "runtime/frontend/error_lines.h"
#include "runtime/frontend/sampling_fields.h"

namespace ringmoe {

// Longest accepted input line in bytes, without its newline.
inline constexpr size_t kMaxBatchLineBytes = size_t{16} << 20;

struct BatchLine {
  int line_number = 0;              // 1-based line in the input file (blank lines count).
  std::string custom_id;            // As written, whenever it could be read, else "line-<N>".
  absl::StatusOr<Request> request;  // InvalidArgument naming line, custom_id and field when the line is bad.
  // Chat lines only: what the chat template sees, as a JSON object (messages, tools, documents,
  // add_generation_prompt, continue_final_message, chat_template_kwargs; key order as written). Empty for
  // completions lines.
  std::string chat_request;
  // Fields the line carries that no endpoint defines (request_fields.h decides what happens to them).
  std::vector<std::string> unknown_fields;
  // Generation fields the line left to their defaults (generation_defaults.h may fill them).
  OmittedGenerationFields omitted;
};

// Parses one input line (without its newline). Never fails as a whole: problems land in `request`.
BatchLine ParseBatchLine(std::string_view line, int line_number);
// The same, also saying whether the custom_id was read from the line (false: the "line-<N>" fallback);
// repeated custom_ids are checked only among those.
BatchLine ParseBatchLine(std::string_view line, int line_number, bool* custom_id_known);

// Reads a whole batch: skips blank lines, accepts CRLF, a missing final newline and a UTF-8 byte-order
// mark, and marks the later line of a duplicated custom_id as an error ("custom_id 'x' also on line 3").
// Fails only when the stream itself cannot be read; `source` names it in that message.
absl::StatusOr<std::vector<BatchLine>> ReadBatchFile(std::istream& in, std::string_view source);
// The same for a file; a missing or unreadable file, or one that is not a regular file (a FIFO, a device), is
// an error naming `path`. Holds the whole batch: a job streams its input instead (batch_reader.h).
absl::StatusOr<std::vector<BatchLine>> ReadBatchFile(const std::string& path);

// The error of the later line of a repeated custom_id: "line 9: custom_id 'x' also on line 3".
absl::Status DuplicateIdError(const BatchLine& line, int first_line);

// One output line (no trailing newline), valid JSON even when the text holds invalid UTF-8 (such bytes
// become U+FFFD). `result` may be null only for a line whose request failed to parse; a null result for a
// good line is reported as an internal_error line (HTTP 500). A failed request is written by FormatErrorLine.
// `batch_request_id` is the line's "id" (e.g. "batch_req_<run>_<line>", see MakeBatchRequestId); the
// response's request_id ("req_...") and completion id ("cmpl-...") are derived from it.
// `created_unix_seconds` defaults to the current time.
std::string FormatResultLine(const BatchLine& line, const Result* result, std::string_view model_name,
                             std::string_view batch_request_id,
                             std::optional<int64_t> created_unix_seconds = std::nullopt);

// "batch_req_<run_id>_<line_number>": unique per line of a run and stable across reruns with the same run_id.
std::string MakeBatchRequestId(std::string_view run_id, int line_number);

// The seed used when a request gives none: a stable 64-bit hash (FNV-1a) of the custom_id, so reruns of the
// same file sample the same tokens.
uint64_t DefaultSeedForCustomId(std::string_view custom_id);

}  // namespace ringmoe
