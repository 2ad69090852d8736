#include "runtime/engine/gpu_stage_clock.h"

#include "io/status_macros.h"

namespace ringmoe {

const char* GpuStageName(GpuStage stage) {
  switch (stage) {
    case GpuStage::kUpload:
      return "upload";
    case GpuStage::kProjections:
      return "projections";
    case GpuStage::kAttention:
      return "gpu_attention";
    case GpuStage::kRouter:
      return "router";
    case GpuStage::kSort:
      return "sort";
    case GpuStage::kExperts:
      return "experts";
    case GpuStage::kMlp:
      return "mlp";
    case GpuStage::kRingWait:
      return "ring_wait";
    case GpuStage::kLogits:
      return "logits";
  }
  return "?";
}

double GpuStageSeconds::total() const {
  double sum = idle;
  for (double seconds : work) sum += seconds;
  return sum;
}

absl::StatusOr<int> GpuStageClock::RecordNext() {
  if (used_ == static_cast<int>(events_.size())) {
    RINGMOE_ASSIGN_OR_RETURN(gpu::Event event, gpu::Event::Create(/*timing=*/true));
    events_.push_back(std::move(event));
  }
  RINGMOE_RETURN_IF_ERROR(events_[used_].Record(*stream_));
  return used_++;
}

absl::Status GpuStageClock::Begin(GpuStage stage) {
  if (!enabled()) return absl::OkStatus();
  RINGMOE_ASSIGN_OR_RETURN(open_, RecordNext());
  open_stage_ = stage;
  return absl::OkStatus();
}

absl::Status GpuStageClock::End() {
  if (!enabled() || open_ < 0) return absl::OkStatus();
  RINGMOE_ASSIGN_OR_RETURN(const int end, RecordNext());
  intervals_.push_back({open_, end, open_stage_});
  open_ = -1;
  return absl::OkStatus();
}

absl::Status GpuStageClock::Collect() {
  if (!enabled()) return absl::OkStatus();
  absl::Status status = stream_->Synchronize();
  for (size_t i = 0; status.ok() && i < intervals_.size(); ++i) {
    const Interval& interval = intervals_[i];
    absl::StatusOr<float> work = gpu::ElapsedMilliseconds(events_[interval.begin], events_[interval.end]);
    if (!work.ok()) {
      status = work.status();
      break;
    }
    totals_.work[static_cast<int>(interval.stage)] += *work / 1e3;
    if (i == 0) continue;
    absl::StatusOr<float> gap =
        gpu::ElapsedMilliseconds(events_[intervals_[i - 1].end], events_[interval.begin]);
    if (!gap.ok()) {
      status = gap.status();
      break;
    }
    if (*gap > 0) totals_.idle += *gap / 1e3;
  }
  intervals_.clear();
  used_ = 0;
  open_ = -1;
  return status;
}

}  // namespace ringmoe
