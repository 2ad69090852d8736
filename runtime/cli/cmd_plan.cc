// ringmoe plan: the predicted-throughput report for a job on this machine (or on a profiled one): memory per
// tier, time per stage per step and the bottleneck, prefill/decode/end-to-end tokens/s, the job's duration,
// and what more memory or a faster link would buy.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "io/model_spec.h"
#include "planner/planner.h"
#include "ringmoe/engine.h"
#include "ringmoe/tokenizer.h"
#include "runtime/cli/commands.h"
#include "runtime/frontend/batch_io.h"
#include "runtime/frontend/batch_reader.h"
#include "runtime/frontend/byte_size.h"
#include "runtime/frontend/chat_lines.h"
#include "runtime/frontend/generation_defaults.h"
#include "runtime/frontend/job_lines.h"
#include "runtime/frontend/job_plan.h"
#include "runtime/frontend/plan_flags.h"
#include "runtime/log/log.h"
#include "runtime/log/log_flags.h"

namespace ringmoe::cli {
namespace {

struct PlanCommandFlags {
  std::string model, input, report_json, tokenizer, cpu_dtype = "auto";
  PlanFlags plan;
  int prompt_len = 0, gen_len = 0, layers = 0;
  int64_t num_requests = 0;
  bool no_what_if = false;
  log::LogFlags log;
};

// --model names a folder with config.json, or a config.json itself.
absl::StatusOr<ModelSpec> LoadSpec(const std::string& model) {
  if (std::filesystem::is_regular_file(model)) {
    std::ifstream in(model, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    if (!in.good() && !in.eof()) return absl::NotFoundError(model + ": cannot read");
    return ParseModelSpec(text.str(), model);
  }
  return LoadModelSpec(model);
}

int Fail(const std::string& message, int code = 1) {
  log::Error("ringmoe plan: {}", message);
  return code;
}

// The report for the job `flags` describe, once CLI11 has filled them.
int PlanJobFromFlags(const PlanCommandFlags& flags) {
  if (absl::Status logging = log::ApplyLogFlags(flags.log); !logging.ok()) {
    return Fail(std::string(logging.message()), absl::IsInvalidArgument(logging) ? 2 : 1);
  }

  absl::StatusOr<ModelSpec> spec = LoadSpec(flags.model);
  if (!spec.ok()) return Fail(std::string(spec.status().message()));
  if (flags.layers < 0 || flags.layers > spec->num_layers) {
    return Fail(absl::StrCat("--layers must lie in 1..", spec->num_layers), 2);
  }

  planner::Workload workload;
  if (!flags.input.empty()) {
    if (flags.prompt_len > 0 || flags.gen_len > 0 || flags.num_requests > 0) {
      return Fail("give either --input or --prompt-len/--gen-len/--num-requests, not both", 2);
    }
    // Streamed, as `ringmoe run` reads it: a scan for repeated custom_ids, then one pass that counts each
    // line (chat lines rendered through their template, text prompts tokenised) and keeps none.
    absl::StatusOr<CustomIdScan> scan = ScanCustomIds(flags.input);
    if (!scan.ok()) return Fail(std::string(scan.status().message()));
    absl::StatusOr<std::shared_ptr<const Tokenizer>> tokenizer =
        LoadJobTokenizer(flags.model, flags.tokenizer);
    ChatTemplateOnce chat_template(flags.tokenizer.empty() ? flags.model : flags.tokenizer, "");
    JobLineOptions line_options;
    line_options.input = flags.input;
    line_options.lenient = true;  // the plan counts a line whatever unknown fields it carries
    line_options.tokenizer = tokenizer.ok() ? tokenizer->get() : nullptr;
    line_options.chat_template = &chat_template;
    absl::StatusOr<GenerationDefaults> defaults = LoadGenerationDefaults(flags.model);
    if (!defaults.ok()) return Fail(std::string(defaults.status().message()));
    line_options.defaults = &*defaults;
    absl::StatusOr<std::unique_ptr<JobLines>> lines = JobLines::Open(line_options, *scan);
    if (!lines.ok()) return Fail(std::string(lines.status().message()));
    WorkloadCounter counter(tokenizer.ok() ? tokenizer->get() : nullptr,
                            tokenizer.ok() ? "no tokenizer.json beside the model; pass --tokenizer"
                                           : std::string(tokenizer.status().message()));
    BatchLine line;
    while ((*lines)->Next(&line)) counter.Add(line);
    if (!(*lines)->status().ok()) return Fail(std::string((*lines)->status().message()));
    absl::StatusOr<planner::Workload> from_file = counter.Finish(*spec, flags.input);
    if (!from_file.ok()) return Fail(std::string(from_file.status().message()));
    workload = *from_file;
  } else {
    if (flags.prompt_len < 1 || flags.gen_len < 0 || flags.num_requests < 1) {
      return Fail("need --input FILE, or --prompt-len P (>= 1) --gen-len G --num-requests N (>= 1)", 2);
    }
    workload.num_requests = flags.num_requests;
    workload.mean_prompt_tokens = flags.prompt_len;
    workload.mean_gen_tokens = flags.gen_len;
    workload.max_context_tokens = flags.prompt_len + flags.gen_len;
    if (workload.max_context_tokens > spec->max_position_embeddings) {
      return Fail(absl::StrCat("prompt + generation (", workload.max_context_tokens,
                               " tokens) exceeds the model's max_position_embeddings (",
                               spec->max_position_embeddings, ")"),
                  2);
    }
  }
  absl::StatusOr<JobPlanOptions> options = JobPlanOptionsFromFlags(flags.model, flags.plan);
  if (!options.ok()) return Fail(std::string(options.status().message()), 2);
  options->layers = flags.layers;
  options->what_ifs = !flags.no_what_if;
  if (flags.cpu_dtype == "f32" || flags.cpu_dtype == "bf16") {
    options->cpu_compute = flags.cpu_dtype == "f32" ? ComputeType::kF32 : ComputeType::kBF16;
  } else if (flags.cpu_dtype != "auto") {
    return Fail("--cpu-dtype must be auto, f32 or bf16", 2);
  }
  absl::StatusOr<PlanReport> report = PlanJob(*spec, workload, *options);
  if (!report.ok()) return Fail(std::string(report.status().message()));
  std::fputs(planner::FormatPlanReport(*report).c_str(), stdout);
  if (!flags.report_json.empty()) {
    std::ofstream out(flags.report_json, std::ios::binary | std::ios::trunc);
    out << planner::PlanReportJson(*report);
    if (!out.flush()) return Fail(flags.report_json + ": cannot write the JSON report");
  }
  return 0;
}

}  // namespace

Subcommand AddPlanCommand(CLI::App& ringmoe) {
  CLI::App& app = *ringmoe.add_subcommand(
      "plan",
      "Predict a batch job's throughput and show the plan: memory per tier, time per stage, the "
      "bottleneck, and what more memory would buy.");
  auto owned_flags = std::make_shared<PlanCommandFlags>();  // filled by the parse, read by the run below
  PlanCommandFlags& flags = *owned_flags;
  app.add_option("--model", flags.model, "model folder (config.json), or a config.json")->required();
  app.add_option("--input", flags.input, "OpenAI Batch JSONL requests to plan for");
  app.add_option("--prompt-len", flags.prompt_len, "prompt tokens per request (without --input)");
  app.add_option("--gen-len", flags.gen_len, "generated tokens per request (without --input)");
  app.add_option("--num-requests", flags.num_requests, "requests in the job (without --input)");
  app.add_option("--report-json", flags.report_json, "also write the report as JSON here");
  app.add_option("--layers", flags.layers, "plan only the first N layers of the model");
  app.add_option("--tokenizer", flags.tokenizer, "tokenizer.json or folder, to count text prompts exactly");
  app.add_option("--cpu-dtype", flags.cpu_dtype, "CPU matmul type the run will use: auto, f32 or bf16")
      ->capture_default_str();
  AddPlanFlags(app, &flags.plan);
  app.add_flag("--no-what-if", flags.no_what_if, "skip the +1 GiB / faster-link estimates");
  log::AddLogFlags(app, &flags.log);
  return {&app, [owned_flags](const std::vector<std::string>&) { return PlanJobFromFlags(*owned_flags); }};
}

}  // namespace ringmoe::cli
