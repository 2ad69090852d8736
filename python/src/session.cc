#include "python/src/session.h"

#include <algorithm>
#include <chrono>
#include <sstream>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "io/model_spec.h"
#include "nlohmann/json.hpp"
#include "planner/planner.h"
#include "ringmoe/tokenizer.h"
#include "runtime/frontend/batch_output.h"
#include "runtime/frontend/batch_reader.h"
#include "runtime/frontend/generation_defaults.h"
#include "runtime/frontend/job_lines.h"
#include "runtime/frontend/job_plan.h"

namespace ringmoe::python {
namespace {

absl::StatusOr<ComputeType> ParseCpuDtype(const std::string& text) {
  if (text == "f32") return ComputeType::kF32;
  if (text == "bf16") return ComputeType::kBF16;
  if (text == "auto") return ComputeType::kAuto;
  return absl::InvalidArgumentError(absl::StrCat("cpu_dtype '", text, "': expected auto, f32 or bf16"));
}

// The request lines as a batch file would hold them: line N is request_lines[N - 1] (Python's list index
// plus one), duplicates of a custom_id marked on the later line.
absl::StatusOr<std::vector<BatchLine>> ParseRequestLines(const std::vector<std::string>& request_lines) {
  std::string text;
  for (const std::string& line : request_lines) {
    if (line.find('\n') != std::string::npos) {
      return absl::InvalidArgumentError("a request's JSON text may not hold a newline");
    }
    absl::StrAppend(&text, line, "\n");
  }
  std::istringstream in(text);
  return ReadBatchFile(in, "requests");
}

// Every line valid, else InvalidArgument with the first few problems.
absl::Status CheckAllValid(const std::vector<BatchLine>& lines) {
  std::string problems;
  int count = 0;
  for (const BatchLine& line : lines) {
    if (line.request.ok()) continue;
    if (++count <= 3)
      absl::StrAppend(&problems, problems.empty() ? "" : "; ", line.request.status().message());
  }
  if (count == 0) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(count, " bad request", count == 1 ? "" : "s",
                                                 " (line N is requests[N-1]): ", problems,
                                                 count > 3 ? "; ..." : ""));
}

// The workload a plan is made for when the caller names no requests: a few hundred requests of 512 prompt
// and 512 generated tokens (capped at the model's context), so the KV cache holds a useful batch.
planner::Workload NominalWorkload(const ModelSpec& spec) {
  constexpr int kRequests = 256, kPromptTokens = 512, kGenTokens = 512;
  return planner::MakeWorkload(std::vector<int64_t>(kRequests, kPromptTokens),
                               std::vector<int64_t>(kRequests, kGenTokens), spec.max_position_embeddings,
                               "nominal workload (Engine.open without plan_for)");
}

std::string RunId() {
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(now).count());
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// EngineSession

EngineSession::EngineSession(std::string model_dir, OpenOptions options, Engine engine)
    : model_dir_(std::move(model_dir)), options_(std::move(options)), engine_(std::move(engine)) {}

EngineSession::~EngineSession() = default;

absl::StatusOr<std::unique_ptr<EngineSession>> EngineSession::Open(const std::string& model_dir,
                                                                   OpenOptions options) {
  absl::StatusOr<ComputeType> cpu_compute = ParseCpuDtype(options.cpu_dtype);
  if (!cpu_compute.ok()) return cpu_compute.status();
  if (options.threads < 0) return absl::InvalidArgumentError("threads must be >= 0 (0: every core)");
  absl::StatusOr<ModelSpec> spec = LoadModelSpec(model_dir);
  if (!spec.ok()) return spec.status();
  absl::StatusOr<std::shared_ptr<const Tokenizer>> tokenizer = LoadJobTokenizer(model_dir, options.tokenizer);
  if (!tokenizer.ok()) return tokenizer.status();
  absl::StatusOr<JobPlanOptions> plan_options = JobPlanOptionsFromFlags(model_dir, options.plan);
  if (!plan_options.ok()) return plan_options.status();
  plan_options->what_ifs = false;
  plan_options->cpu_compute = *cpu_compute;

  EngineOptions engine_options;
  engine_options.cpu_compute = *cpu_compute;
  engine_options.threads = options.threads;
  engine_options.tokenizer = *tokenizer;
  if (!options.plan_for.empty()) {
    absl::StatusOr<std::vector<BatchLine>> lines = ParseRequestLines(options.plan_for);
    if (!lines.ok()) return lines.status();
    if (absl::Status valid = CheckAllValid(*lines); !valid.ok()) return valid;
    absl::StatusOr<planner::Workload> workload = WorkloadFromBatchLines(
        *lines, tokenizer->get(), "no tokenizer.json beside the model; pass tokenizer=", *spec, "plan_for");
    if (!workload.ok()) return workload.status();
    absl::StatusOr<PlanReport> report = PlanJob(*spec, *workload, *plan_options);
    if (!report.ok()) return report.status();
    engine_options.plan = report->plan;
  } else {
    absl::StatusOr<planner::ExecutionPlan> plan =
        PlanJobWithoutSearch(*spec, NominalWorkload(*spec), *plan_options);
    if (!plan.ok()) return plan.status();
    engine_options.plan = *plan;
  }
  absl::StatusOr<Engine> engine = Engine::Open(model_dir, engine_options);
  if (!engine.ok()) return engine.status();
  return std::unique_ptr<EngineSession>(new EngineSession(model_dir, std::move(options), std::move(*engine)));
}

absl::StatusOr<std::pair<std::string, std::string>> EngineSession::Plan(
    const std::vector<std::string>& request_lines) const {
  if (request_lines.empty()) return absl::InvalidArgumentError("plan needs at least one request");
  absl::StatusOr<std::vector<BatchLine>> lines = ParseRequestLines(request_lines);
  if (!lines.ok()) return lines.status();
  if (absl::Status valid = CheckAllValid(*lines); !valid.ok()) return valid;
  absl::StatusOr<ModelSpec> spec = LoadModelSpec(model_dir_);
  if (!spec.ok()) return spec.status();
  absl::StatusOr<planner::Workload> workload = WorkloadFromBatchLines(
      *lines, engine_.tokenizer(), "no tokenizer.json beside the model; pass tokenizer=", *spec, "requests");
  if (!workload.ok()) return workload.status();
  absl::StatusOr<JobPlanOptions> plan_options = JobPlanOptionsFromFlags(model_dir_, options_.plan);
  if (!plan_options.ok()) return plan_options.status();
  absl::StatusOr<ComputeType> cpu_compute = ParseCpuDtype(options_.cpu_dtype);
  if (!cpu_compute.ok()) return cpu_compute.status();
  plan_options->cpu_compute = *cpu_compute;
  absl::StatusOr<PlanReport> report = PlanJob(*spec, *workload, *plan_options);
  if (!report.ok()) return report.status();
  return std::make_pair(planner::PlanReportJson(*report, nullptr, &engine_.plan()),
                        planner::FormatPlanReport(*report));
}

bool EngineSession::TryBegin() {
  bool expected = false;
  if (!busy_.compare_exchange_strong(expected, true)) return false;
  std::lock_guard<std::mutex> lock(cancel_mutex_);
  cancel_open_ = true;
  return true;
}

void EngineSession::End() {
  bool cancel_sent;
  {
    std::lock_guard<std::mutex> lock(cancel_mutex_);
    cancel_open_ = false;
    cancel_sent = cancel_sent_;
    cancel_sent_ = false;
  }
  // A Cancel that reached the engine after its Generate returned (or when the job failed before running one)
  // would still be pending and stop the next job at once: an empty Generate consumes it, since Generate
  // clears the engine's cancel request as it returns.
  if (cancel_sent) (void)engine_.Generate({}, nullptr, nullptr);
  busy_.store(false);
}

void EngineSession::Cancel(double grace_seconds) {
  // Engine::Cancel with nothing running would cancel the next Generate to start: only a running job is asked.
  // From TryBegin to End, a Cancel is this job's: one made before its Generate starts is honoured by it.
  std::lock_guard<std::mutex> lock(cancel_mutex_);
  if (!cancel_open_) return;
  engine_.Cancel(grace_seconds);
  cancel_sent_ = true;
}

absl::StatusOr<std::unique_ptr<GenerateJob>> EngineSession::Start(
    const std::vector<std::string>& request_lines) {
  absl::StatusOr<std::vector<BatchLine>> lines = ParseRequestLines(request_lines);
  if (!lines.ok()) return lines.status();
  if (absl::Status valid = CheckAllValid(*lines); !valid.ok()) return valid;
  absl::StatusOr<GenerationDefaults> defaults = LoadGenerationDefaults(model_dir_);
  if (!defaults.ok()) return defaults.status();
  ApplyGenerationDefaults(*defaults, &*lines);
  std::vector<Request> requests;
  requests.reserve(lines->size());
  for (const BatchLine& line : *lines) requests.push_back(*line.request);
  if (!TryBegin()) {
    return absl::FailedPreconditionError("this engine is already generating: one job at a time per engine");
  }
  std::unique_ptr<GenerateJob> job(new GenerateJob(this, std::move(*lines), std::move(requests)));
  job->thread_ = std::thread([raw = job.get()] { raw->Run(); });
  return job;
}

absl::StatusOr<RunFileSummary> EngineSession::RunFile(const std::string& input, const std::string& output,
                                                      Shard shard, bool resume) {
  absl::StatusOr<GenerationDefaults> defaults = LoadGenerationDefaults(model_dir_);
  if (!defaults.ok()) return defaults.status();
  // Streamed, as `ringmoe run` reads it: a scan for repeated custom_ids, then one pass feeding the engine.
  absl::StatusOr<CustomIdScan> scan = ScanCustomIds(input);
  if (!scan.ok()) return scan.status();
  if (!TryBegin()) {
    return absl::FailedPreconditionError("this engine is already generating: one job at a time per engine");
  }
  struct EndOnExit {
    EngineSession* session;
    ~EndOnExit() { session->End(); }
  } end_on_exit{this};

  absl::StatusOr<std::unique_ptr<BatchOutputFile>> opened =
      BatchOutputFile::Open(output, input, resume ? ExistingOutput::kResume : ExistingOutput::kRefuse);
  if (!opened.ok()) return opened.status();
  BatchOutputFile& out = **opened;
  JobLineOptions line_options;
  line_options.input = input;
  line_options.shard = shard;
  line_options.resume = resume ? &out : nullptr;
  line_options.lenient = true;  // as before: fields no endpoint defines are not checked here
  line_options.defaults = &*defaults;
  absl::StatusOr<std::unique_ptr<JobLines>> opened_lines = JobLines::Open(line_options, *scan);
  if (!opened_lines.ok()) return opened_lines.status();
  JobLines& lines = **opened_lines;

  RunFileSummary summary;
  const std::string run_id = RunId();
  auto append_line = [&](const BatchLine& line, const Result* result) {
    out.Append(FormatResultLine(line, result, model_dir_, MakeBatchRequestId(run_id, line.line_number)));
  };
  if (absl::Status begun = out.BeginWriting(); !begun.ok()) return begun;
  // A request's line, without its prompt, kept only while it runs.
  absl::flat_hash_map<size_t, BatchLine> running_lines;
  size_t next_index = 0;
  const auto start = std::chrono::steady_clock::now();
  const absl::Status run = engine_.GenerateStream(
      [&](Request* request) {
        BatchLine line;
        while (lines.Next(&line)) {
          if (!line.request.ok()) {
            ++summary.bad_lines;
            append_line(line, nullptr);
            continue;
          }
          BatchLine kept;
          kept.line_number = line.line_number;
          kept.custom_id = line.custom_id;
          Request flags;  // the fields the output's format reads
          flags.logprobs = line.request->logprobs;
          flags.top_logprobs = line.request->top_logprobs;
          flags.echo = line.request->echo;
          flags.n = line.request->n;
          kept.request = std::move(flags);
          kept.chat_request =
              line.chat_request.empty() ? "" : "{}";  // FormatResultLine asks only if it is one
          *request = *std::move(line.request);
          running_lines.emplace(next_index++, std::move(kept));
          ++summary.ran_requests;
          return true;
        }
        return false;
      },
      nullptr,
      [&](size_t request_index, const Result& result) {
        auto line = running_lines.find(request_index);
        // As `ringmoe run` does: a cancelled request gets no line, so that a resumed run runs it again.
        if (absl::IsCancelled(result.status)) {
          ++summary.cancelled_requests;
        } else {
          if (!result.status.ok()) ++summary.failed_requests;
          summary.prompt_tokens += static_cast<int64_t>(result.prompt_ids.size());
          summary.generated_tokens += static_cast<int64_t>(result.token_ids.size());
          for (const Result& choice : result.other_choices)
            summary.generated_tokens += static_cast<int64_t>(choice.token_ids.size());
          append_line(line->second, &result);
        }
        running_lines.erase(line);
      });
  summary.kept_lines = lines.answered_lines();
  summary.input_lines = summary.kept_lines + summary.bad_lines + summary.ran_requests;
  if (!run.ok() || !lines.status().ok()) {
    (void)out.Close();  // the lines written stay; the engine's or the input's failure is the one to report
    return !run.ok() ? run : lines.status();
  }
  if (absl::Status closed = out.Close(); !closed.ok()) return closed;
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return summary;
}

std::string EngineSession::InfoJson() const {
  const ModelInfo& info = engine_.info();
  nlohmann::json json = {{"model_type", info.model_type},
                         {"path", info.path},
                         {"vocab_size", info.vocab_size},
                         {"num_layers", info.num_layers},
                         {"max_context", info.max_context},
                         {"parameter_count", info.parameter_count},
                         {"device", info.device},
                         {"has_tokenizer", engine_.tokenizer() != nullptr},
                         {"plan", nlohmann::json::parse(planner::PlanToJson(engine_.plan()))}};
  return json.dump();
}

// ---------------------------------------------------------------------------------------------------------
// GenerateJob

GenerateJob::GenerateJob(EngineSession* session, std::vector<BatchLine> lines, std::vector<Request> requests)
    : session_(session),
      lines_(std::move(lines)),
      requests_(std::move(requests)),
      total_(static_cast<int>(requests_.size())),
      run_id_(RunId()) {}

GenerateJob::~GenerateJob() {
  if (thread_.joinable()) {
    Cancel();
    thread_.join();
  }
}

void GenerateJob::Run() {
  absl::Status status;
  // No exception may leave the thread (it would reach terminate): one from a library ends the job.
  try {
    absl::StatusOr<std::vector<Result>> results =
        session_->engine_.Generate(requests_, nullptr, [this](size_t index, const Result& result) {
          std::string line = FormatResultLine(lines_[index], &result, session_->model_dir_,
                                              MakeBatchRequestId(run_id_, lines_[index].line_number));
          std::lock_guard<std::mutex> lock(mutex_);
          ready_.push_back(std::move(line));
          changed_.notify_all();
        });
    status = results.status();
  } catch (const std::exception& error) {
    status = absl::InternalError(absl::StrCat("generate: ", error.what()));
  }
  session_->End();
  std::lock_guard<std::mutex> lock(mutex_);
  status_ = status;
  done_ = true;
  changed_.notify_all();
}

GenerateJob::Wait GenerateJob::Next(double timeout_seconds, std::string* line) {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait_for(lock, std::chrono::duration<double>(std::max(0.0, timeout_seconds)),
                    [this] { return !ready_.empty() || done_; });
  if (!ready_.empty()) {
    *line = std::move(ready_.front());
    ready_.pop_front();
    return Wait::kLine;
  }
  return done_ ? Wait::kEnd : Wait::kTimeout;
}

void GenerateJob::Cancel(double grace_seconds) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (done_) return;
  }
  session_->Cancel(grace_seconds);
}

absl::Status GenerateJob::status() {
  std::lock_guard<std::mutex> lock(mutex_);
  return status_;
}

}  // namespace ringmoe::python
