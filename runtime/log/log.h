// ringmoe_log: the project's logging (index of runtime/log/).
//   log.h        levels, Configure (stderr and an optional file), Trace/Debug/Info/Warn/Error
//   log_flags.h  --log-level and --log-file for the subcommands (CLI11)
//
// Messages carry a timestamp and their level ("[2026-12-07 12:03:12.123] [warning] ..."); they go to stderr
// and, once Configure names a file, are appended there too. spdlog does the work, but no spdlog type appears
// here, so callers include only this header. The progress line of `ringmoe run` is not a log message: it
// rewrites one terminal line and stays a plain write to stderr.
//
// Only runtime/ logs: io/, cpu/, gpu/ and planner/ must not include runtime/, and they report through
// absl::Status instead.
//
// Threading: every function may be called from any thread at any time; Configure replaces the sinks
// atomically with respect to messages being written.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "fmt/format.h"

namespace ringmoe::log {

enum class Level { kTrace, kDebug, kInfo, kWarning, kError, kOff };

// "trace", "debug", "info", "warning" (or "warn"), "error", "off"; InvalidArgument naming the valid ones.
absl::StatusOr<Level> ParseLevel(std::string_view text);
std::string_view LevelName(Level level);

// Messages at `level` and above go to stderr and, when `file` is not empty, are appended to `file` (created
// when missing). Fails, changing nothing, when the file cannot be opened. Before the first call: kInfo to
// stderr only.
absl::Status Configure(Level level, const std::string& file = "");
Level CurrentLevel();
bool Enabled(Level level);

// Writes one message (no trailing newline needed) when `level` is enabled.
void Write(Level level, std::string_view message);
// Flushes the sinks (the file sink is also flushed at every warning and above).
void Flush();

template <typename... Args>
void Trace(fmt::format_string<Args...> format, Args&&... args) {
  if (Enabled(Level::kTrace)) Write(Level::kTrace, fmt::format(format, std::forward<Args>(args)...));
}
template <typename... Args>
void Debug(fmt::format_string<Args...> format, Args&&... args) {
  if (Enabled(Level::kDebug)) Write(Level::kDebug, fmt::format(format, std::forward<Args>(args)...));
}
template <typename... Args>
void Info(fmt::format_string<Args...> format, Args&&... args) {
  if (Enabled(Level::kInfo)) Write(Level::kInfo, fmt::format(format, std::forward<Args>(args)...));
}
template <typename... Args>
void Warning(fmt::format_string<Args...> format, Args&&... args) {
  if (Enabled(Level::kWarning)) Write(Level::kWarning, fmt::format(format, std::forward<Args>(args)...));
}
template <typename... Args>
void Error(fmt::format_string<Args...> format, Args&&... args) {
  if (Enabled(Level::kError)) Write(Level::kError, fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace ringmoe::log
