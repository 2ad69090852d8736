#include "runtime/engine/gpu_forward.h"

#include <algorithm>
#include <cstring>
#include <optional>

#include "absl/strings/str_cat.h"
#include "gpu/blas.h"
#include "gpu/stream.h"
#include "io/status_macros.h"
#include "planner/model_costs.h"
#include "runtime/engine/attention_step.h"
#include "runtime/engine/expert_streamer.h"
#include "runtime/engine/gpu_feeder.h"
#include "runtime/engine/gpu_step_buffers.h"
#include "runtime/engine/gpu_step_ops.h"
#include "runtime/engine/step_layout.h"

namespace ringmoe {

// What a GpuForward holds, by owner. The driving thread (the one that calls Run) owns all of it except while
// a step runs; then the feeder thread owns what the posted tasks use (streams, model, blas, the streamer,
// the ops and the device buffers), and the two hand the staging buffers over as gpu_step_buffers.h says.
// Members are destroyed in reverse order: the feeder first (its thread is done with everything), the model
// (and its arena) after every buffer allocated from it.
struct GpuForward::State {
  State(const ModelWeights& w, KvCache& kv, cpu::CpuWorkers& pool)
      : weights(w), spec(w.spec()), kv_cache(kv), workers(pool) {}

  // The driving thread's side of a step: CPU attention per (layer, micro-batch), with the GPU work before
  // and after each posted to the feeder in the order the compute stream must run it.
  absl::Status RunStep(const StepLayout& layout, StepOutput* out);

  // Fixed once Create returns; both threads read them.
  const ModelWeights& weights;
  const ModelSpec& spec;
  KvCache& kv_cache;  // Its blocks are written by the driving thread's attention (host) or the GPU (device).
  cpu::CpuWorkers& workers;  // The driving thread's attention pool.
  GpuPlacement placement;
  int max_tokens = 0;
  // Used by the feeder thread while a step runs.
  gpu::Stream compute, copy;
  std::unique_ptr<GpuModel> model;
  gpu::BlasHandle blas;
  StepBuffers buffers;
  std::optional<ExpertStreamer> streamer;
  std::optional<GpuStepOps> ops;
  // MLA models: the rope part's rotary embedding and the CPU attention's scratch (driving thread).
  cpu::RotaryEmbedding mla_rotary;
  MlaScratch mla_scratch;
  // The driving thread's: its stage times (embed, attention) and counters (KV bytes, waits), and the
  // snapshot of the ring, feeder and arena counters it takes after each step that succeeded.
  ForwardStats stats;
  // Declared last: destroyed first, so that its thread has finished with everything above.
  std::unique_ptr<GpuFeeder> feeder;
};

int64_t GpuForward::WorkspaceBytes(const ModelSpec& spec, int max_step_tokens, io::DType expert_dtype,
                                   bool mla_prefill_on_gpu, int expert_shards, int expert_tile_tokens) {
  // The planner prices the same buffers (planner/model_costs.h), so that its plans fit the engine.
  const planner::GpuWorkspace workspace = planner::GpuWorkspaceBytes(spec, expert_dtype);
  int64_t bytes =
      workspace.bytes(max_step_tokens, planner::ExpertRunnerTokens(max_step_tokens, expert_tile_tokens));
  std::vector<planner::MemoryItem> items = planner::ExpertShardItems(spec, max_step_tokens, expert_shards);
  if (mla_prefill_on_gpu) {
    for (planner::MemoryItem& item : planner::MlaPrefillItems(spec, max_step_tokens)) items.push_back(item);
  }
  for (const planner::MemoryItem& item : items) {
    bytes += (item.bytes + planner::kArenaGranularity - 1) / planner::kArenaGranularity *
             planner::kArenaGranularity;
  }
  return bytes;
}

absl::Status GpuForward::State::RunStep(const StepLayout& layout, StepOutput* out) {
  const int h = spec.hidden_size, qw = spec.q_width(), kvw = spec.kv_width(), aw = spec.attention_out_width();
  const int batches = static_cast<int>(layout.batches.size());
  // The staging buffers the upload reads are filled before it is posted (gpu_step_buffers.h).
  const auto embed_start = std::chrono::steady_clock::now();
  for (const MicroBatch& batch : layout.batches) {
    int row = batch.first_row;
    for (const StepChunk& chunk : batch.chunks) {
      weights.Embed(chunk.tokens, chunk.count, HostRow<float>(buffers.host_x, row, h));
      row += chunk.count;
    }
  }
  std::memcpy(buffers.host_positions.data(), layout.positions.data(), 4 * layout.positions.size());
  std::memcpy(buffers.host_fresh_offsets.data(), layout.fresh_offsets.data(),
              4 * layout.fresh_offsets.size());
  if (!layout.device_tables.empty()) {
    std::memcpy(buffers.host_row_tables.data(), layout.row_tables.data(), 4 * layout.row_tables.size());
    std::memcpy(buffers.host_device_tables.data(), layout.device_tables.data(),
                4 * layout.device_tables.size());
  }
  stats.times.embed += SecondsSince(embed_start);

  for (const MicroBatch& batch : layout.batches) {
    for (int c = 0; c < static_cast<int>(batch.chunks.size()); ++c) {
      const StepChunk& chunk = batch.chunks[c];
      const int64_t read = kv_cache.bytes_per_token() * (int64_t{chunk.count} * chunk.start +
                                                         int64_t{chunk.count} * (chunk.count + 1) / 2);
      if (c < batch.cpu_chunks) stats.cpu_kv_read_bytes += read;
      if (kv_cache.OnDevice(*chunk.block_table) && (chunk.start > 0 || !placement.prefill_attention_on_gpu))
        stats.gpu_cache_kv_read_bytes += read;
    }
  }
  // qkv_ticket[b]: the task that queued micro-batch b's projections of the layer the loop is at; once it has
  // run, qkv_ready(b) is recorded and this thread may wait on the event itself.
  std::vector<int64_t> qkv_ticket(batches, 0);
  feeder->Post([&] { return ops->UploadStep(layout); });
  for (int b = 0; b < batches; ++b) {
    qkv_ticket[b] =
        feeder->Post([this, &layout, b] { return ops->EnqueueProjections(0, layout.batches[b], b); });
  }
  for (int layer = 0; layer < spec.num_layers; ++layer) {
    feeder->Post([this, layer] {
      RINGMOE_RETURN_IF_ERROR(ops->stage_clock().Begin(GpuStage::kRingWait));
      RINGMOE_RETURN_IF_ERROR(streamer->BeginLayer(layer));
      return ops->stage_clock().End();
    });
    for (int b = 0; b < batches; ++b) {
      const MicroBatch& batch = layout.batches[b];
      const auto wait_start = std::chrono::steady_clock::now();
      RINGMOE_RETURN_IF_ERROR(feeder->WaitFor(qkv_ticket[b]));
      RINGMOE_RETURN_IF_ERROR(ops->qkv_ready(b).Synchronize());
      stats.cpu_wait_seconds += SecondsSince(wait_start);
      const auto attention_start = std::chrono::steady_clock::now();
      if (spec.is_mla()) {
        // MLA: every row's kv_a row (host_k) normed, rotated and cached here; the CPU rows (decodes,
        // continuations) also attend here, from q, absorbed, and through W_UV. Fresh prompts attend on the
        // GPU (GpuStepOps::EnqueueMlaPrefill) unless the plan keeps them here too.
        MlaAttendProjected(spec, weights.layer(layer).attention, mla_rotary, layer, batch.chunks,
                           HostRow<float>(buffers.host_q, batch.first_row, qw),
                           HostRow<float>(buffers.host_k, batch.first_row, spec.mla.cache_width()),
                           batch.rows, HostRow<float>(buffers.host_attention, batch.first_row, aw), kv_cache,
                           workers, mla_scratch, batch.cpu_chunks);
      } else {
        CacheAndAttend(spec, layer, std::span(batch.chunks).first(batch.host_chunks), batch.cpu_chunks,
                       HostRow<float>(buffers.host_q, batch.first_row, qw),
                       HostRow<float>(buffers.host_k, batch.first_row, kvw),
                       HostRow<float>(buffers.host_v, batch.first_row, kvw),
                       HostRow<float>(buffers.host_attention, batch.first_row, aw), kv_cache, workers);
      }
      stats.times.attention += SecondsSince(attention_start);
      const bool more = layer + 1 < spec.num_layers;
      const int64_t ticket = feeder->Post([this, &batch, layer, b, more] {
        RINGMOE_RETURN_IF_ERROR(ops->EnqueueAfterAttention(layer, batch));
        return more ? ops->EnqueueProjections(layer + 1, batch, b) : absl::OkStatus();
      });
      if (more) qkv_ticket[b] = ticket;
    }
    feeder->Post([this, layer] { return streamer->EndLayer(layer); });
  }
  feeder->Post([this, &layout, out] { return ops->Logits(layout, out); });
  return feeder->Drain();
}

GpuForward::GpuForward(std::unique_ptr<State> state) : state_(std::move(state)) {}

GpuForward::~GpuForward() {
  if (state_ && state_->compute.valid()) (void)state_->compute.Synchronize();
}

absl::StatusOr<std::unique_ptr<GpuForward>> GpuForward::Create(const ModelWeights& weights, KvCache& kv_cache,
                                                               cpu::CpuWorkers& workers,
                                                               const GpuPlacement& placement,
                                                               int64_t gpu_cap_bytes, int max_step_tokens) {
  auto state = std::make_unique<State>(weights, kv_cache, workers);
  state->placement = placement;
  state->placement.micro_batches = std::max(1, placement.micro_batches);

  if (kv_cache.device_blocks() > 0 && kv_cache.dtype() != io::DType::kBF16) {
    return absl::InvalidArgumentError("the GPU's share of the KV cache is bf16 only");
  }
  if (weights.spec().is_mla()) {
    // MLA's cache stays on the host, where decodes and continuations attend (ValidatePlan refuses a GPU
    // share). Fresh prompts attend on the GPU when the plan says so and the shapes suit
    // gpu::PrefillAttention.
    if (kv_cache.device_blocks() > 0) {
      return absl::InvalidArgumentError("an MLA model's KV cache has no share on the GPU");
    }
    if (!MlaPrefillFitsGpu(weights.spec())) state->placement.prefill_attention_on_gpu = false;
    state->mla_rotary = MlaRotary(weights.spec());
  }
  state->placement.workspace_bytes =
      WorkspaceBytes(weights.spec(), max_step_tokens, placement.expert_dtype,
                     weights.spec().is_mla() && state->placement.prefill_attention_on_gpu,
                     placement.expert_shards, placement.expert_tile_tokens);
  // K and V, every layer, bf16.
  state->placement.kv_cache_bytes =
      2LL * weights.spec().num_layers * kv_cache.device_blocks() * kv_cache.block_stride() * 2;
  state->max_tokens = max_step_tokens;
  absl::StatusOr<gpu::Stream> compute = gpu::Stream::Create(/*high_priority=*/true);
  if (!compute.ok()) return compute.status();
  absl::StatusOr<gpu::Stream> copy = gpu::Stream::Create();
  if (!copy.ok()) return copy.status();
  state->compute = std::move(*compute);
  state->copy = std::move(*copy);
  absl::StatusOr<std::unique_ptr<GpuModel>> model =
      GpuModel::Create(weights, state->placement, gpu_cap_bytes, state->compute);
  if (!model.ok()) return model.status();
  state->model = std::move(*model);
  absl::StatusOr<gpu::BlasHandle> blas = gpu::BlasHandle::Create(state->model->arena());
  if (!blas.ok()) return blas.status();
  state->blas = std::move(*blas);
  // The same allocations, in the same order, as when they were one list: buffers, then the runners.
  RINGMOE_RETURN_IF_ERROR(state->buffers.Allocate(state->model->arena(), state->spec, max_step_tokens,
                                                  state->placement, kv_cache.device_blocks(),
                                                  state->compute));
  state->streamer.emplace(*state->model, state->spec, state->placement.routed_expert_copies, state->compute,
                          state->copy);
  state->ops.emplace(state->spec, kv_cache, *state->model, state->blas, state->compute, state->buffers,
                     *state->streamer);
  RINGMOE_RETURN_IF_ERROR(state->ops->Allocate(
      max_step_tokens, state->placement.micro_batches,
      state->spec.is_mla() && state->placement.prefill_attention_on_gpu, state->placement.expert_shards,
      planner::ExpertRunnerTokens(max_step_tokens, state->placement.expert_tile_tokens),
      state->placement.expert_gemm));
  if (placement.gpu_stage_times) state->ops->stage_clock().Enable(state->compute);
  RINGMOE_RETURN_IF_ERROR(state->streamer->PrimeRing());
  state->stats.gpu_cap_bytes = state->model->arena().cap_bytes();
  state->stats.resident_moe_layers = state->model->resident_moe_layers();
  state->stats.streamed_moe_layers = state->model->num_sections() / state->model->layer_parts();
  state->stats.ssd_moe_layers = state->model->ssd_moe_layers();
  state->feeder = std::make_unique<GpuFeeder>();
  return std::unique_ptr<GpuForward>(new GpuForward(std::move(state)));
}

absl::Status GpuForward::Run(const std::vector<StepChunk>& chunks, StepOutput* out) {
  State& s = *state_;
  int tokens = 0;
  for (const StepChunk& chunk : chunks) tokens += chunk.count;
  if (tokens > s.max_tokens) {
    return absl::InternalError(
        absl::StrCat("step of ", tokens, " tokens exceeds the GPU workspace (", s.max_tokens, ")"));
  }
  const StepLayout layout =
      LayOutStep(chunks, s.placement.micro_batches, s.placement.prefill_attention_on_gpu, &s.kv_cache);
  absl::Status status = s.RunStep(layout, out);
  // Whatever happened, nothing posted may outlive this call: the tasks refer to `layout` and `out`.
  absl::Status drained = s.feeder->Drain();
  if (status.ok()) status = drained;
  s.feeder->ClearFailure();
  // The feeder is idle: the stage clock is this thread's until the next step (a failed step's is dropped).
  const absl::Status timed = s.ops->stage_clock().Collect();
  if (!status.ok()) return status;
  RINGMOE_RETURN_IF_ERROR(timed);
  s.stats.streamed_bytes = s.streamer->streamed_bytes();
  s.stats.copy_seconds = s.streamer->copy_seconds();
  s.stats.feeder_busy_seconds = s.feeder->busy_seconds();
  s.stats.gpu_peak_bytes = s.model->arena().peak_bytes();
  if (const gpu::SsdSectionSource* ssd = s.model->ssd_source()) {
    const io::SectionPrefetcher::Stats read = ssd->stats();
    s.stats.ssd_read_bytes = static_cast<int64_t>(read.bytes_read);
    s.stats.ssd_read_seconds = read.read_seconds;
    s.stats.ssd_wait_seconds = read.wait_seconds;
  }
  return absl::OkStatus();
}

ForwardStats GpuForward::stats() const {
  // The driving thread's counters and snapshot, with the feeder's stage times and count waits.
  ForwardStats stats = state_->stats;
  const StageTimes& feeder_times = state_->ops->times();
  stats.times.projections = feeder_times.projections;
  stats.times.moe = feeder_times.moe;
  stats.times.dense_mlp = feeder_times.dense_mlp;
  stats.times.lm_head = feeder_times.lm_head;
  stats.feeder_wait_seconds = state_->ops->feeder_wait_seconds();
  stats.gpu_stages = state_->ops->stage_clock().totals();
  return stats;
}

}  // namespace ringmoe
