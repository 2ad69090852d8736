#include "runtime/log/log.h"

#include <array>
#include <atomic>
#include <memory>
#include <mutex>
#include <utility>

#include "absl/strings/str_cat.h"
#include "spdlog/logger.h"
#include "spdlog/sinks/basic_file_sink.h"
#include "spdlog/sinks/stdout_sinks.h"

namespace ringmoe::log {
namespace {

constexpr std::array<std::string_view, 6> kLevelNames = {"trace", "debug", "info", "warning", "error", "off"};
// Timestamp to the millisecond, then the level: "[2026-12-07 12:03:12.123] [warning] message".
constexpr char kPattern[] = "[%Y-%m-%d %H:%M:%S.%e] [%l] %v";

spdlog::level::level_enum ToSpdlog(Level level) {
  switch (level) {
    case Level::kTrace:
      return spdlog::level::trace;
    case Level::kDebug:
      return spdlog::level::debug;
    case Level::kInfo:
      return spdlog::level::info;
    case Level::kWarning:
      return spdlog::level::warn;
    case Level::kError:
      return spdlog::level::err;
    case Level::kOff:
      return spdlog::level::off;
  }
  return spdlog::level::info;
}

// The process's logger. Configure builds a new one and swaps it in under the mutex; Write takes a shared
// reference first, so a message in flight finishes on the logger it started with.
struct State {
  std::mutex mutex;
  std::shared_ptr<spdlog::logger> logger;
  std::atomic<Level> level{Level::kInfo};
};

std::shared_ptr<spdlog::logger> MakeLogger(Level level, std::shared_ptr<spdlog::sinks::sink> file_sink) {
  std::vector<spdlog::sink_ptr> sinks = {std::make_shared<spdlog::sinks::stderr_sink_mt>()};
  if (file_sink != nullptr) sinks.push_back(std::move(file_sink));
  auto logger = std::make_shared<spdlog::logger>("ringmoe", sinks.begin(), sinks.end());
  logger->set_pattern(kPattern);
  logger->set_level(ToSpdlog(level));
  logger->flush_on(spdlog::level::warn);
  return logger;
}

State& GetState() {
  static State* state = [] {
    auto* created = new State;  // Never destroyed: threads may log during static destruction.
    created->logger = MakeLogger(Level::kInfo, nullptr);
    return created;
  }();
  return *state;
}

std::shared_ptr<spdlog::logger> CurrentLogger() {
  State& state = GetState();
  std::lock_guard<std::mutex> lock(state.mutex);
  return state.logger;
}

}  // namespace

absl::StatusOr<Level> ParseLevel(std::string_view text) {
  if (text == "warn") return Level::kWarning;
  for (size_t i = 0; i < kLevelNames.size(); ++i) {
    if (text == kLevelNames[i]) return static_cast<Level>(i);
  }
  return absl::InvalidArgumentError(absl::StrCat("log level '", std::string(text),
                                                 "': expected trace, debug, info, warning, error or off"));
}

std::string_view LevelName(Level level) { return kLevelNames[static_cast<size_t>(level)]; }

absl::Status Configure(Level level, const std::string& file) {
  std::shared_ptr<spdlog::sinks::sink> file_sink;
  if (!file.empty()) {
    try {
      file_sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(file, /*truncate=*/false);
    } catch (const spdlog::spdlog_ex& error) {
      return absl::FailedPreconditionError(absl::StrCat("log file ", file, ": ", error.what()));
    }
  }
  std::shared_ptr<spdlog::logger> logger = MakeLogger(level, std::move(file_sink));
  State& state = GetState();
  std::lock_guard<std::mutex> lock(state.mutex);
  if (state.logger != nullptr) state.logger->flush();
  state.logger = std::move(logger);
  state.level.store(level, std::memory_order_relaxed);
  return absl::OkStatus();
}

Level CurrentLevel() { return GetState().level.load(std::memory_order_relaxed); }

bool Enabled(Level level) { return level != Level::kOff && level >= CurrentLevel(); }

void Write(Level level, std::string_view message) {
  if (!Enabled(level)) return;
  // A logging failure (a full disk under --log-file) must not end the job; spdlog reports it on stderr.
  try {
    CurrentLogger()->log(ToSpdlog(level), spdlog::string_view_t(message.data(), message.size()));
  } catch (...) {
  }
}

void Flush() {
  try {
    CurrentLogger()->flush();
  } catch (...) {
  }
}

}  // namespace ringmoe::log
