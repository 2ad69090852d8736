#include "runtime/log/log_flags.h"

#include "absl/strings/str_cat.h"
#include "runtime/log/log.h"

namespace ringmoe::log {

void AddLogFlags(CLI::App& app, LogFlags* flags) {
  app.add_option("--log-level", flags->level, "messages shown: trace, debug, info, warning, error or off")
      ->capture_default_str();
  app.add_option("--log-file", flags->file, "also append the log (with timestamps) to this file");
}

absl::Status ApplyLogFlags(const LogFlags& flags) {
  absl::StatusOr<Level> level = ParseLevel(flags.level);
  if (!level.ok()) return absl::InvalidArgumentError(absl::StrCat("--log-level: ", level.status().message()));
  return Configure(*level, flags.file);
}

}  // namespace ringmoe::log
