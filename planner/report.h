// PlanReport: the table `ringmoe plan` prints and `ringmoe run` prints before a job, and after it the
// measured per-stage times and throughput beside the prediction. Also its JSON form (--report-json).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "planner/hardware_profile.h"
#include "planner/model_costs.h"
#include "planner/perf_model.h"
#include "planner/plan_search.h"
#include "io/model_spec.h"

namespace ringmoe {

namespace planner {

// Everything a plan is made from.
struct PlanInputs {
  ModelSpec spec;
  std::string model_name;   // Shown in the report (the model folder or config path).
  int layers_override = 0;  // > 0: plan only the first that many layers.
  HardwareProfile profile;
  std::string profile_path;  // Where the profile came from, for the report.
  Workload workload;
  Budgets requested_budgets;  // Zero fields take defaults (ResolveBudgets).
  PlanDevice device = PlanDevice::kGpu;
  PlanPins pins;
  bool explore_what_ifs = true;  // Also price +1 GiB GPU/CPU memory and faster links (a few more searches).
};

// What a finished run measured; the engine fills it and calls FormatMeasuredBesidePredicted.
struct MeasuredRun {
  double wall_seconds = 0;
  int64_t requests = 0;
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  int64_t steps = 0;
  // Busy seconds per stage over the run, keyed by the kStage* names in planner/perf_model.h. Stages the
  // engine does not time are left out (and shown as "-").
  std::map<std::string, double> stage_seconds;
  int64_t peak_gpu_bytes = 0;
  int64_t peak_cpu_bytes = 0;
  int64_t peak_pinned_bytes = 0;
};

}  // namespace planner

// Declared (forward) in ringmoe/engine.h. Plain data.
struct PlanReport {
  std::string model_name;
  std::string model_type;
  int layers_planned = 0;
  int layers_total = 0;
  planner::HardwareProfile profile;
  std::string profile_path;
  planner::Workload workload;
  planner::Budgets budgets;  // Resolved.
  planner::PlanDevice device = planner::PlanDevice::kGpu;
  planner::ModelCosts costs;
  planner::Prediction prediction;               // The search's best, pins applied (its plan as searched).
  // What the engine runs: prediction.plan at the sequences in flight the job and the KV cache allow
  // (prediction.effective_batch). `ringmoe run` hands exactly this to the engine.
  planner::ExecutionPlan plan;
  std::optional<planner::Prediction> unpinned;  // The search's own best, when the user pinned choices.
  planner::PlanPins pins;
  int plans_evaluated = 0;
  std::vector<planner::WhatIf> what_ifs;
  std::vector<std::string> notes;
};

namespace planner {

// Searches the plan and prices the what-ifs. Errors name the limit that no plan could meet.
absl::StatusOr<PlanReport> BuildPlanReport(const PlanInputs& inputs);

// The readable table.
std::string FormatPlanReport(const PlanReport& report);
// Measured per-stage seconds and throughput beside the prediction, with the error in percent.
std::string FormatMeasuredBesidePredicted(const PlanReport& report, const MeasuredRun& measured);
// The report as JSON; with `measured`, the measurements and errors too.
// `executed`: the plan the engine reports it ran (recorded as "executed_plan").
std::string PlanReportJson(const PlanReport& report, const MeasuredRun* measured = nullptr,
                           const ExecutionPlan* executed = nullptr);
// The plan the engine runs for `prediction`: its plan at the effective batch.
ExecutionPlan RunnablePlan(const Prediction& prediction);

// Error of a prediction against a measurement, in percent of the measurement (0 when nothing was measured).
double ErrorPercent(double predicted, double measured);

}  // namespace planner
}  // namespace ringmoe
