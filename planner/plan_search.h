// Plan search: the plan with the highest predicted end-to-end throughput, over sequences in flight,
// micro-batches, prefill chunk size, routed experts resident on the GPU and the GPU share of the KV cache.
// Any choice can be pinned by the user (PlanOverrides); the rest are searched around it.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "planner/perf_model.h"

namespace ringmoe::planner {

struct PlanOverrides {
  std::optional<int> batch;
  std::optional<int> micro_batches;
  std::optional<int> prefill_chunk;
  std::optional<int> max_resident_moe_layers;
  std::optional<double> kv_gpu_fraction;
  std::optional<int> layer_parts;    // Ring sections per streamed layer (the ring then has parts + 1 slots).
  std::optional<int> ring_sections;  // Ring slots (at least parts + 1).
  std::optional<bool> routed_expert_copies;
  bool any() const {
    return batch || micro_batches || prefill_chunk || max_resident_moe_layers || kv_gpu_fraction ||
           layer_parts || ring_sections || routed_expert_copies;
  }
};

struct SearchResult {
  Prediction best;
  int plans_evaluated = 0;
  int plans_feasible = 0;
};

// The best plan on `device`. Fails with the reason of the last rejected plan when none fits.
absl::StatusOr<SearchResult> SearchPlan(const PerfModel& model, PlanDevice device,
                                        const PlanOverrides& overrides = {});

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
                                   const PlanOverrides& overrides, double base_total_tokens_per_s);

}  // namespace ringmoe::planner
