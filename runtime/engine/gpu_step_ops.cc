#include "runtime/engine/gpu_step_ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "gpu/attention_ops.h"
#include "gpu/dense_ops.h"
#include "gpu/group_routing_ops.h"
#include "gpu/kv_cache_ops.h"
#include "gpu/mla_ops.h"
#include "gpu/routing_ops.h"
#include "gpu/row_ops.h"
#include "io/status_macros.h"
#include "runtime/engine/mla_prefill_layout.h"
#include "runtime/engine/mla_step.h"

namespace ringmoe {

GpuStepOps::GpuStepOps(const ModelSpec& spec, const KvCache& kv_cache, GpuModel& model, gpu::BlasHandle& blas,
                       const gpu::Stream& compute, StepBuffers& buffers, ExpertStreamer& streamer)
    : spec_(spec),
      kv_cache_(kv_cache),
      model_(model),
      blas_(blas),
      compute_(compute),
      buffers_(buffers),
      streamer_(streamer) {}

bool MlaPrefillFitsGpu(const ModelSpec& spec) {
  const MlaSpec& mla = spec.mla;
  return spec.is_mla() && mla.qk_head_dim() <= 256 && mla.v_head_dim <= mla.qk_head_dim() &&
         mla.qk_rope_head_dim % 2 == 0 && mla.qk_rope_head_dim <= 512 && spec.sliding_window <= 0;
}

absl::Status GpuStepOps::Allocate(int max_tokens, int micro_batches, bool mla_prefill, int expert_shards,
                                  int runner_tokens, gpu::GemmStrategy expert_strategy) {
  if (runner_tokens <= 0) runner_tokens = max_tokens;
  if (mla_prefill) {
    if (!MlaPrefillFitsGpu(spec_)) return absl::InternalError("MLA prefill on the GPU: unsupported shapes");
    mla_rotary_ = MlaRotary(spec_);
    gpu::DeviceBuffer* const buffers[] = {
        &mla_latents_, &mla_latents_bf16_, &mla_rope_keys_, &mla_kv_b_out_, &mla_k_, &mla_v_, &mla_out_};
    const std::vector<planner::MemoryItem> items = planner::MlaPrefillItems(spec_, max_tokens);
    for (size_t i = 0; i < items.size(); ++i) {
      RINGMOE_ASSIGN_OR_RETURN(*buffers[i], model_.arena().Allocate(items[i].bytes, items[i].what));
    }
  }
  // Routed experts pick their GEMM strategy by rows per expert (grouped calls at decode sizes). The
  // single-expert runners gain nothing from grouping and keep f32 outputs.
  auto runner = [&](int intermediate, int experts_count, int top_k, gpu::GemmStrategy strategy,
                    std::optional<gpu::MoeRunner>* out, int fp8_scratch_experts = 0) {
    absl::StatusOr<gpu::MoeRunner> created = gpu::MoeRunner::Create(
        model_.arena(), gpu::MoeShape{spec_.hidden_size, intermediate, experts_count, top_k}, runner_tokens,
        strategy, fp8_scratch_experts);
    if (!created.ok()) return created.status();
    out->emplace(std::move(*created));
    return absl::OkStatus();
  };
  // FP8-block experts are dequantised a few at a time into the runner's scratch (planner::MoeRunnerItems).
  const int fp8_scratch =
      model_.expert_index().fp8()
          ? gpu::Fp8DequantScratchExperts(spec_.num_experts, spec_.hidden_size, spec_.moe_intermediate_size)
          : 0;
  RINGMOE_RETURN_IF_ERROR(runner(spec_.moe_intermediate_size, spec_.num_experts, spec_.num_experts_per_tok,
                                 expert_strategy, &experts_, fp8_scratch));
  if (spec_.intermediate_size > 0 && spec_.num_moe_layers() < spec_.num_layers) {
    RINGMOE_RETURN_IF_ERROR(runner(spec_.intermediate_size, 1, 1, gpu::GemmStrategy::kLoopGemmEx, &dense_));
  }
  if (spec_.shared_expert_intermediate_size > 0) {
    RINGMOE_RETURN_IF_ERROR(
        runner(spec_.shared_expert_intermediate_size, 1, 1, gpu::GemmStrategy::kLoopGemmEx, &shared_));
  }
  if (expert_shards > 1 && spec_.num_moe_layers() > 0) {
    RINGMOE_ASSIGN_OR_RETURN(GpuExpertShards shards,
                             GpuExpertShards::Create(model_.arena(), spec_, max_tokens, expert_shards));
    expert_shards_.emplace(std::move(shards));
  }
  qkv_ready_.clear();
  for (int i = 0; i < micro_batches; ++i) {
    absl::StatusOr<gpu::Event> event = gpu::Event::Create();
    if (!event.ok()) return event.status();
    qkv_ready_.push_back(std::move(*event));
  }
  return absl::OkStatus();
}

absl::Status GpuStepOps::UploadStep(const StepLayout& layout) {
  const int h = spec_.hidden_size;
  RINGMOE_RETURN_IF_ERROR(clock_.Begin(GpuStage::kUpload));
  RINGMOE_RETURN_IF_ERROR(
      gpu::CopyHostToDevice(buffers_.x.data(), buffers_.host_x.data(), 4LL * layout.rows * h, compute_));
  RINGMOE_RETURN_IF_ERROR(gpu::CopyHostToDevice(buffers_.positions.data(), buffers_.host_positions.data(),
                                                4LL * layout.rows, compute_));
  if (!layout.fresh_offsets.empty()) {
    RINGMOE_RETURN_IF_ERROR(gpu::CopyHostToDevice(buffers_.fresh_offsets.data(),
                                                  buffers_.host_fresh_offsets.data(),
                                                  4LL * layout.fresh_offsets.size(), compute_));
  }
  if (!layout.device_tables.empty()) {
    RINGMOE_RETURN_IF_ERROR(gpu::CopyHostToDevice(buffers_.row_tables.data(), buffers_.host_row_tables.data(),
                                                  4LL * layout.rows, compute_));
    RINGMOE_RETURN_IF_ERROR(gpu::CopyHostToDevice(buffers_.device_tables.data(),
                                                  buffers_.host_device_tables.data(),
                                                  4LL * layout.device_tables.size(), compute_));
  }
  return clock_.End();
}

gpu::DevicePagedKv GpuStepOps::DeviceKv(int layer, int row) const {
  const int64_t layer_elements = int64_t{kv_cache_.device_blocks()} * kv_cache_.block_stride();
  gpu::DevicePagedKv kv;
  kv.k_pool = buffers_.device_k.as<uint16_t>() + layer * layer_elements;
  kv.v_pool = buffers_.device_v.as<uint16_t>() + layer * layer_elements;
  kv.block_stride = kv_cache_.block_stride();
  kv.block_tokens = kv_cache_.block_tokens();
  kv.kv_heads = spec_.num_kv_heads;
  kv.head_dim = spec_.head_dim;
  kv.tables = buffers_.device_tables.as<int32_t>();
  kv.row_tables = Row<int32_t>(buffers_.row_tables, row, 1);
  kv.positions = Row<int32_t>(buffers_.positions, row, 1);
  return kv;
}

absl::StatusOr<const void*> GpuStepOps::EnqueueInputNorm(const GpuLayer& g, const MicroBatch& batch) {
  const int h = spec_.hidden_size, r = batch.first_row, n = batch.rows;
  RINGMOE_RETURN_IF_ERROR(gpu::RmsNorm(Row<float>(buffers_.x, r, h), g.input_norm.as<float>(), n, h,
                                       static_cast<float>(spec_.rms_norm_eps),
                                       Row<float>(buffers_.normed, r, h), compute_));
  RINGMOE_RETURN_IF_ERROR(gpu::ConvertF32ToBf16(Row<float>(buffers_.normed, r, h), int64_t{n} * h,
                                                Row<uint16_t>(buffers_.normed_bf16, r, h), compute_));
  return static_cast<const void*>(Row<uint16_t>(buffers_.normed_bf16, r, h));
}

absl::Status GpuStepOps::EnqueueMlaProjections(int layer, const MicroBatch& batch, int b) {
  const auto start = std::chrono::steady_clock::now();
  const GpuLayer& g = model_.layer(layer);
  const int h = spec_.hidden_size, qw = spec_.q_width(), rw = spec_.mla.cache_width(), r = batch.first_row,
            n = batch.rows, lora = spec_.mla.q_lora_rank;
  RINGMOE_RETURN_IF_ERROR(clock_.Begin(GpuStage::kProjections));
  RINGMOE_ASSIGN_OR_RETURN(const void* input, EnqueueInputNorm(g, batch));
  float* cq = Row<float>(buffers_.q, r, qw);
  float* ckv = Row<float>(buffers_.k, r, rw);
  if (lora > 0) {
    // q_b(RMSNorm(q_a(x))), q_a's norm with RMSNorm's default eps as transformers builds it (mla_step.cc).
    float* q_lora = Row<float>(buffers_.q_lora, r, lora);
    RINGMOE_RETURN_IF_ERROR(
        gpu::LinearBf16(blas_, input, n, g.q_a.data(), lora, h, nullptr, q_lora, compute_));
    RINGMOE_RETURN_IF_ERROR(
        gpu::RmsNorm(q_lora, g.q_a_norm.as<float>(), n, lora, kMlaLatentNormEps, q_lora, compute_));
    RINGMOE_RETURN_IF_ERROR(gpu::ConvertF32ToBf16(q_lora, int64_t{n} * lora,
                                                  Row<uint16_t>(buffers_.q_lora_bf16, r, lora), compute_));
    RINGMOE_RETURN_IF_ERROR(gpu::LinearBf16(blas_, Row<uint16_t>(buffers_.q_lora_bf16, r, lora), n,
                                            g.q_b.data(), qw, lora, nullptr, cq, compute_));
  } else {
    RINGMOE_RETURN_IF_ERROR(gpu::LinearBf16(blas_, input, n, g.q.data(), qw, h, nullptr, cq, compute_));
  }
  RINGMOE_RETURN_IF_ERROR(gpu::LinearBf16(blas_, input, n, g.kv_a.data(), rw, h, nullptr, ckv, compute_));
  // Every row's kv_a row goes down (the CPU norms, rotates and caches it: MlaAttendProjected), and the CPU
  // rows' q (decodes and continuations, which the CPU attends to in the absorbed form).
  if (batch.cpu_rows > 0) {
    RINGMOE_RETURN_IF_ERROR(gpu::CopyDeviceToHost(HostRow<float>(buffers_.host_q, r, qw), cq,
                                                  4LL * batch.cpu_rows * qw, compute_));
  }
  RINGMOE_RETURN_IF_ERROR(
      gpu::CopyDeviceToHost(HostRow<float>(buffers_.host_k, r, rw), ckv, 4LL * n * rw, compute_));
  RINGMOE_RETURN_IF_ERROR(clock_.End());
  RINGMOE_RETURN_IF_ERROR(qkv_ready_[b].Record(compute_));
  // Fresh prompts attend here meanwhile; their q and kv_a rows were read by the copies above (stream order).
  if (batch.fresh_chunks > 0) {
    RINGMOE_RETURN_IF_ERROR(clock_.Begin(GpuStage::kAttention));
    RINGMOE_RETURN_IF_ERROR(EnqueueMlaPrefill(layer, batch));
    RINGMOE_RETURN_IF_ERROR(clock_.End());
  }
  times_.projections += SecondsSince(start);
  return absl::OkStatus();
}

absl::Status GpuStepOps::EnqueueMlaPrefill(int layer, const MicroBatch& batch) {
  if (mla_out_.empty()) return absl::InternalError("MLA prefill on the GPU without its scratch");
  const GpuLayer& g = model_.layer(layer);
  const MlaSpec& mla = spec_.mla;
  const int heads = spec_.num_heads, qk = mla.qk_head_dim(), nope = mla.qk_nope_head_dim, v = mla.v_head_dim;
  const int latent = mla.kv_lora_rank, rope = mla.qk_rope_head_dim, rw = mla.cache_width();
  const int qw = spec_.q_width(), aw = spec_.attention_out_width(), kv_b_width = heads * (nope + v);
  const int f = batch.first_row + batch.cpu_rows, rows = batch.rows - batch.cpu_rows;
  float* q = Row<float>(buffers_.q, f, qw);
  const float* kv = Row<float>(buffers_.k, f, rw);
  const int32_t* positions = Row<int32_t>(buffers_.positions, f, 1);
  float* latents = mla_latents_.as<float>();
  float* rope_keys = mla_rope_keys_.as<float>();
  float* kv_b_out = mla_kv_b_out_.as<float>();
  float* k = mla_k_.as<float>();
  float* v_padded = mla_v_.as<float>();
  const MlaPrefillCopies copies = MlaPrefillLayout(spec_, rows);
  // The normed latents and the rotated rope keys as the cache holds them (bf16), so that this computes what
  // the CPU's absorbed attention over the cache would; the latents through kv_b (f32): each head's k_nope
  // and v.
  uint16_t* bf16 = mla_latents_bf16_.as<uint16_t>();
  auto round_to_bf16 = [&](float* values, int64_t count) -> absl::Status {
    RINGMOE_RETURN_IF_ERROR(gpu::ConvertF32ToBf16(values, count, bf16, compute_));
    return gpu::ConvertBf16ToF32(bf16, count, values, compute_);
  };
  RINGMOE_RETURN_IF_ERROR(gpu::CopyBlocks(kv, latents, copies.latents, compute_));
  RINGMOE_RETURN_IF_ERROR(gpu::CopyBlocks(kv + latent, rope_keys, copies.rope_keys, compute_));
  RINGMOE_RETURN_IF_ERROR(
      gpu::RmsNorm(latents, g.kv_a_norm.as<float>(), rows, latent, kMlaLatentNormEps, latents, compute_));
  RINGMOE_RETURN_IF_ERROR(round_to_bf16(latents, int64_t{rows} * latent));
  RINGMOE_RETURN_IF_ERROR(
      gpu::LinearF32(blas_, latents, rows, g.kv_b.as<float>(), kv_b_width, latent, kv_b_out, compute_));
  // RoPE on the one rope key per token and on every head's rope part of q.
  RINGMOE_RETURN_IF_ERROR(gpu::ApplyRotary(mla_rotary_, rope_keys, rows, 1, rope, 0, positions, compute_));
  RINGMOE_RETURN_IF_ERROR(round_to_bf16(rope_keys, int64_t{rows} * rope));
  RINGMOE_RETURN_IF_ERROR(gpu::ApplyRotary(mla_rotary_, q + nope, rows, heads, qw, qk, positions, compute_));
  RINGMOE_RETURN_IF_ERROR(gpu::CopyBlocks(kv_b_out, k, copies.k_nope, compute_));
  RINGMOE_RETURN_IF_ERROR(gpu::CopyBlocks(rope_keys, k + nope, copies.k_rope, compute_));
  RINGMOE_RETURN_IF_ERROR(gpu::FillDeviceBytes(v_padded, 0, 4LL * rows * qw, compute_));
  RINGMOE_RETURN_IF_ERROR(gpu::CopyBlocks(kv_b_out + nope, v_padded, copies.v, compute_));
  RINGMOE_RETURN_IF_ERROR(gpu::PrefillAttention(
      q, k, v_padded, Row<int32_t>(buffers_.fresh_offsets, batch.fresh_offsets, 1), batch.fresh_chunks,
      batch.max_fresh_rows, heads, heads, qk, spec_.softmax_scale(), 0, mla_out_.as<float>(), compute_));
  // Each head's first v_head_dim outputs are its attention row (o_proj's input).
  return gpu::CopyBlocks(mla_out_.as<float>(), Row<float>(buffers_.attention, f, aw), copies.out, compute_);
}

absl::Status GpuStepOps::EnqueueProjections(int layer, const MicroBatch& batch, int b) {
  if (spec_.is_mla()) {
    // MLA: no device-cache rows; fresh prompts (the last rows) only when this pass attends them.
    if (batch.device_rows > 0 || (batch.fresh_chunks > 0 && mla_out_.empty())) {
      return absl::InternalError("an MLA step laid out with rows this pass cannot attend");
    }
    return EnqueueMlaProjections(layer, batch, b);
  }
  const auto start = std::chrono::steady_clock::now();
  const GpuLayer& g = model_.layer(layer);
  const int h = spec_.hidden_size, qw = spec_.q_width(), kvw = spec_.kv_width(), r = batch.first_row,
            n = batch.rows;
  RINGMOE_RETURN_IF_ERROR(clock_.Begin(GpuStage::kProjections));
  RINGMOE_ASSIGN_OR_RETURN(const void* input, EnqueueInputNorm(g, batch));
  const float eps = static_cast<float>(spec_.rms_norm_eps);
  float* cq = Row<float>(buffers_.q, r, qw);
  float* ck = Row<float>(buffers_.k, r, kvw);
  float* cv = Row<float>(buffers_.v, r, kvw);
  RINGMOE_RETURN_IF_ERROR(
      gpu::LinearBf16(blas_, input, n, g.q.data(), qw, h, g.q_bias.as<float>(), cq, compute_));
  RINGMOE_RETURN_IF_ERROR(
      gpu::LinearBf16(blas_, input, n, g.k.data(), kvw, h, g.k_bias.as<float>(), ck, compute_));
  RINGMOE_RETURN_IF_ERROR(
      gpu::LinearBf16(blas_, input, n, g.v.data(), kvw, h, g.v_bias.as<float>(), cv, compute_));
  // What runtime/engine/attention_step.cc's PrepareQueryKey does on the CPU path, in the same order.
  if (spec_.clip_qkv > 0) {
    RINGMOE_RETURN_IF_ERROR(gpu::ClampInPlace(cq, int64_t{n} * qw, spec_.clip_qkv, compute_));
    RINGMOE_RETURN_IF_ERROR(gpu::ClampInPlace(ck, int64_t{n} * kvw, spec_.clip_qkv, compute_));
    RINGMOE_RETURN_IF_ERROR(gpu::ClampInPlace(cv, int64_t{n} * kvw, spec_.clip_qkv, compute_));
  }
  if (spec_.qk_norm == QkNorm::kPerHead) {
    RINGMOE_RETURN_IF_ERROR(
        gpu::RmsNorm(cq, g.q_norm.as<float>(), n * spec_.num_heads, spec_.head_dim, eps, cq, compute_));
    RINGMOE_RETURN_IF_ERROR(
        gpu::RmsNorm(ck, g.k_norm.as<float>(), n * spec_.num_kv_heads, spec_.head_dim, eps, ck, compute_));
  } else if (spec_.qk_norm == QkNorm::kFullWidth) {
    RINGMOE_RETURN_IF_ERROR(gpu::RmsNorm(cq, g.q_norm.as<float>(), n, qw, eps, cq, compute_));
    RINGMOE_RETURN_IF_ERROR(gpu::RmsNorm(ck, g.k_norm.as<float>(), n, kvw, eps, ck, compute_));
  }
  const int32_t* row_positions = Row<int32_t>(buffers_.positions, r, 1);
  RINGMOE_RETURN_IF_ERROR(
      gpu::ApplyRope(cq, n, spec_.num_heads, spec_.head_dim, row_positions, spec_.rope_theta, compute_));
  RINGMOE_RETURN_IF_ERROR(
      gpu::ApplyRope(ck, n, spec_.num_kv_heads, spec_.head_dim, row_positions, spec_.rope_theta, compute_));
  if (kv_cache_.dtype() == io::DType::kBF16) {
    // Attention reads K and V as the cache holds them, whichever side runs it: rounded to bf16 here too, so
    // that fresh prompts on the GPU see what their decodes will read from the host cache (and what a bf16
    // reference computes with). attention_bf16's rows of this micro-batch are free until o_proj.
    uint16_t* scratch = Row<uint16_t>(buffers_.attention_bf16, r, qw);
    for (float* rows : {ck, cv}) {
      RINGMOE_RETURN_IF_ERROR(gpu::ConvertF32ToBf16(rows, int64_t{n} * kvw, scratch, compute_));
      RINGMOE_RETURN_IF_ERROR(gpu::ConvertBf16ToF32(scratch, int64_t{n} * kvw, rows, compute_));
    }
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(spec_.head_dim));
  if (batch.device_rows > 0) {
    // Device-cache sequences keep their K/V here: written before any of their attention reads it.
    const int device_first = r + batch.host_rows;
    RINGMOE_RETURN_IF_ERROR(gpu::WriteKvRows(Row<float>(buffers_.k, device_first, kvw),
                                             Row<float>(buffers_.v, device_first, kvw), batch.device_rows,
                                             kvw, DeviceKv(layer, device_first), compute_));
  }
  if (batch.cpu_rows > 0) {
    RINGMOE_RETURN_IF_ERROR(gpu::CopyDeviceToHost(HostRow<float>(buffers_.host_q, r, qw), cq,
                                                  4LL * batch.cpu_rows * qw, compute_));
  }
  if (batch.host_rows > 0) {  // the host cache's K/V; device-cache rows stay here
    RINGMOE_RETURN_IF_ERROR(gpu::CopyDeviceToHost(HostRow<float>(buffers_.host_k, r, kvw), ck,
                                                  4LL * batch.host_rows * kvw, compute_));
    RINGMOE_RETURN_IF_ERROR(gpu::CopyDeviceToHost(HostRow<float>(buffers_.host_v, r, kvw), cv,
                                                  4LL * batch.host_rows * kvw, compute_));
  }
  RINGMOE_RETURN_IF_ERROR(clock_.End());
  RINGMOE_RETURN_IF_ERROR(qkv_ready_[b].Record(compute_));
  if (batch.paged_rows > 0 || batch.fresh_chunks > 0)
    RINGMOE_RETURN_IF_ERROR(clock_.Begin(GpuStage::kAttention));
  // The GPU's own attention rows after the event: the CPU's attention of this micro-batch needs only the
  // copies above, so it runs beside these (a mixed step's prefill attention was on its critical path).
  // They read q, k and v, which the copies only read too, and write attention rows the CPU does not.
  if (batch.paged_rows > 0) {
    const int paged_first = r + n - batch.paged_rows;
    RINGMOE_RETURN_IF_ERROR(
        gpu::PagedAttentionRows(Row<float>(buffers_.q, paged_first, qw), batch.paged_rows, spec_.num_heads,
                                DeviceKv(layer, paged_first), scale, spec_.sliding_window,
                                Row<float>(buffers_.attention, paged_first, qw), compute_));
  }
  if (batch.fresh_chunks > 0) {
    const int fresh = r + batch.cpu_rows;
    RINGMOE_RETURN_IF_ERROR(gpu::PrefillAttention(
        Row<float>(buffers_.q, fresh, qw), Row<float>(buffers_.k, fresh, kvw),
        Row<float>(buffers_.v, fresh, kvw), Row<int32_t>(buffers_.fresh_offsets, batch.fresh_offsets, 1),
        batch.fresh_chunks, batch.max_fresh_rows, spec_.num_heads, spec_.num_kv_heads, spec_.head_dim, scale,
        spec_.sliding_window, Row<float>(buffers_.attention, fresh, qw), compute_));
  }
  RINGMOE_RETURN_IF_ERROR(clock_.End());
  times_.projections += SecondsSince(start);
  return absl::OkStatus();
}

absl::Status GpuStepOps::EnqueueAfterAttention(int layer, const MicroBatch& batch) {
  const auto start = std::chrono::steady_clock::now();
  const GpuLayer& g = model_.layer(layer);
  // Attention rows are o_proj's input: q_width wide, or heads * v_head_dim for MLA.
  const int h = spec_.hidden_size, qw = spec_.attention_out_width(), r = batch.first_row, n = batch.rows;
  const int top_k = spec_.num_experts_per_tok;
  const float eps = static_cast<float>(spec_.rms_norm_eps);
  RINGMOE_RETURN_IF_ERROR(clock_.Begin(GpuStage::kRouter));
  // The CPU's attention rows: read straight from pinned memory by the conversion kernel where the GPU can
  // (a copy would queue on the copy engines behind the ring's fills, on the step's critical path), else
  // copied up first. Fresh prompts' rows are on the GPU already.
  int converted = 0;
  if (batch.cpu_rows > 0 && buffers_.host_attention_direct) {
    RINGMOE_RETURN_IF_ERROR(gpu::ConvertF32ToBf16(HostRow<float>(buffers_.host_attention, r, qw),
                                                  int64_t{batch.cpu_rows} * qw,
                                                  Row<uint16_t>(buffers_.attention_bf16, r, qw), compute_));
    converted = batch.cpu_rows;
  } else if (batch.cpu_rows > 0) {
    RINGMOE_RETURN_IF_ERROR(gpu::CopyHostToDevice(Row<float>(buffers_.attention, r, qw),
                                                  HostRow<float>(buffers_.host_attention, r, qw),
                                                  4LL * batch.cpu_rows * qw, compute_));
  }
  RINGMOE_RETURN_IF_ERROR(
      gpu::ConvertF32ToBf16(Row<float>(buffers_.attention, r + converted, qw), int64_t{n - converted} * qw,
                            Row<uint16_t>(buffers_.attention_bf16, r + converted, qw), compute_));
  RINGMOE_RETURN_IF_ERROR(gpu::LinearBf16(blas_, Row<uint16_t>(buffers_.attention_bf16, r, qw), n, g.o.data(),
                                          h, qw, nullptr, Row<float>(buffers_.projected, r, h), compute_));
  float* residual = Row<float>(buffers_.x, r, h);
  RINGMOE_RETURN_IF_ERROR(
      gpu::ResidualAdd(residual, Row<float>(buffers_.projected, r, h), int64_t{n} * h, compute_));
  RINGMOE_RETURN_IF_ERROR(gpu::RmsNorm(residual, g.post_attention_norm.as<float>(), n, h, eps,
                                       Row<float>(buffers_.normed, r, h), compute_));
  RINGMOE_RETURN_IF_ERROR(gpu::ConvertF32ToBf16(Row<float>(buffers_.normed, r, h), int64_t{n} * h,
                                                Row<uint16_t>(buffers_.normed_bf16, r, h), compute_));
  // The MoE output (routed, then shared) accumulates straight into the residual stream. Each runner takes
  // at most its max_tokens() rows at once (ExecutionPlan::expert_tile_tokens): larger micro-batches run in
  // tiles of rows, in order, so the runners' scratch does not grow with the prefill chunk.
  auto input = [&](int row) -> const void* { return Row<uint16_t>(buffers_.normed_bf16, row, h); };
  auto hidden = [&](int row) { return Row<float>(buffers_.x, row, h); };
  if (!spec_.layers[layer].is_moe) {
    RINGMOE_RETURN_IF_ERROR(clock_.End());
    RINGMOE_RETURN_IF_ERROR(clock_.Begin(GpuStage::kMlp));
    for (int t = 0; t < n; t += dense_->max_tokens()) {
      const int rows = std::min(dense_->max_tokens(), n - t);
      RINGMOE_RETURN_IF_ERROR(dense_->SortByExpert(buffers_.zero_ids.as<int32_t>(), rows, compute_));
      RINGMOE_RETURN_IF_ERROR(dense_->RunExperts(blas_, input(r + t), buffers_.ones.as<float>(), g.mlp.data(),
                                                 model_.dense_index(), hidden(r + t), compute_));
    }
    times_.dense_mlp += SecondsSince(start);
    return clock_.End();
  }
  const int e = spec_.num_experts;
  RINGMOE_RETURN_IF_ERROR(gpu::LinearF32(blas_, Row<float>(buffers_.normed, r, h), n, g.router.as<float>(), e,
                                         h, Row<float>(buffers_.router_logits, r, e), compute_));
  if (spec_.is_deepseek()) {
    // The CPU path's routing (runtime/engine/forward.cc), with the correction bias on the device.
    const cpu::GroupRouting routing =
        DeepseekRouting(spec_, g.router_bias.empty() ? nullptr : g.router_bias.as<float>());
    RINGMOE_RETURN_IF_ERROR(gpu::RouteGroupLimited(Row<float>(buffers_.router_logits, r, e), n, e, top_k,
                                                   routing, Row<int32_t>(buffers_.ids, r, top_k),
                                                   Row<float>(buffers_.routing, r, top_k), compute_));
  } else {
    RINGMOE_RETURN_IF_ERROR(gpu::RouteTopK(Row<float>(buffers_.router_logits, r, e), n, e, top_k,
                                           spec_.router == RouterKind::kTopKSoftmax
                                               ? cpu::RouterScoring::kTopKThenSoftmax
                                               : cpu::RouterScoring::kSoftmaxThenTopK,
                                           spec_.norm_topk_prob, Row<int32_t>(buffers_.ids, r, top_k),
                                           Row<float>(buffers_.routing, r, top_k), compute_));
  }
  RINGMOE_RETURN_IF_ERROR(clock_.End());
  const std::vector<StreamedPart>& parts = model_.layer(layer).parts;
  if (streamer_.parts_one_at_a_time() && !parts.empty()) {
    RINGMOE_RETURN_IF_ERROR(EnqueueExpertsPartByPart(layer, batch));
  } else {
    for (int t = 0; t < n; t += experts_->max_tokens()) {
      const int rows = std::min(experts_->max_tokens(), n - t);
      const auto wait_start = std::chrono::steady_clock::now();
      RINGMOE_RETURN_IF_ERROR(clock_.Begin(GpuStage::kSort));
      RINGMOE_RETURN_IF_ERROR(experts_->QueueSort(Row<int32_t>(buffers_.ids, r + t, top_k), rows, compute_));
      RINGMOE_RETURN_IF_ERROR(clock_.End());
      RINGMOE_RETURN_IF_ERROR(experts_->WaitForCounts());
      feeder_wait_seconds_ += SecondsSince(wait_start);
      RINGMOE_RETURN_IF_ERROR(clock_.Begin(GpuStage::kRingWait));
      RINGMOE_RETURN_IF_ERROR(streamer_.FetchRoutedExperts(layer, experts_->expert_counts()));
      RINGMOE_RETURN_IF_ERROR(clock_.End());
      RINGMOE_RETURN_IF_ERROR(clock_.Begin(GpuStage::kExperts));
      if (expert_shards_) {
        // Expert parallel: each shard's experts into its partial, then the partials into the residual in
        // shard order (the sort above is every shard's: they share this GPU).
        RINGMOE_RETURN_IF_ERROR(expert_shards_->Run(
            *experts_, blas_, input(r + t), Row<float>(buffers_.routing, r + t, top_k),
            streamer_.expert_bases(), model_.expert_index(), r + t, rows, hidden(r + t), compute_));
      } else {
        RINGMOE_RETURN_IF_ERROR(
            experts_->RunExperts(blas_, input(r + t), Row<float>(buffers_.routing, r + t, top_k),
                                 streamer_.expert_bases(), model_.expert_index(), hidden(r + t), compute_));
      }
      RINGMOE_RETURN_IF_ERROR(clock_.End());
    }
  }
  if (spec_.layers[layer].has_shared_expert) {
    // Qwen2-MoE's shared expert is weighted by its sigmoid gate; DeepSeek's are added as they are.
    RINGMOE_RETURN_IF_ERROR(clock_.Begin(GpuStage::kMlp));
    const float* shared_weights = buffers_.ones.as<float>();
    if (spec_.shared_expert_gated) {
      RINGMOE_RETURN_IF_ERROR(gpu::LinearBf16(blas_, input(r), n, g.shared_gate.data(), 1, h, nullptr,
                                              Row<float>(buffers_.gate, r, 1), compute_));
      RINGMOE_RETURN_IF_ERROR(gpu::SigmoidInPlace(Row<float>(buffers_.gate, r, 1), n, compute_));
      shared_weights = Row<float>(buffers_.gate, r, 1);
    }
    for (int t = 0; t < n; t += shared_->max_tokens()) {
      const int rows = std::min(shared_->max_tokens(), n - t);
      RINGMOE_RETURN_IF_ERROR(shared_->SortByExpert(buffers_.zero_ids.as<int32_t>(), rows, compute_));
      RINGMOE_RETURN_IF_ERROR(shared_->RunExperts(
          blas_, input(r + t), spec_.shared_expert_gated ? shared_weights + t : shared_weights, g.mlp.data(),
          model_.shared_index(), hidden(r + t), compute_));
    }
    RINGMOE_RETURN_IF_ERROR(clock_.End());
  }
  times_.moe += SecondsSince(start);
  return absl::OkStatus();
}

absl::Status GpuStepOps::EnqueueExpertsPartByPart(int layer, const MicroBatch& batch) {
  const int h = spec_.hidden_size, r = batch.first_row, n = batch.rows, top_k = spec_.num_experts_per_tok;
  // Every row must pass through a part before its slot takes the next section: one micro-batch, one tile
  // (ValidatePlan), one sort.
  if (n > experts_->max_tokens() || expert_shards_) {
    return absl::InternalError(absl::StrCat("parts one at a time: a micro-batch of ", n,
                                            " rows for runners of ", experts_->max_tokens(),
                                            expert_shards_ ? ", with expert shards" : ""));
  }
  const auto wait_start = std::chrono::steady_clock::now();
  RINGMOE_RETURN_IF_ERROR(clock_.Begin(GpuStage::kSort));
  RINGMOE_RETURN_IF_ERROR(experts_->QueueSort(Row<int32_t>(buffers_.ids, r, top_k), n, compute_));
  RINGMOE_RETURN_IF_ERROR(clock_.End());
  RINGMOE_RETURN_IF_ERROR(experts_->WaitForCounts());
  feeder_wait_seconds_ += SecondsSince(wait_start);
  const std::vector<StreamedPart>& parts = model_.layer(layer).parts;
  for (int i = 0; i < static_cast<int>(parts.size()); ++i) {
    RINGMOE_RETURN_IF_ERROR(clock_.Begin(GpuStage::kRingWait));
    RINGMOE_RETURN_IF_ERROR(streamer_.BeginPart(layer, i));
    RINGMOE_RETURN_IF_ERROR(clock_.End());
    RINGMOE_RETURN_IF_ERROR(clock_.Begin(GpuStage::kExperts));
    // Adds the part's experts' share of each row's MoE output to the residual stream.
    RINGMOE_RETURN_IF_ERROR(experts_->RunExpertRange(
        blas_, Row<uint16_t>(buffers_.normed_bf16, r, h), Row<float>(buffers_.routing, r, top_k),
        streamer_.expert_bases(), model_.expert_index(), parts[i].first_expert,
        parts[i].first_expert + parts[i].num_experts, Row<float>(buffers_.x, r, h), compute_));
    RINGMOE_RETURN_IF_ERROR(clock_.End());
    RINGMOE_RETURN_IF_ERROR(streamer_.EndPart(layer, i));
  }
  return absl::OkStatus();
}

absl::Status GpuStepOps::EnqueueLmHead(int first, int count) {
  const int h = spec_.hidden_size;
  RINGMOE_RETURN_IF_ERROR(gpu::GatherRowsF32(buffers_.x.as<float>(),
                                             buffers_.wanted_rows.as<int32_t>() + first, count, h,
                                             buffers_.final_rows.as<float>(), compute_));
  RINGMOE_RETURN_IF_ERROR(gpu::RmsNorm(buffers_.final_rows.as<float>(), model_.final_norm().as<float>(),
                                       count, h, static_cast<float>(spec_.rms_norm_eps),
                                       buffers_.final_rows.as<float>(), compute_));
  RINGMOE_RETURN_IF_ERROR(gpu::ConvertF32ToBf16(buffers_.final_rows.as<float>(), int64_t{count} * h,
                                                buffers_.final_bf16.data(), compute_));
  return gpu::LinearBf16(blas_, buffers_.final_bf16.data(), count, model_.lm_head().data(), spec_.vocab_size,
                         h, nullptr, buffers_.logits.as<float>(), compute_);
}

absl::Status GpuStepOps::Logits(const StepLayout& layout, StepOutput* out) {
  const auto start = std::chrono::steady_clock::now();
  RINGMOE_RETURN_IF_ERROR(clock_.Begin(GpuStage::kLogits));
  const int vocab = spec_.vocab_size;
  // Rows whose logits go back to the host first, then the greedy rows, whose tokens are picked here: each
  // lm_head batch then holds at most one run of each.
  std::vector<int32_t> rows;
  std::vector<int> sampled_chunks, greedy_chunks;
  for (size_t i = 0; i < layout.logits_rows.size(); ++i) {
    (layout.greedy[i] ? greedy_chunks : sampled_chunks).push_back(static_cast<int>(i));
  }
  for (int i : sampled_chunks) rows.push_back(layout.logits_rows[i]);
  for (int i : greedy_chunks) rows.push_back(layout.logits_rows[i]);
  const int sampled = static_cast<int>(sampled_chunks.size());
  out->logits.resize(static_cast<size_t>(sampled) * vocab);
  out->picked.assign(rows.size(), SampledToken{-1, 0.0f});
  // The step ends here: nothing it queued may still read the staging buffers the next step refills.
  if (rows.empty()) {
    RINGMOE_RETURN_IF_ERROR(clock_.End());
    RINGMOE_RETURN_IF_ERROR(compute_.Synchronize());
    return PromptLogits(layout, out);
  }
  std::memcpy(buffers_.host_rows.data(), rows.data(), rows.size() * sizeof(int32_t));
  RINGMOE_RETURN_IF_ERROR(gpu::CopyHostToDevice(buffers_.wanted_rows.data(), buffers_.host_rows.data(),
                                                4LL * rows.size(), compute_));
  for (int first = 0; first < static_cast<int>(rows.size()); first += kLogitsRows) {
    const int count = std::min<int>(kLogitsRows, static_cast<int>(rows.size()) - first);
    RINGMOE_RETURN_IF_ERROR(EnqueueLmHead(first, count));
    const int sampled_here = std::clamp(sampled - first, 0, count);
    if (sampled_here < count) {
      const int greedy_first = first + sampled_here - sampled;  // Index among the greedy rows.
      RINGMOE_RETURN_IF_ERROR(gpu::GreedyArgmaxLogSoftmax(
          buffers_.logits.as<float>() + static_cast<int64_t>(sampled_here) * vocab, count - sampled_here,
          vocab, buffers_.picked_ids.as<int32_t>() + greedy_first,
          buffers_.picked_logprobs.as<float>() + greedy_first, compute_));
    }
    if (sampled_here > 0) {
      RINGMOE_RETURN_IF_ERROR(gpu::CopyDeviceToHost(buffers_.host_logits.data(), buffers_.logits.data(),
                                                    4LL * sampled_here * vocab, compute_));
      RINGMOE_RETURN_IF_ERROR(compute_.Synchronize());
      std::memcpy(out->logits.data() + static_cast<size_t>(first) * vocab, buffers_.host_logits.data(),
                  4ULL * sampled_here * vocab);
    }
  }
  const int greedy = static_cast<int>(greedy_chunks.size());
  if (greedy > 0) {
    RINGMOE_RETURN_IF_ERROR(gpu::CopyDeviceToHost(buffers_.host_picked_ids.data(), buffers_.picked_ids.data(),
                                                  4LL * greedy, compute_));
    RINGMOE_RETURN_IF_ERROR(gpu::CopyDeviceToHost(buffers_.host_picked_logprobs.data(),
                                                  buffers_.picked_logprobs.data(), 4LL * greedy, compute_));
  }
  RINGMOE_RETURN_IF_ERROR(clock_.End());
  RINGMOE_RETURN_IF_ERROR(compute_.Synchronize());
  // picked is indexed by chunk order; the sampled chunks' logits rows are in chunk order already.
  for (int j = 0; j < greedy; ++j) {
    out->picked[greedy_chunks[j]] = {buffers_.host_picked_ids.as<int32_t>()[j],
                                     buffers_.host_picked_logprobs.as<float>()[j]};
  }
  RINGMOE_RETURN_IF_ERROR(PromptLogits(layout, out));
  times_.lm_head += SecondsSince(start);
  return absl::OkStatus();
}

absl::Status GpuStepOps::PromptLogits(const StepLayout& layout, StepOutput* out) {
  const int vocab = spec_.vocab_size;
  const std::vector<int32_t>& rows = layout.prompt_logit_rows;
  out->prompt_logits.resize(rows.size() * static_cast<size_t>(vocab));
  if (rows.empty()) return absl::OkStatus();
  // Logits synchronised before this, so the row list's staging buffer is free again.
  std::memcpy(buffers_.host_rows.data(), rows.data(), rows.size() * sizeof(int32_t));
  RINGMOE_RETURN_IF_ERROR(gpu::CopyHostToDevice(buffers_.wanted_rows.data(), buffers_.host_rows.data(),
                                                4LL * rows.size(), compute_));
  for (int first = 0; first < static_cast<int>(rows.size()); first += kLogitsRows) {
    const int count = std::min<int>(kLogitsRows, static_cast<int>(rows.size()) - first);
    RINGMOE_RETURN_IF_ERROR(EnqueueLmHead(first, count));
    RINGMOE_RETURN_IF_ERROR(gpu::CopyDeviceToHost(buffers_.host_logits.data(), buffers_.logits.data(),
                                                  4LL * count * vocab, compute_));
    RINGMOE_RETURN_IF_ERROR(compute_.Synchronize());
    std::memcpy(out->prompt_logits.data() + static_cast<size_t>(first) * vocab, buffers_.host_logits.data(),
                4ULL * count * vocab);
  }
  return absl::OkStatus();
}

}  // namespace ringmoe
