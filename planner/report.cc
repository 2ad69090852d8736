#include "planner/report.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "planner/memory_table.h"

namespace ringmoe::planner {
namespace {

using json = nlohmann::json;
constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

std::string Gib(int64_t bytes) { return absl::StrFormat("%.2f GiB", bytes / kGiB); }

std::string Millis(double seconds) {
  if (seconds <= 0) return "-";
  return absl::StrFormat("%.2f ms", seconds * 1e3);
}

std::string Duration(double seconds) {
  if (!(seconds > 0)) return "-";
  if (seconds < 1) return absl::StrFormat("%.1f ms", seconds * 1e3);
  if (seconds < 120) return absl::StrFormat("%.1f s", seconds);
  int64_t total = static_cast<int64_t>(std::llround(seconds));
  int64_t hours = total / 3600, minutes = (total % 3600) / 60;
  if (hours == 0) return absl::StrFormat("%dm %02ds", minutes, total % 60);
  if (hours < 48) return absl::StrFormat("%dh %02dm", hours, minutes);
  return absl::StrFormat("%.1f days", seconds / 86400);
}

std::string Percent(double fraction) { return absl::StrFormat("%.0f%%", fraction * 100); }

std::string CurveText(const std::vector<RatePoint>& curve, const char* tokens_name) {
  std::vector<std::string> points;
  for (const RatePoint& point : curve)
    points.push_back(absl::StrFormat("%d:%.3g", point.tokens, point.tflops));
  return absl::StrCat("TFLOP/s at ", tokens_name, " ", absl::StrJoin(points, " "));
}

void AppendHardware(const PlanReport& report, std::string* out) {
  const HardwareProfile& profile = report.profile;
  const Topology& topology = profile.topology;
  absl::StrAppend(out, "hardware  ", report.profile_path.empty() ? "(probed)" : report.profile_path);
  if (!profile.source.empty()) absl::StrAppend(out, "  [", profile.source, "]");
  absl::StrAppend(out, "\n");
  absl::StrAppendFormat(out, "  cpu     %s: %d packages, %d NUMA nodes, %d cores (%d threads), %s\n",
                        topology.cpu_model.empty() ? "CPU" : topology.cpu_model, topology.packages,
                        static_cast<int>(topology.numa_nodes.size()), topology.cores, topology.threads,
                        Gib(topology.memory_bytes));
  const CpuProfile& cpu = profile.cpu;
  const CpuAttentionRate& attention = cpu.attention;
  absl::StrAppendFormat(
      out, "          DRAM read %.1f GB/s; attention %.1f GB/s of KV%s, %.0f GFLOP/s%s%s\n",
      cpu.dram_read_gbps, attention.kv_gbps,
      attention.bytes_kv_heads > 0
          ? absl::StrFormat(" (%d/%d heads)", attention.bytes_heads, attention.bytes_kv_heads)
          : "",
      attention.gflops,
      attention.kv_heads > 0 && attention.bytes_kv_heads > 0
          ? absl::StrFormat(" (%d/%d heads)", attention.heads, attention.kv_heads)
          : "",
      attention.estimated ? " (estimated, not measured)" : "");
  if (!cpu.matmul_bf16.empty())
    absl::StrAppend(out, "          oneDNN bf16 ", CurveText(cpu.matmul_bf16, "M"), "\n");
  if (!cpu.matmul_f32.empty())
    absl::StrAppend(out, "          oneDNN f32  ", CurveText(cpu.matmul_f32, "M"), "\n");
  if (profile.gpu) {
    const GpuProfile& gpu = *profile.gpu;
    absl::StrAppendFormat(out, "  gpu     %s, %s; pinned h2d %.1f GB/s, d2h %.1f, both %.1f\n", gpu.name,
                          Gib(gpu.memory_bytes), gpu.h2d_gbps, gpu.d2h_gbps, gpu.bidirectional_gbps);
    absl::StrAppend(out, "          grouped GEMM bf16 ", CurveText(gpu.grouped_gemm_bf16, "tokens/expert"),
                    "\n");
  } else {
    absl::StrAppend(out, "  gpu     none: ", profile.gpu_absent_reason, "\n");
  }
  if (profile.contention) {
    const DramContention& c = *profile.contention;
    absl::StrAppendFormat(out,
                          "  dram    copies alone %.1f GB/s, CPU read alone %.1f; together %.1f + %.1f\n",
                          c.dma_alone_gbps, c.cpu_alone_gbps, c.dma_shared_gbps, c.cpu_shared_gbps);
  }
  if (profile.ssd) {
    std::vector<std::string> reads;
    for (const SsdReadRate& read : profile.ssd->reads) {
      reads.push_back(absl::StrFormat("%.2f GB/s at depth %d", read.gbps, read.queue_depth));
    }
    absl::StrAppend(out, "  ssd     ", absl::StrJoin(reads, ", "), profile.ssd->path.empty() ? "" : " on ",
                    profile.ssd->path, "\n");
    if (profile.ssd->striped_gbps > 0) {
      absl::StrAppend(out,
                      absl::StrFormat("  ssd     section files striped over the --ssd-dir drives: %.2f GB/s "
                                      "(the planned rate)\n",
                                      profile.ssd->striped_gbps));
    }
  } else {
    absl::StrAppend(out, "  ssd     not measured: ", profile.ssd_absent_reason, "\n");
  }
}

void AppendMemory(const PlanReport& report, std::string* out) {
  const Prediction& prediction = report.prediction;
  const MemoryPlan& memory = prediction.memory;
  const bool gpu = report.device == PlanDevice::kGpu;
  auto row = [&](const std::string& name, int64_t bytes, const std::string& detail) {
    absl::StrAppendFormat(out, "    %-24s %12s  %s\n", name, Gib(bytes), detail);
  };
  absl::StrAppend(out, "\nmemory plan\n");
  if (gpu) {
    const int gpus = memory.gpus;
    if (gpus > 1) {
      absl::StrAppendFormat(
          out,
          "  GPU   x%d, each: budget %s, planned %s (each MoE layer's experts split %d ways; "
          "every GPU keeps the other weights)\n",
          gpus, Gib(memory.gpu_budget), Gib(memory.gpu_used()), gpus);
    } else {
      absl::StrAppendFormat(out, "  GPU   budget %s, planned %s\n", Gib(memory.gpu_budget),
                            Gib(memory.gpu_used()));
    }
    for (int g = 0; g < kNumWeightGroups; ++g) {
      WeightGroup group = static_cast<WeightGroup>(g);
      int64_t total = report.costs.group_bytes(group);
      if (total == 0) continue;
      // Routed experts: each GPU holds its share of them, so all GPUs together hold gpus times its bytes.
      const int64_t held = group == WeightGroup::kRoutedExperts ? memory.gpu_resident_bytes[g] * gpus
                                                                : memory.gpu_resident_bytes[g];
      std::string detail = absl::StrCat(
          Percent(static_cast<double>(held) / total), " of ", Gib(total), " resident",
          gpus > 1 && group == WeightGroup::kRoutedExperts ? absl::StrCat(" over the ", gpus, " GPUs") : "");
      if (group == WeightGroup::kRoutedExperts) {
        absl::StrAppend(&detail, " (", memory.gpu_resident_moe_layers, " of ", memory.gpu_total_moe_layers,
                        " MoE layers, ", memory.gpu_resident_experts, " of ", memory.gpu_total_experts,
                        " experts)");
      }
      row(std::string(WeightGroupName(group)), memory.gpu_resident_bytes[g], detail);
    }
    row(absl::StrCat("ring (", prediction.plan.ring_sections, " sections",
                     prediction.plan.layer_parts > 1
                         ? absl::StrCat(" of 1/", prediction.plan.layer_parts, " layer")
                         : "",
                     ")"),
        memory.gpu_ring_bytes,
        memory.ring_holds_streamed  ? "a slot per streamed section: filled once, then nothing streams"
        : memory.gpu_ring_bytes > 0 ? "streamed layers pass through here"
                                    : "nothing streams");
    row("workspace", memory.gpu_workspace_bytes, "activations, logits, cuBLAS");
    row("KV cache", memory.gpu_kv_bytes,
        absl::StrCat(Percent(prediction.plan.kv.gpu_fraction), " of the sequences"));
  }
  absl::StrAppendFormat(
      out, "  CPU   budget %s, planned %s%s\n", Gib(memory.cpu_budget), Gib(memory.cpu_used()),
      memory.pinned_limit > 0 ? absl::StrCat(" (pinned limit ", Gib(memory.pinned_limit), ")") : "");
  row(gpu ? "weights (pinned)" : "weights", memory.cpu_weight_bytes,
      gpu ? absl::StrCat(Gib(memory.streamed_bytes_per_step), " stream to the GPU",
                         memory.gpus > 1 ? absl::StrCat("s each step, ",
                                                        Gib(memory.streamed_bytes_per_step / memory.gpus),
                                                        " over each link")
                                         : " each step")
          : "read every step");
  row("embeddings", memory.cpu_embedding_bytes, "looked up on the CPU");
  row("KV cache", memory.cpu_kv_bytes,
      absl::StrFormat("%d sequences x %d tokens (room for %d)", prediction.plan.batch,
                      report.workload.max_context_tokens, memory.kv_capacity_sequences));
  row("staging", memory.cpu_staging_bytes,
      memory.ssd_staging_bytes > 0
          ? absl::StrCat("pinned activations; ", SsdStagingBuffers(prediction.plan.ring_sections),
                         " SSD staging buffers (", Gib(memory.ssd_staging_bytes), ")")
          : std::string("pinned activations"));
  if (memory.ssd_weight_bytes > 0) {
    const double ssd_seconds = memory.ring_holds_streamed || !report.profile.ssd
                                   ? 0
                                   : memory.ssd_weight_bytes / (report.profile.ssd->planning_gbps() * 1e9);
    absl::StrAppendFormat(
        out,
        "  SSD   %s of weights (%d MoE layers' experts) read every step from the checkpoint's "
        "files: %.2f s a step at %.2f GB/s\n",
        Gib(memory.ssd_weight_bytes), memory.ssd_moe_layers, ssd_seconds,
        report.profile.ssd ? report.profile.ssd->planning_gbps() : 0.0);
  } else {
    absl::StrAppend(out, "  SSD   not used: the weights fit in memory\n");
  }
  if (gpu) {
    const ExecutionPlan& plan = prediction.plan;
    absl::StrAppendFormat(out, "  tiers %d MoE layers' experts on the GPU, %d in pinned memory, %d on SSD\n",
                          plan.resident_moe_layers(), plan.streamed_moe_layers() - plan.ssd_moe_layers(),
                          plan.ssd_moe_layers());
  }
}

void AppendSteps(const PlanReport& report, std::string* out) {
  const Prediction& p = report.prediction;
  absl::StrAppend(out, "\ntime per step          decode step   prefill chunk   steady step\n");
  absl::StrAppendFormat(out, "  %-18s %12.0f %15.0f %13.0f\n", "tokens", p.decode_step.tokens,
                        p.prefill_chunk.tokens, p.mixed_step.tokens);
  std::vector<std::pair<std::string, double>> decode = p.decode_step.Stages();
  std::vector<std::pair<std::string, double>> prefill = p.prefill_chunk.Stages();
  std::vector<std::pair<std::string, double>> mixed = p.mixed_step.Stages();
  for (size_t i = 0; i < decode.size(); ++i) {
    if (decode[i].second <= 0 && prefill[i].second <= 0 && mixed[i].second <= 0) continue;
    absl::StrAppendFormat(out, "  %-18s %12s %15s %13s\n", decode[i].first, Millis(decode[i].second),
                          Millis(prefill[i].second), Millis(mixed[i].second));
  }
  if (report.device == PlanDevice::kGpu) {
    absl::StrAppendFormat(out, "  %-18s %12s %15s %13s\n", "engine overhead",
                          Millis(p.decode_step.engine_overhead), Millis(p.prefill_chunk.engine_overhead),
                          Millis(p.mixed_step.engine_overhead));
    absl::StrAppendFormat(out, "  %-18s %12s %15s %13s\n", "chain / micro-b.",
                          Millis(p.decode_step.serial_chain), Millis(p.prefill_chunk.serial_chain),
                          Millis(p.mixed_step.serial_chain));
  }
  absl::StrAppendFormat(out, "  %-18s %12s %15s %13s\n", "step (overlapped)", Millis(p.decode_step.step),
                        Millis(p.prefill_chunk.step), Millis(p.mixed_step.step));
  absl::StrAppend(out, "  bottleneck: decode ", p.decode_step.bottleneck, "; prefill ",
                  p.prefill_chunk.bottleneck, "; steady ", p.mixed_step.bottleneck, "\n");
}

void AppendPlanLine(const char* label, const Prediction& p, std::string* out) {
  absl::StrAppendFormat(out, "%s %d sequences in flight (asked %d), prefill chunk %d", label,
                        p.effective_batch, p.plan.batch, p.plan.prefill_chunk);
  if (p.plan.device == PlanDevice::kGpu) {
    absl::StrAppendFormat(out, ", %d micro-batch%s, %s of KV on the GPU, %s", p.plan.micro_batches,
                          p.plan.micro_batches == 1 ? "" : "es", Percent(p.plan.kv.gpu_fraction),
                          p.plan.max_resident_moe_layers >= 0
                              ? absl::StrCat("routed experts of at most ", p.plan.max_resident_moe_layers,
                                             " MoE layers resident")
                              : "routed experts of as many MoE layers as fit resident");
    absl::StrAppendFormat(
        out, ", a ring of %d slots of %s", p.plan.ring_sections,
        p.plan.layer_parts > 1 ? absl::StrCat("1/", p.plan.layer_parts, " layer") : std::string("a layer"));
    if (p.plan.routed_expert_copies) absl::StrAppend(out, ", copying only the routed experts");
  }
  absl::StrAppend(out, "\n");
  if (p.effective_batch >= p.memory.kv_capacity_sequences && p.plan.batch >= p.memory.kv_capacity_sequences) {
    absl::StrAppend(out, "  (sequences in flight are capped by KV-cache capacity)\n");
  }
}

json PredictionJson(const Prediction& p) {
  auto stages = [](const StageTimes& times) {
    json stage_json = json::object();
    for (const auto& [name, seconds] : times.Stages()) stage_json[name] = seconds;
    return json{{"tokens", times.tokens},
                {"stages_s", stage_json},
                {"serial_chain_s", times.serial_chain},
                {"engine_overhead_s", times.engine_overhead},
                {"step_s", times.step},
                {"bottleneck", times.bottleneck}};
  };
  const MemoryPlan& m = p.memory;
  json groups = json::object();
  for (int g = 0; g < kNumWeightGroups; ++g) {
    groups[std::string(WeightGroupName(static_cast<WeightGroup>(g)))] = m.gpu_resident_bytes[g];
  }
  return {
      {"plan",
       {{"device", std::string(PlanDeviceName(p.plan.device))},
        {"batch", p.plan.batch},
        {"effective_batch", p.effective_batch},
        {"micro_batches", p.plan.micro_batches},
        {"prefill_chunk", p.plan.prefill_chunk},
        {"kv_gpu_fraction", p.plan.kv.gpu_fraction},
        {"max_resident_moe_layers", p.plan.max_resident_moe_layers},
        {"ring_sections", p.plan.ring_sections},
        {"layer_parts", p.plan.layer_parts},
        {"routed_expert_copies", p.plan.routed_expert_copies},
        {"gpus", p.plan.gpus}}},
      {"memory",
       {{"gpu_budget", m.gpu_budget},
        {"gpu_resident_bytes", groups},
        {"gpu_resident_moe_layers", m.gpu_resident_moe_layers},
        {"gpu_total_moe_layers", m.gpu_total_moe_layers},
        {"gpu_resident_experts", m.gpu_resident_experts},
        {"gpu_total_experts", m.gpu_total_experts},
        {"gpu_ring_bytes", m.gpu_ring_bytes},
        {"gpu_workspace_bytes", m.gpu_workspace_bytes},
        {"gpu_kv_bytes", m.gpu_kv_bytes},
        {"gpu_used", m.gpu_used()},
        {"cpu_budget", m.cpu_budget},
        {"cpu_weight_bytes", m.cpu_weight_bytes},
        {"cpu_embedding_bytes", m.cpu_embedding_bytes},
        {"cpu_kv_bytes", m.cpu_kv_bytes},
        {"cpu_staging_bytes", m.cpu_staging_bytes},
        {"cpu_used", m.cpu_used()},
        {"pinned_bytes", m.pinned_bytes},
        {"pinned_limit", m.pinned_limit},
        {"ssd_weight_bytes", m.ssd_weight_bytes},
        {"ssd_moe_layers", m.ssd_moe_layers},
        {"ssd_staging_bytes", m.ssd_staging_bytes},
        {"weight_bytes_by_tier",
         {{"gpu", std::accumulate(m.gpu_resident_bytes.begin(), m.gpu_resident_bytes.end(), int64_t{0})},
          {"pinned", m.cpu_weight_bytes},
          {"ssd", m.ssd_weight_bytes}}},
        {"streamed_bytes_per_step", m.streamed_bytes_per_step},
        {"ring_holds_streamed", m.ring_holds_streamed},
        {"kv_capacity_sequences", m.kv_capacity_sequences}}},
      {"decode_step", stages(p.decode_step)},
      {"prefill_chunk", stages(p.prefill_chunk)},
      {"steady_step", stages(p.mixed_step)},
      {"phases",
       {{"fill_steps", p.fill_steps},
        {"fill_step_s", p.fill_step_seconds},
        {"steady_steps", p.mixed_steps},
        {"steady_prefill_tokens", p.steady_prefill_tokens},
        {"tail_steps", p.tail_steps}}},
      {"throughput",
       {{"prefill_tokens_per_s", p.prefill_tokens_per_s},
        {"decode_tokens_per_s", p.decode_tokens_per_s},
        {"output_tokens_per_s", p.output_tokens_per_s},
        {"total_tokens_per_s", p.total_tokens_per_s},
        {"duration_s", p.duration_s}}},
      {"hardware_bound",
       {{"output_tokens_per_s", p.bound_output_tokens_per_s},
        {"total_tokens_per_s", p.bound_total_tokens_per_s},
        {"duration_s", p.bound_duration_s}}},
      {"job_bound",
       {{"output_tokens_per_s", p.job_bound.output_tokens_per_s},
        {"seconds", p.job_bound.seconds},
        {"limit", p.job_bound.limit},
        {"stage_seconds", p.job_bound.stage_seconds}}},
      {"job_stage_seconds", p.job_stage_seconds},
      {"bottleneck", p.bottleneck},
  };
}

}  // namespace

double ErrorPercent(double predicted, double measured) {
  if (!(measured > 0)) return 0.0;
  return 100.0 * (predicted - measured) / measured;
}

absl::StatusOr<PlanReport> BuildPlanReport(const PlanInputs& inputs) {
  PlanReport report;
  report.model_name = inputs.model_name;
  report.model_type = inputs.spec.model_type;
  report.layers_total = inputs.spec.num_layers;
  report.costs = ComputeModelCosts(inputs.spec, inputs.layers_override, 2, 2,
                                   inputs.pins.expert_dtype.value_or(io::DType::kBF16));
  if (inputs.pins.kv_dtype) PriceKvCache(inputs.spec, *inputs.pins.kv_dtype, &report.costs);
  report.layers_planned = report.costs.num_layers();
  report.profile = inputs.profile;
  report.profile_path = inputs.profile_path;
  report.workload = inputs.workload;
  report.budgets = ResolveBudgets(inputs.profile, inputs.requested_budgets);
  report.device = inputs.device;
  report.pins = inputs.pins;
  if (inputs.device == PlanDevice::kGpu && !inputs.profile.gpu) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot plan for --device gpu: the hardware profile ",
        inputs.profile_path.empty() ? "" : absl::StrCat("'", inputs.profile_path, "' "), "has no GPU (",
        inputs.profile.gpu_absent_reason, "); use --device cpu or --hardware FILE naming a GPU profile"));
  }

  PerfModel model(report.profile, report.costs, report.workload, report.budgets);
  absl::StatusOr<SearchResult> chosen = SearchPlan(model, inputs.device, inputs.pins);
  if (!chosen.ok()) {
    return absl::Status(chosen.status().code(), absl::StrCat("no plan fits: ", chosen.status().message()));
  }
  report.prediction = chosen->best;
  report.plan = RunnablePlan(report.prediction);
  report.plans_evaluated = chosen->plans_evaluated;
  if (inputs.pins.any()) {
    PlanPins free;
    free.gpus = inputs.pins.gpus;  // The machine, not a choice.
    absl::StatusOr<SearchResult> free_search = SearchPlan(model, inputs.device, free);
    if (free_search.ok()) {
      report.unpinned = free_search->best;
      report.plans_evaluated += free_search->plans_evaluated;
    }
  }
  if (inputs.explore_what_ifs) {
    report.what_ifs = ExploreWhatIfs(report.profile, report.costs, report.workload, report.budgets,
                                     inputs.device, inputs.pins, report.prediction.total_tokens_per_s);
  }
  if (!inputs.workload.prompt_length_note.empty()) report.notes.push_back(inputs.workload.prompt_length_note);
  if (report.layers_planned < report.layers_total) {
    report.notes.push_back(absl::StrCat("planned ", report.layers_planned, " of the model's ",
                                        report.layers_total, " layers (--layers)"));
  }
  if (report.profile.cpu.attention.estimated) {
    report.notes.push_back("CPU attention rates in this profile are estimates, not measurements");
  }
  if (inputs.device == PlanDevice::kGpu) {
    const MemoryPlan& memory = report.prediction.memory;
    for (WeightGroup group :
         {WeightGroup::kAttention, WeightGroup::kRouter, WeightGroup::kSharedMlp, WeightGroup::kLmHead}) {
      if (memory.gpu_resident_bytes[static_cast<int>(group)] < report.costs.group_bytes(group)) {
        report.notes.push_back(
            absl::StrCat(std::string(WeightGroupName(group)),
                         " weights do not all fit on the GPU and are modelled as streamed; the engine's GPU "
                         "path (runtime/engine/gpu_model.h) keeps them resident, so it needs more --gpu-mem "
                         "for this model"));
      }
    }
  }
  if (inputs.device == PlanDevice::kGpu && report.plan.gpus > 1 && report.profile.gpu) {
    const int gpus = report.plan.gpus;
    const GpuProfile& gpu = *report.profile.gpu;
    report.notes.push_back(
        absl::StrCat("planned for ", gpus,
                     " GPUs (expert parallel, planner/DESIGN.md \"Several GPUs\"); the engine runs "
                     "one GPU, so this plan is not runnable yet (ringmoe run refuses --gpus above 1)"));
    if (gpu.count <= 1) {
      report.notes.push_back(absl::StrFormat(
          "the profile is a one-GPU probe: %d GPUs like it, each on a link like its own (%.1f GB/s), are "
          "assumed%s",
          gpus, gpu.h2d_gbps,
          gpu.all_links_h2d_gbps > 0
              ? absl::StrFormat("; all links together measured at %.1f GB/s", gpu.all_links_h2d_gbps)
              : absl::StrFormat("; all links together taken as %.1f GB/s (%d links, capped by DRAM)",
                                model.AllLinksH2dBytesPerSecond(gpus) / 1e9, gpus)));
    }
  }
  if (inputs.device == PlanDevice::kGpu && report.plan.parts_one_at_a_time()) {
    // Remove once its GPU golden placements (streamed_quarter_layers_one_at_a_time) have passed on a GPU.
    report.notes.push_back(absl::StrCat(
        "the ring holds less than a layer, so the layers' parts run one at a time through ",
        report.plan.ring_sections, " slots of 1/", report.plan.layer_parts,
        " layer: an engine path not yet run on a GPU (2026-12-08); check a few outputs before a long job"));
  }
  if (!report.profile.contention && inputs.device == PlanDevice::kGpu) {
    report.notes.push_back(
        "no DRAM contention measurement: copies and CPU reads share DRAM as on the H200 box");
  }
  for (const std::string& note : report.profile.notes)
    report.notes.push_back(absl::StrCat("profile: ", note));
  return report;
}

std::string FormatPlanReport(const PlanReport& report) {
  std::string out;
  absl::StrAppendFormat(&out, "ringmoe plan: %s (%s), %d of %d layers, device %s\n", report.model_name,
                        report.model_type, report.layers_planned, report.layers_total,
                        PlanDeviceName(report.device));
  AppendHardware(report, &out);
  const Workload& workload = report.workload;
  absl::StrAppendFormat(&out,
                        "workload  %d requests, prompt %.1f tokens, generation %.1f tokens (mean), "
                        "context up to %d\n",
                        workload.num_requests, workload.mean_prompt_tokens, workload.mean_gen_tokens,
                        workload.max_context_tokens);
  AppendMemory(report, &out);

  const Prediction& p = report.prediction;
  absl::StrAppend(&out, "\n");
  AppendPlanLine(report.pins.any() ? "plan (your choices pinned):" : "plan:", p, &out);
  absl::StrAppend(&out, report.plan.gpus > 1 ? "  planned for  " : "  engine runs  ",
                  FormatExecutionPlan(report.plan), "\n");
  AppendSteps(report, &out);

  absl::StrAppend(&out, "\npredicted throughput\n");
  absl::StrAppendFormat(&out,
                        "  prefill %.0f tokens/s   decode %.0f tokens/s   end-to-end %.0f tokens/s "
                        "(%.0f generated tokens/s)\n",
                        p.prefill_tokens_per_s, p.decode_tokens_per_s, p.total_tokens_per_s,
                        p.output_tokens_per_s);
  double fill_seconds = p.fill_steps * p.fill_step_seconds;
  absl::StrAppendFormat(&out, "  job: %s  (fill %s over %.0f steps, steady %s over %.0f steps, tail %s)\n",
                        Duration(p.duration_s), Duration(fill_seconds), p.fill_steps,
                        Duration(p.mixed_steps * p.mixed_step.step), p.mixed_steps,
                        Duration(p.tail_steps * p.decode_step.step));
  absl::StrAppend(&out, "  bottleneck: ", p.bottleneck, "\n");
  if (p.bound_output_tokens_per_s > 0) {
    absl::StrAppendFormat(
        &out,
        "  hardware bound of this plan: %.0f generated tokens/s, job %s (every stage at the "
        "machine's limits, no engine overheads); the prediction is %.0f%% of it\n",
        p.bound_output_tokens_per_s, Duration(p.bound_duration_s),
        100.0 * p.output_tokens_per_s / p.bound_output_tokens_per_s);
  }
  if (p.job_bound.output_tokens_per_s > 0) {
    std::string stages;
    for (const auto& [stage, seconds] : p.job_bound.stage_seconds) {
      absl::StrAppend(&stages, stages.empty() ? "" : ", ", stage, " ", Duration(seconds));
    }
    absl::StrAppendFormat(
        &out,
        "  job-level bound: %.0f generated tokens/s, limited by %s (%s; no pipeline assumed); "
        "the prediction is %.0f%% of it\n",
        p.job_bound.output_tokens_per_s, p.job_bound.limit, stages,
        100.0 * p.output_tokens_per_s / p.job_bound.output_tokens_per_s);
  }
  if (report.unpinned) {
    const Prediction& best = *report.unpinned;
    AppendPlanLine("\nwithout your pins the planner would pick:", best, &out);
    absl::StrAppendFormat(&out, "  -> %.0f tokens/s end-to-end, job %s (%+.1f%% against your choice)\n",
                          best.total_tokens_per_s, Duration(best.duration_s),
                          ErrorPercent(best.total_tokens_per_s, p.total_tokens_per_s));
  }
  if (!report.what_ifs.empty()) {
    absl::StrAppend(&out, "\nwhat more would buy           end-to-end tokens/s    gain   bottleneck then\n");
    for (const WhatIf& what_if : report.what_ifs) {
      if (what_if.feasible) {
        absl::StrAppendFormat(&out, "  %-28s %18.0f %+7.1f%%   %s\n", what_if.change,
                              what_if.total_tokens_per_s, what_if.gain_percent, what_if.bottleneck);
      } else {
        absl::StrAppendFormat(&out, "  %-28s %18s %8s   %s\n", what_if.change, "-", "", what_if.note);
      }
    }
  }
  if (!report.notes.empty()) {
    absl::StrAppend(&out, "\nnotes\n");
    for (const std::string& note : report.notes) absl::StrAppend(&out, "  - ", note, "\n");
  }
  return out;
}

std::string FormatMeasuredBesidePredicted(const PlanReport& report, const MeasuredRun& measured) {
  const Prediction& p = report.prediction;
  std::string out = "\nmeasured beside predicted              predicted      measured     error\n";
  auto row = [&](const std::string& name, const std::string& predicted, const std::string& actual,
                 double error) {
    absl::StrAppendFormat(&out, "  %-32s %12s %13s %9s\n", name, predicted, actual,
                          actual == "-" ? "" : absl::StrFormat("%+.1f%%", error));
  };
  double measured_output = measured.wall_seconds > 0 ? measured.generated_tokens / measured.wall_seconds : 0;
  double measured_total = measured.wall_seconds > 0
                              ? (measured.prompt_tokens + measured.generated_tokens) / measured.wall_seconds
                              : 0;
  row("job duration", Duration(p.duration_s), Duration(measured.wall_seconds),
      ErrorPercent(p.duration_s, measured.wall_seconds));
  row("end-to-end tokens/s", absl::StrFormat("%.0f", p.total_tokens_per_s),
      measured_total > 0 ? absl::StrFormat("%.0f", measured_total) : "-",
      ErrorPercent(p.total_tokens_per_s, measured_total));
  row("generated tokens/s", absl::StrFormat("%.0f", p.output_tokens_per_s),
      measured_output > 0 ? absl::StrFormat("%.0f", measured_output) : "-",
      ErrorPercent(p.output_tokens_per_s, measured_output));
  if (p.job_bound.output_tokens_per_s > 0 && measured_output > 0) {
    absl::StrAppendFormat(&out, "  measured generated tokens/s = %.2f of the job-level bound (%.0f, %s)\n",
                          measured_output / p.job_bound.output_tokens_per_s, p.job_bound.output_tokens_per_s,
                          p.job_bound.limit);
  }
  for (const auto& [name, predicted_seconds] : p.job_stage_seconds) {
    auto it = measured.stage_seconds.find(name);
    if (predicted_seconds <= 0 && it == measured.stage_seconds.end()) continue;
    bool have = it != measured.stage_seconds.end();
    row(absl::StrCat(name, " (busy s)"), absl::StrFormat("%.2f", predicted_seconds),
        have ? absl::StrFormat("%.2f", it->second) : "-",
        have ? ErrorPercent(predicted_seconds, it->second) : 0);
  }
  if (measured.peak_gpu_bytes > 0) {
    row("peak GPU memory", Gib(p.memory.gpu_used()), Gib(measured.peak_gpu_bytes),
        ErrorPercent(static_cast<double>(p.memory.gpu_used()), static_cast<double>(measured.peak_gpu_bytes)));
  }
  if (measured.peak_cpu_bytes > 0) {
    row("peak CPU memory", Gib(p.memory.cpu_used()), Gib(measured.peak_cpu_bytes),
        ErrorPercent(static_cast<double>(p.memory.cpu_used()), static_cast<double>(measured.peak_cpu_bytes)));
  }
  if (measured.requests > 0 && report.workload.num_requests != measured.requests) {
    absl::StrAppendFormat(&out, "  (planned %d requests, ran %d)\n", report.workload.num_requests,
                          measured.requests);
  }
  return out;
}

ExecutionPlan RunnablePlan(const Prediction& prediction) {
  ExecutionPlan plan = prediction.plan;
  plan.batch = std::max(1, prediction.effective_batch);
  return plan;
}

std::string PlanReportJson(const PlanReport& report, const MeasuredRun* measured,
                           const ExecutionPlan* executed) {
  json root;
  root["model"] = {{"name", report.model_name},
                   {"model_type", report.model_type},
                   {"layers_planned", report.layers_planned},
                   {"layers_total", report.layers_total},
                   {"gpu_weight_bytes", report.costs.gpu_weight_bytes()},
                   {"embedding_bytes", report.costs.embedding_bytes},
                   {"kv_bytes_per_token", report.costs.kv_bytes_per_token}};
  json hardware = json::parse(ProfileToJson(report.profile), nullptr, false);
  root["hardware"] = {{"path", report.profile_path}, {"profile", hardware}};
  root["workload"] = {{"num_requests", report.workload.num_requests},
                      {"mean_prompt_tokens", report.workload.mean_prompt_tokens},
                      {"mean_gen_tokens", report.workload.mean_gen_tokens},
                      {"max_context_tokens", report.workload.max_context_tokens},
                      {"prompt_length_note", report.workload.prompt_length_note}};
  root["budgets"] = {{"gpu_bytes", report.budgets.gpu_bytes}, {"cpu_bytes", report.budgets.cpu_bytes}};
  root["device"] = std::string(PlanDeviceName(report.device));
  root["plan"] = json::parse(PlanToJson(report.plan));
  if (executed != nullptr) root["executed_plan"] = json::parse(PlanToJson(*executed));
  root["prediction"] = PredictionJson(report.prediction);
  if (report.unpinned) root["unpinned_best"] = PredictionJson(*report.unpinned);
  root["plans_evaluated"] = report.plans_evaluated;
  json what_ifs = json::array();
  for (const WhatIf& what_if : report.what_ifs) {
    what_ifs.push_back({{"change", what_if.change},
                        {"feasible", what_if.feasible},
                        {"total_tokens_per_s", what_if.total_tokens_per_s},
                        {"gain_percent", what_if.gain_percent},
                        {"bottleneck", what_if.bottleneck},
                        {"note", what_if.note}});
  }
  root["what_if"] = what_ifs;
  root["notes"] = report.notes;
  if (measured != nullptr) {
    const Prediction& p = report.prediction;
    double total = measured->wall_seconds > 0
                       ? (measured->prompt_tokens + measured->generated_tokens) / measured->wall_seconds
                       : 0;
    double output = measured->wall_seconds > 0 ? measured->generated_tokens / measured->wall_seconds : 0;
    json errors = {{"duration", ErrorPercent(p.duration_s, measured->wall_seconds)},
                   {"total_tokens_per_s", ErrorPercent(p.total_tokens_per_s, total)},
                   {"output_tokens_per_s", ErrorPercent(p.output_tokens_per_s, output)}};
    for (const auto& [name, seconds] : measured->stage_seconds) {
      auto it = p.job_stage_seconds.find(name);
      if (it != p.job_stage_seconds.end()) errors[name] = ErrorPercent(it->second, seconds);
    }
    root["measured"] = {
        {"wall_seconds", measured->wall_seconds},
        {"requests", measured->requests},
        {"prompt_tokens", measured->prompt_tokens},
        {"generated_tokens", measured->generated_tokens},
        {"steps", measured->steps},
        {"total_tokens_per_s", total},
        {"output_tokens_per_s", output},
        {"job_bound_ratio",
         p.job_bound.output_tokens_per_s > 0 ? output / p.job_bound.output_tokens_per_s : 0.0},
        {"stage_seconds", measured->stage_seconds},
        {"peak_gpu_bytes", measured->peak_gpu_bytes},
        {"peak_cpu_bytes", measured->peak_cpu_bytes},
        {"peak_pinned_bytes", measured->peak_pinned_bytes},
        {"error_percent", errors}};
  }
  return root.dump(2) + "\n";
}

}  // namespace ringmoe::planner
