// --log-level and --log-file, the same on every subcommand that logs.
#pragma once

#include <string>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"

namespace ringmoe::log {

struct LogFlags {
  std::string level = "info";
  std::string file;  // empty: stderr only
};

// Registers both flags on `app`, writing into `flags`.
void AddLogFlags(CLI::App& app, LogFlags* flags);
// Configures the logger from the flags. InvalidArgument names --log-level; a file that cannot be opened is
// FailedPrecondition naming it.
absl::Status ApplyLogFlags(const LogFlags& flags);

}  // namespace ringmoe::log
