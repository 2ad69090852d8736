#include "runtime/frontend/job_lines.h"

#include <utility>

#include "runtime/frontend/chat_lines.h"
#include "runtime/frontend/request_fields.h"

namespace ringmoe {

ChatTemplateOnce::ChatTemplateOnce(std::string folder, std::string file)
    : folder_(std::move(folder)), file_(std::move(file)) {}

absl::StatusOr<const chat::ChatTemplate*> ChatTemplateOnce::Get(std::string* missing_reason) {
  if (!template_) template_.emplace(chat::ChatTemplate::Load(folder_, file_));
  const absl::StatusOr<chat::ChatTemplate>& loaded = *template_;
  if (loaded.ok()) return &*loaded;
  if (!file_.empty()) return loaded.status();
  *missing_reason = std::string(loaded.status().message());
  return nullptr;
}

absl::StatusOr<std::unique_ptr<JobLines>> JobLines::Open(const JobLineOptions& options,
                                                         const CustomIdScan& scan) {
  absl::StatusOr<std::unique_ptr<BatchFileReader>> reader = BatchFileReader::Open(options.input, scan);
  if (!reader.ok()) return reader.status();
  return std::unique_ptr<JobLines>(new JobLines(options, scan, std::move(*reader)));
}

JobLines::JobLines(const JobLineOptions& options, const CustomIdScan& scan,
                   std::unique_ptr<BatchFileReader> reader)
    : options_(options), scan_(scan), reader_(std::move(reader)) {}

bool JobLines::Next(BatchLine* line) {
  if (!status_.ok()) return false;
  int64_t index = 0;
  while (reader_->Next(line, &index)) {
    if (index % options_.shard.count != options_.shard.index) continue;
    if (options_.resume != nullptr) {
      absl::StatusOr<bool> answered = options_.resume->IsAnswered(line->custom_id, line->line_number,
                                                                  scan_.IdIsRepeated(line->line_number));
      if (!answered.ok()) {
        status_ = answered.status();
        return false;
      }
      if (*answered) {
        ++answered_lines_;
        continue;
      }
    }
    ApplyUnknownFieldPolicy(line, options_.lenient, &warned_, options_.warnings);
    if (options_.defaults != nullptr) ApplyGenerationDefaults(*options_.defaults, line);
    if (line->request.ok() && !line->chat_request.empty()) {
      std::string missing_reason;
      const chat::ChatTemplate* chat_template = nullptr;
      if (options_.chat_template != nullptr) {
        absl::StatusOr<const chat::ChatTemplate*> loaded = options_.chat_template->Get(&missing_reason);
        if (!loaded.ok()) {
          status_ = loaded.status();
          return false;
        }
        chat_template = *loaded;
      } else {
        missing_reason = "no chat template was looked for";
      }
      RenderChatPrompt(line, chat_template, options_.tokenizer, missing_reason);
    }
    return true;
  }
  status_ = reader_->status();
  return false;
}

}  // namespace ringmoe
