// The plan flags, defined once for `ringmoe run`, `ringmoe plan` and the benchmarks: each pins one choice of
// the ExecutionPlan (planner/execution_plan.h) or sets a budget; unset, the planner chooses. Spellings
// replaced in issue 16 (runtime/BATCH_FORMAT.md lists them): plan --batch -> --max-batch; run
// --max-step-tokens N ->
// --prefill-chunk (N - max batch); offload_bench --resident-layers -> --resident-moe-layers.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"
#include "planner/execution_plan.h"

namespace ringmoe {

struct PlanFlags {
  std::string device = "auto";             // gpu, cpu or auto
  std::string gpu_mem, cpu_mem, kv_cache;  // sizes ("6GiB"); empty = the planner's default
  std::string hardware;                    // hardware profile JSON; empty = this machine's (probed once)
  std::string probe_dir;  // where a first probe measures the disk; empty = the model's folder
  std::optional<int> max_batch, prefill_chunk, micro_batches, resident_moe_layers, layer_parts, ring_slots;
  std::optional<int> expert_tile_tokens;
  std::optional<double> kv_gpu_fraction;
  std::optional<int> gpus;  // --gpus N: plan for N GPUs of one server (ringmoe plan only, for now)
  std::string routed_copies = "auto";
  std::string expert_dtype = "auto";  // auto (the checkpoint's), bf16 or fp8
  std::string kv_dtype = "auto";      // auto (the compute type; bf16 on the GPU) or fp8
  bool cpu_prefill_attention = false;
  // --ssd-dir (repeatable, one per drive): the SSD tier's section files, striped over these directories.
  std::vector<std::string> ssd_dirs;
};

// Registers every plan flag on `app`, writing into `flags` (whose current values are the defaults shown).
void AddPlanFlags(CLI::App& app, PlanFlags* flags);

// The pinned choices (a partial plan) and the budgets the flags give. Errors name the flag.
absl::StatusOr<planner::PlanPins> PinsFromFlags(const PlanFlags& flags);
absl::StatusOr<planner::Budgets> BudgetsFromFlags(const PlanFlags& flags);
// Commands that execute a plan (ringmoe run, the benchmarks): the engine runs on one GPU, so --gpus above 1
// is refused (Unimplemented, naming the flag); `ringmoe plan --gpus N` plans for N.
absl::Status RefuseMultiGpuExecution(const PlanFlags& flags);

}  // namespace ringmoe
