// Planning a batch job: the workload of a batch file, the plan report (`ringmoe plan` prints it, `ringmoe
// run` prints it and runs it), the plan --no-plan runs instead, and the measured figures to set beside it.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "io/model_spec.h"
#include "planner/planner.h"
#include "ringmoe/engine.h"
#include "ringmoe/tokenizer.h"
#include "runtime/frontend/batch_io.h"
#include "runtime/frontend/plan_flags.h"

namespace ringmoe {

// A job's workload counted one line at a time, so that a streamed input is never held (ringmoe run and
// ringmoe plan --input): the same figures as WorkloadFromBatchLines. Thread-compatible.
class WorkloadCounter {
 public:
  // `tokenizer` (may be null) counts text prompts; `tokenizer_problem` says why there is none.
  WorkloadCounter(const Tokenizer* tokenizer, std::string tokenizer_problem);
  // A valid line's prompt length and max_tokens, once per choice (n sequences in flight: an upper bound,
  // since the other choices share the prompt's full blocks); a bad line is counted as left out.
  void Add(const BatchLine& line);
  // The valid lines added (requests, whatever their n).
  int64_t requests() const { return requests_; }
  // InvalidArgument naming `source` when no valid line was added.
  absl::StatusOr<planner::Workload> Finish(const ModelSpec& spec, const std::string& source) const;

 private:
  const Tokenizer* tokenizer_;
  std::string tokenizer_problem_;
  int64_t requests_ = 0, sequences_ = 0, bad_ = 0, estimated_ = 0, exact_text_ = 0;
  int64_t prompt_sum_ = 0, gen_sum_ = 0, longest_ = 0;
};

// Prompt lengths of the valid lines: token-id prompts exactly, text prompts through `tokenizer` when given,
// else ceil(bytes / 4) (the note says which, and why: `tokenizer_problem`). Generation lengths are
// max_tokens.
absl::StatusOr<planner::Workload> WorkloadFromBatchLines(const std::vector<BatchLine>& lines,
                                                         const Tokenizer* tokenizer,
                                                         const std::string& tokenizer_problem,
                                                         const ModelSpec& spec, const std::string& source);

// The job's tokenizer, loaded once for planning and the engine alike: `tokenizer` (a file or folder) when
// given, else the model folder's tokenizer.json; null when there is neither (prompts must then be token ids).
absl::StatusOr<std::shared_ptr<const Tokenizer>> LoadJobTokenizer(const std::string& model,
                                                                  const std::string& tokenizer);

struct JobPlanOptions {
  std::string model;      // folder (or config.json): names the model in the report, and the SSD to probe
  std::string hardware;   // profile JSON; empty = this machine's cache, probed once when missing
  std::string probe_dir;  // the folder whose disk that probe measures; empty = the model's folder
  std::string device = "auto";                   // gpu, cpu or auto (gpu when the profile has one)
  ComputeType cpu_compute = ComputeType::kAuto;  // a CPU plan's KV cache takes the engine's compute type
  planner::Budgets budgets;                      // zero fields: defaults
  planner::PlanPins pins;
  int layers = 0;                     // > 0: plan only the first that many layers
  std::vector<std::string> ssd_dirs;  // --ssd-dir: the SSD tier is priced at the sum of these drives' rates
  bool what_ifs = true;
};

// The options the shared plan flags give (runtime/frontend/plan_flags.h). Errors name the flag.
absl::StatusOr<JobPlanOptions> JobPlanOptionsFromFlags(const std::string& model, const PlanFlags& flags);

// Loads or probes the hardware profile, picks the device and searches the plan; report.plan is what the
// engine runs.
absl::StatusOr<PlanReport> PlanJob(const ModelSpec& spec, const planner::Workload& workload,
                                   const JobPlanOptions& options);

// --no-plan: the plan the pins and the defaults make (planner::DefaultPlan), with no search and no report.
// On the GPU the routed experts of as many MoE layers as fit the GPU budget stay resident unless pinned. Uses
// the hardware profile when one is given or cached, else this machine's memory sizes (no probe).
absl::StatusOr<planner::ExecutionPlan> PlanJobWithoutSearch(const ModelSpec& spec,
                                                            const planner::Workload& workload,
                                                            const JobPlanOptions& options);

// What a finished run measured, in the planner's terms.
planner::MeasuredRun MeasuredFrom(const RunStats& stats, int64_t requests, bool gpu);

}  // namespace ringmoe
