// ringmoe run: an OpenAI Batch JSONL job. Reads every request line, runs the valid ones as one continuous
// batch, and writes one output line per input line in input order (bad lines get an error object).
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "gpu/device.h"
#include "planner/planner.h"
#include "ringmoe/engine.h"
#include "ringmoe/tokenizer.h"
#include "runtime/frontend/batch_io.h"
#include "runtime/frontend/byte_size.h"
#include "runtime/cli/commands.h"
#include "runtime/frontend/job_plan.h"
#include "io/model_spec.h"
#include "runtime/frontend/progress.h"

namespace ringmoe::cli {
namespace {

struct RunFlags {
  std::string model, input, output, device = "auto", cpu_dtype = "auto", tokenizer;
  std::string gpu_mem, cpu_mem, kv_cache, hardware, report_json;
  int max_batch = 256, threads = 0, max_step_tokens = 2048, micro_batches = 0, resident_moe_layers = -1;
  int layer_parts = 0, ring_slots = 0;
  std::string routed_copies = "auto";
  std::optional<double> kv_gpu_fraction;
  bool quiet = false, no_plan = false;
};

absl::StatusOr<EngineOptions> ToOptions(const RunFlags& flags) {
  EngineOptions options;
  if (flags.device == "cpu") {
    options.device = Device::kCpu;
  } else if (flags.device == "gpu") {
    options.device = Device::kGpu;
  } else if (flags.device == "auto") {
    options.device = Device::kAuto;  // resolved below: gpu when one is usable
  } else {
    return absl::InvalidArgumentError("--device must be cpu, gpu or auto");
  }
  if (flags.cpu_dtype == "f32") {
    options.cpu_compute = ComputeType::kF32;
  } else if (flags.cpu_dtype == "bf16") {
    options.cpu_compute = ComputeType::kBF16;
  } else if (flags.cpu_dtype != "auto") {
    return absl::InvalidArgumentError("--cpu-dtype must be auto, f32 or bf16");
  }
  options.max_batch = flags.max_batch;
  options.micro_batches = flags.micro_batches;
  options.gpu_resident_moe_layers = flags.resident_moe_layers;
  options.ring_layer_parts = flags.layer_parts;
  options.ring_slots = flags.ring_slots;
  options.threads = flags.threads;
  options.max_step_tokens = flags.max_step_tokens;
  options.tokenizer_path = flags.tokenizer;
  options.hardware_profile = flags.hardware;
  for (auto [text, target] : {std::pair{&flags.gpu_mem, &options.gpu_memory_bytes},
                              {&flags.cpu_mem, &options.cpu_memory_bytes},
                              {&flags.kv_cache, &options.kv_cache_bytes}}) {
    if (text->empty()) continue;
    absl::StatusOr<int64_t> bytes = ParseByteSize(*text);
    if (!bytes.ok()) return bytes.status();
    *target = *bytes;
  }
  return options;
}

// Plans the job of `lines` with the run's flags; pinned choices are the flags the user gave.
absl::StatusOr<PlanReport> PlanRun(const RunFlags& flags, const EngineOptions& parsed, const CLI::App& app,
                                   const std::vector<BatchLine>& lines) {
  absl::StatusOr<ModelSpec> spec = LoadModelSpec(flags.model);
  if (!spec.ok()) return spec.status();
  absl::StatusOr<planner::Workload> workload =
      WorkloadOfJob(lines, flags.model, flags.tokenizer, *spec, flags.input);
  if (!workload.ok()) return workload.status();
  JobPlanOptions options;
  options.model = flags.model;
  options.hardware = flags.hardware;
  options.device = flags.device;
  options.what_ifs = false;
  // The sizes ToOptions already parsed (0 = the planner's default).
  options.budgets.gpu_bytes = parsed.gpu_memory_bytes;
  options.budgets.cpu_bytes = parsed.cpu_memory_bytes;
  if (app.count("--max-batch") > 0) options.overrides.batch = flags.max_batch;
  if (app.count("--micro-batches") > 0) options.overrides.micro_batches = flags.micro_batches;
  if (app.count("--resident-moe-layers") > 0)
    options.overrides.max_resident_moe_layers = flags.resident_moe_layers;
  if (app.count("--layer-parts") > 0) options.overrides.layer_parts = flags.layer_parts;
  if (app.count("--ring-slots") > 0) options.overrides.ring_sections = flags.ring_slots;
  options.overrides.kv_gpu_fraction = flags.kv_gpu_fraction;
  absl::StatusOr<std::optional<bool>> routed = ParseRoutedCopies(flags.routed_copies);
  if (!routed.ok()) return routed.status();
  options.overrides.routed_expert_copies = *routed;
  return PlanJob(*spec, *workload, options);
}

std::string RunId() {
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(now).count());
}

}  // namespace

int RunCommand(int argc, char** argv) {
  CLI::App app{"Run a batch job: OpenAI Batch API JSONL requests in, one result line per request out."};
  RunFlags flags;
  app.add_option("--model", flags.model, "Hugging Face model folder (config.json, *.safetensors)")
      ->required();
  app.add_option("--input", flags.input, "requests, one JSON object per line")->required();
  app.add_option("--output", flags.output, "results, one JSON object per line, in input order")->required();
  app.add_option("--max-batch", flags.max_batch, "sequences in flight at once")->capture_default_str();
  app.add_option("--threads", flags.threads, "CPU threads (0 = every core)")->capture_default_str();
  app.add_option("--device", flags.device, "cpu, gpu or auto")->capture_default_str();
  app.add_option("--max-step-tokens", flags.max_step_tokens,
                 "tokens per scheduler step (prefill chunk budget)")
      ->capture_default_str();
  app.add_option("--cpu-dtype", flags.cpu_dtype, "CPU matmul type: auto, f32 or bf16")->capture_default_str();
  app.add_option("--kv-cache", flags.kv_cache,
                 "host KV-cache budget, e.g. 8GiB (default: half the free RAM)");
  app.add_option("--gpu-mem", flags.gpu_mem, "cap on GPU memory, e.g. 6GiB");
  app.add_option("--cpu-mem", flags.cpu_mem, "cap on host memory for the plan");
  app.add_option("--hardware", flags.hardware, "hardware profile JSON from `ringmoe probe`");
  app.add_option("--tokenizer", flags.tokenizer, "tokenizer.json or folder (default: the model folder)");
  app.add_option("--micro-batches", flags.micro_batches,
                 "GPU path: micro-batches per step (default: the plan's)");
  app.add_option("--resident-moe-layers", flags.resident_moe_layers,
                 "GPU path: MoE layers whose experts stay on the GPU (default: the plan's)");
  app.add_option("--layer-parts", flags.layer_parts,
                 "GPU path: ring sections each streamed layer is cut into (default: the plan's)");
  app.add_option("--ring-slots", flags.ring_slots, "GPU path: the ring's slots (default: the plan's)");
  app.add_option(
         "--kv-gpu-fraction", flags.kv_gpu_fraction,
         "GPU path: share of the sequences in flight whose KV cache (and attention) lives on the GPU, "
         "0..1 (default: the plan's)")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--routed-copies", flags.routed_copies,
                 "GPU path: copy only the routed experts of streamed layers: auto (the plan's), on or off")
      ->capture_default_str();
  app.add_option("--report-json", flags.report_json, "write the plan and the measured figures as JSON");
  app.add_flag("--no-plan", flags.no_plan, "skip the planner: run with the flags' settings, no report");
  app.add_flag("--quiet", flags.quiet, "no progress display");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error);
  }

  absl::StatusOr<EngineOptions> options = ToOptions(flags);
  if (!options.ok()) {
    std::fprintf(stderr, "ringmoe run: %s\n", std::string(options.status().message()).c_str());
    return 2;
  }
  absl::StatusOr<std::vector<BatchLine>> lines = ReadBatchFile(flags.input);
  if (!lines.ok()) {
    std::fprintf(stderr, "ringmoe run: %s\n", std::string(lines.status().message()).c_str());
    return 1;
  }
  // The plan: printed before the run, and the engine runs with its choices unless a flag pins them.
  std::optional<PlanReport> report;
  if (flags.device == "auto") flags.device = gpu::GpuAvailable() ? "gpu" : "cpu";
  if (!flags.no_plan) {
    absl::StatusOr<PlanReport> planned = PlanRun(flags, *options, app, *lines);
    if (planned.ok()) {
      report = std::move(*planned);
      std::fputs(planner::FormatPlanReport(*report).c_str(), stderr);
      const EngineOptions pinned = *options;
      ApplyPlan(*report, &*options);
      if (app.count("--max-batch") > 0) options->max_batch = pinned.max_batch;
      if (app.count("--max-step-tokens") > 0) options->max_step_tokens = pinned.max_step_tokens;
      if (app.count("--gpu-mem") > 0) options->gpu_memory_bytes = pinned.gpu_memory_bytes;
    } else {
      std::fprintf(stderr, "ringmoe run: no plan (%s); running with the flags' settings\n",
                   std::string(planned.status().message()).c_str());
    }
  }
  options->device = flags.device == "gpu" ? Device::kGpu : Device::kCpu;

  std::ofstream output(flags.output, std::ios::binary | std::ios::trunc);
  if (!output) {
    std::fprintf(stderr, "ringmoe run: cannot write %s\n", flags.output.c_str());
    return 1;
  }
  absl::StatusOr<Engine> engine = Engine::Open(flags.model, *options);
  if (!engine.ok()) {
    std::fprintf(stderr, "ringmoe run: %s\n", std::string(engine.status().message()).c_str());
    return 1;
  }

  std::vector<Request> requests;
  std::vector<int> request_of_line(lines->size(), -1);
  int bad_lines = 0;
  for (size_t i = 0; i < lines->size(); ++i) {
    if (!(*lines)[i].request.ok()) {
      ++bad_lines;
      continue;
    }
    request_of_line[i] = static_cast<int>(requests.size());
    requests.push_back(*(*lines)[i].request);
  }
  const double parameters = static_cast<double>(engine->info().parameter_count);
  std::fprintf(stderr,
               "ringmoe run: %s (%s, %d layers, %.2f%s parameters) on %s; %zu requests, %d bad lines\n",
               flags.model.c_str(), engine->info().model_type.c_str(), engine->info().num_layers,
               parameters >= 1e9 ? parameters / 1e9 : parameters / 1e6, parameters >= 1e9 ? "B" : "M",
               engine->info().device.c_str(), requests.size(), bad_lines);

  FILE* progress_out = flags.quiet ? nullptr : stderr;
  std::unique_ptr<ProgressReporter> progress;
  if (progress_out != nullptr)
    progress = std::make_unique<ProgressReporter>(static_cast<int>(requests.size()));
  int done = 0;
  int64_t generated = 0, prefilled = 0;
  std::vector<bool> started(requests.size(), false);
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::vector<Result>> results = engine->Generate(requests, [&](const TokenEvent& event) {
    ++generated;
    if (!started[event.request_index]) {
      started[event.request_index] = true;
      prefilled += event.prompt_tokens;
    }
    if (event.finished) ++done;
    if (progress) progress->Update(done, generated, prefilled);
  });
  if (progress) progress->Finish();
  if (!results.ok()) {
    std::fprintf(stderr, "ringmoe run: %s\n", std::string(results.status().message()).c_str());
    return 1;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  const std::string run_id = RunId();
  const std::string model_name = flags.model;
  int failed = bad_lines;
  int64_t prompt_tokens = 0;
  for (size_t i = 0; i < lines->size(); ++i) {
    const BatchLine& line = (*lines)[i];
    const Result* result = request_of_line[i] >= 0 ? &(*results)[request_of_line[i]] : nullptr;
    if (result != nullptr && !result->status.ok()) ++failed;
    if (result != nullptr) prompt_tokens += static_cast<int64_t>(result->prompt_ids.size());
    output << FormatResultLine(line, result, model_name, MakeBatchRequestId(run_id, line.line_number))
           << '\n';
  }
  output.close();
  if (!output) {
    std::fprintf(stderr, "ringmoe run: writing %s failed\n", flags.output.c_str());
    return 1;
  }
  std::fprintf(stderr,
               "ringmoe run: %zu lines -> %s; %d failed; %lld prompt + %lld generated tokens in %.2f s "
               "(%.1f generated tokens/s)\n",
               lines->size(), flags.output.c_str(), failed, static_cast<long long>(prompt_tokens),
               static_cast<long long>(generated), seconds, seconds > 0 ? generated / seconds : 0.0);
  const RunStats& stats = engine->last_run_stats();
  const planner::MeasuredRun measured =
      MeasuredFrom(stats, static_cast<int64_t>(requests.size()), engine->info().device == "gpu");
  if (report) std::fputs(planner::FormatMeasuredBesidePredicted(*report, measured).c_str(), stderr);
  if (!flags.report_json.empty()) {
    std::ofstream json(flags.report_json, std::ios::binary | std::ios::trunc);
    if (report) {
      json << planner::PlanReportJson(*report, &measured);
    } else {
      json << "{\"measured\": {\"wall_seconds\": " << measured.wall_seconds
           << ", \"generated_tokens\": " << measured.generated_tokens << "}}\n";
    }
    if (!json.flush()) {
      std::fprintf(stderr, "ringmoe run: cannot write %s\n", flags.report_json.c_str());
      return 1;
    }
  }
  return 0;
}

}  // namespace ringmoe::cli
