// Planning a batch job: the workload of a batch file, the plan report (`ringmoe plan` prints it, `ringmoe
// run` prints it and runs it), the engine options a plan implies, and the measured figures to set beside it.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "planner/planner.h"
#include "ringmoe/engine.h"
#include "ringmoe/tokenizer.h"
#include "runtime/frontend/batch_io.h"
#include "io/model_spec.h"

namespace ringmoe {

// Prompt lengths of the valid lines: token-id prompts exactly, text prompts through `tokenizer` when given,
// else ceil(bytes / 4) (the note says which, and why: `tokenizer_problem`). Generation lengths are
// max_tokens.
absl::StatusOr<planner::Workload> WorkloadFromBatchLines(const std::vector<BatchLine>& lines,
                                                         const Tokenizer* tokenizer,
                                                         const std::string& tokenizer_problem,
                                                         const ModelSpec& spec, const std::string& source);

// The same, finding the tokenizer itself: `tokenizer` (a file or folder) when given, else the model folder's
// tokenizer.json when there is one.
absl::StatusOr<planner::Workload> WorkloadOfJob(const std::vector<BatchLine>& lines, const std::string& model,
                                                const std::string& tokenizer, const ModelSpec& spec,
                                                const std::string& source);

// --routed-copies: "auto" (the planner decides), "on" or "off" (pinned).
absl::StatusOr<std::optional<bool>> ParseRoutedCopies(std::string_view text);

// --gpu-mem / --cpu-mem ("6GiB", ...; empty = the default) into `budgets`; sizes must be positive.
absl::Status ParseBudgets(const std::string& gpu_mem, const std::string& cpu_mem, planner::Budgets* budgets);

struct JobPlanOptions {
  std::string model;     // folder (or config.json): names the model in the report, and the SSD to probe
  std::string hardware;  // profile JSON; empty = this machine's cache, probed once when missing
  std::string device = "auto";  // gpu, cpu or auto (gpu when the profile has one)
  planner::Budgets budgets;     // zero fields: defaults
  planner::PlanOverrides overrides;
  int layers = 0;  // > 0: plan only the first that many layers
  bool what_ifs = true;
};

// Loads or probes the hardware profile, picks the device and searches the plan.
absl::StatusOr<PlanReport> PlanJob(const ModelSpec& spec, const planner::Workload& workload,
                                   const JobPlanOptions& options);

// The engine settings the plan chose (sequences in flight, step size, micro-batches, ring, residency).
void ApplyPlan(const PlanReport& report, EngineOptions* options);

// What a finished run measured, in the planner's terms.
planner::MeasuredRun MeasuredFrom(const RunStats& stats, int64_t requests, bool gpu);

}  // namespace ringmoe
