// ringmoe_offload_bench: an offline batch through the engine (by default 4096 requests, prompt 512, 256 new
// tokens, greedy) on a checkpoint written by ringmoe_make_checkpoint. Prints what it measured beside the
// hardware bound (tokens per step x host-to-device bandwidth / bytes streamed per step) as ratios, and writes
// JSON.
//
//   ringmoe_offload_bench --model /tmp/qwen3-16l --gpu-mem 6GiB --json out.json
#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "nlohmann/json.hpp"
#include "ringmoe/engine.h"
#include "runtime/byte_size.h"
#include "runtime/model_config.h"

namespace {

using nlohmann::json;

struct Flags {
  std::string model, json_path, device = "gpu", gpu_mem = "6GiB", kv_cache;
  int requests = 4096, prompt_len = 512, gen_len = 256, max_batch = 1024, max_step_tokens = 0, threads = 0;
  int micro_batches = 0, resident_layers = -1, ring_slots = 0;
  double h2d_gbps = 55.0;  // the H200 box's pinned host-to-device bandwidth (shared/hardware/h200-box.md)
  uint64_t seed = 1;
};

double Ratio(double measured, double reference) { return reference > 0 ? measured / reference : 0.0; }

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Offline batch benchmark of the engine"};
  Flags flags;
  app.add_option("--model", flags.model, "checkpoint folder")->required();
  app.add_option("--requests", flags.requests)->capture_default_str();
  app.add_option("--prompt-len", flags.prompt_len)->capture_default_str();
  app.add_option("--gen-len", flags.gen_len)->capture_default_str();
  app.add_option("--device", flags.device, "gpu, cpu or auto")->capture_default_str();
  app.add_option("--gpu-mem", flags.gpu_mem)->capture_default_str();
  app.add_option("--kv-cache", flags.kv_cache, "host KV-cache budget");
  app.add_option("--max-batch", flags.max_batch, "sequences in flight")->capture_default_str();
  app.add_option("--max-step-tokens", flags.max_step_tokens, "tokens per step (0: max-batch)");
  app.add_option("--micro-batches", flags.micro_batches, "0: engine default");
  app.add_option("--resident-layers", flags.resident_layers, "MoE layers kept on the GPU (-1: what fits)");
  app.add_option("--ring-slots", flags.ring_slots, "0: engine default");
  app.add_option("--threads", flags.threads);
  app.add_option("--h2d-gbps", flags.h2d_gbps, "host-to-device bandwidth for the bound")
      ->capture_default_str();
  app.add_option("--seed", flags.seed);
  app.add_option("--json", flags.json_path, "write the figures here");
  CLI11_PARSE(app, argc, argv);

  ringmoe::EngineOptions options;
  options.device = flags.device == "cpu"    ? ringmoe::Device::kCpu
                   : flags.device == "auto" ? ringmoe::Device::kAuto
                                            : ringmoe::Device::kGpu;
  options.max_batch = flags.max_batch;
  options.max_step_tokens = flags.max_step_tokens > 0 ? flags.max_step_tokens : flags.max_batch;
  options.threads = flags.threads;
  options.micro_batches = flags.micro_batches;
  options.gpu_resident_moe_layers = flags.resident_layers;
  options.ring_slots = flags.ring_slots;
  for (auto [text, target] :
       {std::pair{&flags.gpu_mem, &options.gpu_memory_bytes}, {&flags.kv_cache, &options.kv_cache_bytes}}) {
    if (text->empty()) continue;
    absl::StatusOr<int64_t> bytes = ringmoe::ParseByteSize(*text);
    if (!bytes.ok()) {
      std::fprintf(stderr, "%s\n", std::string(bytes.status().message()).c_str());
      return 2;
    }
    *target = *bytes;
  }
  absl::StatusOr<ringmoe::ModelSpec> spec = ringmoe::LoadModelSpec(flags.model);
  if (!spec.ok()) {
    std::fprintf(stderr, "%s\n", std::string(spec.status().message()).c_str());
    return 1;
  }
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
  absl::StatusOr<std::vector<ringmoe::Result>> results = engine->Generate(requests);
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
  const double generated_per_s = s.generated_tokens / s.wall_seconds;
  const double decode_per_s = s.decode_step_seconds > 0 ? s.decode_step_tokens / s.decode_step_seconds : 0;
  const double prefill_per_s = s.prefill_step_seconds > 0 ? s.prompt_tokens / s.prefill_step_seconds : 0;
  const double h2d_gbps = s.streamed_bytes / s.wall_seconds / 1e9;
  const double attention_gbps = s.attention_seconds > 0 ? s.kv_read_bytes / s.attention_seconds / 1e9 : 0;
  // Bound for a decode step of max_batch tokens: every streamed layer crosses PCIe once per step.
  const double streamed_per_step = s.steps > 0 ? static_cast<double>(s.streamed_bytes) / s.steps : 0;
  const double decode_bound =
      streamed_per_step > 0 ? flags.max_batch * flags.h2d_gbps * 1e9 / streamed_per_step : 0;

  std::printf(
      "ringmoe offload bench: %s (%s, %d layers), %s, %d requests x (%d prompt + %d generated), batch %d\n",
      flags.model.c_str(), spec->model_type.c_str(), spec->num_layers, engine->info().device.c_str(),
      flags.requests, flags.prompt_len, flags.gen_len, flags.max_batch);
  std::printf(
      "  open %.1f s; GPU cap %.2f GiB, peak %.2f GiB; host peak %.2f GiB; MoE layers resident %d, streamed "
      "%d\n",
      open_seconds, s.gpu_cap_bytes / 1073741824.0, s.gpu_peak_bytes / 1073741824.0,
      s.host_peak_bytes / 1073741824.0, s.resident_moe_layers, s.streamed_moe_layers);
  std::printf("  %-28s %12s %12s %8s\n", "", "measured", "bound", "ratio");
  std::printf("  %-28s %12.1f %12.1f %8.2f\n", "generated tokens/s (e2e)", generated_per_s, decode_bound,
              Ratio(generated_per_s, decode_bound));
  std::printf("  %-28s %12.1f %12.1f %8.2f\n", "decode tokens/s", decode_per_s, decode_bound,
              Ratio(decode_per_s, decode_bound));
  std::printf("  %-28s %12.1f\n", "prefill tokens/s", prefill_per_s);
  std::printf("  %-28s %12.2f %12.2f %8.2f\n", "host-to-device GB/s (avg)", h2d_gbps, flags.h2d_gbps,
              Ratio(h2d_gbps, flags.h2d_gbps));
  std::printf("  %-28s %12.2f\n", "CPU attention GB/s", attention_gbps);
  std::printf(
      "  wall %.1f s in %d steps: attention %.1f s, GPU waits %.1f s, MoE enqueue+waits %.1f s, lm_head %.1f "
      "s, sampling %.1f s\n",
      s.wall_seconds, s.steps, s.attention_seconds, s.gpu_wait_seconds, s.moe_seconds, s.lm_head_seconds,
      s.sampling_seconds);

  if (!flags.json_path.empty()) {
    json out = {{"model", flags.model},
                {"model_type", spec->model_type},
                {"layers", spec->num_layers},
                {"device", engine->info().device},
                {"requests", flags.requests},
                {"prompt_len", flags.prompt_len},
                {"gen_len", flags.gen_len},
                {"max_batch", flags.max_batch},
                {"gpu_mem_bytes", options.gpu_memory_bytes},
                {"open_seconds", open_seconds},
                {"wall_seconds", s.wall_seconds},
                {"steps", s.steps},
                {"throughput",
                 {{"generated_tokens_per_s", generated_per_s},
                  {"prefill_tokens_per_s", prefill_per_s},
                  {"decode_tokens_per_s", decode_per_s}}},
                {"bandwidth",
                 {{"h2d_gbps_avg", h2d_gbps},
                  {"cpu_attention_gbps", attention_gbps},
                  {"streamed_bytes", s.streamed_bytes},
                  {"kv_read_bytes", s.kv_read_bytes}}},
                {"bound",
                 {{"h2d_gbps", flags.h2d_gbps},
                  {"decode_tokens_per_s", decode_bound},
                  {"generated_ratio", Ratio(generated_per_s, decode_bound)}}},
                {"stages_seconds",
                 {{"attention", s.attention_seconds},
                  {"gpu_wait", s.gpu_wait_seconds},
                  {"moe", s.moe_seconds},
                  {"lm_head", s.lm_head_seconds},
                  {"sampling", s.sampling_seconds},
                  {"embed", s.embed_seconds}}},
                {"memory",
                 {{"gpu_peak_bytes", s.gpu_peak_bytes},
                  {"gpu_cap_bytes", s.gpu_cap_bytes},
                  {"host_peak_bytes", s.host_peak_bytes}}},
                {"moe_layers", {{"resident", s.resident_moe_layers}, {"streamed", s.streamed_moe_layers}}}};
    std::ofstream(flags.json_path) << out.dump(2) << "\n";
  }
  return 0;
}
