#include "planner/perf_model.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "io/status_macros.h"
#include "planner/expert_shards.h"
#include "planner/memory_table.h"

namespace ringmoe::planner {
namespace {

constexpr int64_t kGiB = int64_t{1} << 30;

std::string Gib(int64_t bytes) { return absl::StrFormat("%.2f GiB", static_cast<double>(bytes) / kGiB); }

// "a ring of 5 sections of 1/4 layer (13.13 GiB)", for errors that name the ring a plan could not hold.
std::string RingText(const ExecutionPlan& plan, int64_t bytes) {
  return absl::StrCat("a ring of ", plan.ring_sections, " sections",
                      plan.layer_parts > 1 ? absl::StrCat(" of 1/", plan.layer_parts, " layer") : "", " (",
                      Gib(bytes), ")");
}

int64_t KvBytesPerSequence(const ModelCosts& costs, const Workload& workload) {
  int64_t context = std::max(1, workload.max_context_tokens);
  int64_t blocks = (context + kKvBlockTokens - 1) / kKvBlockTokens;
  return blocks * kKvBlockTokens * costs.kv_bytes_per_token;
}

int64_t MaxLayerWeightBytes(const ModelCosts& costs) {
  int64_t most = 0;
  for (const LayerCosts& layer : costs.layers) most = std::max(most, layer.weight_bytes());
  return most;
}

}  // namespace

Workload MakeWorkload(const std::vector<int64_t>& prompt_tokens, const std::vector<int64_t>& gen_tokens,
                      int max_position, std::string note) {
  assert(prompt_tokens.size() == gen_tokens.size());
  Workload workload;
  workload.num_requests = static_cast<int64_t>(prompt_tokens.size());
  workload.prompt_length_note = std::move(note);
  if (workload.num_requests == 0) return workload;
  double prompt_sum = 0, gen_sum = 0;
  int64_t longest = 0;
  for (size_t i = 0; i < prompt_tokens.size(); ++i) {
    int64_t prompt = std::max<int64_t>(1, prompt_tokens[i]);
    int64_t gen = std::max<int64_t>(0, gen_tokens[i]);
    prompt_sum += static_cast<double>(prompt);
    gen_sum += static_cast<double>(gen);
    longest = std::max(longest, prompt + gen);
  }
  if (max_position > 0) longest = std::min<int64_t>(longest, max_position);
  workload.mean_prompt_tokens = prompt_sum / workload.num_requests;
  workload.mean_gen_tokens = gen_sum / workload.num_requests;
  workload.max_context_tokens = static_cast<int>(longest);
  return workload;
}

Budgets ResolveBudgets(const HardwareProfile& profile, Budgets requested) {
  Budgets budgets = requested;
  if (budgets.gpu_bytes <= 0 && profile.gpu) {
    int64_t memory = profile.gpu->memory_bytes;
    budgets.gpu_bytes = std::max<int64_t>(0, memory - std::max<int64_t>(kGiB, memory / 20));
  }
  if (budgets.cpu_bytes <= 0) {
    int64_t memory = profile.topology.memory_bytes;
    budgets.cpu_bytes = std::max<int64_t>(0, memory - std::max<int64_t>(4 * kGiB, memory / 10));
  }
  return budgets;
}

int64_t MemoryPlan::gpu_used() const {
  int64_t used = gpu_ring_bytes + gpu_workspace_bytes + gpu_kv_bytes;
  for (int64_t bytes : gpu_resident_bytes) used += bytes;
  return used;
}

std::vector<std::pair<std::string, double>> StageTimes::Stages() const {
  return {{kStageSsdRead, ssd_read},           {kStageH2dCopy, h2d_copy},
          {kStageD2hCopy, d2h_copy},           {kStageGpuGemm, gpu_gemm},
          {kStageGpuAttention, gpu_attention}, {kStageCpuAttention, cpu_attention},
          {kStageCpuMatmul, cpu_matmul}};
}

double InterpolateRate(const std::vector<RatePoint>& curve, double tokens, bool scale_below) {
  assert(!curve.empty());
  const double flops_per_tflop = 1e12;
  if (tokens <= curve.front().tokens) {
    double rate = curve.front().tflops * flops_per_tflop;
    return scale_below ? rate * std::max(tokens, 1e-9) / curve.front().tokens : rate;
  }
  if (tokens >= curve.back().tokens) return curve.back().tflops * flops_per_tflop;
  for (size_t i = 1; i < curve.size(); ++i) {
    if (tokens <= curve[i].tokens) {
      double x0 = std::log(static_cast<double>(curve[i - 1].tokens));
      double x1 = std::log(static_cast<double>(curve[i].tokens));
      double t = (std::log(tokens) - x0) / (x1 - x0);
      return (curve[i - 1].tflops + t * (curve[i].tflops - curve[i - 1].tflops)) * flops_per_tflop;
    }
  }
  return curve.back().tflops * flops_per_tflop;
}

double RoutedCopyShare(const ModelCosts& costs, double tokens) {
  for (const LayerCosts& layer : costs.layers) {
    if (layer.num_experts == 0) continue;
    const double share = ExpectedTouchedExperts(tokens, layer.num_experts, layer.top_k) / layer.num_experts;
    return share > 0.75 ? 1.0 : share;
  }
  return 1.0;
}

double ExpectedTouchedExperts(double tokens, int num_experts, int top_k) {
  if (num_experts <= 0 || tokens <= 0) return 0.0;
  double miss = 1.0 - static_cast<double>(top_k) / num_experts;
  return num_experts * (1.0 - std::pow(miss, tokens));
}

PerfModel::PerfModel(HardwareProfile profile, ModelCosts costs, Workload workload, Budgets budgets)
    : profile_(std::move(profile)),
      costs_(std::move(costs)),
      workload_(std::move(workload)),
      budgets_(budgets) {}

bool PerfModel::CpuUsesBf16() const {
  return !profile_.cpu.matmul_bf16.empty() &&
         (profile_.cpu.has_amx_bf16 || profile_.cpu.has_avx512_bf16 || profile_.cpu.matmul_f32.empty());
}

double PerfModel::GpuGemmFlops(double tokens_per_expert) const {
  return InterpolateRate(profile_.gpu->grouped_gemm_bf16, tokens_per_expert, /*scale_below=*/true);
}

double PerfModel::CpuPeakFlops() const {
  double peak = 0;
  for (const std::vector<RatePoint>* curve : {&profile_.cpu.matmul_f32, &profile_.cpu.matmul_bf16}) {
    for (const RatePoint& point : *curve) peak = std::max(peak, point.tflops * 1e12);
  }
  return peak;
}

double PerfModel::DecodeAttentionGflops() const {
  const CpuAttentionRate& rate = profile_.cpu.attention;
  if (costs_.mla && rate.mla_gflops > 0) return rate.mla_gflops;  // MLA's own kernel: matmuls
  return costs_.kv_dtype == io::DType::kF8E4M3 && rate.fp8_gflops > 0 ? rate.fp8_gflops : rate.gflops;
}

double PerfModel::DramTotalGbps() const {
  double total = profile_.cpu.dram_read_gbps;
  if (profile_.contention && profile_.contention->cpu_alone_gbps > 0)
    total = std::max(total, profile_.contention->dma_shared_gbps + profile_.contention->cpu_shared_gbps);
  return total;
}

double PerfModel::AllLinksH2dBytesPerSecond(int gpus) const {
  const double one_link = profile_.gpu->h2d_gbps * 1e9;
  if (gpus <= 1) return one_link;
  if (profile_.gpu->all_links_h2d_gbps > 0) return profile_.gpu->all_links_h2d_gbps * 1e9;
  return std::max(one_link, std::min(gpus * one_link, DramTotalGbps() * 1e9));
}

double PerfModel::CombineBytesPerLink(int gpus, double tokens) const {
  if (gpus <= 1) return 0;
  int moe_layers = 0;
  for (const LayerCosts& layer : costs_.layers) moe_layers += layer.num_experts > 0 ? 1 : 0;
  return tokens * costs_.hidden * 2.0 * (gpus - 1) / gpus * moe_layers;
}

double PerfModel::KvBoundGbps() const {
  return std::max(profile_.cpu.dram_read_gbps, profile_.cpu.attention.kv_gbps);
}

double PerfModel::CpuMatmulFlops(double tokens) const {
  return InterpolateRate(CpuUsesBf16() ? profile_.cpu.matmul_bf16 : profile_.cpu.matmul_f32, tokens,
                         /*scale_below=*/false);
}

absl::StatusOr<MemoryPlan> PerfModel::PlanMemory(const ExecutionPlan& plan) const {
  if (plan.batch < 1 || plan.prefill_chunk < 1 || plan.micro_batches < 1) {
    return absl::InvalidArgumentError("batch, prefill chunk and micro-batches must be at least 1");
  }
  if (plan.kv.gpu_fraction < 0 || plan.kv.gpu_fraction > 1) {
    return absl::InvalidArgumentError("the GPU share of the KV cache must lie in [0, 1]");
  }
  return plan.device == PlanDevice::kGpu ? PlanGpuMemory(plan) : PlanCpuMemory(plan);
}

absl::StatusOr<MemoryPlan> PerfModel::PlanGpuMemory(const ExecutionPlan& plan) const {
  if (!profile_.gpu) {
    return absl::FailedPreconditionError(
        absl::StrCat("the hardware profile has no GPU (", profile_.gpu_absent_reason,
                     "); plan with --device cpu, or pass --hardware FILE naming a profile with a GPU"));
  }
  const int gpus = plan.gpus;
  if (gpus < 1) return absl::InvalidArgumentError("a plan needs at least 1 GPU");
  if (gpus > 1 && plan.kv.gpu_fraction > 0) {
    return absl::InvalidArgumentError(
        "a GPU share of the KV cache is not modelled over several GPUs: with --gpus above 1 the KV cache "
        "stays "
        "in host memory (--kv-gpu-fraction 0)");
  }
  if (gpus > 1 && profile_.gpu->count > 1 && gpus > profile_.gpu->count) {
    return absl::FailedPreconditionError(
        absl::StrCat("the hardware profile has ", profile_.gpu->count, " GPUs; the plan asks for ", gpus));
  }
  if (costs_.mla && plan.kv.gpu_fraction > 0) {
    return absl::InvalidArgumentError(
        "an MLA model's KV cache stays in host memory on the GPU path (its decode attention runs on the "
        "CPU): "
        "the GPU share of the KV cache must be 0");
  }
  if (plan.kv.gpu_fraction > 0 && !(profile_.gpu->attention_kv_gbps > 0)) {
    return absl::FailedPreconditionError(
        "the hardware profile lacks gpu.attention_kv_gbps, so KV on the GPU cannot be modelled");
  }
  if (plan.layer_parts < 1) return absl::InvalidArgumentError("a streamed layer needs at least 1 part");
  if (plan.ring_sections < 2) return absl::InvalidArgumentError("the GPU ring needs at least 2 sections");
  RINGMOE_RETURN_IF_ERROR(CheckPartsOneAtATime(plan));
  MemoryPlan memory;
  memory.gpu_budget = budgets_.gpu_bytes;
  memory.cpu_budget = budgets_.cpu_bytes;
  memory.pinned_limit = profile_.pinned_limit_bytes;
  memory.kv_bytes_per_sequence = KvBytesPerSequence(costs_, workload_);

  const int64_t batch = plan.batch;
  const int64_t step_tokens = batch + plan.prefill_chunk;
  const int64_t prompt = std::max<int64_t>(1, std::llround(workload_.mean_prompt_tokens));
  int64_t all_kv = batch * memory.kv_bytes_per_sequence;
  memory.gpu_kv_bytes = static_cast<int64_t>(std::llround(plan.kv.gpu_fraction * all_kv));
  memory.cpu_kv_bytes = all_kv - memory.gpu_kv_bytes;
  memory.gpu_workspace_bytes = costs_.gpu_workspace_bytes(step_tokens, plan.expert_runner_tokens());
  // MLA's fresh prompts on the GPU need their attention's scratch too.
  if (costs_.mla && plan.prefill_attention_on_gpu)
    memory.gpu_workspace_bytes += step_tokens * costs_.mla_prefill_bytes_per_token;
  // Split experts: each shard on a GPU writes a partial output of its own (ExpertShardItems).
  if (plan.expert_shard_count() > 1 && costs_.group_bytes(WeightGroup::kRoutedExperts) > 0) {
    const int64_t shards_here = std::max(1, plan.expert_shard_count() / gpus);
    memory.gpu_workspace_bytes += shards_here * (step_tokens * costs_.hidden * 4 + kArenaGranularity);
  }

  int64_t available = memory.gpu_budget - memory.gpu_workspace_bytes - memory.gpu_kv_bytes;
  if (available < 0) {
    return absl::ResourceExhaustedError(
        absl::StrCat("GPU budget ", Gib(memory.gpu_budget), " cannot hold the workspace for ", step_tokens,
                     " tokens per step (", Gib(memory.gpu_workspace_bytes),
                     ") and the GPU share of the KV cache (", Gib(memory.gpu_kv_bytes), ")"));
  }

  // Residency and ring size depend on each other: start from a ring for a whole layer, fill, then shrink the
  // ring to what the streamed remainder needs (it only shrinks, so the budget holds at every round).
  // Routed experts stay resident in whole MoE layers (as gpu_model places them); the others stream one layer
  // per ring section.
  // With several GPUs each holds ceil(E / gpus) of every MoE layer's experts (its share): moe_layer_bytes and
  // the ring's parts are one GPU's share, the residency below is each GPU's.
  int64_t moe_layer_bytes = 0, moe_layers = 0, experts_per_layer = 0, part_bytes = 0, share_experts = 0;
  int64_t part_experts = 0;        // Of the largest ring part.
  int64_t routed_share_bytes = 0;  // One GPU's share of every MoE layer's routed experts.
  for (const LayerCosts& layer : costs_.layers) {
    if (layer.num_experts == 0) continue;
    share_experts = (layer.num_experts + gpus - 1) / gpus;
    moe_layer_bytes = std::max(moe_layer_bytes, share_experts * layer.expert_bytes);
    routed_share_bytes += share_experts * layer.expert_bytes;
    // The engine cuts a layer's experts into parts, shard-major (planner/expert_shards.h), one ring slot
    // each: ceil(ceil(E / gpus) / parts) experts with a shard per GPU.
    const int64_t layer_part_experts =
        MaxPartExperts(layer.num_experts, plan.expert_shard_count(), plan.layer_parts * gpus);
    part_experts = std::max(part_experts, layer_part_experts);
    part_bytes = std::max(part_bytes, layer_part_experts * layer.expert_bytes);
    experts_per_layer = layer.num_experts;
    ++moe_layers;
  }
  memory.gpus = gpus;
  // Each GPU's weights: every non-expert weight and its share of the routed experts.
  const int64_t total_weights =
      costs_.gpu_weight_bytes() - costs_.group_bytes(WeightGroup::kRoutedExperts) + routed_share_bytes;
  memory.gpu_total_moe_layers = static_cast<int>(moe_layers);
  memory.gpu_total_experts = moe_layers * experts_per_layer;
  // The engine keeps every non-expert weight on the GPU (attention, routers, shared experts, dense MLPs such
  // as DeepSeek's first layers, lm_head: planner::DenseWeightItems); only routed experts stream, so the ring
  // holds parts of MoE layers, and none when everything fits.
  int64_t ring = total_weights <= available ? 0 : plan.ring_sections * part_bytes;
  for (int round = 0; round < 8; ++round) {
    int64_t remaining = available - ring;
    if (remaining < 0) {
      return absl::ResourceExhaustedError(absl::StrCat("GPU budget ", Gib(memory.gpu_budget), " cannot hold ",
                                                       RingText(plan, ring),
                                                       " beside the workspace and the GPU KV cache"));
    }
    int64_t resident_total = 0;
    for (int g = 0; g < kNumWeightGroups; ++g) {
      WeightGroup group = static_cast<WeightGroup>(g);
      int64_t keep = 0;
      if (group == WeightGroup::kRoutedExperts) {
        int64_t layers = moe_layer_bytes > 0 ? std::min(moe_layers, remaining / moe_layer_bytes) : 0;
        if (plan.max_resident_moe_layers >= 0)
          layers = std::min<int64_t>(layers, plan.max_resident_moe_layers);
        memory.gpu_resident_moe_layers = static_cast<int>(layers);
        memory.gpu_resident_experts = layers * experts_per_layer;
        keep = layers * moe_layer_bytes;
      } else {
        keep = costs_.group_bytes(group);
        if (keep > remaining) {
          return absl::ResourceExhaustedError(absl::StrCat(
              "GPU budget ", Gib(memory.gpu_budget), " cannot hold the ", std::string(WeightGroupName(group)),
              " weights the engine keeps on the GPU (", Gib(keep), ") beside the workspace, the GPU KV cache",
              ring > 0 ? absl::StrCat(", ", RingText(plan, ring)) : "", " and the weights kept before them"));
        }
      }
      memory.gpu_resident_bytes[g] = keep;
      remaining -= keep;
      resident_total += keep;
    }
    int64_t streamed = total_weights - resident_total;
    int64_t lm_head_streamed =
        costs_.lm_head_bytes - memory.gpu_resident_bytes[static_cast<int>(WeightGroup::kLmHead)];
    int64_t experts_streamed =
        routed_share_bytes - memory.gpu_resident_bytes[static_cast<int>(WeightGroup::kRoutedExperts)];
    // Non-expert weights stream only when even they do not fit; spread them over the layers' sections.
    int64_t other_streamed = streamed - lm_head_streamed - experts_streamed;
    int64_t section = experts_streamed > 0 ? part_bytes : 0;
    if (other_streamed > 0) section += (other_streamed + costs_.num_layers() - 1) / costs_.num_layers();
    section = std::max(section, lm_head_streamed);
    int64_t new_ring = streamed > 0 ? plan.ring_sections * section : 0;
    if (gpus > 1 && (other_streamed > 0 || lm_head_streamed > 0)) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "GPU budget ", Gib(memory.gpu_budget), " cannot hold the non-expert weights (",
          Gib(total_weights - routed_share_bytes), "), which every one of several GPUs keeps, beside ",
          "the workspace and a ring of ", plan.ring_sections, " sections"));
    }
    memory.streamed_bytes_per_step = streamed * gpus;  // Each GPU streams its own share over its link.
    // Only routed experts stream, in layer_parts sections a layer: with a slot for each, they stay put.
    memory.ring_holds_streamed =
        streamed > 0 && other_streamed <= 0 && lm_head_streamed <= 0 &&
        (moe_layers - memory.gpu_resident_moe_layers) * plan.layer_parts <= plan.ring_sections;
    memory.gpu_ring_bytes = new_ring;
    if (new_ring >= ring) break;
    ring = new_ring;
  }
  // The last round's ring may outgrow the one its residency was fitted around (sections that also carry
  // streamed non-expert weights): such a plan does not fit.
  if (memory.gpu_used() > memory.gpu_budget) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "GPU budget ", Gib(memory.gpu_budget), " cannot hold ", RingText(plan, memory.gpu_ring_bytes),
        " beside the workspace (", Gib(memory.gpu_workspace_bytes), ")"));
  }

  // Host side: streamed weights in pinned memory, the rest of the KV cache, staging buffers.
  const int64_t streamed = memory.streamed_bytes_per_step;  // All GPUs' shares, each held once.
  memory.cpu_embedding_bytes = costs_.embedding_bytes;
  // q, the k/v rows and the attention rows per token (2 q_width + 2 kv_width; MLA's own widths), twice.
  memory.cpu_staging_bytes =
      step_tokens * (int64_t{costs_.q_width} + costs_.kv_rows_width + costs_.attention_out_width) * 4 * 2;
  int64_t fixed = memory.cpu_embedding_bytes + memory.cpu_kv_bytes + memory.cpu_staging_bytes;
  if (fixed > memory.cpu_budget) {
    return absl::ResourceExhaustedError(
        absl::StrCat("CPU budget ", Gib(memory.cpu_budget), " cannot hold the KV cache of ", batch,
                     " sequences of ", workload_.max_context_tokens, " tokens (", Gib(memory.cpu_kv_bytes),
                     ") with the embeddings (", Gib(memory.cpu_embedding_bytes), ")"));
  }
  int64_t host_room = memory.cpu_budget - fixed;
  if (memory.pinned_limit > 0)
    host_room = std::min(host_room, memory.pinned_limit - memory.cpu_staging_bytes);
  host_room = std::max<int64_t>(0, host_room);
  memory.cpu_weight_bytes = streamed;
  if (streamed > host_room) {
    // What does not fit goes to the SSD tier in whole MoE layers' routed experts (the engine reads a layer's
    // sections from the checkpoint's files), which costs pinned staging buffers of their own.
    if (!profile_.ssd) {
      return absl::ResourceExhaustedError(
          absl::StrCat("the weights exceed the CPU budget by ", Gib(streamed - host_room),
                       " and the hardware profile has no SSD reading (", profile_.ssd_absent_reason, ")"));
    }
    if (costs_.held_expert_dtype == io::DType::kF8E4M3 && !profile_.ssd->section_files) {
      // From the checkpoint's files the SSD tier reads tensors into the ring's bf16 layout; FP8 sections come
      // from section files in the ring's own layout (--ssd-dir).
      return absl::UnimplementedError(absl::StrCat("the FP8 experts exceed the CPU budget by ",
                                                   Gib(streamed - host_room),
                                                   " and the SSD tier reads FP8 experts only from section "
                                                   "files: give --ssd-dir, raise --cpu-mem or use "
                                                   "--expert-dtype bf16"));
    }
    const int64_t streamed_layers = moe_layers - memory.gpu_resident_moe_layers;
    const int64_t host_layer_bytes = moe_layer_bytes * gpus;  // Every GPU's share of one layer.
    const int64_t other_pinned = streamed - streamed_layers * host_layer_bytes;
    // Section files (--ssd-dir) hold each part in the ring's layout: staged as held, no conversion area.
    // Each GPU's ring has staging buffers of its own.
    memory.ssd_staging_bytes =
        gpus * SsdStagingBuffers(plan.ring_sections) *
        SsdStagingBufferBytes(part_experts, share_experts > 0 ? moe_layer_bytes / share_experts : 0,
                              profile_.ssd->section_files ? io::DType::kBF16 : costs_.checkpoint_dtype);
    const int64_t room = host_room - memory.ssd_staging_bytes - other_pinned;
    const int64_t pinned_layers =
        host_layer_bytes > 0 ? std::clamp<int64_t>(room / host_layer_bytes, 0, streamed_layers) : 0;
    memory.ssd_moe_layers = static_cast<int>(streamed_layers - pinned_layers);
    memory.ssd_weight_bytes = memory.ssd_moe_layers * host_layer_bytes;
    memory.cpu_weight_bytes = streamed - memory.ssd_weight_bytes;
    memory.cpu_staging_bytes += memory.ssd_staging_bytes;
    if (memory.ssd_moe_layers == 0 || memory.cpu_used() > memory.cpu_budget) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "CPU budget ", Gib(memory.cpu_budget), " cannot hold the streamed weights that cannot go to SSD (",
          Gib(memory.cpu_weight_bytes), ") and the SSD staging buffers (", Gib(memory.ssd_staging_bytes),
          ") beside the KV cache (", Gib(memory.cpu_kv_bytes), ")"));
    }
  }
  // The streamed weights keep their host copy (the ring's source) even when the ring ends up holding them.
  if (memory.ring_holds_streamed) memory.streamed_bytes_per_step = 0;
  memory.pinned_bytes = memory.cpu_weight_bytes + memory.cpu_staging_bytes;
  if (memory.pinned_limit > 0 && memory.pinned_bytes > memory.pinned_limit) {
    return absl::ResourceExhaustedError(absl::StrCat("pinned memory ", Gib(memory.pinned_bytes),
                                                     " exceeds the limit ", Gib(memory.pinned_limit)));
  }
  // Room for KV with the weights where they are: what is free plus the KV already planned, on each side.
  double capacity = 1e9;
  double cpu_share = (1.0 - plan.kv.gpu_fraction) * memory.kv_bytes_per_sequence;
  double gpu_share = plan.kv.gpu_fraction * memory.kv_bytes_per_sequence;
  if (cpu_share > 0)
    capacity = std::min(capacity, (memory.cpu_budget - memory.cpu_used() + memory.cpu_kv_bytes) / cpu_share);
  // GPU KV competes with resident experts; count only what is free (the experts are the planner's choice).
  if (gpu_share > 0)
    capacity = std::min(capacity, (memory.gpu_budget - memory.gpu_used() + memory.gpu_kv_bytes) / gpu_share);
  memory.kv_capacity_sequences = static_cast<int>(capacity);
  return memory;
}

absl::StatusOr<MemoryPlan> PerfModel::PlanCpuMemory(const ExecutionPlan& plan) const {
  if (plan.kv.gpu_fraction > 0) return absl::InvalidArgumentError("the CPU device keeps no KV on a GPU");
  MemoryPlan memory;
  memory.cpu_budget = budgets_.cpu_bytes;
  memory.kv_bytes_per_sequence = KvBytesPerSequence(costs_, workload_);
  // f32 matmuls need f32 weights: twice the bf16 bytes.
  const int64_t scale = CpuUsesBf16() ? 1 : 2;
  const int64_t batch = plan.batch;
  const int64_t step_tokens = batch + plan.prefill_chunk;
  memory.cpu_kv_bytes = batch * memory.kv_bytes_per_sequence;
  memory.cpu_staging_bytes = step_tokens * costs_.activation_bytes_per_token * 2 +
                             (batch + 1) * static_cast<int64_t>(costs_.vocab) * 4;
  int64_t fixed = memory.cpu_kv_bytes + memory.cpu_staging_bytes;
  if (fixed > memory.cpu_budget) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "CPU budget ", Gib(memory.cpu_budget), " cannot hold the KV cache of ", batch, " sequences of ",
        workload_.max_context_tokens, " tokens (", Gib(memory.cpu_kv_bytes), ") and the activations"));
  }
  int64_t weights = costs_.gpu_weight_bytes() * scale;
  int64_t embedding = costs_.embedding_bytes * scale;
  int64_t room = memory.cpu_budget - fixed;
  memory.cpu_embedding_bytes = std::min(embedding, room);
  room -= memory.cpu_embedding_bytes;
  memory.cpu_weight_bytes = std::min(weights, room);
  memory.ssd_weight_bytes = weights + embedding - memory.cpu_weight_bytes - memory.cpu_embedding_bytes;
  if (memory.ssd_weight_bytes > 0) {
    if (!profile_.ssd) {
      return absl::ResourceExhaustedError(
          absl::StrCat("the weights exceed the CPU budget by ", Gib(memory.ssd_weight_bytes),
                       " and the hardware profile has no SSD reading (", profile_.ssd_absent_reason, ")"));
    }
    int64_t ssd_ring = plan.ring_sections * MaxLayerWeightBytes(costs_) * scale;
    int64_t give_back = std::min(memory.cpu_weight_bytes, ssd_ring);
    memory.cpu_weight_bytes -= give_back;
    memory.ssd_weight_bytes += give_back;
    memory.cpu_staging_bytes += ssd_ring;
    if (memory.cpu_used() > memory.cpu_budget) {
      return absl::ResourceExhaustedError(absl::StrCat("CPU budget ", Gib(memory.cpu_budget),
                                                       " cannot hold the SSD staging ring beside the KV"));
    }
  }
  memory.dram_weight_bytes_per_step = weights;
  int64_t kv_room = memory.cpu_budget - memory.cpu_used() + memory.cpu_kv_bytes;
  memory.kv_capacity_sequences =
      static_cast<int>(std::min<int64_t>(1000000000, kv_room / memory.kv_bytes_per_sequence));
  return memory;
}

absl::StatusOr<Prediction> PerfModel::Predict(const ExecutionPlan& plan) const {
  if (workload_.num_requests < 1 || workload_.mean_prompt_tokens < 1 || workload_.mean_gen_tokens < 0) {
    return absl::InvalidArgumentError("the workload needs at least one request with a non-empty prompt");
  }
  ExecutionPlan effective = plan;
  if (effective.device == PlanDevice::kCpu) effective.micro_batches = 1;
  absl::StatusOr<MemoryPlan> memory = PlanMemory(effective);
  if (!memory.ok()) return memory.status();

  Prediction prediction;
  prediction.plan = effective;
  prediction.memory = *memory;
  // The placement the engine will run: which layers' experts stay on the GPU, the GPU's KV bytes, the
  // budgets.
  if (effective.device == PlanDevice::kGpu) {
    std::vector<bool> is_moe;
    for (const LayerCosts& layer : costs_.layers) is_moe.push_back(layer.is_moe);
    prediction.plan.expert_tiers = SpreadSsdLayers(
        SpreadResidentLayers(is_moe, memory->gpu_resident_moe_layers), memory->ssd_moe_layers);
  } else {
    prediction.plan.expert_tiers.clear();
  }
  prediction.plan.kv.block_tokens = kKvBlockTokens;
  prediction.plan.kv.gpu_bytes = memory->gpu_kv_bytes;
  prediction.plan.budgets = budgets_;
  const double requests = static_cast<double>(workload_.num_requests);
  const double prompt = workload_.mean_prompt_tokens;
  const double gen = workload_.mean_gen_tokens;
  const double chunk = effective.prefill_chunk;

  // Steady state keeps admissions equal to completions: per step, batch/gen sequences finish, so
  // batch * prompt / gen prompt tokens must be prefilled; the chunk size caps that.
  double batch = std::min<double>(effective.batch, requests);
  if (gen > 0) batch = std::min(batch, std::max(1.0, std::floor(chunk * gen / prompt)));
  prediction.effective_batch = static_cast<int>(batch);
  prediction.job_bound = JobLevelBound(effective, *memory, batch);
  prediction.steady_prefill_tokens = gen > 0 ? batch * prompt / gen : 0;
  const double context = prompt + gen / 2;

  prediction.prefill_chunk = StepTime(effective, *memory, 0, 0, chunk, prompt);
  prediction.decode_step = StepTime(effective, *memory, batch, context, 0, prompt);
  prediction.mixed_step =
      StepTime(effective, *memory, batch, context, prediction.steady_prefill_tokens, prompt);

  // Fill: prefill the first batch alone. Steady: the rest arrive in mixed steps. Tail: the last batch
  // decodes.
  double fill_tokens = (gen > 0 ? batch : requests) * prompt;
  prediction.fill_steps = std::ceil(fill_tokens / chunk - 1e-9);
  StageTimes fill = StepTime(effective, *memory, 0, 0, fill_tokens / prediction.fill_steps, prompt);
  prediction.fill_step_seconds = fill.step;
  prediction.mixed_steps = gen > 0 ? (requests - batch) * gen / batch : 0;
  prediction.tail_steps = gen > 0 ? gen : 0;

  // The same job with every step at its hardware bound.
  const double bound_seconds =
      prediction.fill_steps *
          StepTime(effective, *memory, 0, 0, fill_tokens / prediction.fill_steps, prompt, true).step +
      prediction.mixed_steps *
          StepTime(effective, *memory, batch, context, prediction.steady_prefill_tokens, prompt, true).step +
      prediction.tail_steps * StepTime(effective, *memory, batch, context, 0, prompt, true).step;
  if (bound_seconds > 0) {
    prediction.bound_duration_s = bound_seconds;
    prediction.bound_output_tokens_per_s = requests * gen / bound_seconds;
    prediction.bound_total_tokens_per_s = requests * (prompt + gen) / bound_seconds;
  }

  struct Phase {
    double steps;
    const StageTimes* times;
  };
  Phase phases[] = {{prediction.fill_steps, &fill},
                    {prediction.mixed_steps, &prediction.mixed_step},
                    {prediction.tail_steps, &prediction.decode_step}};
  double longest = -1;
  for (const Phase& phase : phases) {
    double seconds = phase.steps * phase.times->step;
    prediction.duration_s += seconds;
    for (const auto& [name, stage_seconds] : phase.times->Stages()) {
      prediction.job_stage_seconds[name] += phase.steps * stage_seconds;
    }
    if (seconds > longest) {
      longest = seconds;
      prediction.bottleneck = phase.times->bottleneck;
    }
  }
  if (prediction.prefill_chunk.step > 0)
    prediction.prefill_tokens_per_s = chunk / prediction.prefill_chunk.step;
  if (prediction.decode_step.step > 0) prediction.decode_tokens_per_s = batch / prediction.decode_step.step;
  if (prediction.duration_s > 0) {
    prediction.output_tokens_per_s = requests * gen / prediction.duration_s;
    prediction.total_tokens_per_s = requests * (prompt + gen) / prediction.duration_s;
  }
  return prediction;
}

}  // namespace ringmoe::planner
