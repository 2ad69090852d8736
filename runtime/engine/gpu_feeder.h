// GpuFeeder: the one thread that queues the GPU work of an offload step, in the order it is posted.
//
// The step's driving thread runs CPU attention and posts the GPU work around it; the feeder runs each post in
// turn, host waits included (the MoE pass reads its expert counts back before it can size its GEMMs), so that
// such a wait never holds up the CPU attention of the next micro-batch (gpu/DESIGN.md).
//
// Threading: Post, WaitFor and Drain are called from one driving thread; tasks run on the feeder's own
// thread, one at a time, in post order. Everything a task touches belongs to the feeder until WaitFor returns
// for it.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "absl/status/status.h"

namespace ringmoe {

class GpuFeeder {
 public:
  using Task = std::function<absl::Status()>;

  GpuFeeder();
  ~GpuFeeder();  // Runs what is queued, then joins.
  GpuFeeder(const GpuFeeder&) = delete;
  GpuFeeder& operator=(const GpuFeeder&) = delete;

  // Queues `task`; returns its ticket (1, 2, ...). Once a task has failed, later ones are skipped.
  int64_t Post(Task task);
  // Blocks until the task with `ticket`, and every task before it, has run (or was skipped); returns the
  // first failure so far, if any.
  absl::Status WaitFor(int64_t ticket);
  // WaitFor the last ticket posted.
  absl::Status Drain();
  // Clears a failure so that the next step starts afresh (the caller has drained and reset its state).
  void ClearFailure();

  // Seconds the feeder thread spent running tasks (host waits included), for the run statistics.
  double busy_seconds() const;

 private:
  void Loop();

  mutable std::mutex mutex_;
  std::condition_variable work_ready_, work_done_;
  std::deque<Task> queue_;
  int64_t posted_ = 0;
  int64_t finished_ = 0;
  absl::Status failure_;
  double busy_seconds_ = 0;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace ringmoe
