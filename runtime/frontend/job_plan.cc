#include "runtime/frontend/job_plan.h"

#include <cstdio>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "runtime/frontend/byte_size.h"

namespace ringmoe {

absl::StatusOr<planner::Workload> WorkloadFromBatchLines(const std::vector<BatchLine>& lines,
                                                         const Tokenizer* tokenizer,
                                                         const std::string& tokenizer_problem,
                                                         const ModelSpec& spec, const std::string& source) {
  std::vector<int64_t> prompts, gens;
  int64_t bad = 0, estimated = 0, exact_text = 0;
  for (const BatchLine& line : lines) {
    if (!line.request.ok()) {
      ++bad;
      continue;
    }
    const Request& request = *line.request;
    int64_t prompt = static_cast<int64_t>(request.prompt_ids.size());
    if (!request.prompt_text.empty()) {
      absl::StatusOr<std::vector<int32_t>> ids = absl::UnavailableError("no tokenizer");
      if (tokenizer != nullptr) ids = tokenizer->Encode(request.prompt_text, /*add_special_tokens=*/true);
      if (ids.ok()) {
        prompt = static_cast<int64_t>(ids->size());
        ++exact_text;
      } else {
        prompt = (static_cast<int64_t>(request.prompt_text.size()) + 3) / 4;
        ++estimated;
      }
    }
    prompts.push_back(prompt);
    gens.push_back(request.max_tokens);
  }
  if (prompts.empty()) return absl::InvalidArgumentError(source + ": no valid request lines to plan for");
  std::string note = absl::StrCat(source, ": ", prompts.size(), " requests");
  if (bad > 0) absl::StrAppend(&note, " (", bad, " bad lines left out)");
  absl::StrAppend(&note, "; generation lengths are max_tokens (an upper bound: EOS may stop earlier)");
  if (estimated > 0) {
    absl::StrAppend(&note, "; ", estimated, " text prompts estimated as ceil(bytes / 4) tokens (",
                    tokenizer != nullptr ? "the tokenizer failed on them" : tokenizer_problem, ")");
  }
  if (exact_text > 0) absl::StrAppend(&note, "; ", exact_text, " text prompts counted with the tokenizer");
  return planner::MakeWorkload(prompts, gens, spec.max_position_embeddings, note);
}

absl::StatusOr<planner::Workload> WorkloadOfJob(const std::vector<BatchLine>& lines, const std::string& model,
                                                const std::string& tokenizer, const ModelSpec& spec,
                                                const std::string& source) {
  std::string path = tokenizer;
  if (path.empty() && std::filesystem::is_directory(model) &&
      std::filesystem::exists(std::filesystem::path(model) / "tokenizer.json")) {
    path = model;
  }
  absl::StatusOr<Tokenizer> loaded =
      absl::NotFoundError("no tokenizer.json beside the model; pass --tokenizer");
  if (!path.empty()) loaded = Tokenizer::Load(path);
  return WorkloadFromBatchLines(lines, loaded.ok() ? &*loaded : nullptr,
                                loaded.ok() ? "" : std::string(loaded.status().message()), spec, source);
}

absl::StatusOr<std::optional<bool>> ParseRoutedCopies(std::string_view text) {
  if (text == "auto" || text.empty()) return std::optional<bool>();
  if (text == "on") return std::optional<bool>(true);
  if (text == "off") return std::optional<bool>(false);
  return absl::InvalidArgumentError(
      absl::StrCat("--routed-copies must be auto, on or off, not '", std::string(text), "'"));
}

absl::Status ParseBudgets(const std::string& gpu_mem, const std::string& cpu_mem, planner::Budgets* budgets) {
  for (auto [text, target] : {std::pair{&gpu_mem, &budgets->gpu_bytes}, {&cpu_mem, &budgets->cpu_bytes}}) {
    if (text->empty()) continue;
    absl::StatusOr<int64_t> bytes = ParseByteSize(*text);
    if (!bytes.ok()) return bytes.status();
    if (*bytes <= 0) return absl::InvalidArgumentError("memory budgets must be positive");
    *target = *bytes;
  }
  return absl::OkStatus();
}

absl::StatusOr<PlanReport> PlanJob(const ModelSpec& spec, const planner::Workload& workload,
                                   const JobPlanOptions& options) {
  planner::PlanInputs inputs;
  inputs.spec = spec;
  inputs.model_name = options.model;
  inputs.layers_override = options.layers;
  inputs.workload = workload;
  inputs.requested_budgets = options.budgets;
  inputs.overrides = options.overrides;
  inputs.explore_what_ifs = options.what_ifs;

  planner::ProbeOptions probe_options;
  probe_options.ssd_dir = std::filesystem::is_directory(options.model)
                              ? options.model
                              : std::filesystem::path(options.model).parent_path().string();
  if (options.hardware.empty() && !std::filesystem::exists(planner::DefaultProfilePath())) {
    std::fprintf(stderr,
                 "ringmoe: no hardware profile for this machine yet; probing it once (cached at %s)\n",
                 planner::DefaultProfilePath().c_str());
  }
  std::string profile_path;
  absl::StatusOr<planner::HardwareProfile> profile =
      planner::LoadOrProbeProfile(options.hardware, probe_options, &profile_path);
  if (!profile.ok()) return profile.status();
  inputs.profile = *profile;
  inputs.profile_path = profile_path;
  if (options.device == "gpu") {
    inputs.device = planner::PlanDevice::kGpu;
  } else if (options.device == "cpu") {
    inputs.device = planner::PlanDevice::kCpu;
  } else if (options.device == "auto") {
    inputs.device = profile->gpu ? planner::PlanDevice::kGpu : planner::PlanDevice::kCpu;
  } else {
    return absl::InvalidArgumentError("--device must be gpu, cpu or auto");
  }
  return planner::BuildPlanReport(inputs);
}

void ApplyPlan(const PlanReport& report, EngineOptions* options) {
  const planner::Prediction& p = report.prediction;
  options->max_batch = std::max(1, p.effective_batch);
  options->max_step_tokens = std::max(1, p.effective_batch + p.plan.prefill_chunk);
  if (report.device == planner::PlanDevice::kGpu) {
    options->micro_batches = p.plan.micro_batches;
    options->ring_slots = p.plan.ring_sections;
    options->ring_layer_parts = p.plan.layer_parts;
    options->routed_expert_copies = p.plan.routed_expert_copies;
    options->gpu_resident_moe_layers = static_cast<int>(p.memory.gpu_resident_moe_layers);
    options->gpu_kv_cache_bytes = p.memory.gpu_kv_bytes;
    if (options->gpu_memory_bytes == 0) options->gpu_memory_bytes = report.budgets.gpu_bytes;
  }
}

planner::MeasuredRun MeasuredFrom(const RunStats& stats, int64_t requests, bool gpu) {
  planner::MeasuredRun measured;
  measured.wall_seconds = stats.wall_seconds;
  measured.requests = requests;
  measured.prompt_tokens = stats.prompt_tokens;
  measured.generated_tokens = stats.generated_tokens;
  measured.steps = stats.steps;
  measured.stage_seconds[planner::kStageCpuAttention] = stats.attention_seconds;
  if (gpu) measured.stage_seconds[planner::kStageH2dCopy] = stats.h2d_copy_seconds;
  if (!gpu) {
    measured.stage_seconds[planner::kStageCpuMatmul] =
        stats.projection_seconds + stats.moe_seconds + stats.dense_seconds + stats.lm_head_seconds;
  }
  measured.peak_gpu_bytes = stats.gpu_peak_bytes;
  measured.peak_cpu_bytes = stats.host_peak_bytes;
  return measured;
}

}  // namespace ringmoe
