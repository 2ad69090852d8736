// GpuStepOps: the GPU work of one offload step, stage by stage: the step's upload, each micro-batch's
// projections (and the attention the GPU runs itself), its work after the CPU's attention (o_proj, router,
// MoE or dense MLP), and lm_head. It owns the MoE runners (routed experts, dense MLPs, shared experts: one
// each, their scratch shared by all micro-batches because they run in order on the compute stream) and the
// qkv_ready events; gpu/DESIGN.md shows the order the work is queued in.
//
// Threading: Allocate runs on the driving thread in GpuForward::Create, before the feeder thread starts.
// Every other method but qkv_ready runs on the feeder thread (runtime/engine/gpu_feeder.h), as a task the
// driving thread posted, so the compute stream, the cuBLAS handle and the runners have one host thread. The
// hand-over to the driving thread is qkv_ready(b): EnqueueProjections records it after micro-batch b's q/k/v
// copies to the host; the driving thread waits for the task that recorded it (GpuFeeder::WaitFor) and then
// synchronises on the event before its attention reads host_q/k/v. times() and feeder_wait_seconds() are read
// only while the feeder is idle (after GpuFeeder::Drain).
#pragma once

#include <chrono>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "gpu/blas.h"
#include "gpu/kv_cache_ops.h"
#include "gpu/moe_ops.h"
#include "gpu/stream.h"
#include "runtime/engine/expert_streamer.h"
#include "runtime/engine/forward.h"
#include "runtime/engine/gpu_expert_shards.h"
#include "runtime/engine/gpu_model.h"
#include "runtime/engine/gpu_stage_clock.h"
#include "runtime/engine/gpu_step_buffers.h"
#include "runtime/engine/kv_cache.h"
#include "runtime/engine/step_layout.h"

namespace ringmoe {

inline double SecondsSince(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

// Whether gpu::PrefillAttention can take an MLA model's fresh prompts: q/k heads of at most 256 values,
// v_head_dim padded up to qk_head_dim, a rope part gpu::ApplyRotary rotates. Else they attend on the CPU.
bool MlaPrefillFitsGpu(const ModelSpec& spec);

class GpuStepOps {
 public:
  // Everything passed in must outlive the instance. `buffers` must be allocated before Allocate.
  GpuStepOps(const ModelSpec& spec, const KvCache& kv_cache, GpuModel& model, gpu::BlasHandle& blas,
             const gpu::Stream& compute, StepBuffers& buffers, ExpertStreamer& streamer);

  // The runners' scratch for runner_tokens rows at once (0: max_tokens; a micro-batch with more runs its
  // experts in tiles of that many rows), from the model's arena, and one qkv_ready event per micro-batch;
  // with mla_prefill, MLA's prefill attention scratch for steps of up to max_tokens tokens
  // (planner::MlaPrefillItems); with expert_shards > 1, the shards' partial outputs (GpuExpertShards,
  // planner::ExpertShardItems). expert_strategy: the routed experts' runner's (kAuto but for diagnostics).
  absl::Status Allocate(int max_tokens, int micro_batches, bool mla_prefill = false, int expert_shards = 1,
                        int runner_tokens = 0, gpu::GemmStrategy expert_strategy = gpu::GemmStrategy::kAuto);

  // The step's hidden states, positions, fresh-prompt offsets and device KV tables, from the staging
  // buffers the driving thread filled.
  absl::Status UploadStep(const StepLayout& layout);
  // Norm, q/k/v, clip, QK-norm, RoPE of `layer` for the micro-batch (MLA: EnqueueMlaProjections); the fresh
  // prompts' attention and the device-cache rows' K/V and attention; q (CPU rows), k and v (host-cache rows)
  // back to the host; then qkv_ready(b).
  absl::Status EnqueueProjections(int layer, const MicroBatch& batch, int b);
  // The CPU's attention rows up, o_proj, residual, the MLP or MoE (waits for the expert counts).
  absl::Status EnqueueAfterAttention(int layer, const MicroBatch& batch);
  // lm_head over the rows that want logits: greedy rows' tokens picked on the GPU, sampled rows' logits to
  // `out`. Ends with a compute-stream synchronise (the step is over).
  absl::Status Logits(const StepLayout& layout, StepOutput* out);

  // Micro-batch b's q/k/v rows of the next layer are in host memory once this completes (see above).
  gpu::Event& qkv_ready(int b) { return qkv_ready_[b]; }
  // Seconds of the feeder's stages (projections, moe, dense_mlp, lm_head; embed and attention stay 0).
  const StageTimes& times() const { return times_; }
  // Of the feeder's time, the waits for the MoE expert counts.
  double feeder_wait_seconds() const { return feeder_wait_seconds_; }
  // The GPU-side time of each stage queued here (disabled unless enabled before the first step), with
  // GpuStageClock's threading: Collect and totals while the feeder is idle.
  GpuStageClock& stage_clock() { return clock_; }

 private:
  // Final norm and lm_head of the residual rows listed at wanted_rows[first, first + count) into logits'
  // first count rows.
  absl::Status EnqueueLmHead(int first, int count);
  // Scoring: the logits of layout.prompt_logit_rows into out->prompt_logits, kLogitsRows at a time (called
  // by Logits once its own rows are done).
  absl::Status PromptLogits(const StepLayout& layout, StepOutput* out);
  // The device KV view of `layer` for rows from `row` on (their tables and positions).
  gpu::DevicePagedKv DeviceKv(int layer, int row) const;
  // The micro-batch's rows of the residual stream, RMS-normed with the layer's input norm into
  // buffers_.normed (f32, for the router) and buffers_.normed_bf16 (the projections' input), which it
  // returns.
  absl::StatusOr<const void*> EnqueueInputNorm(const GpuLayer& g, const MicroBatch& batch);
  // EnqueueProjections of MLA models: norm, q (q LoRA or q_proj) and kv_a on the GPU; q and kv_a's rows to
  // the host for the CPU's attention (runtime/engine/mla_step.h); then qkv_ready(b).
  absl::Status EnqueueMlaProjections(int layer, const MicroBatch& batch, int b);
  // MLA's fresh prompts of the micro-batch (its last rows) attend here, in the expanded form: kv_a's latents
  // normed, kv_b applied (bf16), K = [k_nope ; the shared rotated rope key] and V padded to qk_head_dim per
  // head, gpu::PrefillAttention, and each head's first v_head_dim outputs into the attention rows.
  absl::Status EnqueueMlaPrefill(int layer, const MicroBatch& batch);
  // A streamed layer's routed experts when its parts pass through the ring one at a time
  // (ExpertStreamer::parts_one_at_a_time): one sort, then each part waited for, run over every row (its
  // experts' share added to the residual stream) and released to take the section N ahead.
  absl::Status EnqueueExpertsPartByPart(int layer, const MicroBatch& batch);

  const ModelSpec& spec_;
  const KvCache& kv_cache_;
  GpuModel& model_;
  gpu::BlasHandle& blas_;
  const gpu::Stream& compute_;
  StepBuffers& buffers_;
  ExpertStreamer& streamer_;
  std::optional<gpu::MoeRunner> experts_, dense_, shared_;
  // With more than one expert shard: the routed experts run shard by shard through experts_, and their
  // partial outputs are combined in shard order.
  std::optional<GpuExpertShards> expert_shards_;
  // MLA's prefill attention: the rope part's rotary embedding and the scratch (shared by the micro-batches,
  // which run in order on the compute stream), in planner::MlaPrefillItems' order.
  cpu::RotaryEmbedding mla_rotary_;
  gpu::DeviceBuffer mla_latents_, mla_latents_bf16_, mla_rope_keys_, mla_kv_b_out_, mla_k_, mla_v_, mla_out_;
  std::vector<gpu::Event> qkv_ready_;  // Per micro-batch.
  StageTimes times_;
  double feeder_wait_seconds_ = 0;
  GpuStageClock clock_;
};

}  // namespace ringmoe
