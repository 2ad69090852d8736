// The lines a batch job answers, streamed from its input (batch_reader.h) and never held together: the lines
// of its shard (shard.h) that the output does not answer yet (--resume), with the unknown-field policy
// applied (request_fields.h), generation_config.json's defaults filled in (generation_defaults.h) and chat
// prompts rendered (chat_lines.h), ready to count, to run or to write as error lines. `ringmoe run` passes
// over them twice, once to count the job for its plan and once to run it, and `ringmoe plan --input` once;
// each pass sees the same lines in the same order.
//
// Threading: a JobLines, and the ChatTemplateOnce it is given, belong to one thread at a time.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "ringmoe/tokenizer.h"
#include "runtime/chat/chat_template.h"
#include "runtime/frontend/batch_io.h"
#include "runtime/frontend/batch_output.h"
#include "runtime/frontend/batch_reader.h"
#include "runtime/frontend/generation_defaults.h"
#include "runtime/frontend/shard.h"

namespace ringmoe {

// The job's chat template, loaded when the first chat line needs it and then kept for every pass.
class ChatTemplateOnce {
 public:
  // `folder`: where the tokenizer's template lives (--tokenizer, else the model); `file`: --chat-template
  // (empty: none), whose failure to load fails the job instead of the chat lines.
  ChatTemplateOnce(std::string folder, std::string file);
  // The template, or null with the reason in *missing_reason (the chat lines then fail with it). Fails only
  // when an explicitly given file cannot be loaded.
  absl::StatusOr<const chat::ChatTemplate*> Get(std::string* missing_reason);

 private:
  std::string folder_, file_;
  std::optional<absl::StatusOr<chat::ChatTemplate>> template_;
};

struct JobLineOptions {
  std::string input;
  Shard shard;
  const BatchOutputFile* resume = nullptr;  // skip the lines it answers; null: none
  bool lenient = false;                     // unknown fields: warned about (on `warnings`) instead of errors
  std::FILE* warnings = nullptr;            // null: no warnings (a second pass)
  const Tokenizer* tokenizer = nullptr;     // for chat prompts; null: chat lines fail
  ChatTemplateOnce* chat_template = nullptr;
  const GenerationDefaults* defaults = nullptr;  // generation_config.json's, for omitted fields; null: none
};

class JobLines {
 public:
  // Opens the input for one pass. `scan` (ScanCustomIds of the same file) and the options' pointers must
  // outlive this object. Fails as BatchFileReader::Open does.
  static absl::StatusOr<std::unique_ptr<JobLines>> Open(const JobLineOptions& options,
                                                        const CustomIdScan& scan);

  // The next line the job answers: a good request (line->request holds it) or an error line. False at the
  // end, or on an error (status()).
  bool Next(BatchLine* line);
  // A read error, an input that changed, a chat template given and unloadable, or an unreadable output.
  absl::Status status() const { return status_; }
  // The lines of the shard skipped because the output answers them (so far).
  int64_t answered_lines() const { return answered_lines_; }

 private:
  JobLines(const JobLineOptions& options, const CustomIdScan& scan, std::unique_ptr<BatchFileReader> reader);

  JobLineOptions options_;
  const CustomIdScan& scan_;
  std::unique_ptr<BatchFileReader> reader_;
  std::set<std::string> warned_;
  int64_t answered_lines_ = 0;
  absl::Status status_;
};

}  // namespace ringmoe
