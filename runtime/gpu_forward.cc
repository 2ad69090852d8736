#include "runtime/gpu_forward.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <optional>

#include "absl/strings/str_cat.h"
#include "gpu/dense_ops.h"
#include "gpu/moe_ops.h"
#include "gpu/routing_ops.h"
#include "gpu/row_ops.h"
#include "gpu/status_util.h"
#include "runtime/attention_step.h"

#define RETURN_IF_ERROR(expr) RINGMOE_GPU_RETURN_IF_ERROR(expr)

namespace ringmoe {
namespace {

// lm_head runs over at most this many rows at once, which bounds the logits buffers.
constexpr int kLogitsRows = 256;

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

// A micro-batch: consecutive chunks of the step, and their rows.
struct MicroBatch {
  std::vector<StepChunk> chunks;
  int first_row = 0;
  int rows = 0;
};

std::vector<MicroBatch> SplitStep(const std::vector<StepChunk>& chunks, int micro_batches) {
  int total = 0;
  for (const StepChunk& chunk : chunks) total += chunk.count;
  const int target = std::max(1, (total + micro_batches - 1) / micro_batches);
  std::vector<MicroBatch> batches(1);
  int row = 0;
  for (const StepChunk& chunk : chunks) {
    if (batches.back().rows >= target && static_cast<int>(batches.size()) < micro_batches) {
      batches.push_back({{}, row, 0});
    }
    batches.back().chunks.push_back(chunk);
    batches.back().rows += chunk.count;
    row += chunk.count;
  }
  return batches;
}

}  // namespace

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
      routing, zero_ids, ones, gate, wanted_rows, final_rows, final_bf16, logits;
  gpu::PinnedHostBuffer host_x, host_q, host_k, host_v, host_attention, host_rows, host_logits;
  std::vector<gpu::Event> qkv_ready;
  std::vector<int> slot_of_section;
  StageTimes times;
  GpuRunStats stats;

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
  absl::Status EnqueueProjections(int layer, const MicroBatch& batch);
  absl::Status EnqueueAfterAttention(int layer, const MicroBatch& batch, const void* packed_experts);
  absl::Status Logits(const std::vector<StepChunk>& chunks, std::vector<float>* logits);
};

int64_t GpuForward::WorkspaceBytes(const ModelSpec& spec, int max_step_tokens) {
  const int64_t t = max_step_tokens, h = spec.hidden_size, qw = spec.q_width(), kvw = spec.kv_width();
  const int64_t k = spec.num_experts_per_tok;
  const int64_t widest = std::max<int64_t>(
      {spec.moe_intermediate_size, spec.intermediate_size, spec.shared_expert_intermediate_size});
  int64_t activations =
      t * (4 * h * 3 + 2 * h + 4 * (qw + 2 * kvw) + 4 * qw + 2 * qw + 4 * spec.num_experts + 8 * k + 12);
  // Each gpu::MoeRunner: sorted rows (bf16), gate/up (f32), activations (bf16), expert outputs (f32) per
  // assignment; the dense-MLP and shared-expert runners take one assignment per token.
  int64_t moe_scratch = t * k * (6 * h + 10 * spec.moe_intermediate_size) + (int64_t{1} << 20);
  if (spec.num_moe_layers() < spec.num_layers) moe_scratch += t * (6 * h + 10 * spec.intermediate_size);
  if (spec.shared_expert_intermediate_size > 0)
    moe_scratch += t * (6 * h + 10 * spec.shared_expert_intermediate_size);
  int64_t logits = kLogitsRows * (4 * spec.vocab_size + 6 * h);
  return activations + moe_scratch + logits + (int64_t{64} << 20);  // + cuBLAS workspace and slack
}

absl::Status GpuForward::State::Allocate() {
  gpu::DeviceArena& arena = model->arena();
  const int64_t t = max_tokens, h = spec.hidden_size, qw = spec.q_width(), kvw = spec.kv_width();
  const int64_t top_k = spec.num_experts_per_tok, e = spec.num_experts;
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
                        {&wanted_rows, t * 4, "logit rows"},
                        {&final_rows, kLogitsRows * h * 4, "final rows"},
                        {&final_bf16, kLogitsRows * h * 2, "final bf16"},
                        {&logits, int64_t{kLogitsRows} * spec.vocab_size * 4, "logits"}};
  for (const Want& want : wants) {
    absl::StatusOr<gpu::DeviceBuffer> buffer = arena.Allocate(want.bytes, want.purpose);
    if (!buffer.ok()) return buffer.status();
    *want.buffer = std::move(*buffer);
  }
  for (auto [buffer, bytes] : {std::pair{&host_x, t * h * 4},
                               {&host_q, t * qw * 4},
                               {&host_k, t * kvw * 4},
                               {&host_v, t * kvw * 4},
                               {&host_attention, t * qw * 4},
                               {&host_rows, t * 4},
                               {&host_logits, int64_t{kLogitsRows} * spec.vocab_size * 4}}) {
    absl::StatusOr<gpu::PinnedHostBuffer> pinned = gpu::PinnedHostBuffer::Allocate(bytes, "step staging");
    if (!pinned.ok()) return pinned.status();
    *buffer = std::move(*pinned);
  }
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
  for (int section = 0; section < std::min(ring->num_slots(), model->num_sections()); ++section) {
    RETURN_IF_ERROR(ring->Fill(section, model->source(), section, copy));
    slot_of_section[section] = section;
  }
  return absl::OkStatus();
}

absl::Status GpuForward::State::EnqueueProjections(int layer, const MicroBatch& batch) {
  const GpuLayer& g = model->layer(layer);
  const int h = spec.hidden_size, qw = spec.q_width(), kvw = spec.kv_width(), r = batch.first_row,
            n = batch.rows;
  const float eps = static_cast<float>(spec.rms_norm_eps);
  RETURN_IF_ERROR(gpu::RmsNorm(Row<float>(x, r, h), g.input_norm.as<float>(), n, h, eps,
                               Row<float>(normed, r, h), compute));
  RETURN_IF_ERROR(gpu::ConvertF32ToBf16(Row<float>(normed, r, h), int64_t{n} * h,
                                        Row<uint16_t>(normed_bf16, r, h), compute));
  const void* input = Row<uint16_t>(normed_bf16, r, h);
  RETURN_IF_ERROR(gpu::LinearBf16(blas, input, n, g.q.data(), qw, h, g.q_bias.as<float>(),
                                  Row<float>(q, r, qw), compute));
  RETURN_IF_ERROR(gpu::LinearBf16(blas, input, n, g.k.data(), kvw, h, g.k_bias.as<float>(),
                                  Row<float>(k, r, kvw), compute));
  RETURN_IF_ERROR(gpu::LinearBf16(blas, input, n, g.v.data(), kvw, h, g.v_bias.as<float>(),
                                  Row<float>(v, r, kvw), compute));
  RETURN_IF_ERROR(
      gpu::CopyDeviceToHost(HostRow<float>(host_q, r, qw), Row<float>(q, r, qw), 4LL * n * qw, compute));
  RETURN_IF_ERROR(
      gpu::CopyDeviceToHost(HostRow<float>(host_k, r, kvw), Row<float>(k, r, kvw), 4LL * n * kvw, compute));
  RETURN_IF_ERROR(
      gpu::CopyDeviceToHost(HostRow<float>(host_v, r, kvw), Row<float>(v, r, kvw), 4LL * n * kvw, compute));
  return absl::OkStatus();
}

absl::Status GpuForward::State::EnqueueAfterAttention(int layer, const MicroBatch& batch,
                                                      const void* packed_experts) {
  const GpuLayer& g = model->layer(layer);
  const int h = spec.hidden_size, qw = spec.q_width(), r = batch.first_row, n = batch.rows;
  const int top_k = spec.num_experts_per_tok;
  const float eps = static_cast<float>(spec.rms_norm_eps);
  RETURN_IF_ERROR(gpu::CopyHostToDevice(Row<float>(attention, r, qw), HostRow<float>(host_attention, r, qw),
                                        4LL * n * qw, compute));
  RETURN_IF_ERROR(gpu::ConvertF32ToBf16(Row<float>(attention, r, qw), int64_t{n} * qw,
                                        Row<uint16_t>(attention_bf16, r, qw), compute));
  RETURN_IF_ERROR(gpu::LinearBf16(blas, Row<uint16_t>(attention_bf16, r, qw), n, g.o.data(), h, qw, nullptr,
                                  Row<float>(projected, r, h), compute));
  float* hidden = Row<float>(x, r, h);
  RETURN_IF_ERROR(gpu::ResidualAdd(hidden, Row<float>(projected, r, h), int64_t{n} * h, compute));
  RETURN_IF_ERROR(
      gpu::RmsNorm(hidden, g.post_attention_norm.as<float>(), n, h, eps, Row<float>(normed, r, h), compute));
  RETURN_IF_ERROR(gpu::ConvertF32ToBf16(Row<float>(normed, r, h), int64_t{n} * h,
                                        Row<uint16_t>(normed_bf16, r, h), compute));
  const void* input = Row<uint16_t>(normed_bf16, r, h);
  // The MoE output (routed, then shared) accumulates straight into the residual stream.
  const auto wait_start = std::chrono::steady_clock::now();
  if (!spec.layers[layer].is_moe) {
    RETURN_IF_ERROR(dense->SortByExpert(zero_ids.as<int32_t>(), n, compute));
    RETURN_IF_ERROR(dense->RunExperts(blas, input, ones.as<float>(), g.mlp.data(), model->dense_index(),
                                      hidden, compute));
    times.moe += Seconds(wait_start);
    return absl::OkStatus();
  }
  const int e = spec.num_experts;
  RETURN_IF_ERROR(gpu::LinearF32(blas, Row<float>(normed, r, h), n, g.router.as<float>(), e, h,
                                 Row<float>(router_logits, r, e), compute));
  RETURN_IF_ERROR(gpu::RouteTopK(
      Row<float>(router_logits, r, e), n, e, top_k,
      spec.router == RouterKind::kTopKSoftmax ? cpu::RouterScoring::kTopKThenSoftmax
                                              : cpu::RouterScoring::kSoftmaxThenTopK,
      spec.norm_topk_prob, Row<int32_t>(ids, r, top_k), Row<float>(routing, r, top_k), compute));
  RETURN_IF_ERROR(experts->SortByExpert(Row<int32_t>(ids, r, top_k), n, compute));
  RETURN_IF_ERROR(experts->RunExperts(blas, input, Row<float>(routing, r, top_k), packed_experts,
                                      model->expert_index(), hidden, compute));
  if (spec.layers[layer].has_shared_expert) {
    RETURN_IF_ERROR(gpu::LinearBf16(blas, input, n, g.shared_gate.data(), 1, h, nullptr,
                                    Row<float>(gate, r, 1), compute));
    RETURN_IF_ERROR(gpu::SigmoidInPlace(Row<float>(gate, r, 1), n, compute));
    RETURN_IF_ERROR(shared->SortByExpert(zero_ids.as<int32_t>(), n, compute));
    RETURN_IF_ERROR(shared->RunExperts(blas, input, Row<float>(gate, r, 1), g.mlp.data(),
                                       model->shared_index(), hidden, compute));
  }
  times.moe += Seconds(wait_start);
  return absl::OkStatus();
}

absl::Status GpuForward::State::Logits(const std::vector<StepChunk>& chunks, std::vector<float>* logits) {
  const int h = spec.hidden_size, vocab = spec.vocab_size;
  std::vector<int32_t> rows;
  int row = 0;
  for (const StepChunk& chunk : chunks) {
    row += chunk.count;
    if (chunk.want_logits) rows.push_back(row - 1);
  }
  logits->resize(rows.size() * static_cast<size_t>(vocab));
  if (rows.empty()) return absl::OkStatus();
  std::memcpy(host_rows.data(), rows.data(), rows.size() * sizeof(int32_t));
  RETURN_IF_ERROR(gpu::CopyHostToDevice(wanted_rows.data(), host_rows.data(), 4LL * rows.size(), compute));
  for (size_t first = 0; first < rows.size(); first += kLogitsRows) {
    const int count = static_cast<int>(std::min<size_t>(kLogitsRows, rows.size() - first));
    RETURN_IF_ERROR(gpu::GatherRowsF32(x.as<float>(), wanted_rows.as<int32_t>() + first, count, h,
                                       final_rows.as<float>(), compute));
    RETURN_IF_ERROR(gpu::RmsNorm(final_rows.as<float>(), model->final_norm().as<float>(), count, h,
                                 static_cast<float>(spec.rms_norm_eps), final_rows.as<float>(), compute));
    RETURN_IF_ERROR(
        gpu::ConvertF32ToBf16(final_rows.as<float>(), int64_t{count} * h, final_bf16.data(), compute));
    RETURN_IF_ERROR(gpu::LinearBf16(blas, final_bf16.data(), count, model->lm_head().data(), vocab, h,
                                    nullptr, this->logits.as<float>(), compute));
    RETURN_IF_ERROR(
        gpu::CopyDeviceToHost(host_logits.data(), this->logits.data(), 4LL * count * vocab, compute));
    const auto wait_start = std::chrono::steady_clock::now();
    RETURN_IF_ERROR(compute.Synchronize());
    stats.cpu_wait_seconds += Seconds(wait_start);
    std::memcpy(logits->data() + first * vocab, host_logits.data(), 4ULL * count * vocab);
  }
  return absl::OkStatus();
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
  state->stats.streamed_moe_layers = state->model->num_sections();
  return std::unique_ptr<GpuForward>(new GpuForward(std::move(state)));
}

absl::Status GpuForward::Run(const std::vector<StepChunk>& chunks, std::vector<float>* logits) {
  State& s = *state_;
  const ModelSpec& spec = s.spec;
  const int h = spec.hidden_size, qw = spec.q_width(), kvw = spec.kv_width();
  int tokens = 0;
  for (const StepChunk& chunk : chunks) tokens += chunk.count;
  if (tokens > s.max_tokens) {
    return absl::InternalError(
        absl::StrCat("step of ", tokens, " tokens exceeds the GPU workspace (", s.max_tokens, ")"));
  }
  auto start = std::chrono::steady_clock::now();
  int row = 0;
  for (const StepChunk& chunk : chunks) {
    s.weights.Embed(chunk.tokens, chunk.count, s.HostRow<float>(s.host_x, row, h));
    row += chunk.count;
  }
  s.times.embed += Seconds(start);
  RETURN_IF_ERROR(gpu::CopyHostToDevice(s.x.data(), s.host_x.data(), 4LL * tokens * h, s.compute));

  const std::vector<MicroBatch> batches = SplitStep(chunks, s.placement.micro_batches);
  for (size_t b = 0; b < batches.size(); ++b) {
    RETURN_IF_ERROR(s.EnqueueProjections(0, batches[b]));
    RETURN_IF_ERROR(s.qkv_ready[b].Record(s.compute));
  }
  gpu::SectionRing* ring = s.model->ring();
  for (int layer = 0; layer < spec.num_layers; ++layer) {
    const GpuLayer& g = s.model->layer(layer);
    const void* packed = g.experts.data();
    int slot = -1;
    if (g.section >= 0) {
      slot = s.slot_of_section[g.section];
      absl::StatusOr<void*> address = ring->BeginCompute(slot, s.compute);
      if (!address.ok()) return address.status();
      packed = *address;
    }
    for (size_t b = 0; b < batches.size(); ++b) {
      const MicroBatch& batch = batches[b];
      auto wait_start = std::chrono::steady_clock::now();
      RETURN_IF_ERROR(s.qkv_ready[b].Synchronize());
      s.stats.cpu_wait_seconds += Seconds(wait_start);
      auto attention_start = std::chrono::steady_clock::now();
      AttentionOnCpu(spec, s.weights.layer(layer).attention, layer, batch.chunks,
                     s.HostRow<float>(s.host_q, batch.first_row, qw),
                     s.HostRow<float>(s.host_k, batch.first_row, kvw),
                     s.HostRow<float>(s.host_v, batch.first_row, kvw),
                     s.HostRow<float>(s.host_attention, batch.first_row, qw), s.kv_cache, s.workers);
      s.times.attention += Seconds(attention_start);
      RETURN_IF_ERROR(s.EnqueueAfterAttention(layer, batch, packed));
      if (layer + 1 < spec.num_layers) {
        RETURN_IF_ERROR(s.EnqueueProjections(layer + 1, batch));
        RETURN_IF_ERROR(s.qkv_ready[b].Record(s.compute));
      }
    }
    if (slot >= 0) {
      RETURN_IF_ERROR(ring->EndCompute(slot, s.compute));
      const int sections = s.model->num_sections();
      if (sections > ring->num_slots()) {
        // Round robin: the slot takes the section that comes num_slots after, wrapping into the next step.
        const int next = (g.section + ring->num_slots()) % sections;
        RETURN_IF_ERROR(ring->Fill(slot, s.model->source(), next, s.copy));
        s.slot_of_section[next] = slot;
      }
      RETURN_IF_ERROR(ring->ReleaseFinishedCopies());
    }
  }
  auto logits_start = std::chrono::steady_clock::now();
  RETURN_IF_ERROR(s.Logits(chunks, logits));
  s.times.lm_head += Seconds(logits_start);
  s.stats.streamed_bytes = ring != nullptr ? ring->bytes_copied() : 0;
  s.stats.gpu_peak_bytes = s.model->arena().peak_bytes();
  return absl::OkStatus();
}

const StageTimes& GpuForward::stage_times() const { return state_->times; }
GpuRunStats GpuForward::stats() const { return state_->stats; }

}  // namespace ringmoe
