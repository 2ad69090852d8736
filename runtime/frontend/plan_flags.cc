#include "runtime/frontend/plan_flags.h"

#include "absl/strings/str_cat.h"
#include "runtime/frontend/byte_size.h"

namespace ringmoe {

void AddPlanFlags(CLI::App& app, PlanFlags* flags) {
  app.add_option("--device", flags->device,
                 "gpu, cpu or auto (the GPU when one is usable; the CPU for DeepSeek's MLA models until "
                 "their GPU path is verified)")
      ->capture_default_str();
  app.add_option("--gpu-mem", flags->gpu_mem,
                 "GPU memory budget (cap on GPU allocations): 6GiB, 512MiB, ...");
  app.add_option("--cpu-mem", flags->cpu_mem, "host memory budget of the plan");
  app.add_option("--kv-cache", flags->kv_cache,
                 "host KV-cache budget, e.g. 8GiB (default: half the free RAM)");
  app.add_option("--hardware", flags->hardware,
                 "hardware profile JSON from `ringmoe probe` (default: this machine's, probed once)");
  app.add_option("--probe-dir", flags->probe_dir,
                 "when this machine is probed the first time: a writable folder on the disk to measure "
                 "(default: the model's folder; a private scratch folder is made in it and removed)");
  app.add_option("--max-batch", flags->max_batch, "pin the sequences in flight");
  app.add_option("--prefill-chunk", flags->prefill_chunk,
                 "pin the prefill tokens a step adds to its decodes (a step holds max batch + this)");
  app.add_option("--micro-batches", flags->micro_batches, "GPU path: pin the micro-batches per step");
  app.add_option("--expert-tile-tokens", flags->expert_tile_tokens,
                 "GPU path: pin the rows the expert GEMMs take at once (0: a whole micro-batch; tiles keep "
                 "their scratch small so larger prefill chunks fit)");
  app.add_option("--resident-moe-layers", flags->resident_moe_layers,
                 "GPU path: pin the most MoE layers whose routed experts stay on the GPU");
  app.add_option("--layer-parts", flags->layer_parts,
                 "GPU path: pin the ring sections each streamed layer is cut into (1, 2, 4, ...)");
  app.add_option("--ring-slots", flags->ring_slots,
                 "GPU path: pin the ring's slots (layer parts + 1 or more; fewer, down to 2, run each layer's "
                 "parts one at a time, in one micro-batch)");
  app.add_option("--kv-gpu-fraction", flags->kv_gpu_fraction,
                 "GPU path: pin the share of the sequences in flight whose KV cache (and attention) lives on "
                 "the GPU, 0..1")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--gpus", flags->gpus,
                 "GPU path, `ringmoe plan` only: plan for this many GPUs of the server, each on its own host "
                 "link, splitting each MoE layer's experts over them (--gpu-mem is per GPU; default 1); "
                 "multi-GPU execution is not implemented");
  app.add_option("--routed-copies", flags->routed_copies,
                 "GPU path: copy only the routed experts of streamed layers: auto (the plan's), on or off")
      ->capture_default_str();
  app.add_option("--expert-dtype", flags->expert_dtype,
                 "routed experts: auto (as the checkpoint stores them), bf16, or fp8 (quantised at load to "
                 "128x128 e4m3 blocks)")
      ->capture_default_str();
  app.add_option(
         "--kv-dtype", flags->kv_dtype,
         "host KV cache: auto (the compute type; bf16 on the GPU) or fp8 (e4m3 with a scale per token "
         "and head; no GPU share)")
      ->capture_default_str();
  app.add_option(
      "--ssd-dir", flags->ssd_dirs,
      "GPU path, SSD tier: a directory on one NVMe drive (repeat, one per drive) where the plan's SSD "
      "sections are laid out once per model and plan, striped over the drives, and read from every "
      "step (default: read from the checkpoint's files); never the model's folder");
  app.add_flag("--cpu-prefill-attention", flags->cpu_prefill_attention,
               "GPU path: fresh prompts' attention on the CPU too (default: on the GPU)");
}

absl::StatusOr<planner::PlanPins> PinsFromFlags(const PlanFlags& flags) {
  planner::PlanPins pins;
  auto positive = [](const std::optional<int>& value, const char* flag) -> absl::Status {
    if (value && *value < 1) return absl::InvalidArgumentError(absl::StrCat(flag, " must be at least 1"));
    return absl::OkStatus();
  };
  for (auto [value, flag] : {std::pair{&flags.max_batch, "--max-batch"},
                             {&flags.prefill_chunk, "--prefill-chunk"},
                             {&flags.micro_batches, "--micro-batches"},
                             {&flags.layer_parts, "--layer-parts"},
                             {&flags.ring_slots, "--ring-slots"},
                             {&flags.gpus, "--gpus"}}) {
    if (absl::Status status = positive(*value, flag); !status.ok()) return status;
  }
  if (flags.resident_moe_layers && *flags.resident_moe_layers < 0) {
    return absl::InvalidArgumentError("--resident-moe-layers must not be negative");
  }
  if (flags.expert_tile_tokens && *flags.expert_tile_tokens < 0) {
    return absl::InvalidArgumentError("--expert-tile-tokens must not be negative");
  }
  pins.expert_tile_tokens = flags.expert_tile_tokens;
  pins.batch = flags.max_batch;
  pins.prefill_chunk = flags.prefill_chunk;
  pins.micro_batches = flags.micro_batches;
  pins.max_resident_moe_layers = flags.resident_moe_layers;
  pins.layer_parts = flags.layer_parts;
  pins.ring_sections = flags.ring_slots;
  pins.kv_gpu_fraction = flags.kv_gpu_fraction;
  pins.gpus = flags.gpus;
  if (flags.gpus && *flags.gpus > 1 && flags.kv_gpu_fraction && *flags.kv_gpu_fraction > 0) {
    return absl::InvalidArgumentError(
        "--gpus above 1 keeps the KV cache in host memory: --kv-gpu-fraction must be 0");
  }
  if (flags.routed_copies == "on" || flags.routed_copies == "off") {
    pins.routed_expert_copies = flags.routed_copies == "on";
  } else if (flags.routed_copies != "auto" && !flags.routed_copies.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--routed-copies must be auto, on or off, not '", flags.routed_copies, "'"));
  }
  if (flags.cpu_prefill_attention) pins.prefill_attention_on_gpu = false;
  if (flags.kv_dtype == "fp8") {
    if (flags.kv_gpu_fraction && *flags.kv_gpu_fraction > 0) {
      return absl::InvalidArgumentError(
          "--kv-dtype fp8 keeps the whole KV cache in host memory: the GPU's share is bf16 only for now, so "
          "--kv-gpu-fraction must be 0");
    }
    pins.kv_dtype = io::DType::kF8E4M3;
    pins.kv_gpu_fraction = 0.0;
  } else if (flags.kv_dtype != "auto" && !flags.kv_dtype.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--kv-dtype must be auto or fp8, not '", flags.kv_dtype, "'"));
  }
  if (flags.expert_dtype == "fp8") {
    pins.expert_dtype = io::DType::kF8E4M3;
  } else if (flags.expert_dtype == "bf16") {
    pins.expert_dtype = io::DType::kBF16;
  } else if (flags.expert_dtype != "auto" && !flags.expert_dtype.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--expert-dtype must be auto, bf16 or fp8, not '", flags.expert_dtype, "'"));
  }
  if (!flags.kv_cache.empty()) {
    absl::StatusOr<int64_t> bytes = ParseByteSize(flags.kv_cache);
    if (!bytes.ok())
      return absl::InvalidArgumentError(absl::StrCat("--kv-cache: ", bytes.status().message()));
    if (*bytes <= 0) return absl::InvalidArgumentError("--kv-cache must be positive");
    pins.kv_host_bytes = *bytes;
  }
  return pins;
}

absl::StatusOr<planner::Budgets> BudgetsFromFlags(const PlanFlags& flags) {
  planner::Budgets budgets;
  for (auto [text, target, flag] : {std::tuple{&flags.gpu_mem, &budgets.gpu_bytes, "--gpu-mem"},
                                    {&flags.cpu_mem, &budgets.cpu_bytes, "--cpu-mem"}}) {
    if (text->empty()) continue;
    absl::StatusOr<int64_t> bytes = ParseByteSize(*text);
    if (!bytes.ok()) return absl::InvalidArgumentError(absl::StrCat(flag, ": ", bytes.status().message()));
    if (*bytes <= 0) return absl::InvalidArgumentError(absl::StrCat(flag, " must be positive"));
    *target = *bytes;
  }
  return budgets;
}

absl::Status RefuseMultiGpuExecution(const PlanFlags& flags) {
  if (!flags.gpus || *flags.gpus <= 1) return absl::OkStatus();
  return absl::UnimplementedError(
      absl::StrCat("--gpus ", *flags.gpus,
                   ": multi-GPU execution is not implemented; plan only (`ringmoe "
                   "plan --gpus ",
                   *flags.gpus, "`)"));
}

}  // namespace ringmoe
