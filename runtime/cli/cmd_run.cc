// ringmoe run: an OpenAI Batch JSONL job. Streams the request lines (never holding the input: a scan for
// repeated custom_ids, a pass that counts the job for its plan, and a pass that feeds the engine a window of
// requests ahead of what it runs), and appends one output line per input line as each finishes (a bad line
// as it is read), so an interrupted job keeps what it finished and `--resume` runs only the rest.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "gpu/device.h"
#include "io/model_spec.h"
#include "planner/planner.h"
#include "ringmoe/engine.h"
#include "ringmoe/tokenizer.h"
#include "runtime/cli/commands.h"
#include "runtime/frontend/batch_io.h"
#include "runtime/frontend/batch_output.h"
#include "runtime/frontend/batch_reader.h"
#include "runtime/frontend/byte_size.h"
#include "runtime/frontend/chat_lines.h"
#include "runtime/frontend/generation_defaults.h"
#include "runtime/frontend/job_lines.h"
#include "runtime/frontend/job_plan.h"
#include "runtime/frontend/job_signals.h"
#include "runtime/frontend/plan_flags.h"
#include "runtime/frontend/progress.h"
#include "runtime/frontend/request_fields.h"
#include "runtime/frontend/shard.h"
#include "runtime/log/log.h"
#include "runtime/log/log_flags.h"

namespace ringmoe::cli {
namespace {

struct RunFlags {
  std::string model, input, output, cpu_dtype = "auto", tokenizer, report_json, chat_template, shard = "0/1";
  PlanFlags plan;
  int threads = 0;
  bool quiet = false, no_plan = false;
  bool resume = false, overwrite = false;
  log::LogFlags log;
  bool lenient = false;
  double stop_grace_seconds = 5;
  std::vector<std::string> command_line;  // as typed after `ringmoe run`, for the resume hint
};

// `arguments` quoted for a POSIX shell where they need it.
std::string ShellQuoted(const std::vector<std::string>& arguments) {
  std::string text;
  for (const std::string& argument : arguments) {
    if (!text.empty()) text += ' ';
    const bool plain = !argument.empty() && argument.find_first_not_of(
                                                "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                "0123456789-_./=:,+@%") == std::string::npos;
    if (plain) {
      text += argument;
      continue;
    }
    text += '\'';
    for (char c : argument) text += c == '\'' ? std::string("'\\''") : std::string(1, c);
    text += '\'';
  }
  return text;
}

// The command that finishes an interrupted job: this one with --resume instead of --overwrite.
std::string ResumeCommand(const RunFlags& flags) {
  std::vector<std::string> arguments = {"ringmoe", "run"};
  bool has_resume = false;
  for (const std::string& argument : flags.command_line) {
    if (argument == "--overwrite") continue;
    has_resume = has_resume || argument == "--resume";
    arguments.push_back(argument);
  }
  if (!has_resume) arguments.push_back("--resume");
  return ShellQuoted(arguments);
}

absl::StatusOr<ComputeType> ParseCpuDtype(const std::string& text) {
  if (text == "f32") return ComputeType::kF32;
  if (text == "bf16") return ComputeType::kBF16;
  if (text == "auto") return ComputeType::kAuto;
  return absl::InvalidArgumentError("--cpu-dtype must be auto, f32 or bf16");
}

// The plan of the job `workload` describes: searched (with the report to print), or with --no-plan made of
// the pins and the defaults. Either way the engine runs exactly report->plan / *plan.
absl::Status PlanRun(const RunFlags& flags, ComputeType cpu_compute, const planner::Workload& workload,
                     std::optional<PlanReport>* report, planner::ExecutionPlan* plan) {
  absl::StatusOr<ModelSpec> spec = LoadModelSpec(flags.model);
  if (!spec.ok()) return spec.status();
  absl::StatusOr<JobPlanOptions> options = JobPlanOptionsFromFlags(flags.model, flags.plan);
  if (!options.ok()) return options.status();
  options->what_ifs = false;
  options->cpu_compute = cpu_compute;
  if (!flags.no_plan) {
    absl::StatusOr<PlanReport> planned = PlanJob(*spec, workload, *options);
    if (planned.ok()) {
      *plan = planned->plan;
      report->emplace(std::move(*planned));
      return absl::OkStatus();
    }
    log::Warning("ringmoe run: no plan searched ({}); running the defaults and the pinned flags",
                 std::string(planned.status().message()));
  }
  absl::StatusOr<planner::ExecutionPlan> fixed = PlanJobWithoutSearch(*spec, workload, *options);
  if (!fixed.ok()) return fixed.status();
  *plan = *fixed;
  return absl::OkStatus();
}

std::string RunId() {
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(now).count());
}

// Usage errors (a bad flag value, an output that would be clobbered, the input given as output) exit 2;
// everything else that stops the job exits 1.
int ExitCodeFor(const absl::Status& status) {
  return absl::IsInvalidArgument(status) || absl::IsAlreadyExists(status) ? 2 : 1;
}

int Fail(const absl::Status& status) {
  log::Error("ringmoe run: {}", std::string(status.message()));
  return ExitCodeFor(status);
}

// What the counting pass found: the lines this run answers.
struct JobCount {
  int64_t lines = 0;                          // lines to answer: the shard's, less those the output answers
  int64_t requests = 0;                       // of which good requests, for the engine
  int64_t answered = 0;                       // lines of the shard the output already answers
  std::optional<planner::Workload> workload;  // set when there is a good request
};

// The counting pass over the job's lines: counts them and their workload, holding none of them.
absl::StatusOr<JobCount> CountJob(const JobLineOptions& options, const CustomIdScan& scan,
                                  const Tokenizer* tokenizer, const ModelSpec& spec,
                                  const std::string& source) {
  absl::StatusOr<std::unique_ptr<JobLines>> lines = JobLines::Open(options, scan);
  if (!lines.ok()) return lines.status();
  WorkloadCounter counter(tokenizer, "no tokenizer.json beside the model; pass --tokenizer");
  JobCount count;
  BatchLine line;
  while ((*lines)->Next(&line)) {
    ++count.lines;
    counter.Add(line);
  }
  if (!(*lines)->status().ok()) return (*lines)->status();
  count.requests = counter.requests();
  count.answered = (*lines)->answered_lines();
  if (absl::StatusOr<planner::Workload> workload = counter.Finish(spec, source); workload.ok())
    count.workload = *workload;
  return count;
}

// A result line kept only while its request runs: what FormatResultLine needs, without the prompt.
BatchLine ResultLineOf(const BatchLine& line) {
  BatchLine kept;
  kept.line_number = line.line_number;
  kept.custom_id = line.custom_id;
  Request request;
  if (line.request.ok()) {  // the fields the output's format reads (batch_io.h, scoring_fields.h)
    request.logprobs = line.request->logprobs;
    request.top_logprobs = line.request->top_logprobs;
    request.echo = line.request->echo;
    request.n = line.request->n;
  }
  kept.request = std::move(request);
  // FormatResultLine only asks whether the line is a chat line.
  if (!line.chat_request.empty()) kept.chat_request = "{}";
  return kept;
}

int RunJob(RunFlags& flags) {
  if (flags.resume && flags.overwrite) {
    return Fail(absl::InvalidArgumentError(
        "--resume keeps the output's results and --overwrite discards them: pass one of them"));
  }
  if (absl::Status one_gpu = RefuseMultiGpuExecution(flags.plan); !one_gpu.ok()) return Fail(one_gpu);
  absl::StatusOr<ComputeType> cpu_compute = ParseCpuDtype(flags.cpu_dtype);
  if (!cpu_compute.ok()) return Fail(cpu_compute.status());
  absl::StatusOr<Shard> shard = ParseShard(flags.shard);
  if (!shard.ok()) return Fail(shard.status());
  // The first pass over the input: repeated custom_ids over the whole file (so a shard reports them as the
  // whole job would), and the file's size and time, so that a later pass notices a changed input. Only the
  // repeated lines are kept.
  absl::StatusOr<CustomIdScan> scan = ScanCustomIds(flags.input);
  if (!scan.ok()) return Fail(scan.status());  // NotFound, not a regular file, DataLoss
  // The model folder is checked before the output is opened, so a mistyped --model changes no file.
  absl::StatusOr<ModelSpec> spec = LoadModelSpec(flags.model);
  if (!spec.ok()) return Fail(absl::FailedPreconditionError(spec.status().message()));
  // One tokenizer for the plan's count and the engine alike.
  absl::StatusOr<std::shared_ptr<const Tokenizer>> tokenizer = LoadJobTokenizer(flags.model, flags.tokenizer);
  if (!tokenizer.ok()) return Fail(absl::FailedPreconditionError(tokenizer.status().message()));

  const ExistingOutput existing = flags.resume      ? ExistingOutput::kResume
                                  : flags.overwrite ? ExistingOutput::kOverwrite
                                                    : ExistingOutput::kRefuse;
  absl::StatusOr<std::unique_ptr<BatchOutputFile>> opened =
      BatchOutputFile::Open(flags.output, flags.input, existing);
  if (!opened.ok()) return Fail(opened.status());
  BatchOutputFile& output = **opened;

  // Chat lines: messages through the model's chat template, to prompt ids (loaded when a line needs it).
  ChatTemplateOnce chat_template(flags.tokenizer.empty() ? flags.model : flags.tokenizer,
                                 flags.chat_template);
  JobLineOptions line_options;
  line_options.input = flags.input;
  line_options.shard = *shard;
  line_options.resume = flags.resume ? &output : nullptr;
  line_options.lenient = flags.lenient;
  line_options.warnings = stderr;
  line_options.tokenizer = tokenizer->get();
  line_options.chat_template = &chat_template;
  // generation_config.json's defaults, loaded once and filled into each line that omits the fields.
  absl::StatusOr<GenerationDefaults> defaults = LoadGenerationDefaults(flags.model);
  if (!defaults.ok()) return Fail(absl::FailedPreconditionError(defaults.status().message()));
  if (!defaults->empty()) {
    log::Info("ringmoe run: defaults from {}/generation_config.json for requests that omit them: {}",
              flags.model, defaults->Describe());
  }
  line_options.defaults = &*defaults;
  // The second pass: the lines to run, counted (and their prompts tokenised) for the plan, none of them kept.
  absl::StatusOr<JobCount> count = CountJob(line_options, *scan, tokenizer->get(), *spec, flags.input);
  if (!count.ok()) return Fail(count.status());
  line_options.warnings = nullptr;  // the run's pass sees the same lines: each warning was given once
  if (flags.resume) {
    log::Info("ringmoe run: resuming {}: {} lines kept{}; {} of {} input lines left to run", flags.output,
              output.finished().complete_lines,
              output.finished().dropped_torn_line ? " (a cut last line dropped)" : "", count->lines,
              count->lines + count->answered);
  }

  const std::string run_id = RunId();
  const std::string model_name = flags.model;
  auto append_line = [&](const BatchLine& line, const Result* result) {
    output.Append(FormatResultLine(line, result, model_name, MakeBatchRequestId(run_id, line.line_number)));
  };
  // Nothing for the engine (a resumed job that was done, or only bad lines): no plan and no model to load.
  if (count->requests == 0) {
    if (absl::Status begun = output.BeginWriting(); !begun.ok()) return Fail(begun);
    if (count->lines > 0) {  // bad lines only: one more pass writes them
      absl::StatusOr<std::unique_ptr<JobLines>> lines = JobLines::Open(line_options, *scan);
      if (!lines.ok()) return Fail(lines.status());
      BatchLine line;
      while ((*lines)->Next(&line)) append_line(line, nullptr);
      if (!(*lines)->status().ok()) {
        (void)output.Close();
        return Fail((*lines)->status());
      }
    }
    if (absl::Status closed = output.Close(); !closed.ok()) return Fail(closed);
    if (count->lines == 0) {
      log::Info("ringmoe run: every line of {} has its result in {}; nothing to run", flags.input,
                flags.output);
    } else {
      log::Info("ringmoe run: {} lines -> {}; all of them bad, no requests to run", count->lines,
                flags.output);
    }
    return 0;
  }

  // The plan: printed before the run; the engine runs exactly it.
  // auto: the GPU when one is usable, except for MLA models (DeepSeek): their GPU path has not yet passed its
  // golden tests on a GPU, so auto keeps them on the CPU path, which has; --device gpu runs the GPU path.
  if (flags.plan.device == "auto") {
    const absl::StatusOr<ModelSpec> spec = LoadModelSpec(flags.model);
    flags.plan.device = gpu::GpuAvailable() && !(spec.ok() && spec->is_mla()) ? "gpu" : "cpu";
  }
  std::optional<PlanReport> report;
  EngineOptions options;
  options.cpu_compute = *cpu_compute;
  options.threads = flags.threads;
  options.tokenizer = *tokenizer;
  options.ssd_dirs = flags.plan.ssd_dirs;
  if (absl::Status planned = PlanRun(flags, *cpu_compute, *count->workload, &report, &options.plan);
      !planned.ok()) {
    log::Error("ringmoe run: no plan: {}", std::string(planned.message()));
    return absl::IsInvalidArgument(planned) ? 2 : 1;
  }
  if (report) std::fputs(planner::FormatPlanReport(*report).c_str(), stderr);

  absl::StatusOr<Engine> engine = Engine::Open(flags.model, options);
  if (!engine.ok()) return Fail(absl::FailedPreconditionError(engine.status().message()));
  const double parameters = static_cast<double>(engine->info().parameter_count);
  log::Info("ringmoe run: {} ({}, {} layers, {:.2f}{} parameters) on {}; {} requests, {} bad lines",
            flags.model, engine->info().model_type, engine->info().num_layers,
            parameters >= 1e9 ? parameters / 1e9 : parameters / 1e6, parameters >= 1e9 ? "B" : "M",
            engine->info().device, count->requests, count->lines - count->requests);

  // The job is ready: from here the output changes (cut to what is kept), and lines are written as they are
  // answered. From here on too, SIGINT/SIGTERM stop the job cleanly (before, nothing was written, and the
  // default action loses nothing).
  InstallJobSignalHandlers("ringmoe run");
  if (absl::Status begun = output.BeginWriting(); !begun.ok()) return Fail(begun);
  // The last pass over the input, feeding the engine: a bad line is written as it is read; a good one goes
  // to the engine, which pulls a window of them ahead of what it runs, and its line is kept (without the
  // prompt) only until its result is written.
  absl::StatusOr<std::unique_ptr<JobLines>> opened_lines = JobLines::Open(line_options, *scan);
  if (!opened_lines.ok()) return Fail(opened_lines.status());
  JobLines& lines = **opened_lines;
  absl::flat_hash_map<size_t, BatchLine> running_lines;  // by the engine's request index
  size_t next_request_index = 0;

  FILE* progress_out = flags.quiet ? nullptr : stderr;
  std::unique_ptr<ProgressReporter> progress;
  if (progress_out != nullptr)
    progress = std::make_unique<ProgressReporter>(static_cast<int>(count->requests));
  int done = 0;
  int64_t generated = 0, prefilled = 0, prompt_tokens = 0;
  int64_t failed = 0;
  absl::flat_hash_set<size_t> started;  // requests whose first token came, until their result is written
  // The choices still running of each request fed to the engine, until its result is written: a request is
  // done when all its n choices are.
  absl::flat_hash_map<size_t, int> choices_left;
  // Stops the engine when a signal arrives or the output fails (the sync thread's errors included): polled,
  // since neither a signal handler nor the sync thread may call into the engine. A signal gives the running
  // requests --stop-grace seconds to finish; a write error stops at once (nothing more can be saved).
  std::atomic<bool> generating{true};
  std::atomic<bool> output_failed{false};
  std::thread stopper([&] {
    bool asked = false;
    while (generating.load() && !asked) {
      if (JobStopSignal() != 0) {
        engine->Cancel(flags.stop_grace_seconds);
        asked = true;
      } else if (!output.error().ok()) {
        output_failed = true;
        engine->Cancel(0);
        asked = true;
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }
  });
  // The GPU path reads its SSD tier itself (the CPU path's goes through the page cache, unmeasured).
  const bool ssd_reader = engine->info().device == "gpu" && engine->plan().ssd_moe_layers() > 0;
  const auto start = std::chrono::steady_clock::now();
  const absl::Status results = engine->GenerateStream(
      [&](Request* request) {
        BatchLine line;
        while (lines.Next(&line)) {
          if (!line.request.ok()) {
            ++failed;
            append_line(line, nullptr);
            if (!output.error().ok()) return false;  // the stopper thread ends the run
            continue;
          }
          BatchLine result_line = ResultLineOf(line);
          *request = *std::move(line.request);
          choices_left[next_request_index] = std::max(1, request->n);
          running_lines.emplace(next_request_index++, std::move(result_line));
          return true;
        }
        return false;
      },
      [&](const TokenEvent& event) {
        ++generated;
        if (started.insert(event.request_index).second) prefilled += event.prompt_tokens;
        if (event.finished) {
          auto left = choices_left.find(event.request_index);
          if (left != choices_left.end() && --left->second == 0) ++done;
        }
        if (progress && ssd_reader) {
          progress->UpdateSsd(event.ssd_read_bytes, event.ssd_read_seconds, event.ssd_wait_seconds);
        }
        if (progress) progress->Update(done, generated, prefilled);
      },
      [&](size_t request_index, const Result& result) {
        auto line = running_lines.find(request_index);
        started.erase(request_index);
        choices_left.erase(request_index);
        // A cancelled request gets no line: --resume runs it again.
        if (absl::IsCancelled(result.status)) {
          running_lines.erase(line);
          return;
        }
        if (!result.status.ok()) ++failed;
        prompt_tokens += static_cast<int64_t>(result.prompt_ids.size());
        append_line(line->second, &result);
        running_lines.erase(line);
        if (!output_failed && !output.error().ok()) {
          output_failed = true;
          engine->Cancel(0);  // a full or failing disk: stop now, not after the whole job
        }
      });
  generating = false;
  stopper.join();
  if (progress) progress->Finish();
  const absl::Status closed = output.Close();
  const int stop_signal = JobStopSignal();
  const int64_t not_answered = count->lines - output.appended_lines();
  if (results.ok() && lines.status().ok() && (!closed.ok() || (stop_signal != 0 && not_answered > 0))) {
    if (!closed.ok()) std::fprintf(stderr, "ringmoe run: %s\n", std::string(closed.message()).c_str());
    std::fprintf(stderr,
                 "ringmoe run: %s after %lld results of this run (%lld requests not run); the output %s "
                 "holds whole lines only. To finish the job, run:\n  %s\n",
                 stop_signal != 0 ? absl::StrCat("stopped by ", SignalName(stop_signal)).c_str()
                                  : "stopped: the output cannot be written",
                 static_cast<long long>(output.appended_lines()), static_cast<long long>(not_answered),
                 flags.output.c_str(), ResumeCommand(flags).c_str());
    return stop_signal != 0 ? 128 + stop_signal : 1;
  }
  if (!results.ok() || !lines.status().ok()) {
    log::Error("ringmoe run: {}", std::string((!results.ok() ? results : lines.status()).message()));
    log::Error(
        "ringmoe run: the {} results written before the failure stay in {}; to finish the job, run:\n  {}",
        output.appended_lines(), flags.output, ResumeCommand(flags));
    return 1;
  }
  if (!closed.ok()) return Fail(closed);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  log::Info(
      "ringmoe run: {} lines -> {}; {} failed; {} prompt + {} generated tokens in {:.2f} s "
      "({:.1f} generated tokens/s)",
      count->lines, flags.output, failed, prompt_tokens, generated, seconds,
      seconds > 0 ? generated / seconds : 0.0);
  const RunStats& stats = engine->last_run_stats();
  const planner::MeasuredRun measured = MeasuredFrom(stats, count->requests, engine->info().device == "gpu");
  if (report) std::fputs(planner::FormatMeasuredBesidePredicted(*report, measured).c_str(), stderr);
  if (!flags.report_json.empty()) {
    std::ofstream json(flags.report_json, std::ios::binary | std::ios::trunc);
    if (report) {
      json << planner::PlanReportJson(*report, &measured, &engine->plan());
    } else {
      json << "{\"executed_plan\": " << planner::PlanToJson(engine->plan())
           << ",\n\"measured\": {\"wall_seconds\": " << measured.wall_seconds
           << ", \"generated_tokens\": " << measured.generated_tokens << "}}\n";
    }
    if (!json.flush()) {
      log::Error("ringmoe run: cannot write {}", flags.report_json);
      return 1;
    }
  }
  return 0;
}

}  // namespace

Subcommand AddRunCommand(CLI::App& ringmoe) {
  CLI::App& app = *ringmoe.add_subcommand(
      "run", "Run a batch job: OpenAI Batch API JSONL requests in, one result line per request out.");
  auto owned_flags = std::make_shared<RunFlags>();  // filled by the parse, read by the run below
  RunFlags& flags = *owned_flags;
  app.add_option("--model", flags.model, "Hugging Face model folder (config.json, *.safetensors)")
      ->required();
  app.add_option("--input", flags.input, "requests, one JSON object per line")->required();
  app.add_option("--output", flags.output, "results, one JSON object per line, in completion order")
      ->required();
  app.add_flag("--resume", flags.resume,
               "keep the results the output already holds and run only the requests it does not answer yet");
  app.add_flag("--overwrite", flags.overwrite, "replace an existing output (by default one is refused)");
  app.add_option("--shard", flags.shard,
                 "run only the input lines whose index (0-based, non-blank lines) modulo N is K; one process "
                 "per shard, each with its own --output")
      ->capture_default_str();
  app.add_option("--threads", flags.threads, "CPU threads (0 = every core)")->capture_default_str();
  app.add_option("--cpu-dtype", flags.cpu_dtype, "CPU matmul type: auto, f32 or bf16")->capture_default_str();
  app.add_option("--tokenizer", flags.tokenizer, "tokenizer.json or folder (default: the model folder)");
  app.add_option(
      "--chat-template", flags.chat_template,
      "Jinja chat template for /v1/chat/completions lines (default: the tokenizer's chat_template.jinja "
      "or tokenizer_config.json chat_template)");
  AddPlanFlags(app, &flags.plan);
  app.add_option("--report-json", flags.report_json, "write the plan and the measured figures as JSON");
  app.add_flag("--no-plan", flags.no_plan,
               "no search and no report: run the plan the pinned flags and the defaults make");
  app.add_flag("--quiet", flags.quiet, "no progress display");
  log::AddLogFlags(app, &flags.log);
  app.add_flag(
      "--lenient", flags.lenient,
      "ignore request fields no endpoint defines (one warning per field name) instead of failing the "
      "lines that carry them");
  app.add_option("--stop-grace", flags.stop_grace_seconds,
                 "on SIGINT/SIGTERM, seconds the running requests get to finish before they are cancelled")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 86400.0));
  return {&app, [owned_flags](const std::vector<std::string>& arguments) {
            RunFlags& flags = *owned_flags;
            flags.command_line = arguments;
            if (absl::Status logging = log::ApplyLogFlags(flags.log); !logging.ok()) return Fail(logging);
            // No exception may leave the command: one thrown by a library (allocation, a thread that cannot
            // start) ends the job with a message, and the lines already written stay in the output.
            try {
              return RunJob(flags);
            } catch (const std::exception& error) {
              log::Error("ringmoe run: internal error: {}", error.what());
              return 1;
            }
          }};
}

}  // namespace ringmoe::cli
