// ringmoe plan: the predicted-throughput report for a job on this machine (or on a profiled one): memory per
// tier, time per stage per step and the bottleneck, prefill/decode/end-to-end tokens/s, the job's duration,
// and what more memory or a faster link would buy.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "planner/planner.h"
#include "ringmoe/engine.h"
#include "ringmoe/tokenizer.h"
#include "runtime/frontend/batch_io.h"
#include "runtime/frontend/byte_size.h"
#include "runtime/cli/commands.h"
#include "runtime/frontend/job_plan.h"
#include "io/model_spec.h"

namespace ringmoe::cli {
namespace {

struct PlanFlags {
  std::string model, input, gpu_mem, cpu_mem, device = "auto", hardware, report_json, tokenizer;
  int prompt_len = 0, gen_len = 0, layers = 0;
  int64_t num_requests = 0;
  std::optional<int> batch, micro_batches, prefill_chunk, resident_moe_layers, layer_parts, ring_slots;
  std::optional<double> kv_gpu_fraction;
  std::string routed_copies = "auto";
  bool no_what_if = false;
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
  std::fprintf(stderr, "ringmoe plan: %s\n", message.c_str());
  return code;
}

}  // namespace

int PlanCommand(int argc, char** argv) {
  CLI::App app{
      "Predict a batch job's throughput and show the plan: memory per tier, time per stage, the "
      "bottleneck, and what more memory would buy."};
  PlanFlags flags;
  app.add_option("--model", flags.model, "model folder (config.json), or a config.json")->required();
  app.add_option("--input", flags.input, "OpenAI Batch JSONL requests to plan for");
  app.add_option("--prompt-len", flags.prompt_len, "prompt tokens per request (without --input)");
  app.add_option("--gen-len", flags.gen_len, "generated tokens per request (without --input)");
  app.add_option("--num-requests", flags.num_requests, "requests in the job (without --input)");
  app.add_option("--gpu-mem", flags.gpu_mem, "GPU memory budget: 6GiB, 512MiB, 12G or bytes");
  app.add_option("--cpu-mem", flags.cpu_mem, "host memory budget: 6GiB, 512MiB, 12G or bytes");
  app.add_option("--device", flags.device, "gpu, cpu or auto (gpu when the profile has one)")
      ->capture_default_str();
  app.add_option("--hardware", flags.hardware, "hardware profile JSON (default: this machine's probe cache)");
  app.add_option("--report-json", flags.report_json, "also write the report as JSON here");
  app.add_option("--layers", flags.layers, "plan only the first N layers of the model");
  app.add_option("--tokenizer", flags.tokenizer, "tokenizer.json or folder, to count text prompts exactly");
  app.add_option("--batch", flags.batch, "pin the sequences in flight");
  app.add_option("--micro-batches", flags.micro_batches, "pin the micro-batches per step");
  app.add_option("--prefill-chunk", flags.prefill_chunk, "pin the prefill tokens per step");
  app.add_option("--kv-gpu-fraction", flags.kv_gpu_fraction,
                 "pin the share of the KV cache on the GPU (0..1)");
  app.add_option("--resident-moe-layers", flags.resident_moe_layers,
                 "pin the most MoE layers whose routed experts stay on the GPU");
  app.add_option("--layer-parts", flags.layer_parts,
                 "pin the ring sections each streamed layer is cut into (1, 2, 4, ...)");
  app.add_option("--ring-slots", flags.ring_slots, "pin the GPU ring's slots (at least layer parts + 1)");
  app.add_option("--routed-copies", flags.routed_copies,
                 "copy only the routed experts of streamed layers: auto (the plan's choice), on or off")
      ->capture_default_str();
  app.add_flag("--no-what-if", flags.no_what_if, "skip the +1 GiB / faster-link estimates");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error) == 0 ? 0 : 2;
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
    absl::StatusOr<std::vector<BatchLine>> lines = ReadBatchFile(flags.input);
    if (!lines.ok()) return Fail(std::string(lines.status().message()));
    absl::StatusOr<planner::Workload> from_file =
        WorkloadOfJob(*lines, flags.model, flags.tokenizer, *spec, flags.input);
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
  JobPlanOptions options;
  options.model = flags.model;
  options.hardware = flags.hardware;
  options.device = flags.device;
  options.layers = flags.layers;
  options.what_ifs = !flags.no_what_if;
  if (absl::Status budgets = ParseBudgets(flags.gpu_mem, flags.cpu_mem, &options.budgets); !budgets.ok()) {
    return Fail(std::string(budgets.message()), 2);
  }
  options.overrides.batch = flags.batch;
  options.overrides.micro_batches = flags.micro_batches;
  options.overrides.prefill_chunk = flags.prefill_chunk;
  options.overrides.max_resident_moe_layers = flags.resident_moe_layers;
  options.overrides.kv_gpu_fraction = flags.kv_gpu_fraction;
  options.overrides.layer_parts = flags.layer_parts;
  options.overrides.ring_sections = flags.ring_slots;
  absl::StatusOr<std::optional<bool>> routed = ParseRoutedCopies(flags.routed_copies);
  if (!routed.ok()) return Fail(std::string(routed.status().message()), 2);
  options.overrides.routed_expert_copies = *routed;
  absl::StatusOr<PlanReport> report = PlanJob(*spec, workload, options);
  if (!report.ok()) return Fail(std::string(report.status().message()));
  std::fputs(planner::FormatPlanReport(*report).c_str(), stdout);
  if (!flags.report_json.empty()) {
    std::ofstream out(flags.report_json, std::ios::binary | std::ios::trunc);
    out << planner::PlanReportJson(*report);
    if (!out.flush()) return Fail(flags.report_json + ": cannot write the JSON report");
  }
  return 0;
}

}  // namespace ringmoe::cli
