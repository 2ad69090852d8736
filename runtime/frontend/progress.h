// ProgressReporter: the progress display of `ringmoe run` on stderr.
//
// Interactive (a terminal): one line redrawn in place, at most ~10 times a second:
//   [#########.......] 37/100 req (37%) | gen 512.3 tok/s | prompt 2048.0 tok/s | 01:12 elapsed | ETA 02:03
// Otherwise (a log file, CI): one plain line every `log_interval_seconds`, and a summary line from Finish.
// Rates are averages since construction; the ETA extrapolates the request completion rate. With an SSD tier
// (UpdateSsd called), the line adds the SSD's read rate and its share of the time:
//   ... | ssd 1.88 GB/s, 41.2 GB read, reads busy 97%, ring waited 12% | ...
// "ring waited" is the share of the run the ring stood waiting for SSD reads (the SSD's share of step time);
// "reads busy" the share the reader had reads in flight.
//
// Threading: every public method takes an internal mutex, so Update may run on the engine's scheduler thread
// while another thread calls Finish. Output happens only inside Update and Finish (and the destructor), on
// the caller's thread; Update after Finish is ignored. The destructor must not race with other calls.
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <mutex>
#include <string>

namespace ringmoe {

class ProgressReporter {
 public:
  // Monotonic seconds from an arbitrary origin; injectable so tests control time.
  using Clock = std::function<double()>;
  static double SteadySeconds();

  // Interactive when `out` is a terminal.
  explicit ProgressReporter(int total_requests, FILE* out = stderr);
  ProgressReporter(int total_requests, FILE* out, bool interactive, double log_interval_seconds = 10.0,
                   Clock clock = SteadySeconds);
  ProgressReporter(const ProgressReporter&) = delete;
  ProgressReporter& operator=(const ProgressReporter&) = delete;
  // Ends an interactive line that Finish did not, so the shell prompt starts on a fresh line.
  ~ProgressReporter();

  // Cumulative counts so far (not increments): requests finished, tokens sampled, prompt tokens prefilled.
  void Update(int requests_done, int64_t tokens_generated, int64_t prompt_tokens_processed);
  // The SSD tier's totals so far (TokenEvent's ssd_* fields); shown from the next Update on.
  void UpdateSsd(int64_t bytes_read, double read_seconds, double wait_seconds);
  // Draws the final state (interactive) or prints the summary line (log mode). Idempotent.
  void Finish();

  // The minimum time between interactive redraws.
  static constexpr double kRedrawIntervalSeconds = 0.1;

 private:
  std::string StatusText(double elapsed) const;  // Needs mutex_.
  std::string SsdText(double elapsed) const;     // Needs mutex_; empty without an SSD tier.
  void Emit(const std::string& text);            // Needs mutex_.

  std::mutex mutex_;
  const int total_requests_;
  FILE* const out_;
  const bool interactive_;
  const double log_interval_seconds_;
  const Clock clock_;
  const double start_;
  double last_draw_ = 0.0;  // Interactive: time of the last redraw.
  double next_log_ = 0.0;   // Log mode: when the next periodic line is due.
  bool drawn_ = false;
  bool finished_ = false;
  int requests_done_ = 0;
  int64_t tokens_generated_ = 0;
  int64_t prompt_tokens_ = 0;
  bool has_ssd_ = false;
  int64_t ssd_bytes_ = 0;
  double ssd_read_seconds_ = 0, ssd_wait_seconds_ = 0;
};

}  // namespace ringmoe
