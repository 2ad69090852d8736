// ExecutionPlan search: the plan with the highest predicted end-to-end throughput, over sequences in flight,
// micro-batches, prefill chunk size, routed experts resident on the GPU and the GPU share of the KV cache.
// Any choice can be pinned by the user (PlanPins); the rest are searched around it.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "planner/perf_model.h"

namespace ringmoe::planner {

struct SearchResult {
  Prediction best;
  int plans_evaluated = 0;
  int plans_feasible = 0;
};

// The best plan on `device`. Fails with the reason of the last rejected plan when none fits.
absl::StatusOr<SearchResult> SearchPlan(const PerfModel& model, PlanDevice device,
                                        const PlanPins& pins = {});

// What a change to the machine would buy: the best plan again with more memory or a faster link.
struct WhatIf {
  std::string change;  // "+1 GiB GPU memory", ...
  bool feasible = false;
  double total_tokens_per_s = 0;
  double gain_percent = 0;  // Against the base plan's throughput.
  std::string bottleneck;
  std::string note;  // Why not, when infeasible.
};
std::vector<WhatIf> ExploreWhatIfs(const HardwareProfile& profile, const ModelCosts& costs,
                                   const Workload& workload, const Budgets& budgets, PlanDevice device,
                                   const PlanPins& pins, double base_total_tokens_per_s);

}  // namespace ringmoe::planner
