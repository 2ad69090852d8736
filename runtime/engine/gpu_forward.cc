#include "runtime/engine/gpu_forward.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "gpu/host_memory.h"
#include "gpu/status_util.h"
#include "planner/model_costs.h"
#include "runtime/engine/attention_step.h"
#include "runtime/engine/gpu_forward_state.h"

#define RETURN_IF_ERROR(expr) RINGMOE_GPU_RETURN_IF_ERROR(expr)

namespace ringmoe {
int64_t GpuForward::WorkspaceBytes(const ModelSpec& spec, int max_step_tokens) {
  // The planner prices the same buffers (planner/model_costs.h), so that its plans fit the engine.
  const planner::GpuWorkspace workspace = planner::GpuWorkspaceBytes(spec);
  return workspace.fixed_bytes + int64_t{max_step_tokens} * workspace.bytes_per_token;
}

absl::Status GpuForward::State::Allocate() {
  gpu::DeviceArena& arena = model->arena();
  const int64_t t = max_tokens, h = spec.hidden_size, qw = spec.q_width(), kvw = spec.kv_width();
  const int64_t top_k = spec.num_experts_per_tok, e = spec.num_experts;
  const int64_t offsets = t + placement.micro_batches + 1;
  struct Want {
    gpu::DeviceBuffer* buffer;
    int64_t bytes;
    const char* purpose;
  };
  const Want wants[] = {{&x, t * h * 4, "hidden states"},
                        {&normed, t * h * 4, "normed"},
                        {&normed_bf16, t * h * 2, "normed bf16"},
                        {&q, t * qw * 4, "q"},
                        {&k, t * kvw * 4, "k"},
                        {&v, t * kvw * 4, "v"},
                        {&attention, t * qw * 4, "attention"},
                        {&attention_bf16, t * qw * 2, "attention bf16"},
                        {&projected, t * h * 4, "o_proj out"},
                        {&router_logits, t * e * 4, "router logits"},
                        {&ids, t * top_k * 4, "expert ids"},
                        {&routing, t * top_k * 4, "routing weights"},
                        {&zero_ids, t * 4, "single-expert ids"},
                        {&ones, t * 4, "unit weights"},
                        {&gate, t * 4, "shared gate"},
                        {&positions, t * 4, "positions"},
                        {&fresh_offsets, offsets * 4, "fresh-prompt offsets"},
                        {&wanted_rows, t * 4, "logit rows"},
                        {&final_rows, kLogitsRows * h * 4, "final rows"},
                        {&final_bf16, kLogitsRows * h * 2, "final bf16"},
                        {&logits, int64_t{kLogitsRows} * spec.vocab_size * 4, "logits"},
                        {&picked_ids, t * 4, "picked tokens"},
                        {&picked_logprobs, t * 4, "picked logprobs"},
                        {&row_tables, t * 4, "device KV row tables"},
                        {&device_tables, std::max(1, kv_cache.device_blocks()) * 4LL, "device KV tables"},
                        {&device_k, placement.kv_cache_bytes / 2, "device KV cache (K)"},
                        {&device_v, placement.kv_cache_bytes / 2, "device KV cache (V)"}};
  for (const Want& want : wants) {
    if (want.bytes == 0) continue;
    absl::StatusOr<gpu::DeviceBuffer> buffer = arena.Allocate(want.bytes, want.purpose);
    if (!buffer.ok()) return buffer.status();
    *want.buffer = std::move(*buffer);
  }
  for (auto [buffer, bytes] : {std::pair{&host_x, t * h * 4},
                               {&host_q, t * qw * 4},
                               {&host_k, t * kvw * 4},
                               {&host_v, t * kvw * 4},
                               {&host_attention, t * qw * 4},
                               {&host_positions, t * 4},
                               {&host_fresh_offsets, offsets * 4},
                               {&host_rows, t * 4},
                               {&host_logits, int64_t{kLogitsRows} * spec.vocab_size * 4},
                               {&host_picked_ids, t * 4},
                               {&host_picked_logprobs, t * 4},
                               {&host_row_tables, t * 4},
                               {&host_device_tables, std::max(1, kv_cache.device_blocks()) * 4LL}}) {
    absl::StatusOr<gpu::PinnedHostBuffer> pinned = gpu::PinnedHostBuffer::Allocate(bytes, "step staging");
    if (!pinned.ok()) return pinned.status();
    *buffer = std::move(*pinned);
  }
  host_attention_direct = gpu::DeviceReadsHostDirectly(host_attention.data());
  // Dense MLPs and shared experts run as single-expert MoE layers: expert 0, weight 1 (or the sigmoid gate).
  RETURN_IF_ERROR(gpu::FillDeviceBytes(zero_ids.data(), 0, t * 4, compute));
  std::vector<float> unit(t, 1.0f);
  RETURN_IF_ERROR(gpu::CopyHostToDevice(ones.data(), unit.data(), t * 4, compute));
  RETURN_IF_ERROR(compute.Synchronize());

  // Routed experts pick their GEMM strategy by rows per expert (grouped calls at decode sizes). The
  // single-expert runners gain nothing from grouping and keep f32 outputs.
  auto runner = [&](int intermediate, int experts_count, int top_k, gpu::GemmStrategy strategy,
                    std::optional<gpu::MoeRunner>* out) {
    absl::StatusOr<gpu::MoeRunner> created = gpu::MoeRunner::Create(
        arena, gpu::MoeShape{spec.hidden_size, intermediate, experts_count, top_k}, max_tokens, strategy);
    if (!created.ok()) return created.status();
    out->emplace(std::move(*created));
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(runner(spec.moe_intermediate_size, spec.num_experts, spec.num_experts_per_tok,
                         gpu::GemmStrategy::kAuto, &experts));
  if (spec.intermediate_size > 0 && spec.num_moe_layers() < spec.num_layers) {
    RETURN_IF_ERROR(runner(spec.intermediate_size, 1, 1, gpu::GemmStrategy::kLoopGemmEx, &dense));
  }
  if (spec.shared_expert_intermediate_size > 0) {
    RETURN_IF_ERROR(
        runner(spec.shared_expert_intermediate_size, 1, 1, gpu::GemmStrategy::kLoopGemmEx, &shared));
  }
  qkv_ready.clear();
  for (int i = 0; i < placement.micro_batches; ++i) {
    absl::StatusOr<gpu::Event> event = gpu::Event::Create();
    if (!event.ok()) return event.status();
    qkv_ready.push_back(std::move(*event));
  }
  return absl::OkStatus();
}

absl::Status GpuForward::State::PrimeRing() {
  gpu::SectionRing* ring = model->ring();
  if (ring == nullptr) return absl::OkStatus();
  slot_of_section.assign(model->num_sections(), -1);
  routed_copies = placement.routed_expert_copies && model->num_sections() > ring->num_slots();
  if (routed_copies) {
    // Nothing ahead: a section takes its slot when a micro-batch's routing asks for its experts.
    for (int section = 0; section < model->num_sections(); ++section)
      slot_of_section[section] = section % ring->num_slots();
    slot_experts.assign(ring->num_slots(), {});
    return absl::OkStatus();
  }
  for (int section = 0; section < std::min(ring->num_slots(), model->num_sections()); ++section) {
    RETURN_IF_ERROR(ring->Fill(section, model->source(), section, copy));
    slot_of_section[section] = section;
  }
  return absl::OkStatus();
}

// The driving thread's side of a step: CPU attention per (layer, micro-batch), with the GPU work before and
// after each posted to the feeder in the order the compute stream must run it.
absl::Status GpuForward::State::RunStep(const std::vector<StepChunk>& chunks, const StepLayout& layout,
                                        StepOutput* out) {
  const int h = spec.hidden_size, qw = spec.q_width(), kvw = spec.kv_width();
  const int batches = static_cast<int>(layout.batches.size());
  const auto embed_start = std::chrono::steady_clock::now();
  for (const MicroBatch& batch : layout.batches) {
    int row = batch.first_row;
    for (const StepChunk& chunk : batch.chunks) {
      weights.Embed(chunk.tokens, chunk.count, HostRow<float>(host_x, row, h));
      row += chunk.count;
    }
  }
  std::memcpy(host_positions.data(), layout.positions.data(), 4 * layout.positions.size());
  std::memcpy(host_fresh_offsets.data(), layout.fresh_offsets.data(), 4 * layout.fresh_offsets.size());
  if (!layout.device_tables.empty()) {
    std::memcpy(host_row_tables.data(), layout.row_tables.data(), 4 * layout.row_tables.size());
    std::memcpy(host_device_tables.data(), layout.device_tables.data(), 4 * layout.device_tables.size());
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
  std::vector<int64_t> qkv_ticket(batches, 0);
  feeder->Post([&] { return UploadStep(layout); });
  for (int b = 0; b < batches; ++b) {
    qkv_ticket[b] = feeder->Post([this, &layout, b] { return EnqueueProjections(0, layout.batches[b], b); });
  }
  for (int layer = 0; layer < spec.num_layers; ++layer) {
    feeder->Post([this, layer] { return BeginLayer(layer); });
    for (int b = 0; b < batches; ++b) {
      const MicroBatch& batch = layout.batches[b];
      const auto wait_start = std::chrono::steady_clock::now();
      RETURN_IF_ERROR(feeder->WaitFor(qkv_ticket[b]));
      RETURN_IF_ERROR(qkv_ready[b].Synchronize());
      stats.cpu_wait_seconds += SecondsSince(wait_start);
      const auto attention_start = std::chrono::steady_clock::now();
      CacheAndAttend(spec, layer, std::span(batch.chunks).first(batch.host_chunks), batch.cpu_chunks,
                     HostRow<float>(host_q, batch.first_row, qw),
                     HostRow<float>(host_k, batch.first_row, kvw),
                     HostRow<float>(host_v, batch.first_row, kvw),
                     HostRow<float>(host_attention, batch.first_row, qw), kv_cache, workers);
      stats.times.attention += SecondsSince(attention_start);
      const bool more = layer + 1 < spec.num_layers;
      const int64_t ticket = feeder->Post([this, &batch, layer, b, more] {
        RETURN_IF_ERROR(EnqueueAfterAttention(layer, batch));
        return more ? EnqueueProjections(layer + 1, batch, b) : absl::OkStatus();
      });
      if (more) qkv_ticket[b] = ticket;
    }
    feeder->Post([this, layer] { return EndLayer(layer); });
  }
  feeder->Post([this, &layout, out] { return Logits(layout, out); });
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
  state->placement.workspace_bytes = WorkspaceBytes(weights.spec(), max_step_tokens);
  if (kv_cache.device_blocks() > 0 && kv_cache.dtype() != io::DType::kBF16) {
    return absl::InvalidArgumentError("the GPU's share of the KV cache is bf16 only");
  }
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
  RETURN_IF_ERROR(state->Allocate());
  RETURN_IF_ERROR(state->PrimeRing());
  state->stats.gpu_cap_bytes = state->model->arena().cap_bytes();
  state->stats.resident_moe_layers = state->model->resident_moe_layers();
  state->stats.streamed_moe_layers = state->model->num_sections() / state->model->layer_parts();
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
  absl::Status status = s.RunStep(chunks, layout, out);
  // Whatever happened, nothing posted may outlive this call: the tasks refer to `layout` and `out`.
  absl::Status drained = s.feeder->Drain();
  if (status.ok()) status = drained;
  s.feeder->ClearFailure();
  if (!status.ok()) return status;
  gpu::SectionRing* ring = s.model->ring();
  s.stats.streamed_bytes = ring != nullptr ? ring->bytes_copied() : 0;
  s.stats.copy_seconds = ring != nullptr ? ring->copy_seconds() : 0;
  s.stats.feeder_busy_seconds = s.feeder->busy_seconds();
  s.stats.gpu_peak_bytes = s.model->arena().peak_bytes();
  return absl::OkStatus();
}

ForwardStats GpuForward::stats() const { return state_->stats; }

}  // namespace ringmoe
