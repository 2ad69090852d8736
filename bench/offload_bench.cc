// ringmoe_offload_bench: an offline batch through the engine (by default 4096 requests, prompt 512, 256 new
// tokens, greedy) on a checkpoint written by ringmoe_make_checkpoint. It plans the job as `ringmoe run` does
// (flags pin choices), runs it, and prints what it measured beside the planner's prediction and the
// hardware bound of the plan, as ratios; --json writes every figure.
//
//   ringmoe_offload_bench --model /tmp/qwen3-16l --gpu-mem 6GiB --hardware bench/h200_profile.json --json
//   out.json
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "fmt/format.h"
#include "io/model_spec.h"
#include "nlohmann/json.hpp"
#include "ringmoe/engine.h"
#include "runtime/frontend/job_plan.h"
#include "runtime/frontend/plan_flags.h"

namespace {

using nlohmann::json;

struct Flags {
  std::string model, json_path, step_log;
  bool gpu_stage_times = false;
  std::string expert_gemm = "auto";
  ringmoe::PlanFlags plan;
  int requests = 4096, prompt_len = 512, gen_len = 256, threads = 0;
  uint64_t seed = 1;
};

double Ratio(double measured, double reference) { return reference > 0 ? measured / reference : 0.0; }

// Samples nvidia-smi's GPU utilisation every 200 ms while alive: the busy fraction of the run.
class GpuUtilisationSampler {
 public:
  GpuUtilisationSampler() : thread_([this] { Loop(); }) {}
  ~GpuUtilisationSampler() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  // Mean utilisation in [0, 1]; negative when nvidia-smi gave no reading.
  double mean() const { return samples_ > 0 ? sum_ / samples_ / 100.0 : -1.0; }

 private:
  void Loop() {
    while (!stop_) {
      const auto start = std::chrono::steady_clock::now();
      if (FILE* pipe = popen(
              "nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits 2>/dev/null", "r")) {
        double percent = 0;
        if (std::fscanf(pipe, "%lf", &percent) == 1) {
          sum_ += percent;
          ++samples_;
        }
        pclose(pipe);
      }
      std::this_thread::sleep_until(start + std::chrono::milliseconds(200));
    }
  }
  std::atomic<bool> stop_{false};
  double sum_ = 0;
  int samples_ = 0;
  std::thread thread_;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Offline batch benchmark of the engine"};
  Flags flags;
  app.add_option("--model", flags.model, "checkpoint folder")->required();
  app.add_option("--requests", flags.requests)->capture_default_str();
  app.add_option("--prompt-len", flags.prompt_len)->capture_default_str();
  app.add_option("--gen-len", flags.gen_len)->capture_default_str();
  flags.plan.device = "gpu";
  flags.plan.gpu_mem = "6GiB";
  ringmoe::AddPlanFlags(app, &flags.plan);
  app.add_option("--threads", flags.threads);
  app.add_option("--step-log", flags.step_log,
                 "append one line per step: index, chunks, prefill tokens, seconds");
  app.add_flag("--gpu-stage-times", flags.gpu_stage_times,
               "add the GPU's seconds by stage, timed with CUDA events, to each step-log line");
  app.add_option("--expert-gemm", flags.expert_gemm,
                 "diagnostics: auto (by rows per expert), loop (one GEMM per expert) or grouped (cuBLAS's "
                 "grouped call)")
      ->check(CLI::IsMember({"auto", "loop", "grouped"}))
      ->capture_default_str();
  app.add_option("--seed", flags.seed);
  app.add_option("--json", flags.json_path, "write the figures here");
  CLI11_PARSE(app, argc, argv);

  absl::StatusOr<ringmoe::ModelSpec> spec = ringmoe::LoadModelSpec(flags.model);
  if (!spec.ok()) {
    std::fprintf(stderr, "%s\n", std::string(spec.status().message()).c_str());
    return 1;
  }
  ringmoe::EngineOptions options;
  options.threads = flags.threads;
  options.ssd_dirs = flags.plan.ssd_dirs;  // --ssd-dir: the SSD tier from striped section files
  options.step_log_path = flags.step_log;
  options.gpu_stage_times = flags.gpu_stage_times;
  options.expert_gemm = flags.expert_gemm == "loop"      ? ringmoe::ExpertGemm::kLoop
                        : flags.expert_gemm == "grouped" ? ringmoe::ExpertGemm::kGrouped
                                                         : ringmoe::ExpertGemm::kAuto;
  // Plan the job as `ringmoe run` does (the same flags, the same search); the engine runs exactly the plan.
  if (absl::Status one_gpu = ringmoe::RefuseMultiGpuExecution(flags.plan); !one_gpu.ok()) {
    std::fprintf(stderr, "%s\n", std::string(one_gpu.message()).c_str());
    return 2;
  }
  absl::StatusOr<ringmoe::JobPlanOptions> plan_options =
      ringmoe::JobPlanOptionsFromFlags(flags.model, flags.plan);
  if (!plan_options.ok()) {
    std::fprintf(stderr, "%s\n", std::string(plan_options.status().message()).c_str());
    return 2;
  }
  plan_options->what_ifs = false;
  const std::vector<int64_t> prompts(flags.requests, flags.prompt_len), gens(flags.requests, flags.gen_len);
  const ringmoe::planner::Workload workload = ringmoe::planner::MakeWorkload(
      prompts, gens, spec->max_position_embeddings, "offload_bench: fixed lengths");
  absl::StatusOr<ringmoe::PlanReport> report = ringmoe::PlanJob(*spec, workload, *plan_options);
  if (!report.ok()) {
    std::fprintf(stderr, "plan: %s\n", std::string(report.status().message()).c_str());
    return 1;
  }
  std::fputs(ringmoe::planner::FormatPlanReport(*report).c_str(), stderr);
  options.plan = report->plan;
  const ringmoe::planner::ExecutionPlan& plan = options.plan;

  const auto open_start = std::chrono::steady_clock::now();
  absl::StatusOr<ringmoe::Engine> engine = ringmoe::Engine::Open(flags.model, options);
  if (!engine.ok()) {
    std::fprintf(stderr, "%s\n", std::string(engine.status().message()).c_str());
    return 1;
  }
  const double open_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - open_start).count();

  std::mt19937_64 random(flags.seed);
  std::vector<ringmoe::Request> requests(flags.requests);
  for (int i = 0; i < flags.requests; ++i) {
    requests[i].id = "bench-" + std::to_string(i);
    requests[i].max_tokens = flags.gen_len;
    requests[i].ignore_eos = true;
    requests[i].prompt_ids.resize(flags.prompt_len);
    // Ordinary ids, away from the special tokens at either end of the vocabulary.
    const int margin = spec->vocab_size > 2000 ? 500 : 3;
    for (int32_t& id : requests[i].prompt_ids) {
      id = static_cast<int32_t>(random() % (spec->vocab_size - 2 * margin)) + margin;
    }
  }
  const bool on_gpu = engine->info().device == "gpu";
  GpuUtilisationSampler sampler;
  absl::StatusOr<std::vector<ringmoe::Result>> results = engine->Generate(requests);
  sampler.Stop();
  if (!results.ok()) {
    std::fprintf(stderr, "%s\n", std::string(results.status().message()).c_str());
    return 1;
  }
  for (const ringmoe::Result& result : *results) {
    if (!result.status.ok()) {
      std::fprintf(stderr, "%s: %s\n", result.id.c_str(), std::string(result.status.message()).c_str());
      return 1;
    }
  }
  const ringmoe::RunStats& s = engine->last_run_stats();
  const ringmoe::planner::Prediction& predicted = report->prediction;
  const ringmoe::planner::MeasuredRun measured = ringmoe::MeasuredFrom(s, flags.requests, on_gpu);
  std::fputs(ringmoe::planner::FormatMeasuredBesidePredicted(*report, measured).c_str(), stderr);

  const double generated_per_s = s.generated_tokens / s.wall_seconds;
  const double decode_per_s = s.decode_step_seconds > 0 ? s.decode_step_tokens / s.decode_step_seconds : 0;
  const double prefill_per_s = s.prefill_step_seconds > 0 ? s.prompt_tokens / s.prefill_step_seconds : 0;
  const double h2d_avg_gbps = s.streamed_bytes / s.wall_seconds / 1e9;
  const double h2d_streaming_gbps = s.h2d_copy_seconds > 0 ? s.streamed_bytes / s.h2d_copy_seconds / 1e9 : 0;
  // What the CPU's attention read over the time it took (fresh prompts' attention runs on the GPU).
  const double attention_gbps =
      s.attention_seconds > 0 ? s.cpu_attention_kv_bytes / s.attention_seconds / 1e9 : 0;
  const double link_gbps = report->profile.gpu ? report->profile.gpu->h2d_gbps : 0;
  // The first bound: a decode step of the batch moves every streamed byte once over the link.
  const double streamed_per_step = s.steps > 0 ? static_cast<double>(s.streamed_bytes) / s.steps : 0;
  // Only where the plan streams every step (not where its ring holds every streamed section, filled once).
  const double link_bound = predicted.memory.streamed_bytes_per_step > 0 && streamed_per_step > 0
                                ? plan.batch * link_gbps * 1e9 / streamed_per_step
                                : 0;
  const double gpu_busy = sampler.mean();
  // The SSD tier: what its reader reached while reads were in flight and over the run, against the probe.
  const double ssd_probe_gbps = report->profile.ssd ? report->profile.ssd->planning_gbps() : 0;
  const double ssd_reading_gbps = s.ssd_read_seconds > 0 ? s.ssd_read_bytes / s.ssd_read_seconds / 1e9 : 0;
  const double ssd_avg_gbps = s.ssd_read_bytes / s.wall_seconds / 1e9;

  std::printf(
      "ringmoe offload bench: %s (%s, %d layers), %s, %d requests x (%d prompt + %d generated), batch %d, "
      "%d tokens per step, %d micro-batches\n",
      flags.model.c_str(), spec->model_type.c_str(), spec->num_layers, engine->info().device.c_str(),
      flags.requests, flags.prompt_len, flags.gen_len, plan.batch, plan.max_step_tokens(),
      plan.micro_batches);
  std::printf(
      "  open %.1f s; GPU cap %.2f GiB, peak %.2f GiB; host peak %.2f GiB; MoE layers resident %d, streamed "
      "%d (%d parts each)\n",
      open_seconds, s.gpu_cap_bytes / 1073741824.0, s.gpu_peak_bytes / 1073741824.0,
      s.host_peak_bytes / 1073741824.0, s.resident_moe_layers, s.streamed_moe_layers, plan.layer_parts);
  std::printf("  %-30s %10s %10s %7s %10s %7s\n", "", "measured", "predicted", "ratio", "hw bound", "ratio");
  std::printf("  %-30s %10.1f %10.1f %7.2f %10.1f %7.2f\n", "generated tokens/s (e2e)", generated_per_s,
              predicted.output_tokens_per_s, Ratio(generated_per_s, predicted.output_tokens_per_s),
              predicted.bound_output_tokens_per_s,
              Ratio(generated_per_s, predicted.bound_output_tokens_per_s));
  std::printf("  %-30s %10.1f %10.1f %7.2f %10s %7s\n", "decode tokens/s (decode steps)", decode_per_s,
              predicted.decode_tokens_per_s, Ratio(decode_per_s, predicted.decode_tokens_per_s),
              link_bound > 0 ? fmt::format("{:.1f}", link_bound).c_str() : "-",
              link_bound > 0 ? fmt::format("{:.2f}", Ratio(decode_per_s, link_bound)).c_str() : "-");
  const ringmoe::planner::JobBound& job_bound = predicted.job_bound;
  std::printf("  %-30s %10.1f %10s %7s %10.1f %7.2f  (limit: %s)\n", "generated tokens/s, job bound",
              generated_per_s, "", "", job_bound.output_tokens_per_s,
              Ratio(generated_per_s, job_bound.output_tokens_per_s), job_bound.limit.c_str());
  std::printf("  %-30s %10.1f %10.1f %7.2f\n", "prefill tokens/s (prefill steps)", prefill_per_s,
              predicted.prefill_tokens_per_s, Ratio(prefill_per_s, predicted.prefill_tokens_per_s));
  std::printf("  %-30s %10.2f %10s %7s %10.2f %7.2f\n", "host-to-device GB/s, streaming", h2d_streaming_gbps,
              "", "", link_gbps, Ratio(h2d_streaming_gbps, link_gbps));
  std::printf("  %-30s %10.2f %10s %7s %10.2f %7.2f\n", "host-to-device GB/s, average", h2d_avg_gbps, "", "",
              link_gbps, Ratio(h2d_avg_gbps, link_gbps));
  if (s.ssd_read_bytes > 0) {
    std::printf("  %-30s %10.2f %10s %7s %10.2f %7.2f\n", "SSD read GB/s, while reading", ssd_reading_gbps,
                "", "", ssd_probe_gbps, Ratio(ssd_reading_gbps, ssd_probe_gbps));
    std::printf("  %-30s %10.2f %10s %7s %10.2f %7.2f  (%d MoE layers on SSD; ring waited %.1f s)\n",
                "SSD read GB/s, average", ssd_avg_gbps, "", "", ssd_probe_gbps,
                Ratio(ssd_avg_gbps, ssd_probe_gbps), s.ssd_moe_layers, s.ssd_wait_seconds);
  }
  std::printf("  %-30s %10.2f %10s %7s %10.2f %7.2f\n", "CPU attention GB/s of KV", attention_gbps, "", "",
              report->profile.cpu.dram_read_gbps, Ratio(attention_gbps, report->profile.cpu.dram_read_gbps));
  if (gpu_busy >= 0) {
    std::printf("  %-30s %10.0f%%\n", "GPU busy (nvidia-smi)", gpu_busy * 100);
  } else {
    std::printf("  %-30s %10s\n", "GPU busy (nvidia-smi)", "-");  // No GPU, or no nvidia-smi.
  }
  std::printf(
      "  wall %.1f s (predicted %.1f, bound %.1f) in %d steps: CPU attention %.1f s, waits for q/k/v %.1f s, "
      "feeder busy %.1f s (expert-count waits %.1f s), lm_head %.1f s, sampling %.1f s, copies %.1f s\n",
      s.wall_seconds, predicted.duration_s, predicted.bound_duration_s, s.steps, s.attention_seconds,
      s.gpu_wait_seconds, s.gpu_feeder_busy_seconds, s.gpu_feeder_wait_seconds, s.lm_head_seconds,
      s.sampling_seconds, s.h2d_copy_seconds);
  // Issue 17: the job reaches the batch the plan (and the KV cache) allows, and the step loop's own host
  // work (admission, KV blocks, sampling, retiring) stays small beside the steps.
  std::printf(
      "  sequences in flight: peak %d of the plan's %d; step loop's host work %.2f s (%.1f ms a step)\n",
      s.peak_sequences_in_flight, plan.batch, s.host_step_seconds,
      s.steps > 0 ? 1e3 * s.host_step_seconds / s.steps : 0.0);

  std::fflush(stdout);  // before the engine's teardown (unpinning tens of GB), which a timeout may cut short
  if (!flags.json_path.empty()) {
    json out = {
        {"model", flags.model},
        {"model_type", spec->model_type},
        {"layers", spec->num_layers},
        {"device", engine->info().device},
        {"requests", flags.requests},
        {"prompt_len", flags.prompt_len},
        {"gen_len", flags.gen_len},
        {"max_batch", plan.batch},
        {"max_step_tokens", plan.max_step_tokens()},
        {"micro_batches", plan.micro_batches},
        {"ring_slots", plan.ring_sections},
        {"layer_parts", plan.layer_parts},
        {"routed_expert_copies", plan.routed_expert_copies},
        {"gpu_kv_cache_bytes", plan.kv.gpu_bytes},
        {"gpu_mem_bytes", plan.budgets.gpu_bytes},
        {"open_seconds", open_seconds},
        {"wall_seconds", s.wall_seconds},
        {"steps", s.steps},
        {"peak_sequences_in_flight", s.peak_sequences_in_flight},
        {"host_step_seconds", s.host_step_seconds},
        {"throughput",
         {{"generated_tokens_per_s", generated_per_s},
          {"prefill_tokens_per_s", prefill_per_s},
          {"decode_tokens_per_s", decode_per_s}}},
        {"bandwidth",
         {{"h2d_gbps_while_streaming", h2d_streaming_gbps},
          {"h2d_gbps_avg", h2d_avg_gbps},
          {"cpu_attention_gbps", attention_gbps},
          {"streamed_bytes", s.streamed_bytes},
          {"h2d_copy_seconds", s.h2d_copy_seconds},
          {"ssd_read_bytes", s.ssd_read_bytes},
          {"ssd_read_seconds", s.ssd_read_seconds},
          {"ssd_wait_seconds", s.ssd_wait_seconds},
          {"ssd_gbps_while_reading", ssd_reading_gbps},
          {"ssd_gbps_avg", ssd_avg_gbps},
          {"ssd_probe_gbps", ssd_probe_gbps},
          {"kv_read_bytes", s.kv_read_bytes},
          {"cpu_attention_kv_bytes", s.cpu_attention_kv_bytes},
          {"gpu_cache_kv_bytes", s.gpu_cache_kv_bytes}}},
        {"gpu_busy_fraction", gpu_busy >= 0 ? json(gpu_busy) : json(nullptr)},
        {"predicted",
         {{"generated_tokens_per_s", predicted.output_tokens_per_s},
          {"decode_tokens_per_s", predicted.decode_tokens_per_s},
          {"prefill_tokens_per_s", predicted.prefill_tokens_per_s},
          {"duration_s", predicted.duration_s},
          {"error_percent", ringmoe::planner::ErrorPercent(predicted.output_tokens_per_s, generated_per_s)},
          {"bottleneck", predicted.bottleneck}}},
        {"bound",
         {{"generated_tokens_per_s", predicted.bound_output_tokens_per_s},
          {"generated_ratio", Ratio(generated_per_s, predicted.bound_output_tokens_per_s)},
          {"link_gbps", link_gbps},
          {"link_decode_tokens_per_s", link_bound > 0 ? json(link_bound) : json(nullptr)},
          {"link_decode_ratio", link_bound > 0 ? json(Ratio(decode_per_s, link_bound)) : json(nullptr)},
          {"job_generated_tokens_per_s", job_bound.output_tokens_per_s},
          {"job_generated_ratio", Ratio(generated_per_s, job_bound.output_tokens_per_s)},
          {"job_limit", job_bound.limit}}},
        {"stages_seconds",
         {{"attention", s.attention_seconds},
          {"gpu_wait", s.gpu_wait_seconds},
          {"feeder_busy", s.gpu_feeder_busy_seconds},
          {"feeder_count_waits", s.gpu_feeder_wait_seconds},
          {"moe", s.moe_seconds},
          {"projections", s.projection_seconds},
          {"lm_head", s.lm_head_seconds},
          {"sampling", s.sampling_seconds},
          {"embed", s.embed_seconds}}},
        {"memory",
         {{"gpu_peak_bytes", s.gpu_peak_bytes},
          {"gpu_cap_bytes", s.gpu_cap_bytes},
          {"host_peak_bytes", s.host_peak_bytes}}},
        {"moe_layers",
         {{"resident", s.resident_moe_layers},
          {"streamed", s.streamed_moe_layers},
          {"ssd", s.ssd_moe_layers}}},
        {"plan_report", json::parse(ringmoe::planner::PlanReportJson(*report, &measured, &engine->plan()))}};
    std::ofstream(flags.json_path) << out.dump(2) << "\n";
  }
  return 0;
}
