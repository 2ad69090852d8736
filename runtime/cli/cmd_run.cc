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
#include "runtime/frontend/plan_flags.h"
#include "io/model_spec.h"
#include "runtime/frontend/progress.h"

namespace ringmoe::cli {
namespace {

struct RunFlags {
  std::string model, input, output, cpu_dtype = "auto", tokenizer, report_json;
  PlanFlags plan;
  int threads = 0;
  bool quiet = false, no_plan = false;
};

absl::StatusOr<ComputeType> ParseCpuDtype(const std::string& text) {
  if (text == "f32") return ComputeType::kF32;
  if (text == "bf16") return ComputeType::kBF16;
  if (text == "auto") return ComputeType::kAuto;
  return absl::InvalidArgumentError("--cpu-dtype must be auto, f32 or bf16");
}

// The plan of the job in `lines`: searched (with the report to print), or with --no-plan made of the pins
// and the defaults. Either way the engine runs exactly report->plan / *plan.
absl::Status PlanRun(const RunFlags& flags, ComputeType cpu_compute, const std::vector<BatchLine>& lines,
                     const Tokenizer* tokenizer, std::optional<PlanReport>* report,
                     planner::ExecutionPlan* plan) {
  absl::StatusOr<ModelSpec> spec = LoadModelSpec(flags.model);
  if (!spec.ok()) return spec.status();
  absl::StatusOr<planner::Workload> workload = WorkloadFromBatchLines(
      lines, tokenizer, "no tokenizer.json beside the model; pass --tokenizer", *spec, flags.input);
  if (!workload.ok()) return workload.status();
  absl::StatusOr<JobPlanOptions> options = JobPlanOptionsFromFlags(flags.model, flags.plan);
  if (!options.ok()) return options.status();
  options->what_ifs = false;
  options->cpu_compute = cpu_compute;
  if (!flags.no_plan) {
    absl::StatusOr<PlanReport> planned = PlanJob(*spec, *workload, *options);
    if (planned.ok()) {
      *plan = planned->plan;
      report->emplace(std::move(*planned));
      return absl::OkStatus();
    }
    std::fprintf(stderr, "ringmoe run: no plan searched (%s); running the defaults and the pinned flags\n",
                 std::string(planned.status().message()).c_str());
  }
  absl::StatusOr<planner::ExecutionPlan> fixed = PlanJobWithoutSearch(*spec, *workload, *options);
  if (!fixed.ok()) return fixed.status();
  *plan = *fixed;
  return absl::OkStatus();
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
  app.add_option("--threads", flags.threads, "CPU threads (0 = every core)")->capture_default_str();
  app.add_option("--cpu-dtype", flags.cpu_dtype, "CPU matmul type: auto, f32 or bf16")->capture_default_str();
  app.add_option("--tokenizer", flags.tokenizer, "tokenizer.json or folder (default: the model folder)");
  AddPlanFlags(app, &flags.plan);
  app.add_option("--report-json", flags.report_json, "write the plan and the measured figures as JSON");
  app.add_flag("--no-plan", flags.no_plan,
               "no search and no report: run the plan the pinned flags and the defaults make");
  app.add_flag("--quiet", flags.quiet, "no progress display");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error);
  }

  absl::StatusOr<ComputeType> cpu_compute = ParseCpuDtype(flags.cpu_dtype);
  if (!cpu_compute.ok()) {
    std::fprintf(stderr, "ringmoe run: %s\n", std::string(cpu_compute.status().message()).c_str());
    return 2;
  }
  absl::StatusOr<std::vector<BatchLine>> lines = ReadBatchFile(flags.input);
  if (!lines.ok()) {
    std::fprintf(stderr, "ringmoe run: %s\n", std::string(lines.status().message()).c_str());
    return 1;
  }
  // One tokenizer and one encoding of each prompt, for the plan's workload and the engine alike.
  absl::StatusOr<std::shared_ptr<const Tokenizer>> tokenizer = LoadJobTokenizer(flags.model, flags.tokenizer);
  if (!tokenizer.ok()) {
    std::fprintf(stderr, "ringmoe run: %s\n", std::string(tokenizer.status().message()).c_str());
    return 1;
  }
  if (*tokenizer != nullptr) TokenizePromptsOnce(&*lines, **tokenizer);
  // The plan: printed before the run; the engine runs exactly it.
  if (flags.plan.device == "auto") flags.plan.device = gpu::GpuAvailable() ? "gpu" : "cpu";
  std::optional<PlanReport> report;
  EngineOptions options;
  options.cpu_compute = *cpu_compute;
  options.threads = flags.threads;
  options.tokenizer = *tokenizer;
  if (absl::Status planned = PlanRun(flags, *cpu_compute, *lines, options.tokenizer.get(), &report, &options.plan);
      !planned.ok()) {
    std::fprintf(stderr, "ringmoe run: no plan: %s\n", std::string(planned.message()).c_str());
    return absl::IsInvalidArgument(planned) ? 2 : 1;
  }
  if (report) std::fputs(planner::FormatPlanReport(*report).c_str(), stderr);

  std::ofstream output(flags.output, std::ios::binary | std::ios::trunc);
  if (!output) {
    std::fprintf(stderr, "ringmoe run: cannot write %s\n", flags.output.c_str());
    return 1;
  }
  absl::StatusOr<Engine> engine = Engine::Open(flags.model, options);
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
      json << planner::PlanReportJson(*report, &measured, &engine->plan());
    } else {
      json << "{\"executed_plan\": " << planner::PlanToJson(engine->plan())
           << ",\n\"measured\": {\"wall_seconds\": " << measured.wall_seconds
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
