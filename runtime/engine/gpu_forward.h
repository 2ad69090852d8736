// GpuForward: one step on the GPU offload path. Projections, routers, expert GEMMs, RoPE and the attention of
// fresh prompts run on the GPU; decode attention (and prefill chunks that continue a cached prefix) run on
// the CPU over the host KV cache, except for the sequences whose KV lives in the GPU's share of the cache
// (KvCache device blocks), which attend on the GPU (gpu/kv_cache_ops.h). The step goes layer-major so that
// each streamed layer's experts visit the GPU once per step, and is cut into micro-batches so that the CPU's
// attention on one overlaps the GPU's work on another, while the copy stream fills the ring's next slots.
//
// Two threads run a step. The calling (driving) thread lays the step out (step_layout.h), embeds its tokens,
// runs the CPU attention and posts everything else, in order, to a feeder thread (gpu_feeder.h), which
// queues the GPU work (gpu_step_ops.h), ring driving included (expert_streamer.h), and does its host waits.
// The buffers they share are in gpu_step_buffers.h, with which side owns each when; gpu/DESIGN.md has the
// picture.
#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "cpu/thread_pool.h"
#include "runtime/engine/forward.h"
#include "runtime/engine/gpu_model.h"
#include "runtime/engine/kv_cache.h"

namespace ringmoe {

class GpuForward final : public ForwardPass {
 public:
  // max_step_tokens: the most tokens a step may hold (sizes the device workspace).
  static absl::StatusOr<std::unique_ptr<GpuForward>> Create(const ModelWeights& weights, KvCache& kv_cache,
                                                            cpu::CpuWorkers& workers,
                                                            const GpuPlacement& placement,
                                                            int64_t gpu_cap_bytes, int max_step_tokens);
  ~GpuForward() override;

  // Picks greedy chunks' tokens on the GPU (argmax and its log-softmax); only sampled chunks' logits come
  // back.
  absl::Status Run(const std::vector<StepChunk>& chunks, StepOutput* out) override;
  // Everything but streamed_bytes, copy_seconds, feeder_busy_seconds and gpu_peak_bytes counts up to now;
  // those four are as of the end of the last step that succeeded.
  ForwardStats stats() const override;

  // Device bytes of activations and scratch for a step of max_step_tokens (what GpuPlacement reserves), the
  // expert runners sized for expert_tile_tokens of them (0: all); mla_prefill_on_gpu adds MLA's prefill
  // attention scratch (planner::MlaPrefillItems), expert_shards > 1 the shards' partial outputs
  // (planner::ExpertShardItems).
  static int64_t WorkspaceBytes(const ModelSpec& spec, int max_step_tokens,
                                io::DType expert_dtype = io::DType::kBF16, bool mla_prefill_on_gpu = false,
                                int expert_shards = 1, int expert_tile_tokens = 0);

 private:
  struct State;
  explicit GpuForward(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace ringmoe
