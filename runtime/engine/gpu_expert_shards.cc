#include "runtime/engine/gpu_expert_shards.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "gpu/dense_ops.h"
#include "io/status_macros.h"
#include "planner/memory_table.h"

namespace ringmoe {

absl::StatusOr<GpuExpertShards> GpuExpertShards::Create(gpu::DeviceArena& arena, const ModelSpec& spec,
                                                        int max_tokens, int shards) {
  if (shards < 2 || shards > spec.num_experts) {
    return absl::InvalidArgumentError(absl::StrCat("expert shards: ", shards, " shards of ", spec.num_experts,
                                                   " routed experts (2 to ", spec.num_experts, ")"));
  }
  GpuExpertShards out;
  out.hidden_ = spec.hidden_size;
  out.max_tokens_ = max_tokens;
  out.ranges_ = planner::ShardRanges(spec.num_experts, shards);
  for (const planner::MemoryItem& item : planner::ExpertShardItems(spec, max_tokens, shards)) {
    RINGMOE_ASSIGN_OR_RETURN(gpu::DeviceBuffer partial, arena.Allocate(item.bytes, item.what));
    out.partials_.push_back(std::move(partial));
  }
  if (static_cast<int>(out.partials_.size()) != shards) {
    return absl::InternalError("expert shards: the memory table lists no partial per shard");
  }
  return out;
}

absl::Status GpuExpertShards::Run(gpu::MoeRunner& runner, gpu::BlasHandle& blas, const void* x_bf16,
                                  const float* weights, std::span<const uint8_t* const> expert_bases,
                                  const gpu::PackedLayerIndex& index, int first_row, int rows, float* hidden,
                                  const gpu::Stream& stream) {
  if (first_row < 0 || rows < 0 || first_row + rows > max_tokens_) {
    return absl::InvalidArgumentError(absl::StrCat("expert shards: rows [", first_row, ", ", first_row + rows,
                                                   ") of a step of at most ", max_tokens_));
  }
  if (rows == 0) return absl::OkStatus();
  const int64_t elements = int64_t{rows} * hidden_;
  // Each shard's pass. On several GPUs each would run on its own device and stream, concurrently.
  for (int g = 0; g < shards(); ++g) {
    float* partial = partials_[g].as<float>() + int64_t{first_row} * hidden_;
    RINGMOE_RETURN_IF_ERROR(gpu::FillDeviceBytes(partial, 0, elements * 4, stream));
    RINGMOE_RETURN_IF_ERROR(runner.RunExpertRange(blas, x_bf16, weights, expert_bases, index,
                                                  ranges_[g].first, ranges_[g].end(), partial, stream));
  }
  // The combine, in shard order (on several GPUs: after each remote partial's event, from pinned memory).
  for (int g = 0; g < shards(); ++g) {
    RINGMOE_RETURN_IF_ERROR(
        gpu::ResidualAdd(hidden, partials_[g].as<float>() + int64_t{first_row} * hidden_, elements, stream));
  }
  return absl::OkStatus();
}

}  // namespace ringmoe
