#include "runtime/frontend/progress.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace ringmoe {
namespace {

constexpr int kBarWidth = 24;

// "MM:SS", or "H:MM:SS" from an hour on; absurd values (an ETA from a near-zero rate) are capped.
std::string FormatDuration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--:--";
  constexpr double kMaxShown = 999.0 * 3600.0;
  if (seconds > kMaxShown) return ">999h";
  int64_t whole = static_cast<int64_t>(seconds);
  int64_t hours = whole / 3600, minutes = whole / 60 % 60, secs = whole % 60;
  if (hours > 0) return absl::StrFormat("%d:%02d:%02d", hours, minutes, secs);
  return absl::StrFormat("%02d:%02d", minutes, secs);
}

double Rate(int64_t count, double elapsed) {
  return elapsed > 0 ? static_cast<double>(count) / elapsed : 0.0;
}

}  // namespace

double ProgressReporter::SteadySeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

ProgressReporter::ProgressReporter(int total_requests, FILE* out)
    : ProgressReporter(total_requests, out, out != nullptr && isatty(fileno(out)) == 1) {}

ProgressReporter::ProgressReporter(int total_requests, FILE* out, bool interactive,
                                   double log_interval_seconds, Clock clock)
    : total_requests_(total_requests),
      out_(out),
      interactive_(interactive),
      log_interval_seconds_(log_interval_seconds),
      clock_(clock ? std::move(clock) : Clock(SteadySeconds)),
      start_(clock_()) {
  next_log_ = start_ + log_interval_seconds_;
}

ProgressReporter::~ProgressReporter() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!finished_ && interactive_ && drawn_) Emit("\n");
}

void ProgressReporter::Update(int requests_done, int64_t tokens_generated, int64_t prompt_tokens_processed) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (finished_) return;
  requests_done_ = requests_done;
  tokens_generated_ = tokens_generated;
  prompt_tokens_ = prompt_tokens_processed;
  const double now = clock_();
  if (interactive_) {
    if (drawn_ && now - last_draw_ < kRedrawIntervalSeconds) return;
    // "\r" returns to the line start; "\x1b[K" erases what a longer previous line left behind.
    Emit(absl::StrCat("\r", StatusText(now - start_), "\x1b[K"));
    last_draw_ = now;
    drawn_ = true;
    return;
  }
  if (now < next_log_) return;
  Emit(absl::StrCat("progress: ", StatusText(now - start_), "\n"));
  // Stay on the start + k * interval grid however late this Update came.
  if (log_interval_seconds_ > 0) {
    next_log_ += log_interval_seconds_ * (std::floor((now - next_log_) / log_interval_seconds_) + 1);
  } else {
    next_log_ = now;
  }
}

void ProgressReporter::UpdateSsd(int64_t bytes_read, double read_seconds, double wait_seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  has_ssd_ = true;
  ssd_bytes_ = bytes_read;
  ssd_read_seconds_ = read_seconds;
  ssd_wait_seconds_ = wait_seconds;
}

std::string ProgressReporter::SsdText(double elapsed) const {
  if (!has_ssd_) return "";
  auto share = [elapsed](double seconds) {
    return elapsed > 0 ? static_cast<int>(std::lround(100 * std::clamp(seconds / elapsed, 0.0, 1.0))) : 0;
  };
  return absl::StrFormat(" | ssd %.2f GB/s, %.1f GB read, reads busy %d%%, ring waited %d%%",
                         ssd_read_seconds_ > 0 ? ssd_bytes_ / ssd_read_seconds_ / 1e9 : 0.0, ssd_bytes_ / 1e9,
                         share(ssd_read_seconds_), share(ssd_wait_seconds_));
}

void ProgressReporter::Finish() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (finished_) return;
  finished_ = true;
  const double elapsed = clock_() - start_;
  if (interactive_) {
    Emit(absl::StrCat("\r", StatusText(elapsed), "\x1b[K\n"));
    return;
  }
  Emit(absl::StrFormat(
      "progress: done %d/%d requests in %s | %d tokens generated (%.1f tok/s) | %d prompt "
      "tokens (%.1f tok/s)%s\n",
      requests_done_, total_requests_, FormatDuration(elapsed), tokens_generated_,
      Rate(tokens_generated_, elapsed), prompt_tokens_, Rate(prompt_tokens_, elapsed), SsdText(elapsed)));
}

std::string ProgressReporter::StatusText(double elapsed) const {
  const double fraction =
      total_requests_ > 0 ? std::clamp(static_cast<double>(requests_done_) / total_requests_, 0.0, 1.0) : 1.0;
  std::string eta;
  if (requests_done_ >= total_requests_) {
    eta = FormatDuration(0);
  } else if (requests_done_ <= 0) {
    eta = "--:--";
  } else {
    eta = FormatDuration(elapsed * (total_requests_ - requests_done_) / requests_done_);
  }
  std::string counts = absl::StrFormat(
      "%d/%d req (%d%%) | gen %.1f tok/s | prompt %.1f tok/s%s | %s elapsed | ETA %s", requests_done_,
      total_requests_, static_cast<int>(fraction * 100), Rate(tokens_generated_, elapsed),
      Rate(prompt_tokens_, elapsed), SsdText(elapsed), FormatDuration(elapsed), eta);
  if (!interactive_) return counts;
  const int filled = static_cast<int>(fraction * kBarWidth);
  return absl::StrCat("[", std::string(filled, '#'), std::string(kBarWidth - filled, '.'), "] ", counts);
}

void ProgressReporter::Emit(const std::string& text) {
  if (out_ == nullptr) return;
  std::fputs(text.c_str(), out_);
  std::fflush(out_);
}

}  // namespace ringmoe
