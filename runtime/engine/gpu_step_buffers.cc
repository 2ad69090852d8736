#include "runtime/engine/gpu_step_buffers.h"

#include <algorithm>
#include <cassert>
#include <utility>
#include <vector>

#include "io/status_macros.h"
#include "planner/memory_table.h"

namespace ringmoe {

absl::Status StepBuffers::Allocate(gpu::DeviceArena& arena, const ModelSpec& spec, int max_tokens,
                                   const GpuPlacement& placement, int device_kv_blocks,
                                   const gpu::Stream& compute) {
  // The sizes come from the planner's memory table, which prices exactly these buffers.
  const std::vector<planner::MemoryItem> items = planner::StepBufferItems(
      spec, max_tokens, placement.micro_batches, device_kv_blocks, placement.kv_cache_bytes);
  gpu::DeviceBuffer* const device[] = {
      &x,         &normed,        &normed_bf16,     &q,          &k,
      &v,         &attention,     &attention_bf16,  &projected,  &router_logits,
      &ids,       &routing,       &zero_ids,        &ones,       &gate,
      &positions, &fresh_offsets, &wanted_rows,     &final_rows, &final_bf16,
      &logits,    &picked_ids,    &picked_logprobs, &row_tables, &device_tables,
      &device_k,  &device_v,      &q_lora,          &q_lora_bf16};
  gpu::PinnedHostBuffer* const pinned[] = {&host_x,
                                           &host_q,
                                           &host_k,
                                           &host_v,
                                           &host_attention,
                                           &host_positions,
                                           &host_fresh_offsets,
                                           &host_rows,
                                           &host_logits,
                                           &host_picked_ids,
                                           &host_picked_logprobs,
                                           &host_row_tables,
                                           &host_device_tables};
  constexpr size_t kDevice = sizeof(device) / sizeof(device[0]), kPinned = sizeof(pinned) / sizeof(pinned[0]);
  assert(items.size() == kDevice + kPinned);  // StepBufferItems lists these buffers, in this order
  for (size_t i = 0; i < items.size(); ++i) {
    const planner::MemoryItem& item = items[i];
    if (i < kDevice) {
      assert(item.tier == planner::MemoryTier::kGpu);
      if (item.bytes == 0) continue;
      RINGMOE_ASSIGN_OR_RETURN(*device[i], arena.Allocate(item.bytes, item.what));
    } else {
      assert(item.tier == planner::MemoryTier::kPinned);
      RINGMOE_ASSIGN_OR_RETURN(*pinned[i - kDevice],
                               gpu::PinnedHostBuffer::Allocate(item.bytes, "step staging"));
    }
  }
  const int64_t t = max_tokens;
  host_attention_direct = gpu::DeviceReadsHostDirectly(host_attention.data());
  // Dense MLPs and shared experts run as single-expert MoE layers: expert 0, weight 1 (or the sigmoid gate).
  RINGMOE_RETURN_IF_ERROR(gpu::FillDeviceBytes(zero_ids.data(), 0, t * 4, compute));
  std::vector<float> unit(t, 1.0f);
  RINGMOE_RETURN_IF_ERROR(gpu::CopyHostToDevice(ones.data(), unit.data(), t * 4, compute));
  return compute.Synchronize();
}

}  // namespace ringmoe
