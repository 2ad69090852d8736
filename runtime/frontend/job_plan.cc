#include "runtime/frontend/job_plan.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "gpu/device.h"
#include "io/checkpoint.h"
#include "io/fp8_weights.h"
#include "planner/probe/probe.h"
#include "runtime/engine/compute_type.h"
#include "runtime/frontend/byte_size.h"
#include "runtime/log/log.h"

namespace ringmoe {

WorkloadCounter::WorkloadCounter(const Tokenizer* tokenizer, std::string tokenizer_problem)
    : tokenizer_(tokenizer), tokenizer_problem_(std::move(tokenizer_problem)) {}

void WorkloadCounter::Add(const BatchLine& line) {
  if (!line.request.ok()) {
    ++bad_;
    return;
  }
  const Request& request = *line.request;
  int64_t prompt = static_cast<int64_t>(request.prompt_ids.size());
  if (!request.prompt_text.empty()) {
    absl::StatusOr<std::vector<int32_t>> ids = absl::UnavailableError("no tokenizer");
    if (tokenizer_ != nullptr) ids = tokenizer_->Encode(request.prompt_text, /*add_special_tokens=*/true);
    if (ids.ok()) {
      prompt = static_cast<int64_t>(ids->size());
      ++exact_text_;
    } else {
      prompt = (static_cast<int64_t>(request.prompt_text.size()) + 3) / 4;
      ++estimated_;
    }
  }
  // As planner::MakeWorkload counts them: a prompt of at least 1 token, a generation of at least 0.
  prompt = std::max<int64_t>(1, prompt);
  const int64_t gen = std::max<int64_t>(0, request.max_tokens);
  const int64_t choices = std::max(1, request.n);
  ++requests_;
  sequences_ += choices;
  prompt_sum_ += choices * prompt;
  gen_sum_ += choices * gen;
  longest_ = std::max(longest_, prompt + gen);
}

absl::StatusOr<planner::Workload> WorkloadCounter::Finish(const ModelSpec& spec,
                                                          const std::string& source) const {
  if (sequences_ == 0) return absl::InvalidArgumentError(source + ": no valid request lines to plan for");
  std::string note = absl::StrCat(source, ": ", sequences_, " requests");
  if (bad_ > 0) absl::StrAppend(&note, " (", bad_, " bad lines left out)");
  absl::StrAppend(&note, "; generation lengths are max_tokens (an upper bound: EOS may stop earlier)");
  if (estimated_ > 0) {
    absl::StrAppend(&note, "; ", estimated_, " text prompts estimated as ceil(bytes / 4) tokens (",
                    tokenizer_ != nullptr ? "the tokenizer failed on them" : tokenizer_problem_, ")");
  }
  if (exact_text_ > 0) absl::StrAppend(&note, "; ", exact_text_, " text prompts counted with the tokenizer");
  planner::Workload workload;
  workload.num_requests = sequences_;
  workload.prompt_length_note = std::move(note);
  // Integer sums, exact, divided once: what MakeWorkload's running sum of doubles gives for any real job.
  workload.mean_prompt_tokens = static_cast<double>(prompt_sum_) / static_cast<double>(sequences_);
  workload.mean_gen_tokens = static_cast<double>(gen_sum_) / static_cast<double>(sequences_);
  const int max_position = spec.max_position_embeddings;
  workload.max_context_tokens =
      static_cast<int>(max_position > 0 ? std::min<int64_t>(longest_, max_position) : longest_);
  return workload;
}

absl::StatusOr<planner::Workload> WorkloadFromBatchLines(const std::vector<BatchLine>& lines,
                                                         const Tokenizer* tokenizer,
                                                         const std::string& tokenizer_problem,
                                                         const ModelSpec& spec, const std::string& source) {
  WorkloadCounter counter(tokenizer, tokenizer_problem);
  for (const BatchLine& line : lines) counter.Add(line);
  return counter.Finish(spec, source);
}

absl::StatusOr<std::shared_ptr<const Tokenizer>> LoadJobTokenizer(const std::string& model,
                                                                  const std::string& tokenizer) {
  std::string path = tokenizer;
  if (path.empty() && std::filesystem::is_directory(model) &&
      std::filesystem::exists(std::filesystem::path(model) / "tokenizer.json")) {
    path = model;
  }
  if (path.empty()) return std::shared_ptr<const Tokenizer>();
  absl::StatusOr<Tokenizer> loaded = Tokenizer::Load(path);
  if (!loaded.ok()) return loaded.status();
  return std::make_shared<const Tokenizer>(std::move(*loaded));
}

absl::StatusOr<JobPlanOptions> JobPlanOptionsFromFlags(const std::string& model, const PlanFlags& flags) {
  JobPlanOptions options;
  options.model = model;
  options.hardware = flags.hardware;
  options.probe_dir = flags.probe_dir;
  options.ssd_dirs = flags.ssd_dirs;
  options.device = flags.device;
  if (options.device != "gpu" && options.device != "cpu" && options.device != "auto") {
    return absl::InvalidArgumentError("--device must be gpu, cpu or auto");
  }
  absl::StatusOr<planner::Budgets> budgets = BudgetsFromFlags(flags);
  if (!budgets.ok()) return budgets.status();
  options.budgets = *budgets;
  absl::StatusOr<planner::PlanPins> pins = PinsFromFlags(flags);
  if (!pins.ok()) return pins.status();
  options.pins = *pins;
  return options;
}

namespace {

// --ssd-dir: the SSD tier reads section files striped over these drives, at the sum of their probed rates.
absl::Status ApplySsdDirs(const std::vector<std::string>& dirs, planner::HardwareProfile* profile) {
  std::vector<std::string> warnings;
  if (absl::Status status = planner::StripeSsdOverDirs(dirs, profile, &warnings); !status.ok()) return status;
  for (const std::string& warning : warnings) log::Warning("ringmoe: {}", warning);
  if (!dirs.empty() && profile->ssd) {
    log::Info("ringmoe: the SSD tier is priced at {:.2f} GB/s, the sum of the --ssd-dir drives' rates",
              profile->ssd->striped_gbps);
  }
  return absl::OkStatus();
}

// auto: the GPU when the profile has one, except for MLA models (DeepSeek), whose GPU path has not yet passed
// its golden tests on a GPU (--device gpu plans and runs it).
absl::StatusOr<planner::PlanDevice> ResolveDevice(const std::string& device, bool profile_has_gpu,
                                                  const ModelSpec& spec) {
  if (device == "gpu") return planner::PlanDevice::kGpu;
  if (device == "cpu") return planner::PlanDevice::kCpu;
  if (device == "auto") {
    return profile_has_gpu && !spec.is_mla() ? planner::PlanDevice::kGpu : planner::PlanDevice::kCpu;
  }
  return absl::InvalidArgumentError("--device must be gpu, cpu or auto");
}

// A CPU plan's KV cache has the engine's compute type (f32 or bf16), the GPU path's bf16, unless --kv-dtype
// fp8 pinned F8_E4M3. The
// routed experts are FP8 when pinned so, or when the checkpoint is (unless --expert-dtype bf16).
void SetKvType(const JobPlanOptions& options, const ModelSpec& spec, planner::ExecutionPlan* plan) {
  plan->kv.dtype = options.pins.kv_dtype.value_or(
      ChooseComputeType(options.cpu_compute, options.model, plan->device == planner::PlanDevice::kGpu));
  const bool fp8_checkpoint = spec.quantization.method == WeightQuantization::kFp8Block;
  plan->expert_dtype =
      options.pins.expert_dtype.value_or(fp8_checkpoint ? io::DType::kF8E4M3 : io::DType::kBF16);
}

// What the engine's load would refuse in the checkpoint's FP8 tensors (io/fp8_weights.h), checked from the
// headers, so that `plan` refuses it too. A model given as a config.json, or a folder without weights, has
// nothing to check.
absl::Status CheckCheckpointTensors(const ModelSpec& spec, const std::string& model) {
  if (!std::filesystem::is_directory(model)) return absl::OkStatus();
  absl::StatusOr<std::unique_ptr<io::Checkpoint>> checkpoint = io::Checkpoint::Open(model);
  if (!checkpoint.ok()) return absl::OkStatus();
  return io::ValidateFp8Tensors(**checkpoint, spec.quantization);
}

// Host and GPU memory of this machine as a profile without rates: enough to place weights under budgets.
planner::HardwareProfile MachineMemoryProfile() {
  planner::HardwareProfile profile;
  const long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGE_SIZE);
  profile.topology.memory_bytes = pages > 0 && page_size > 0 ? int64_t{pages} * page_size : int64_t{8} << 30;
  if (absl::StatusOr<gpu::DeviceMemoryInfo> memory = gpu::QueryDeviceMemory(); memory.ok()) {
    profile.gpu.emplace();
    profile.gpu->name = "this machine's GPU (memory only)";
    profile.gpu->memory_bytes = memory->total_bytes;
  } else {
    profile.gpu_absent_reason = std::string(memory.status().message());
  }
  profile.source = "this machine's memory sizes (--no-plan; no rates)";
  return profile;
}

}  // namespace

absl::StatusOr<PlanReport> PlanJob(const ModelSpec& spec, const planner::Workload& workload,
                                   const JobPlanOptions& options) {
  if (absl::Status tensors = CheckCheckpointTensors(spec, options.model); !tensors.ok()) return tensors;
  planner::PlanInputs inputs;
  inputs.spec = spec;
  inputs.model_name = options.model;
  inputs.layers_override = options.layers;
  inputs.workload = workload;
  inputs.requested_budgets = options.budgets;
  inputs.pins = options.pins;
  inputs.explore_what_ifs = options.what_ifs;

  planner::ProbeOptions probe_options;
  probe_options.ssd_dir = !options.probe_dir.empty() ? options.probe_dir
                          : std::filesystem::is_directory(options.model)
                              ? options.model
                              : std::filesystem::path(options.model).parent_path().string();
  probe_options.ssd_drive_dirs = options.ssd_dirs;
  if (options.hardware.empty() && !std::filesystem::exists(planner::DefaultProfilePath())) {
    log::Info("ringmoe: no hardware profile for this machine yet; probing it once (cached at {})",
              planner::DefaultProfilePath());
  }
  std::string profile_path;
  absl::StatusOr<planner::HardwareProfile> profile =
      planner::LoadOrProbeProfile(options.hardware, probe_options, &profile_path);
  if (!profile.ok()) return profile.status();
  if (absl::Status striped = ApplySsdDirs(options.ssd_dirs, &*profile); !striped.ok()) return striped;
  inputs.profile = *profile;
  inputs.profile_path = profile_path;
  absl::StatusOr<planner::PlanDevice> device = ResolveDevice(options.device, profile->gpu.has_value(), spec);
  if (!device.ok()) return device.status();
  inputs.device = *device;
  absl::StatusOr<PlanReport> report = planner::BuildPlanReport(inputs);
  if (!report.ok()) return report.status();
  SetKvType(options, spec, &report->plan);
  return report;
}

absl::StatusOr<planner::ExecutionPlan> PlanJobWithoutSearch(const ModelSpec& spec,
                                                            const planner::Workload& workload,
                                                            const JobPlanOptions& options) {
  if (absl::Status tensors = CheckCheckpointTensors(spec, options.model); !tensors.ok()) return tensors;
  planner::HardwareProfile profile;
  if (!options.hardware.empty() || std::filesystem::exists(planner::DefaultProfilePath())) {
    absl::StatusOr<planner::HardwareProfile> loaded =
        planner::LoadProfile(options.hardware.empty() ? planner::DefaultProfilePath() : options.hardware);
    if (!loaded.ok()) return loaded.status();
    profile = *loaded;
  } else {
    profile = MachineMemoryProfile();
  }
  if (absl::Status striped = ApplySsdDirs(options.ssd_dirs, &profile); !striped.ok()) return striped;
  absl::StatusOr<planner::PlanDevice> device = ResolveDevice(options.device, profile.gpu.has_value(), spec);
  if (!device.ok()) return device.status();
  planner::ExecutionPlan plan = planner::ApplyPins(planner::DefaultPlan(*device), options.pins);
  planner::ModelCosts costs = planner::ComputeModelCosts(
      spec, options.layers, 2, 2, options.pins.expert_dtype.value_or(io::DType::kBF16));
  if (options.pins.kv_dtype) planner::PriceKvCache(spec, *options.pins.kv_dtype, &costs);
  planner::PerfModel model(profile, costs, workload, planner::ResolveBudgets(profile, options.budgets));
  absl::StatusOr<planner::MemoryPlan> memory = model.PlanMemory(plan);
  if (!memory.ok()) return memory.status();
  if (plan.device == planner::PlanDevice::kGpu) {
    plan.expert_tiers = planner::SpreadSsdLayers(
        planner::SpreadResidentLayers(spec, memory->gpu_resident_moe_layers, options.layers),
        memory->ssd_moe_layers);
  }
  plan.kv.gpu_bytes = memory->gpu_kv_bytes;
  plan.budgets = model.budgets();
  SetKvType(options, spec, &plan);
  return plan;
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
  if (gpu && stats.ssd_read_bytes > 0)
    measured.stage_seconds[planner::kStageSsdRead] = stats.ssd_read_seconds;
  if (!gpu) {
    measured.stage_seconds[planner::kStageCpuMatmul] =
        stats.projection_seconds + stats.moe_seconds + stats.dense_seconds + stats.lm_head_seconds;
  }
  measured.peak_gpu_bytes = stats.gpu_peak_bytes;
  measured.peak_cpu_bytes = stats.host_peak_bytes;
  return measured;
}

}  // namespace ringmoe
