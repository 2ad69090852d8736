// GpuStageClock: where the compute stream's time goes in a step, measured on the GPU itself (diagnostics:
// EngineOptions::gpu_stage_times). A pair of timing events brackets each stage's queued work; once the step
// has finished, each pair's elapsed time adds to its stage, and the time from one stage's end to the next
// one's start, when the stream had nothing queued (the GPU waiting for the host: an expert-count read-back
// being answered, the CPU's attention of a micro-batch, the host queueing the next kernels), adds to `idle`.
// Waits on another stream (the ring's fills) are a stage of their own, so they never count as idle. Host
// time spent recording: a few microseconds a stage, so it is off unless asked for.
//
// Threading: Begin and End on the one thread that queues the compute stream's work (the GPU feeder); Collect
// and totals on the thread that owns the step once that work has finished and the feeder is idle
// (GpuForward::Run after GpuFeeder::Drain). Disabled (the default), Begin, End and Collect do nothing.
#pragma once

#include <array>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gpu/stream.h"

namespace ringmoe {

enum class GpuStage : int {
  kUpload,       // the step's hidden states and tables
  kProjections,  // input norm, q/k/v (MLA: q and kv_a), QK-norm, RoPE, the copies back for the CPU
  kAttention,    // the GPU's own attention rows: fresh prompts, the device cache's sequences
  kRouter,       // the CPU's attention rows up, o_proj, residual, norm, router and top-k
  kSort,         // the experts' sort and the counts' copy back
  kExperts,      // gather, expert GEMMs, SwiGLU, combine (one interval per expert tile)
  kMlp,          // dense MLP layers and shared experts
  kRingWait,     // the compute stream waiting for a ring slot's fill
  kLogits,       // final norm, lm_head, token picks, logits back
};
inline constexpr int kGpuStages = 9;
const char* GpuStageName(GpuStage stage);

// Seconds, summed over steps.
struct GpuStageSeconds {
  std::array<double, kGpuStages> work{};
  double idle = 0;  // the stream empty between two stages
  double total() const;
};

class GpuStageClock {
 public:
  GpuStageClock() = default;
  GpuStageClock(GpuStageClock&&) noexcept = default;
  GpuStageClock& operator=(GpuStageClock&&) noexcept = default;

  // Times the work queued on `stream` from now on; the stream must outlive the clock.
  void Enable(const gpu::Stream& stream) { stream_ = &stream; }
  bool enabled() const { return stream_ != nullptr; }

  // Brackets work queued on the stream; a Begin left open (a step that failed midway) is dropped.
  absl::Status Begin(GpuStage stage);
  absl::Status End();
  // After the stream has run everything bracketed since the last Collect: adds it to totals() and starts
  // over. Waits for the stream first.
  absl::Status Collect();
  const GpuStageSeconds& totals() const { return totals_; }

 private:
  struct Interval {
    int begin = 0, end = 0;  // indexes into events_
    GpuStage stage = GpuStage::kUpload;
  };
  absl::StatusOr<int> RecordNext();

  const gpu::Stream* stream_ = nullptr;
  std::vector<gpu::Event> events_;  // reused step after step; grows to the most a step has needed
  int used_ = 0;
  std::vector<Interval> intervals_;
  int open_ = -1;  // the open Begin's event, -1 when none
  GpuStage open_stage_ = GpuStage::kUpload;
  GpuStageSeconds totals_;
};

}  // namespace ringmoe
