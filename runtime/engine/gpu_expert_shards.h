// GpuExpertShards: a MoE layer's routed experts run as expert shards (expert parallel, issue 24;
// gpu/DESIGN.md, "Expert shards"). Shard g owns the contiguous experts planner::ShardExperts(E, G, g). For a
// micro-batch each shard runs the routed-expert pass over its own experts only (MoeRunner::RunExpertRange:
// assignments routed to other shards add nothing there) into a partial output of its own, [rows, hidden] f32;
// then the combine adds the partials to the residual stream in shard order, 0 first, so the sum is the same
// whatever ran when.
//
// Here every shard is on the engine's one GPU (logical shards): they share the routed-expert runner, its
// sort (made once, by the caller) and the compute stream, so they run one after another and the combine is
// a device-side add. What a shard on another GPU adds, and this class leaves out: that GPU's own stream,
// cuBLAS handle, runner and ring (its shard's parts of each streamed layer: GpuModel cuts parts shard-major
// so that each belongs to one shard); the micro-batch's normed bf16 rows, expert ids and routing weights
// sent to it (through pinned host memory, as planner/DESIGN.md prices it) and sorted there; its partial
// copied back into pinned host memory, and an event the combining GPU's stream waits on before it adds that
// partial (read in place from pinned memory or copied up first), in the same shard order.
//
// Threading: as GpuStepOps, which owns it: Create on the driving thread before the feeder starts, Run on the
// feeder thread only.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "gpu/blas.h"
#include "gpu/device_arena.h"
#include "gpu/moe_ops.h"
#include "gpu/stream.h"
#include "io/model_spec.h"
#include "planner/expert_shards.h"

namespace ringmoe {

class GpuExpertShards {
 public:
  // shards >= 2 (one shard runs the unsplit pass, without partials). Allocates each shard's partial output
  // for up to max_tokens rows from `arena`: exactly planner::ExpertShardItems, which the plan prices.
  static absl::StatusOr<GpuExpertShards> Create(gpu::DeviceArena& arena, const ModelSpec& spec,
                                                int max_tokens, int shards);

  int shards() const { return static_cast<int>(ranges_.size()); }
  const std::vector<planner::ExpertRange>& ranges() const { return ranges_; }

  // The micro-batch's rows [first_row, first_row + rows) of the step: `runner` has sorted their expert ids
  // (SortByExpert over those rows); x_bf16, weights and hidden point at their first row. Each shard's pass
  // into its partial (zeroed first), then hidden += partial_0, += partial_1, ... Queued on `stream`.
  absl::Status Run(gpu::MoeRunner& runner, gpu::BlasHandle& blas, const void* x_bf16, const float* weights,
                   std::span<const uint8_t* const> expert_bases, const gpu::PackedLayerIndex& index,
                   int first_row, int rows, float* hidden, const gpu::Stream& stream);

 private:
  GpuExpertShards() = default;
  int hidden_ = 0;
  int max_tokens_ = 0;
  std::vector<planner::ExpertRange> ranges_;
  std::vector<gpu::DeviceBuffer> partials_;  // Per shard: [max_tokens, hidden] f32, indexed by step row.
};

}  // namespace ringmoe
