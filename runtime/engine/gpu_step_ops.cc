// The GPU work of one offload step, stage by stage. Every function here runs on the feeder thread
// (runtime/engine/gpu_feeder.h), which owns the streams, the cuBLAS handle, the MoE runners and the ring while a
// step runs; see gpu/DESIGN.md for the order they are queued in.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "gpu/attention_ops.h"
#include "gpu/dense_ops.h"
#include "gpu/kv_cache_ops.h"
#include "gpu/routing_ops.h"
#include "gpu/row_ops.h"
#include "gpu/status_util.h"
#include "runtime/engine/gpu_forward_state.h"

#define RETURN_IF_ERROR(expr) RINGMOE_GPU_RETURN_IF_ERROR(expr)

namespace ringmoe {

absl::Status GpuForward::State::UploadStep(const StepLayout& layout) {
  const int h = spec.hidden_size;
  RETURN_IF_ERROR(gpu::CopyHostToDevice(x.data(), host_x.data(), 4LL * layout.rows * h, compute));
  RETURN_IF_ERROR(gpu::CopyHostToDevice(positions.data(), host_positions.data(), 4LL * layout.rows, compute));
  if (!layout.fresh_offsets.empty()) {
    RETURN_IF_ERROR(gpu::CopyHostToDevice(fresh_offsets.data(), host_fresh_offsets.data(),
                                          4LL * layout.fresh_offsets.size(), compute));
  }
  if (!layout.device_tables.empty()) {
    RETURN_IF_ERROR(
        gpu::CopyHostToDevice(row_tables.data(), host_row_tables.data(), 4LL * layout.rows, compute));
    RETURN_IF_ERROR(gpu::CopyHostToDevice(device_tables.data(), host_device_tables.data(),
                                          4LL * layout.device_tables.size(), compute));
  }
  return absl::OkStatus();
}

gpu::DevicePagedKv GpuForward::State::DeviceKv(int layer, int row) const {
  const int64_t layer_elements = int64_t{kv_cache.device_blocks()} * kv_cache.block_stride();
  gpu::DevicePagedKv kv;
  kv.k_pool = device_k.as<uint16_t>() + layer * layer_elements;
  kv.v_pool = device_v.as<uint16_t>() + layer * layer_elements;
  kv.block_stride = kv_cache.block_stride();
  kv.block_tokens = kv_cache.block_tokens();
  kv.kv_heads = spec.num_kv_heads;
  kv.head_dim = spec.head_dim;
  kv.tables = device_tables.as<int32_t>();
  kv.row_tables = Row<int32_t>(row_tables, row, 1);
  kv.positions = Row<int32_t>(positions, row, 1);
  return kv;
}

absl::Status GpuForward::State::EnqueueProjections(int layer, const MicroBatch& batch, int b) {
  const auto start = std::chrono::steady_clock::now();
  const GpuLayer& g = model->layer(layer);
  const int h = spec.hidden_size, qw = spec.q_width(), kvw = spec.kv_width(), r = batch.first_row,
            n = batch.rows;
  const float eps = static_cast<float>(spec.rms_norm_eps);
  RETURN_IF_ERROR(gpu::RmsNorm(Row<float>(x, r, h), g.input_norm.as<float>(), n, h, eps,
                               Row<float>(normed, r, h), compute));
  RETURN_IF_ERROR(gpu::ConvertF32ToBf16(Row<float>(normed, r, h), int64_t{n} * h,
                                        Row<uint16_t>(normed_bf16, r, h), compute));
  const void* input = Row<uint16_t>(normed_bf16, r, h);
  float* cq = Row<float>(q, r, qw);
  float* ck = Row<float>(k, r, kvw);
  float* cv = Row<float>(v, r, kvw);
  RETURN_IF_ERROR(gpu::LinearBf16(blas, input, n, g.q.data(), qw, h, g.q_bias.as<float>(), cq, compute));
  RETURN_IF_ERROR(gpu::LinearBf16(blas, input, n, g.k.data(), kvw, h, g.k_bias.as<float>(), ck, compute));
  RETURN_IF_ERROR(gpu::LinearBf16(blas, input, n, g.v.data(), kvw, h, g.v_bias.as<float>(), cv, compute));
  // What runtime/engine/attention_step.cc's PrepareQueryKey does on the CPU path, in the same order.
  if (spec.clip_qkv > 0) {
    RETURN_IF_ERROR(gpu::ClampInPlace(cq, int64_t{n} * qw, spec.clip_qkv, compute));
    RETURN_IF_ERROR(gpu::ClampInPlace(ck, int64_t{n} * kvw, spec.clip_qkv, compute));
    RETURN_IF_ERROR(gpu::ClampInPlace(cv, int64_t{n} * kvw, spec.clip_qkv, compute));
  }
  if (spec.qk_norm == QkNorm::kPerHead) {
    RETURN_IF_ERROR(
        gpu::RmsNorm(cq, g.q_norm.as<float>(), n * spec.num_heads, spec.head_dim, eps, cq, compute));
    RETURN_IF_ERROR(
        gpu::RmsNorm(ck, g.k_norm.as<float>(), n * spec.num_kv_heads, spec.head_dim, eps, ck, compute));
  } else if (spec.qk_norm == QkNorm::kFullWidth) {
    RETURN_IF_ERROR(gpu::RmsNorm(cq, g.q_norm.as<float>(), n, qw, eps, cq, compute));
    RETURN_IF_ERROR(gpu::RmsNorm(ck, g.k_norm.as<float>(), n, kvw, eps, ck, compute));
  }
  const int32_t* row_positions = Row<int32_t>(positions, r, 1);
  RETURN_IF_ERROR(
      gpu::ApplyRope(cq, n, spec.num_heads, spec.head_dim, row_positions, spec.rope_theta, compute));
  RETURN_IF_ERROR(
      gpu::ApplyRope(ck, n, spec.num_kv_heads, spec.head_dim, row_positions, spec.rope_theta, compute));
  if (kv_cache.dtype() == io::DType::kBF16) {
    // Attention reads K and V as the cache holds them, whichever side runs it: rounded to bf16 here too, so
    // that fresh prompts on the GPU see what their decodes will read from the host cache (and what a bf16
    // reference computes with). attention_bf16's rows of this micro-batch are free until o_proj.
    uint16_t* scratch = Row<uint16_t>(attention_bf16, r, qw);
    for (float* rows : {ck, cv}) {
      RETURN_IF_ERROR(gpu::ConvertF32ToBf16(rows, int64_t{n} * kvw, scratch, compute));
      RETURN_IF_ERROR(gpu::ConvertBf16ToF32(scratch, int64_t{n} * kvw, rows, compute));
    }
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(spec.head_dim));
  if (batch.device_rows > 0) {
    // Device-cache sequences keep their K/V here: written before any of their attention reads it.
    const int device_first = r + batch.host_rows;
    RETURN_IF_ERROR(gpu::WriteKvRows(Row<float>(k, device_first, kvw), Row<float>(v, device_first, kvw),
                                     batch.device_rows, kvw, DeviceKv(layer, device_first), compute));
  }
  if (batch.paged_rows > 0) {
    const int paged_first = r + n - batch.paged_rows;
    RETURN_IF_ERROR(gpu::PagedAttentionRows(Row<float>(q, paged_first, qw), batch.paged_rows, spec.num_heads,
                                            DeviceKv(layer, paged_first), scale, spec.sliding_window,
                                            Row<float>(attention, paged_first, qw), compute));
  }
  if (batch.fresh_chunks > 0) {
    const int fresh = r + batch.cpu_rows;
    RETURN_IF_ERROR(
        gpu::PrefillAttention(Row<float>(q, fresh, qw), Row<float>(k, fresh, kvw), Row<float>(v, fresh, kvw),
                              Row<int32_t>(fresh_offsets, batch.fresh_offsets, 1), batch.fresh_chunks,
                              batch.max_fresh_rows, spec.num_heads, spec.num_kv_heads, spec.head_dim, scale,
                              spec.sliding_window, Row<float>(attention, fresh, qw), compute));
  }
  if (batch.cpu_rows > 0) {
    RETURN_IF_ERROR(
        gpu::CopyDeviceToHost(HostRow<float>(host_q, r, qw), cq, 4LL * batch.cpu_rows * qw, compute));
  }
  if (batch.host_rows > 0) {  // the host cache's K/V; device-cache rows stay here
    RETURN_IF_ERROR(
        gpu::CopyDeviceToHost(HostRow<float>(host_k, r, kvw), ck, 4LL * batch.host_rows * kvw, compute));
    RETURN_IF_ERROR(
        gpu::CopyDeviceToHost(HostRow<float>(host_v, r, kvw), cv, 4LL * batch.host_rows * kvw, compute));
  }
  RETURN_IF_ERROR(qkv_ready[b].Record(compute));
  stats.times.projections += SecondsSince(start);
  return absl::OkStatus();
}

absl::Status GpuForward::State::BeginLayer(int layer) {
  const GpuLayer& g = model->layer(layer);
  if (!spec.layers[layer].is_moe) return absl::OkStatus();
  expert_bases.assign(spec.num_experts, static_cast<const uint8_t*>(g.experts.data()));
  const int64_t stride = model->expert_index().expert_stride_bytes;
  for (const StreamedPart& part : g.parts) {
    const int slot = slot_of_section[part.section];
    if (routed_copies) {
      // Filled (and waited for) per micro-batch once its routing is known; the slot's old experts are stale.
      slot_experts[slot].assign(part.num_experts, 0);
      const uint8_t* base =
          static_cast<const uint8_t*>(model->ring()->slot_data(slot)) - part.first_expert * stride;
      std::fill_n(expert_bases.begin() + part.first_expert, part.num_experts, base);
      continue;
    }
    absl::StatusOr<void*> address = model->ring()->BeginCompute(slot, compute);
    if (!address.ok()) return address.status();
    // Expert e of the part sits at (e - first_expert) * stride in its slot; the index adds e * stride.
    const uint8_t* base = static_cast<const uint8_t*>(*address) - part.first_expert * stride;
    std::fill_n(expert_bases.begin() + part.first_expert, part.num_experts, base);
  }
  return absl::OkStatus();
}

absl::Status GpuForward::State::EnqueueAfterAttention(int layer, const MicroBatch& batch) {
  const auto start = std::chrono::steady_clock::now();
  const GpuLayer& g = model->layer(layer);
  const int h = spec.hidden_size, qw = spec.q_width(), r = batch.first_row, n = batch.rows;
  const int top_k = spec.num_experts_per_tok;
  const float eps = static_cast<float>(spec.rms_norm_eps);
  // The CPU's attention rows: read straight from pinned memory by the conversion kernel where the GPU can
  // (a copy would queue on the copy engines behind the ring's fills, on the step's critical path), else
  // copied up first. Fresh prompts' rows are on the GPU already.
  int converted = 0;
  if (batch.cpu_rows > 0 && host_attention_direct) {
    RETURN_IF_ERROR(gpu::ConvertF32ToBf16(HostRow<float>(host_attention, r, qw), int64_t{batch.cpu_rows} * qw,
                                          Row<uint16_t>(attention_bf16, r, qw), compute));
    converted = batch.cpu_rows;
  } else if (batch.cpu_rows > 0) {
    RETURN_IF_ERROR(gpu::CopyHostToDevice(Row<float>(attention, r, qw), HostRow<float>(host_attention, r, qw),
                                          4LL * batch.cpu_rows * qw, compute));
  }
  RETURN_IF_ERROR(gpu::ConvertF32ToBf16(Row<float>(attention, r + converted, qw), int64_t{n - converted} * qw,
                                        Row<uint16_t>(attention_bf16, r + converted, qw), compute));
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
  if (!spec.layers[layer].is_moe) {
    RETURN_IF_ERROR(dense->SortByExpert(zero_ids.as<int32_t>(), n, compute));
    RETURN_IF_ERROR(dense->RunExperts(blas, input, ones.as<float>(), g.mlp.data(), model->dense_index(),
                                      hidden, compute));
    stats.times.dense_mlp += SecondsSince(start);
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
  const auto wait_start = std::chrono::steady_clock::now();
  RETURN_IF_ERROR(experts->SortByExpert(Row<int32_t>(ids, r, top_k), n, compute));
  stats.feeder_wait_seconds += SecondsSince(wait_start);
  if (routed_copies && !g.parts.empty()) RETURN_IF_ERROR(FetchRoutedExperts(layer));
  RETURN_IF_ERROR(experts->RunExperts(blas, input, Row<float>(routing, r, top_k), expert_bases,
                                      model->expert_index(), hidden, compute));
  if (spec.layers[layer].has_shared_expert) {
    RETURN_IF_ERROR(gpu::LinearBf16(blas, input, n, g.shared_gate.data(), 1, h, nullptr,
                                    Row<float>(gate, r, 1), compute));
    RETURN_IF_ERROR(gpu::SigmoidInPlace(Row<float>(gate, r, 1), n, compute));
    RETURN_IF_ERROR(shared->SortByExpert(zero_ids.as<int32_t>(), n, compute));
    RETURN_IF_ERROR(shared->RunExperts(blas, input, Row<float>(gate, r, 1), g.mlp.data(),
                                       model->shared_index(), hidden, compute));
  }
  stats.times.moe += SecondsSince(start);
  return absl::OkStatus();
}

absl::Status GpuForward::State::FetchRoutedExperts(int layer) {
  gpu::SectionRing* ring = model->ring();
  for (const StreamedPart& part : model->layer(layer).parts) {
    const int slot = slot_of_section[part.section];
    const std::vector<gpu::ByteRange> ranges = gpu::MissingRoutedRanges(
        model->expert_index(), part.first_expert, experts->expert_counts(), slot_experts[slot]);
    // The compute stream already waits for what earlier micro-batches fetched into the slot.
    if (ranges.empty()) continue;
    RETURN_IF_ERROR(ring->FillRanges(slot, model->source(), part.section, ranges, copy));
    RETURN_IF_ERROR(ring->BeginCompute(slot, compute).status());
  }
  return absl::OkStatus();
}

absl::Status GpuForward::State::EndLayer(int layer) {
  gpu::SectionRing* ring = model->ring();
  const GpuLayer& g = model->layer(layer);
  if (g.parts.empty()) return absl::OkStatus();
  const int sections = model->num_sections();
  for (const StreamedPart& part : g.parts) {
    const int slot = slot_of_section[part.section];
    RETURN_IF_ERROR(ring->EndCompute(slot, compute));
    if (sections > ring->num_slots() && !routed_copies) {
      // Round robin: the slot takes the section num_slots after, wrapping into the next step.
      const int next = (part.section + ring->num_slots()) % sections;
      RETURN_IF_ERROR(ring->Fill(slot, model->source(), next, copy));
      slot_of_section[next] = slot;
    }
  }
  return ring->ReleaseFinishedCopies();
}

absl::Status GpuForward::State::Logits(const StepLayout& layout, StepOutput* out) {
  const auto start = std::chrono::steady_clock::now();
  const int h = spec.hidden_size, vocab = spec.vocab_size;
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
  if (rows.empty()) return compute.Synchronize();
  std::memcpy(host_rows.data(), rows.data(), rows.size() * sizeof(int32_t));
  RETURN_IF_ERROR(gpu::CopyHostToDevice(wanted_rows.data(), host_rows.data(), 4LL * rows.size(), compute));
  for (int first = 0; first < static_cast<int>(rows.size()); first += kLogitsRows) {
    const int count = std::min<int>(kLogitsRows, static_cast<int>(rows.size()) - first);
    RETURN_IF_ERROR(gpu::GatherRowsF32(x.as<float>(), wanted_rows.as<int32_t>() + first, count, h,
                                       final_rows.as<float>(), compute));
    RETURN_IF_ERROR(gpu::RmsNorm(final_rows.as<float>(), model->final_norm().as<float>(), count, h,
                                 static_cast<float>(spec.rms_norm_eps), final_rows.as<float>(), compute));
    RETURN_IF_ERROR(
        gpu::ConvertF32ToBf16(final_rows.as<float>(), int64_t{count} * h, final_bf16.data(), compute));
    RETURN_IF_ERROR(gpu::LinearBf16(blas, final_bf16.data(), count, model->lm_head().data(), vocab, h,
                                    nullptr, logits.as<float>(), compute));
    const int sampled_here = std::clamp(sampled - first, 0, count);
    if (sampled_here < count) {
      const int greedy_first = first + sampled_here - sampled;  // Index among the greedy rows.
      RETURN_IF_ERROR(gpu::GreedyArgmaxLogSoftmax(
          logits.as<float>() + static_cast<int64_t>(sampled_here) * vocab, count - sampled_here, vocab,
          picked_ids.as<int32_t>() + greedy_first, picked_logprobs.as<float>() + greedy_first, compute));
    }
    if (sampled_here > 0) {
      RETURN_IF_ERROR(
          gpu::CopyDeviceToHost(host_logits.data(), logits.data(), 4LL * sampled_here * vocab, compute));
      RETURN_IF_ERROR(compute.Synchronize());
      std::memcpy(out->logits.data() + static_cast<size_t>(first) * vocab, host_logits.data(),
                  4ULL * sampled_here * vocab);
    }
  }
  const int greedy = static_cast<int>(greedy_chunks.size());
  if (greedy > 0) {
    RETURN_IF_ERROR(gpu::CopyDeviceToHost(host_picked_ids.data(), picked_ids.data(), 4LL * greedy, compute));
    RETURN_IF_ERROR(
        gpu::CopyDeviceToHost(host_picked_logprobs.data(), picked_logprobs.data(), 4LL * greedy, compute));
  }
  RETURN_IF_ERROR(compute.Synchronize());
  // picked is indexed by chunk order; the sampled chunks' logits rows are in chunk order already.
  for (int j = 0; j < greedy; ++j) {
    out->picked[greedy_chunks[j]] = {host_picked_ids.as<int32_t>()[j], host_picked_logprobs.as<float>()[j]};
  }
  stats.times.lm_head += SecondsSince(start);
  return absl::OkStatus();
}

}  // namespace ringmoe
