// The step-time half of PerfModel (planner/perf_model.h): a step's stage times on the GPU path (copies,
// GEMMs, attention on either side, their overlap) and on the CPU path, from a plan and its memory plan. The
// equations are in planner/DESIGN.md ("One step").
#include <algorithm>
#include <cmath>
#include <utility>

#include "planner/perf_model.h"

namespace ringmoe::planner {
namespace {

// Time for two DRAM readers that start together: DMA reading `dma_bytes` and CPU attention reading
// `kv_bytes`. While both run each gets its shared rate; whoever finishes first leaves the other its solo
// rate.
std::pair<double, double> ContendedTimes(double dma_bytes, double kv_bytes, double dma_alone, double kv_alone,
                                         double dma_shared, double kv_shared) {
  if (dma_bytes <= 0) return {0.0, kv_bytes / kv_alone};
  if (kv_bytes <= 0) return {dma_bytes / dma_alone, 0.0};
  double dma_together = dma_bytes / dma_shared;
  double kv_together = kv_bytes / kv_shared;
  if (dma_together <= kv_together) {
    return {dma_together, dma_together + (kv_bytes - dma_together * kv_shared) / kv_alone};
  }
  return {kv_together + (dma_bytes - kv_together * dma_shared) / dma_alone, kv_together};
}

}  // namespace

StageTimes PerfModel::StepTime(const ExecutionPlan& plan, const MemoryPlan& memory, double decode_tokens,
                               double decode_context, double prefill_tokens, double prompt_tokens,
                               bool bound) const {
  if (plan.device == PlanDevice::kGpu) {
    return GpuStep(plan, memory, decode_tokens, decode_context, prefill_tokens, prompt_tokens, bound);
  }
  return CpuStep(memory, decode_tokens, decode_context, prefill_tokens, prompt_tokens, bound);
}

namespace {

// KV bytes read and attention FLOPs of one step (whole model). Decodes and the prefill tokens that continue
// a cached prefix read the KV cache (CPU attention on the GPU path); fresh prompts, from position 0, attend
// only to themselves (GPU attention on the GPU path).
struct AttentionWork {
  double kv_bytes = 0;        // Read by the cache-reading kind (decodes and continuations), and the writes.
  double decode_flops = 0;    // Decodes: one query row per KV row.
  double continue_flops = 0;  // Continuations: many query rows per KV row.
  double fresh_flops = 0;     // Fresh prompts' causal self-attention.
};

AttentionWork StepAttention(const ModelCosts& costs, double decode_tokens, double decode_context,
                            double prefill_tokens, double prompt_tokens) {
  AttentionWork work;
  const double phi = costs.attention_flops_per_context_token;
  // Decode: each token reads its whole context once.
  work.kv_bytes += decode_tokens * decode_context * costs.kv_bytes_per_token;
  work.decode_flops += decode_tokens * decode_context * phi;
  if (prefill_tokens > 0) {
    // A step's prefill budget cuts one prompt at its end; the rest of that prompt opens the next step as a
    // continuation, on average half a prompt (or half the chunk, when chunks are shorter than prompts). It
    // attends to its prefix and itself: c (P - c/2) query-key pairs for a continuation of c tokens.
    const double prompt = std::max(1.0, prompt_tokens);
    const double continued = std::min(prefill_tokens, prompt) / 2;
    const double fresh = prefill_tokens - continued;
    work.continue_flops += continued * (prompt - continued / 2) * phi;
    work.kv_bytes += prompt * costs.kv_bytes_per_token;  // its prefix and itself, once
    // Fresh prompts: a token at position p attends to p + 1 positions, P/2 on average.
    work.fresh_flops += fresh * (prompt / 2) * phi;
    work.kv_bytes += prefill_tokens * costs.kv_bytes_per_token;  // every prompt token's K/V is written
  }
  return work;
}

double LogitTokens(double decode_tokens, double prefill_tokens, double prompt_tokens) {
  return decode_tokens +
         (prefill_tokens > 0 ? std::ceil(prefill_tokens / std::max(1.0, prompt_tokens)) : 0.0);
}

}  // namespace

StageTimes PerfModel::GpuStep(const ExecutionPlan& plan, const MemoryPlan& memory, double decode_tokens,
                              double decode_context, double prefill_tokens, double prompt_tokens,
                              bool bound) const {
  const GpuProfile& gpu = *profile_.gpu;
  StageTimes times;
  const double tokens = decode_tokens + prefill_tokens;
  times.tokens = tokens;
  const int micro_batches = plan.micro_batches;
  const double micro_tokens = tokens / micro_batches;
  const double gbps = 1e9;
  // Several GPUs (planner/DESIGN.md, "Several GPUs"): each runs the dense work of 1/G of the tokens and, for
  // every token, the experts of its 1/G share of each layer; the GPUs work side by side, so one GPU's time is
  // the step's.
  const int gpus = std::max(1, plan.gpus);
  const double dense_tokens = micro_tokens / gpus;

  // GPU GEMMs, one micro-batch at a time, on the measured curve at the tokens each expert sees.
  double micro_gemm = 0, micro_expert_gemm = 0;
  if (micro_tokens > 0) {
    for (const LayerCosts& layer : costs_.layers) {
      // MLA's absorption runs on the CPU (below); fresh prompts attending on the GPU have kv_b applied there.
      const double fresh_share =
          costs_.mla && plan.prefill_attention_on_gpu && tokens > 0
              ? std::max(0.0, prefill_tokens - std::min(prefill_tokens, prompt_tokens) / 2) / tokens
              : 0.0;
      double dense_flops =
          dense_tokens * (layer.attention_projection_flops - layer.mla_absorb_flops +
                          fresh_share * layer.mla_absorb_flops + layer.router_flops + layer.shared_mlp_flops);
      micro_gemm += dense_flops / GpuGemmFlops(dense_tokens);
      if (layer.num_experts > 0) {
        // Tiles (ExecutionPlan::expert_tile_tokens) see fewer tokens per expert, and an FP8 layer
        // dequantises its routed experts once per tile.
        const double tiles = plan.expert_tile_tokens > 0
                                 ? std::max(1.0, std::ceil(micro_tokens / plan.expert_tile_tokens))
                                 : 1.0;
        const double tile_tokens = micro_tokens / tiles;
        double touched = ExpectedTouchedExperts(tile_tokens, layer.num_experts, layer.top_k);
        double per_expert = tile_tokens * layer.top_k / touched;
        double expert_gemm =
            micro_tokens * layer.top_k / gpus * layer.expert_flops / GpuGemmFlops(per_expert);
        if (costs_.held_expert_dtype == io::DType::kF8E4M3)  // expert_flops / 2 weights an expert
          expert_gemm += tiles * touched / gpus * layer.expert_flops / 2 * 3 / kGpuFp8DequantBytesPerSecond;
        micro_gemm += expert_gemm;
        micro_expert_gemm += expert_gemm;
      }
    }
    double micro_logits = LogitTokens(decode_tokens, prefill_tokens, prompt_tokens) / micro_batches / gpus;
    if (micro_logits > 0) micro_gemm += micro_logits * costs_.lm_head_flops / GpuGemmFlops(micro_logits);
  }
  times.gpu_gemm = micro_batches * micro_gemm;

  // Attention: fresh prompts on the GPU; decodes and continuations on the CPU over the host KV cache, or, for
  // the share f of the sequences whose KV lives on the GPU, on the GPU at its probed paged-attention rate.
  AttentionWork attention =
      StepAttention(costs_, decode_tokens, decode_context, prefill_tokens, prompt_tokens);
  const double prefill_tflops =
      gpu.prefill_attention_tflops > 0 ? gpu.prefill_attention_tflops : kDefaultPrefillAttentionTflops;
  // MLA: fresh prompts attend on the GPU only when the plan says so (else on the CPU, as continuations).
  const bool all_on_cpu = costs_.mla && !plan.prefill_attention_on_gpu;
  if (all_on_cpu) {
    attention.continue_flops += attention.fresh_flops;
    attention.fresh_flops = 0;
  }
  times.gpu_attention = attention.fresh_flops / gpus / (prefill_tflops * 1e12);
  const double gpu_share = all_on_cpu ? 0.0 : plan.kv.gpu_fraction;
  if (gpu_share > 0) times.gpu_attention += gpu_share * attention.kv_bytes / (gpu.attention_kv_gbps * gbps);
  double cpu_kv_bytes = (1 - gpu_share) * attention.kv_bytes;

  // Copies: streamed weights and the CPU's attention outputs go down; its q (and every row's k/v) come back.
  const double cpu_rows =
      all_on_cpu ? tokens : (1 - gpu_share) * (decode_tokens + std::min(prefill_tokens, prompt_tokens) / 2);
  // Routed copies move only the experts the step's tokens route to (all micro-batches' together), or a whole
  // part once three quarters of it is routed, as the engine does.
  const bool routed = plan.routed_expert_copies && memory.streamed_bytes_per_step > 0;
  double weight_bytes = memory.streamed_bytes_per_step;
  if (routed) weight_bytes *= RoutedCopyShare(costs_, tokens);
  // Per GPU link: its share of the weights and of its tokens' attention rows, and the hidden states and
  // partial outputs the experts' split sends each way (CombineBytesPerLink).
  const double combine_bytes = CombineBytesPerLink(gpus, tokens);
  double h2d_bytes =
      (weight_bytes + cpu_rows * costs_.attention_out_width * 4.0 * costs_.num_layers()) / gpus +
      combine_bytes;
  // Rows of sequences whose KV lives on the GPU keep their k/v there.
  double d2h_bytes = (cpu_rows * costs_.q_width + (1 - gpu_share) * tokens * costs_.kv_rows_width) * 4.0 *
                         costs_.num_layers() / gpus +
                     combine_bytes;

  // DMA and attention both read DRAM; share it as measured. The bound reads the KV at DRAM speed, or at the
  // attention probe's rate where that is higher (on the H200 it is: 92.7 against 78.4 GB/s), so no run beats
  // it.
  const CpuAttentionRate& rate = profile_.cpu.attention;
  double dma_alone = gpu.h2d_gbps * gbps;
  double kv_alone = (bound ? KvBoundGbps() : rate.kv_gbps * kEngineKvReadShare) * gbps;
  const double decode_gflops =
      (bound ? std::max(DecodeAttentionGflops() * 1e9, CpuPeakFlops()) : DecodeAttentionGflops() * 1e9);
  const double continue_gflops = bound ? std::max(rate.prefill_gflops * 1e9, CpuPeakFlops())
                                       : (rate.prefill_gflops > 0 ? rate.prefill_gflops : rate.gflops) * 1e9;
  // Decodes with many query heads per KV head compute more than they read: they read the cache only as fast
  // as their FLOPs go, and the copies slow that read as they slow a byte-bound one (Qwen3-30B-A3B's 8 heads
  // per KV head read 54-57 GB/s beside the ring's copies on the H200, 0.8 of the 65 GB/s they reach alone).
  const double decode_flop_seconds = (1 - gpu_share) * attention.decode_flops / decode_gflops;
  if (!bound && cpu_kv_bytes > 0 && decode_flop_seconds > cpu_kv_bytes / kv_alone)
    kv_alone = cpu_kv_bytes / decode_flop_seconds;
  double dma_shared = dma_alone * kDefaultDmaShare;
  double kv_shared = kv_alone * kDefaultCpuShare;
  if (profile_.contention) {
    dma_shared = dma_alone * profile_.contention->dma_shared_gbps / profile_.contention->dma_alone_gbps;
    kv_shared = kv_alone * profile_.contention->cpu_shared_gbps / profile_.contention->cpu_alone_gbps;
  }
  dma_shared = std::min(dma_shared, dma_alone);
  kv_shared = std::min(kv_shared, kv_alone);
  if (gpus > 1) {
    // All links copy at once, one DMA reader of G times the bytes: alone at the all-links rate, beside CPU
    // attention at the same share of it as one link; when both together ask more than DRAM gives (at least
    // what one link and the CPU got together), both slow in proportion.
    const double links = AllLinksH2dBytesPerSecond(gpus);
    const double dram_total = std::max(DramTotalGbps() * gbps, dma_shared + kv_shared);
    dma_shared *= links / dma_alone;
    dma_alone = links;
    if (dma_shared + kv_shared > dram_total) {
      const double squeeze = dram_total / (dma_shared + kv_shared);
      dma_shared *= squeeze;
      kv_shared *= squeeze;
    }
  }
  // SSD-tier bytes reach the GPU through the pinned staging ring, so they too are DMA reads of DRAM.
  auto [dma_time, kv_time] =
      ContendedTimes(h2d_bytes * gpus, cpu_kv_bytes, dma_alone, kv_alone, dma_shared, kv_shared);
  times.h2d_copy = dma_time;
  times.d2h_copy = d2h_bytes / (gpu.d2h_gbps * gbps);
  if (gpu.bidirectional_gbps > 0) {
    double both = (h2d_bytes + d2h_bytes) / (gpu.bidirectional_gbps * gbps);
    if (both > std::max(times.h2d_copy, times.d2h_copy)) {
      times.d2h_copy = both - times.h2d_copy;  // Charge the shared-link excess to the smaller direction.
    }
  }
  times.cpu_attention = std::max(kv_time, (1 - gpu_share) * (attention.decode_flops / decode_gflops +
                                                             attention.continue_flops / continue_gflops));
  // MLA: the CPU also absorbs kv_b into its rows' queries and outputs, matmuls at its measured rate.
  double absorb_flops = 0;
  for (const LayerCosts& layer : costs_.layers) absorb_flops += cpu_rows * layer.mla_absorb_flops;
  if (absorb_flops > 0) {
    times.cpu_attention += absorb_flops / (bound ? std::max(CpuPeakFlops(), CpuMatmulFlops(cpu_rows))
                                                 : CpuMatmulFlops(cpu_rows));
  }
  if (memory.ssd_weight_bytes > 0 && !memory.ring_holds_streamed)
    times.ssd_read = memory.ssd_weight_bytes / (profile_.ssd->planning_gbps() * gbps);

  // Host-side costs of driving the GPU: launches, the expert-count read-back and the q/k/v hand-off, per
  // (layer, micro-batch), and per step. The bound has none.
  if (!bound) {
    times.engine_overhead =
        kStepOverheadSeconds + kGpuLayerOverheadSeconds * micro_batches * costs_.num_layers();
  }

  // Overlap: copies run beside compute; with m micro-batches the CPU attention of one overlaps the GEMMs of
  // another, but one micro-batch's chain (its GEMMs then its attention) cannot be cut.
  double gpu_busy = times.gpu_gemm + times.gpu_attention + times.engine_overhead;
  times.serial_chain = bound ? 0 : (gpu_busy + times.cpu_attention) / micro_batches;
  // The driving thread cannot attend before the GPU has projected the first micro-batch's first layer, and
  // the step ends only after the GPU has finished the last one's MoE and the logits: about one (layer,
  // micro-batch) share of the GPU's work around its attention, plus the step's host work (scheduling,
  // embedding, sampling). Read off the H200 runs: Mixtral at 12 GiB, all on the GPU, decodes at 0.88 of its
  // attention-bound prediction without this term.
  const double cpu_pipeline =
      bound || times.cpu_attention <= 0
          ? 0
          : times.cpu_attention + gpu_busy / (micro_batches * costs_.num_layers()) + kStepOverheadSeconds;
  // Ring depth: with p parts a layer and N slots, N - p parts of the next layer stream while a layer
  // computes; the rest wait for its slots. A share phi = min(1, (N - p) / p) of the copies overlaps the
  // compute; the remainder adds to it (planner/DESIGN.md). The bound overlaps everything.
  const double compute = std::max({gpu_busy, times.cpu_attention, times.serial_chain});
  double h2d = times.h2d_copy;
  bool shallow_ring = false, parts_wait = false;
  if (!bound && routed) {
    // Fetched when the routing is known: the copies wait for the router and the GEMMs wait for the copies.
    h2d = compute + h2d;
  } else if (!bound && memory.streamed_bytes_per_step > 0 && plan.parts_one_at_a_time()) {
    // Parts one at a time (one micro-batch): the copies run beside the experts' GEMMs, but through the rest
    // of each layer (projections, the CPU's attention, the router) only until the ring's N - 1 other slots
    // are full; the link then waits for the layer's experts to start.
    const double ahead = static_cast<double>(plan.ring_sections - 1) / plan.layer_parts * h2d;
    const double between = times.cpu_attention + (gpu_busy - micro_batches * micro_expert_gemm);
    h2d /= kRingCopyDuty;
    const double serialised = h2d + std::max(0.0, between - ahead);
    if (serialised > h2d) {
      h2d = serialised;
      parts_wait = true;
    }
  } else if (!bound && memory.streamed_bytes_per_step > 0 && plan.layer_parts > 0) {
    // Two lower bounds on the step: the copy engine idles part of a copy-bound step (kRingCopyDuty), and
    // a ring too shallow to hold the next layer's parts serialises part of the copies after the compute.
    const double phi =
        std::min(1.0, static_cast<double>(plan.ring_sections - plan.layer_parts) / plan.layer_parts);
    const double serialised = phi < 1 && compute > phi * h2d ? compute + (1 - phi) * h2d : 0;
    h2d /= kRingCopyDuty;
    if (serialised > h2d) {
      h2d = serialised;
      shallow_ring = true;
    }
  }
  double copy = std::max(h2d, times.d2h_copy);
  std::pair<double, const char*> candidates[] = {
      {times.ssd_read, kStageSsdRead},
      {copy, routed && h2d > times.h2d_copy ? "h2d_copy (routed experts, fetched after routing)"
             : shallow_ring                 ? "h2d_copy (ring too shallow to overlap it)"
             : parts_wait ? "h2d_copy (parts one at a time: the link waits through each layer's attention)"
             : times.h2d_copy >= times.d2h_copy ? kStageH2dCopy
                                                : kStageD2hCopy},
      {gpu_busy, times.engine_overhead > times.gpu_gemm + times.gpu_attention ? "engine overhead"
                 : times.gpu_gemm >= times.gpu_attention                      ? kStageGpuGemm
                                                                              : kStageGpuAttention},
      {times.cpu_attention, kStageCpuAttention},
      {cpu_pipeline, "cpu_attention (with the step's pipeline fill and drain)"},
      {times.serial_chain, "gpu+cpu chain (more micro-batches would overlap it)"},
  };
  times.step = 0;
  for (const auto& [seconds, name] : candidates) {
    if (seconds > times.step) {
      times.step = seconds;
      times.bottleneck = name;
    }
  }
  return times;
}

StageTimes PerfModel::CpuStep(const MemoryPlan& memory, double decode_tokens, double decode_context,
                              double prefill_tokens, double prompt_tokens, bool bound) const {
  StageTimes times;
  const double tokens = decode_tokens + prefill_tokens;
  times.tokens = tokens;
  const double dram = profile_.cpu.dram_read_gbps * 1e9;
  const double scale = CpuUsesBf16() ? 1.0 : 2.0;  // f32 weights are twice the bytes
  // Each matmul is bound by its FLOPs on the measured curve or by reading its weights from DRAM.
  double matmul = 0;
  if (tokens > 0) {
    for (const LayerCosts& layer : costs_.layers) {
      double dense_flops =
          tokens * (layer.attention_projection_flops + layer.router_flops + layer.shared_mlp_flops);
      double dense_bytes = (layer.attention_bytes + layer.router_bytes + layer.shared_mlp_bytes) * scale;
      matmul += std::max(dense_flops / CpuMatmulFlops(tokens), dense_bytes / dram);
      if (layer.num_experts > 0) {
        double touched = ExpectedTouchedExperts(tokens, layer.num_experts, layer.top_k);
        double per_expert = tokens * layer.top_k / touched;
        double flops = tokens * layer.top_k * layer.expert_flops;
        matmul += std::max(flops / CpuMatmulFlops(per_expert), touched * layer.expert_bytes * scale / dram);
      }
    }
    double logits = LogitTokens(decode_tokens, prefill_tokens, prompt_tokens);
    matmul +=
        std::max(logits * costs_.lm_head_flops / CpuMatmulFlops(logits), costs_.lm_head_bytes * scale / dram);
  }
  times.cpu_matmul = matmul;
  AttentionWork attention =
      StepAttention(costs_, decode_tokens, decode_context, prefill_tokens, prompt_tokens);
  const CpuAttentionRate& rate = profile_.cpu.attention;
  // The CPU device attends to everything over the cache; the bound reads it at DRAM speed (or faster, as
  // above).
  const double kv_rate = (bound ? KvBoundGbps() : rate.kv_gbps) * 1e9;
  const double decode_flops_rate =
      bound ? std::max(DecodeAttentionGflops() * 1e9, CpuPeakFlops()) : DecodeAttentionGflops() * 1e9;
  const double prefill_flops_rate = bound
                                        ? std::max(rate.prefill_gflops * 1e9, CpuPeakFlops())
                                        : (rate.prefill_gflops > 0 ? rate.prefill_gflops : rate.gflops) * 1e9;
  times.cpu_attention = std::max(attention.kv_bytes / kv_rate,
                                 attention.decode_flops / decode_flops_rate +
                                     (attention.continue_flops + attention.fresh_flops) / prefill_flops_rate);
  if (memory.ssd_weight_bytes > 0)
    times.ssd_read = memory.ssd_weight_bytes / (profile_.ssd->planning_gbps() * 1e9);
  // Matmuls and attention share the cores, so they add; SSD reads (io_uring) overlap both. The step's fixed
  // host work (scheduling, embedding, sampling) adds too, except in the bound.
  if (!bound) times.engine_overhead = kStepOverheadSeconds;
  double compute = times.cpu_matmul + times.cpu_attention + times.engine_overhead;
  times.serial_chain = compute;
  times.step = std::max(compute, times.ssd_read);
  if (times.ssd_read >= compute) {
    times.bottleneck = kStageSsdRead;
  } else if (times.engine_overhead > times.cpu_matmul + times.cpu_attention) {
    times.bottleneck = "engine overhead";
  } else {
    times.bottleneck = times.cpu_matmul >= times.cpu_attention ? kStageCpuMatmul : kStageCpuAttention;
  }
  return times;
}

}  // namespace ringmoe::planner
