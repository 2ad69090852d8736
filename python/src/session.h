// The C++ half of the Python module `ringmoe` (python/src/module.cc binds it): an engine opened with options,
// plan reports, generate jobs that hand each result over as it finishes, and batch files run with the CLI's
// output rules. Requests and results cross as JSON text in the batch JSONL shape (runtime/BATCH_FORMAT.md),
// so the Python dicts have exactly the fields of a `ringmoe run` input and output line. No pybind11 type
// appears here: module.cc owns the GIL and the conversion to Python objects and exceptions.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "ringmoe/engine.h"
#include "runtime/frontend/batch_io.h"
#include "runtime/frontend/plan_flags.h"
#include "runtime/frontend/shard.h"

namespace ringmoe::python {

struct OpenOptions {
  int threads = 0;                 // 0: every core
  std::string cpu_dtype = "auto";  // auto, f32 or bf16
  std::string tokenizer;           // tokenizer.json or folder; empty: the model folder's
  PlanFlags plan;                  // device, hardware profile, budgets and pins, as `ringmoe run`'s flags
  // Request lines of the job to come: when given, the plan is searched for their workload (as `ringmoe run`
  // does, which needs a hardware profile: plan.hardware or this machine's, probed once). Empty: the plan the
  // pins and the defaults make for a nominal workload (as `ringmoe run --no-plan`), without a probe.
  std::vector<std::string> plan_for;
};

// What RunFile did.
struct RunFileSummary {
  int64_t input_lines = 0;         // lines of the shard
  int64_t kept_lines = 0;          // answered by the output already (resume)
  int64_t ran_requests = 0;        // given to the engine
  int64_t bad_lines = 0;           // answered with an error line without running
  int64_t failed_requests = 0;     // ran and failed alone
  int64_t cancelled_requests = 0;  // stopped by Cancel: no line written, a resumed run runs them
  int64_t prompt_tokens = 0, generated_tokens = 0;
  double seconds = 0;
};

class EngineSession;

// One Generate running on a thread of its own. Results arrive as output lines (JSON text) in completion
// order. Threading: Next and Cancel may be called from any thread; the engine's scheduler thread only pushes.
class GenerateJob {
 public:
  ~GenerateJob();  // cancels the job if it still runs, and waits for its thread
  GenerateJob(const GenerateJob&) = delete;
  GenerateJob& operator=(const GenerateJob&) = delete;

  enum class Wait { kLine, kEnd, kTimeout };
  // Waits at most `timeout_seconds` for the next line. kEnd: every line was handed over; status() then says
  // whether the engine failed as a whole.
  Wait Next(double timeout_seconds, std::string* line);
  // Stops the job (Engine::Cancel): requests still running get `grace_seconds` to finish.
  void Cancel(double grace_seconds = 0);
  absl::Status status();
  int total() const { return total_; }

 private:
  friend class EngineSession;
  GenerateJob(EngineSession* session, std::vector<BatchLine> lines, std::vector<Request> requests);
  void Run();

  EngineSession* session_;
  std::vector<BatchLine> lines_;
  std::vector<Request> requests_;
  int total_;
  std::string run_id_;
  std::mutex mutex_;  // guards ready_, done_, status_
  std::condition_variable changed_;
  std::deque<std::string> ready_;
  bool done_ = false;
  absl::Status status_;
  std::thread thread_;
};

// Threading: one GenerateJob or RunFile at a time (the engine runs one batch at a time); Plan, info and
// Cancel may be called at any time from any thread.
class EngineSession {
 public:
  static absl::StatusOr<std::unique_ptr<EngineSession>> Open(const std::string& model_dir,
                                                             OpenOptions options);
  ~EngineSession();

  // The plan report for a job of these request lines: (the report as JSON text, the report as people read
  // it). Uses the open options' hardware profile and pins.
  absl::StatusOr<std::pair<std::string, std::string>> Plan(
      const std::vector<std::string>& request_lines) const;

  // Starts generating. A request line that is not a valid request fails the call (InvalidArgument naming the
  // 1-based position and the field) before anything runs; FailedPrecondition while another job runs.
  absl::StatusOr<std::unique_ptr<GenerateJob>> Start(const std::vector<std::string>& request_lines);

  // `ringmoe run --input input --output output --shard shard [--resume]`: the same output rules (lines
  // appended as results finish, an existing output refused unless `resume`), in this process.
  absl::StatusOr<RunFileSummary> RunFile(const std::string& input, const std::string& output, Shard shard,
                                         bool resume);

  // Stops the running job (Engine::Cancel): requests not finished within `grace_seconds` end with a
  // "cancelled" error result. Nothing when no job runs.
  void Cancel(double grace_seconds = 0);

  // The model and the executed plan, as JSON text.
  std::string InfoJson() const;

 private:
  friend class GenerateJob;
  EngineSession(std::string model_dir, OpenOptions options, Engine engine);
  bool TryBegin();
  void End();

  std::string model_dir_;
  OpenOptions options_;
  Engine engine_;
  std::atomic<bool> busy_{false};  // a job (GenerateJob or RunFile) holds the engine
  std::mutex cancel_mutex_;        // guards cancel_open_ and cancel_sent_
  bool cancel_open_ = false;       // a job runs: Cancel goes to the engine (TryBegin to End)
  bool cancel_sent_ = false;       // Cancel reached the engine during this job
};

}  // namespace ringmoe::python
