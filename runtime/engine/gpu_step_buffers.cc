#include "runtime/engine/gpu_step_buffers.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "gpu/status_util.h"

#define RETURN_IF_ERROR(expr) RINGMOE_GPU_RETURN_IF_ERROR(expr)

namespace ringmoe {

absl::Status StepBuffers::Allocate(gpu::DeviceArena& arena, const ModelSpec& spec, int max_tokens,
                                   const GpuPlacement& placement, int device_kv_blocks,
                                   const gpu::Stream& compute) {
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
                        {&device_tables, std::max(1, device_kv_blocks) * 4LL, "device KV tables"},
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
                               {&host_device_tables, std::max(1, device_kv_blocks) * 4LL}}) {
    absl::StatusOr<gpu::PinnedHostBuffer> pinned = gpu::PinnedHostBuffer::Allocate(bytes, "step staging");
    if (!pinned.ok()) return pinned.status();
    *buffer = std::move(*pinned);
  }
  host_attention_direct = gpu::DeviceReadsHostDirectly(host_attention.data());
  // Dense MLPs and shared experts run as single-expert MoE layers: expert 0, weight 1 (or the sigmoid gate).
  RETURN_IF_ERROR(gpu::FillDeviceBytes(zero_ids.data(), 0, t * 4, compute));
  std::vector<float> unit(t, 1.0f);
  RETURN_IF_ERROR(gpu::CopyHostToDevice(ones.data(), unit.data(), t * 4, compute));
  return compute.Synchronize();
}

}  // namespace ringmoe
