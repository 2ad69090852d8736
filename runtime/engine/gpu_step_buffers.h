// StepBuffers: the device buffers and pinned staging buffers of an offload step. They are allocated once,
// for the largest step, with the sizes of planner/memory_table.h's StepBufferItems (the planner prices the same list),
// and indexed by row: each micro-batch has its own rows, so the copies of one run while another computes.
//
// Threading: no locks. Each buffer belongs to one side at a time, as the step's protocol hands it over
// (GpuForward, gpu_forward.cc):
//   * every device buffer: the feeder thread (the GPU work it queues) only;
//   * host_x, host_positions, host_fresh_offsets, host_row_tables, host_device_tables: written by the driving
//     thread at the start of a step, before it posts the upload that reads them;
//   * host_q, host_k, host_v: written by copies the feeder queues; the driving thread reads a micro-batch's
//     rows once that micro-batch's qkv_ready event (GpuStepOps) has completed;
//   * host_attention: the driving thread writes a micro-batch's rows (CPU attention), then posts the task
//     whose GPU work reads them; it writes them again only after the next qkv_ready of that micro-batch;
//   * host_rows, host_logits, host_picked_ids, host_picked_logprobs: the feeder thread only (lm_head).
// The step ends with a compute-stream synchronise, so every staging buffer is free when the next one starts.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "gpu/device_arena.h"
#include "gpu/host_memory.h"
#include "gpu/stream.h"
#include "io/model_spec.h"
#include "planner/memory_table.h"
#include "runtime/engine/gpu_model.h"

namespace ringmoe {

// lm_head runs over at most this many rows at once, which bounds the logits buffers (the memory table's).
using planner::kLogitsRows;

// Row `row` of a buffer of rows `width` elements wide.
template <typename T>
T* Row(const gpu::DeviceBuffer& buffer, int row, int width) {
  return buffer.as<T>() + static_cast<int64_t>(row) * width;
}
template <typename T>
T* HostRow(const gpu::PinnedHostBuffer& buffer, int row, int width) {
  return buffer.as<T>() + static_cast<int64_t>(row) * width;
}

struct StepBuffers {
  // Allocates every buffer for steps of up to max_tokens tokens, from `arena` (device) and as pinned memory,
  // and fills the constant ones (zero_ids, ones) on `compute`, waiting for them. placement gives the
  // micro-batch count and the bytes of the GPU's KV share; device_kv_blocks is KvCache::device_blocks().
  absl::Status Allocate(gpu::DeviceArena& arena, const ModelSpec& spec, int max_tokens,
                        const GpuPlacement& placement, int device_kv_blocks, const gpu::Stream& compute);

  gpu::DeviceBuffer x, normed, normed_bf16, q, k, v, attention, attention_bf16, projected, router_logits, ids,
      routing, zero_ids, ones, gate, positions, fresh_offsets, wanted_rows, final_rows, final_bf16, logits,
      picked_ids, picked_logprobs, row_tables, device_tables;
  gpu::PinnedHostBuffer host_x, host_q, host_k, host_v, host_attention, host_positions, host_fresh_offsets,
      host_rows, host_logits, host_picked_ids, host_picked_logprobs, host_row_tables, host_device_tables;
  // The GPU share of the KV cache: per layer, device blocks of bf16 K and V (KvCache ids >= num_blocks()).
  gpu::DeviceBuffer device_k, device_v;
  // MLA with a q LoRA: q_a's rows (f32, normed in place) and their bf16 copy, q_b's input. Empty otherwise.
  // (For MLA, k holds kv_a's [latent ; rope key] rows, v is empty and attention is heads * v_head_dim wide.)
  gpu::DeviceBuffer q_lora, q_lora_bf16;
  bool host_attention_direct = false;  // Kernels read host_attention in place (gpu::DeviceReadsHostDirectly).
};

}  // namespace ringmoe
