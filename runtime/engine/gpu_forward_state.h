// GpuForward's internals, shared by gpu_forward.cc (creation and the step's driving loop) and
// gpu_step_ops.cc (the GPU work of each stage, run on the feeder thread). Not a public header.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <vector>

#include "cpu/thread_pool.h"
#include "gpu/blas.h"
#include "gpu/device_arena.h"
#include "gpu/host_memory.h"
#include "gpu/kv_cache_ops.h"
#include "gpu/moe_ops.h"
#include "gpu/stream.h"
#include "runtime/engine/forward.h"
#include "runtime/engine/gpu_feeder.h"
#include "runtime/engine/gpu_forward.h"
#include "runtime/engine/gpu_model.h"
#include "runtime/engine/kv_cache.h"
#include "runtime/engine/step_layout.h"

namespace ringmoe {

// lm_head runs over at most this many rows at once, which bounds the logits buffers.
inline constexpr int kLogitsRows = 256;

inline double SecondsSince(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

struct GpuForward::State {
  State(const ModelWeights& w, KvCache& kv, cpu::CpuWorkers& pool)
      : weights(w), spec(w.spec()), kv_cache(kv), workers(pool) {}

  const ModelWeights& weights;
  const ModelSpec& spec;
  KvCache& kv_cache;
  cpu::CpuWorkers& workers;
  GpuPlacement placement;
  int max_tokens = 0;
  gpu::Stream compute, copy;
  std::unique_ptr<GpuModel> model;
  gpu::BlasHandle blas;
  std::optional<gpu::MoeRunner> experts, dense, shared;
  gpu::DeviceBuffer x, normed, normed_bf16, q, k, v, attention, attention_bf16, projected, router_logits, ids,
      routing, zero_ids, ones, gate, positions, fresh_offsets, wanted_rows, final_rows, final_bf16, logits,
      picked_ids, picked_logprobs, row_tables, device_tables;
  gpu::PinnedHostBuffer host_x, host_q, host_k, host_v, host_attention, host_positions, host_fresh_offsets,
      host_rows, host_logits, host_picked_ids, host_picked_logprobs, host_row_tables, host_device_tables;
  // The GPU share of the KV cache: per layer, device blocks of bf16 K and V (KvCache ids >= num_blocks()).
  gpu::DeviceBuffer device_k, device_v;
  bool host_attention_direct = false;  // Kernels read host_attention in place (gpu::DeviceReadsHostDirectly).
  std::vector<gpu::Event> qkv_ready;  // Per micro-batch: its q/k/v rows of the next layer are in host memory.
  std::vector<int> slot_of_section;
  bool routed_copies = false;                   // placement.routed_expert_copies, and the ring rotates.
  std::vector<std::vector<char>> slot_experts;  // Routed mode: which of its part's experts each slot holds.
  std::vector<const uint8_t*> expert_bases;     // Of the layer being computed (feeder thread).
  // Stage times: embed, attention by the driving thread; projections, moe, dense_mlp, lm_head by the feeder.
  // Counters: feeder_wait_seconds by the feeder, the others by the driving thread.
  ForwardStats stats;
  // Declared last: destroyed first, so that its thread has finished with everything above.
  std::unique_ptr<GpuFeeder> feeder;

  template <typename T>
  T* Row(const gpu::DeviceBuffer& buffer, int row, int width) const {
    return buffer.as<T>() + static_cast<int64_t>(row) * width;
  }
  template <typename T>
  T* HostRow(const gpu::PinnedHostBuffer& buffer, int row, int width) const {
    return buffer.as<T>() + static_cast<int64_t>(row) * width;
  }

  absl::Status Allocate();
  absl::Status PrimeRing();
  absl::Status RunStep(const std::vector<StepChunk>& chunks, const StepLayout& layout, StepOutput* out);

  // GPU work, each run on the feeder thread (gpu_step_ops.cc).
  absl::Status UploadStep(const StepLayout& layout);
  // The device KV view of `layer` for rows from `row` on (their tables and positions).
  gpu::DevicePagedKv DeviceKv(int layer, int row) const;
  // Norm, q/k/v, clip, QK-norm, RoPE of `layer` for the micro-batch; the fresh prompts' attention; q (CPU
  // rows), k and v back to the host; then qkv_ready[b].
  absl::Status EnqueueProjections(int layer, const MicroBatch& batch, int b);
  // The layer's routed experts: the compute stream waits for their ring slots; sets expert_bases.
  absl::Status BeginLayer(int layer);
  // The CPU's attention rows up, o_proj, residual, the MLP or MoE (waits for the expert counts).
  absl::Status EnqueueAfterAttention(int layer, const MicroBatch& batch);
  // Routed mode, after the micro-batch's expert counts are back: copies the layer's routed experts that its
  // slots lack and makes the compute stream wait for them.
  absl::Status FetchRoutedExperts(int layer);
  // The layer's slots are free after the work queued so far; they take the sections N ahead.
  absl::Status EndLayer(int layer);
  absl::Status Logits(const StepLayout& layout, StepOutput* out);
};

}  // namespace ringmoe
