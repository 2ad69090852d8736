// What tests that run a golden model through the engine share: a golden case's requests
// (tests/data/<case>/golden.json, tests/golden/make_models.py: one per recorded prompt, ids "0", "1", ...)
// and the engine options of a small streamed GPU plan. Threading: plain functions.
#pragma once

#include <fstream>
#include <string>
#include <vector>

#include "io/model_spec.h"
#include "nlohmann/json.hpp"
#include "ringmoe/engine.h"

namespace ringmoe::testing {

inline nlohmann::json ReadGolden(const std::string& case_dir) {
  return nlohmann::json::parse(std::ifstream(case_dir + "/golden.json"));
}

// The GPU path over a small golden model with every MoE layer streamed through a 2-slot ring in two
// micro-batches: 4 sequences in flight, steps of 44 prefill tokens (queueing, chunked prefill, mixed steps),
// a 2 GiB cap.
inline EngineOptions StreamedGpuOptions(const ModelSpec& spec) {
  EngineOptions options;
  options.threads = 4;
  options.plan = planner::DefaultPlan(planner::PlanDevice::kGpu);
  options.plan.batch = 4;
  options.plan.prefill_chunk = 44;
  options.plan.budgets.gpu_bytes = int64_t{2} << 30;
  options.plan.expert_tiers = planner::SpreadResidentLayers(spec, 0);
  options.plan.micro_batches = 2;
  return options;
}

// max_tokens 0: the golden's own max_new_tokens.
inline std::vector<Request> GoldenRequests(const nlohmann::json& golden, int max_tokens = 0,
                                           bool logprobs = false) {
  std::vector<Request> requests;
  for (const auto& prompt : golden["prompts"]) {
    Request& request = requests.emplace_back();
    request.id = std::to_string(requests.size() - 1);
    request.prompt_ids = prompt["prompt_ids"].get<std::vector<int32_t>>();
    request.max_tokens = max_tokens > 0 ? max_tokens : golden["max_new_tokens"].get<int>();
    request.logprobs = logprobs;
  }
  return requests;
}

}  // namespace ringmoe::testing
