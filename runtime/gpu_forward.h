// GpuForward: one step on the GPU offload path. Projections, routers and expert GEMMs run on the GPU;
// attention runs on the CPU over the host KV cache. The step goes layer-major so that each streamed layer's
// experts visit the GPU once per step, and is cut into micro-batches so that the CPU's attention on one
// overlaps the GPU's expert GEMMs on another, while the copy stream fills the ring's next slot
// (gpu/DESIGN.md).
#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "cpu/thread_pool.h"
#include "runtime/forward.h"
#include "runtime/gpu_model.h"
#include "runtime/kv_cache.h"

namespace ringmoe {

struct GpuRunStats {
  int64_t streamed_bytes = 0;   // host-to-device expert bytes queued by the ring
  double cpu_wait_seconds = 0;  // host time blocked on the GPU (q/k/v ready, expert counts, logits)
  int64_t gpu_peak_bytes = 0;   // peak of the engine's device allocations
  int64_t gpu_cap_bytes = 0;
  int resident_moe_layers = 0;
  int streamed_moe_layers = 0;
};

class GpuForward final : public ForwardPass {
 public:
  // max_step_tokens: the most tokens a step may hold (sizes the device workspace).
  static absl::StatusOr<std::unique_ptr<GpuForward>> Create(const ModelWeights& weights, KvCache& kv_cache,
                                                            cpu::CpuWorkers& workers,
                                                            const GpuPlacement& placement,
                                                            int64_t gpu_cap_bytes, int max_step_tokens);
  ~GpuForward() override;

  absl::Status Run(const std::vector<StepChunk>& chunks, std::vector<float>* logits) override;
  const StageTimes& stage_times() const override;
  GpuRunStats stats() const;

  // Device bytes of activations and scratch for a step of max_step_tokens (what GpuPlacement reserves).
  static int64_t WorkspaceBytes(const ModelSpec& spec, int max_step_tokens);

  struct State;

 private:
  explicit GpuForward(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace ringmoe
