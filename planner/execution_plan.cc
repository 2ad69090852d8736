#include "planner/execution_plan.h"

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "io/status_macros.h"
#include "nlohmann/json.hpp"
#include "planner/expert_shards.h"

namespace ringmoe::planner {
namespace {

using json = nlohmann::json;

constexpr ExpertTier kTiers[] = {ExpertTier::kNone, ExpertTier::kGpu, ExpertTier::kPinnedHost,
                                 ExpertTier::kSsd};

std::string TiersText(const std::vector<ExpertTier>& tiers) {
  // One letter a layer: G resident on the GPU, P streamed from pinned host memory, S streamed from SSD,
  // - dense.
  std::string text;
  for (ExpertTier tier : tiers) {
    text += tier == ExpertTier::kGpu          ? 'G'
            : tier == ExpertTier::kPinnedHost ? 'P'
            : tier == ExpertTier::kSsd        ? 'S'
                                              : '-';
  }
  return text;
}

}  // namespace

std::string_view PlanDeviceName(PlanDevice device) { return device == PlanDevice::kGpu ? "gpu" : "cpu"; }

std::string_view ExpertTierName(ExpertTier tier) {
  switch (tier) {
    case ExpertTier::kNone:
      return "none";
    case ExpertTier::kGpu:
      return "gpu";
    case ExpertTier::kPinnedHost:
      return "pinned";
    case ExpertTier::kSsd:
      return "ssd";
  }
  return "?";
}

int ExecutionPlan::resident_moe_layers() const {
  return static_cast<int>(std::count(expert_tiers.begin(), expert_tiers.end(), ExpertTier::kGpu));
}

int ExecutionPlan::streamed_moe_layers() const {
  return static_cast<int>(std::count(expert_tiers.begin(), expert_tiers.end(), ExpertTier::kPinnedHost)) +
         ssd_moe_layers();
}

int ExecutionPlan::ssd_moe_layers() const {
  return static_cast<int>(std::count(expert_tiers.begin(), expert_tiers.end(), ExpertTier::kSsd));
}

ExecutionPlan ApplyPins(ExecutionPlan plan, const PlanPins& pins) {
  if (pins.batch) plan.batch = *pins.batch;
  if (pins.prefill_chunk) plan.prefill_chunk = *pins.prefill_chunk;
  if (pins.expert_tile_tokens) plan.expert_tile_tokens = *pins.expert_tile_tokens;
  if (pins.micro_batches) plan.micro_batches = *pins.micro_batches;
  if (pins.max_resident_moe_layers) plan.max_resident_moe_layers = *pins.max_resident_moe_layers;
  if (pins.kv_gpu_fraction) plan.kv.gpu_fraction = *pins.kv_gpu_fraction;
  if (pins.layer_parts) {
    plan.layer_parts = *pins.layer_parts;
    plan.ring_sections = std::max(plan.ring_sections, plan.layer_parts + 1);
  }
  if (pins.ring_sections) plan.ring_sections = *pins.ring_sections;
  if (pins.routed_expert_copies) plan.routed_expert_copies = *pins.routed_expert_copies;
  if (pins.prefill_attention_on_gpu) plan.prefill_attention_on_gpu = *pins.prefill_attention_on_gpu;
  if (pins.kv_host_bytes) plan.kv.host_bytes = *pins.kv_host_bytes;
  if (pins.expert_dtype) plan.expert_dtype = *pins.expert_dtype;
  if (pins.kv_dtype) plan.kv.dtype = *pins.kv_dtype;
  if (pins.gpus) plan.gpus = *pins.gpus;
  return plan;
}

ExecutionPlan DefaultPlan(PlanDevice device) {
  ExecutionPlan plan;
  plan.device = device;
  plan.batch = 256;
  plan.prefill_chunk = 2048 - plan.batch;
  plan.micro_batches = device == PlanDevice::kGpu ? 2 : 1;
  return plan;
}

std::vector<ExpertTier> SpreadResidentLayers(const std::vector<bool>& is_moe, int resident) {
  const int moe_layers = static_cast<int>(std::count(is_moe.begin(), is_moe.end(), true));
  resident = std::clamp(resident, 0, moe_layers);
  std::vector<ExpertTier> tiers(is_moe.size(), ExpertTier::kNone);
  for (size_t i = 0, moe_index = 0; i < is_moe.size(); ++i) {
    if (!is_moe[i]) continue;
    // MoE layer m keeps its experts when floor((m + 1) r / M) steps past floor(m r / M): r of M, evenly
    // spaced.
    const int m = static_cast<int>(moe_index++);
    const bool keep = (m + 1) * resident / moe_layers > m * resident / moe_layers;
    tiers[i] = keep ? ExpertTier::kGpu : ExpertTier::kPinnedHost;
  }
  return tiers;
}

std::vector<ExpertTier> SpreadSsdLayers(std::vector<ExpertTier> tiers, int ssd_layers) {
  std::vector<size_t> pinned;
  for (size_t i = 0; i < tiers.size(); ++i) {
    if (tiers[i] == ExpertTier::kPinnedHost) pinned.push_back(i);
  }
  const int count = static_cast<int>(pinned.size());
  ssd_layers = std::clamp(ssd_layers, 0, count);
  for (int m = 0; m < count; ++m) {
    // As SpreadResidentLayers: m moves when floor((m + 1) s / P) steps past floor(m s / P).
    if ((m + 1) * ssd_layers / count > m * ssd_layers / count) tiers[pinned[m]] = ExpertTier::kSsd;
  }
  return tiers;
}

std::vector<ExpertTier> SpreadResidentLayers(const ModelSpec& spec, int resident, int layers) {
  const int count = layers > 0 ? std::min(layers, spec.num_layers) : spec.num_layers;
  std::vector<bool> is_moe(count);
  for (int i = 0; i < count; ++i) is_moe[i] = spec.layers[i].is_moe;
  return SpreadResidentLayers(is_moe, resident);
}

int64_t KvBytesPerToken(const ModelSpec& spec, io::DType dtype) {
  // MLA (DeepSeek): one row per token per layer, the normed kv latent and the rotated rope key; no V.
  if (spec.is_mla()) {
    return int64_t{spec.num_layers} * spec.mla.cache_width() * static_cast<int64_t>(io::DTypeSize(dtype));
  }
  const int64_t scale_bytes = dtype == io::DType::kF8E4M3 ? spec.num_kv_heads * int64_t{sizeof(float)} : 0;
  return 2LL * spec.num_layers * (spec.kv_width() * static_cast<int64_t>(io::DTypeSize(dtype)) + scale_bytes);
}

int64_t KvBytesForSequences(const ModelSpec& spec, const KvPlacement& kv, int sequences, int context_tokens) {
  const int64_t blocks = (context_tokens + kv.block_tokens - 1) / kv.block_tokens;
  return sequences * blocks * kv.block_tokens * KvBytesPerToken(spec, kv.dtype);
}

absl::Status ValidatePlan(const ExecutionPlan& plan, const ModelSpec& spec) {
  auto bad = [](const std::string& field, const auto& value, const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat("plan: ", field, " = ", value, ": ", why));
  };
  if (plan.gpus != 1) {
    return bad("gpus", plan.gpus,
               "the engine runs on one GPU: multi-GPU execution is not implemented; plan only (ringmoe plan "
               "--gpus)");
  }
  if (plan.expert_shards < 0) return bad("expert_shards", plan.expert_shards, "must not be negative");
  if (plan.device == PlanDevice::kCpu && plan.expert_shard_count() > 1) {
    return bad("expert_shards", plan.expert_shard_count(), "the CPU device runs every expert unsplit");
  }
  if (plan.batch < 1) return bad("batch", plan.batch, "must be at least 1");
  if (plan.prefill_chunk < 1) return bad("prefill_chunk", plan.prefill_chunk, "must be at least 1");
  if (plan.micro_batches < 1) return bad("micro_batches", plan.micro_batches, "must be at least 1");
  if (plan.expert_tile_tokens < 0) {
    return bad("expert_tile_tokens", plan.expert_tile_tokens, "must be 0 (whole micro-batches) or positive");
  }
  if (plan.kv.block_tokens < 1) return bad("kv.block_tokens", plan.kv.block_tokens, "must be at least 1");
  if (plan.kv.dtype != io::DType::kBF16 && plan.kv.dtype != io::DType::kF32 &&
      plan.kv.dtype != io::DType::kF8E4M3) {
    return bad("kv.dtype", std::string(io::DTypeName(plan.kv.dtype)), "must be bf16, f32 or F8_E4M3");
  }
  if (plan.expert_dtype != io::DType::kBF16 && plan.expert_dtype != io::DType::kF8E4M3) {
    return bad("expert_dtype", std::string(io::DTypeName(plan.expert_dtype)), "must be BF16 or F8_E4M3");
  }
  if (plan.kv.host_bytes < 0) return bad("kv.host_bytes", plan.kv.host_bytes, "must not be negative");
  if (plan.kv.gpu_bytes < 0) return bad("kv.gpu_bytes", plan.kv.gpu_bytes, "must not be negative");
  if (!(plan.kv.gpu_fraction >= 0 && plan.kv.gpu_fraction <= 1)) {
    return bad("kv.gpu_fraction", plan.kv.gpu_fraction, "must lie in 0..1");
  }
  if (spec.is_mla() && plan.kv.dtype == io::DType::kF8E4M3) {
    return bad("kv.dtype", "F8_E4M3",
               absl::StrCat(spec.model_type,
                            "'s MLA cache (latent + rope key per token) is kept in bf16 or f32 only: drop "
                            "--kv-dtype fp8"));
  }
  if (plan.device == PlanDevice::kCpu) return absl::OkStatus();
  if (spec.is_mla() && (plan.kv.gpu_fraction > 0 || plan.kv.gpu_bytes > 0)) {
    return bad("kv.gpu_fraction", plan.kv.gpu_fraction,
               absl::StrCat(spec.model_type,
                            "'s MLA cache stays in host memory on the GPU path (its attention runs on the "
                            "CPU): use --kv-gpu-fraction 0"));
  }
  if (plan.kv.dtype == io::DType::kF8E4M3 && (plan.kv.gpu_fraction > 0 || plan.kv.gpu_bytes > 0)) {
    return bad(
        "kv.dtype", "F8_E4M3",
        "the GPU's share of the KV cache is bf16 only for now: an fp8 cache needs --kv-gpu-fraction 0");
  }
  if (plan.kv.dtype == io::DType::kF32)
    return bad("kv.dtype", "f32", "the GPU path keeps its KV cache in bf16");
  if (static_cast<int>(plan.expert_tiers.size()) != spec.num_layers) {
    return bad("expert_tiers", plan.expert_tiers.size(),
               absl::StrCat("a GPU plan places the routed experts of each of the model's ", spec.num_layers,
                            " layers"));
  }
  for (int i = 0; i < spec.num_layers; ++i) {
    const bool dense = plan.expert_tiers[i] == ExpertTier::kNone;
    if (dense == spec.layers[i].is_moe) {
      return bad(
          absl::StrCat("expert_tiers[", i, "]"), std::string(ExpertTierName(plan.expert_tiers[i])),
          spec.layers[i].is_moe ? "an MoE layer's experts need a tier" : "a dense layer has no experts");
    }
  }
  if (plan.layer_parts < 1 || plan.layer_parts > std::max(1, spec.num_experts)) {
    return bad("layer_parts", plan.layer_parts,
               absl::StrCat("a layer can be cut into 1 to ", spec.num_experts, " parts"));
  }
  if (plan.ring_sections < 2) {
    return bad("ring_sections", plan.ring_sections,
               "the ring needs at least 2 slots (one computes, one fills)");
  }
  RINGMOE_RETURN_IF_ERROR(CheckPartsOneAtATime(plan));
  if (spec.num_moe_layers() > 0) {
    RINGMOE_RETURN_IF_ERROR(CheckExpertShards(spec.num_experts, plan.expert_shard_count(), plan.layer_parts,
                                              plan.streamed_moe_layers() > 0));
  }
  return absl::OkStatus();
}

absl::Status CheckPartsOneAtATime(const ExecutionPlan& plan) {
  if (!plan.parts_one_at_a_time()) return absl::OkStatus();
  // A layer's parts pass through the ring once a step: every row must go through a part before it leaves.
  auto bad = [&](const std::string& field, const auto& value, const char* needs) {
    return absl::InvalidArgumentError(absl::StrCat(
        "plan: ", field, " = ", value, ": with a ring of ", plan.ring_sections, " slots for layers cut into ",
        plan.layer_parts, " parts, the parts run one at a time: ", needs));
  };
  if (plan.micro_batches != 1) return bad("micro_batches", plan.micro_batches, "one micro-batch only");
  if (plan.expert_tile_tokens > 0 && plan.expert_tile_tokens < plan.max_step_tokens())
    return bad("expert_tile_tokens", plan.expert_tile_tokens, "no expert tiles");
  if (plan.routed_expert_copies) return bad("routed_expert_copies", "true", "whole parts stream");
  if (plan.expert_shard_count() > 1)
    return bad("expert_shards", plan.expert_shard_count(), "one expert shard");
  return absl::OkStatus();
}

std::string FormatExecutionPlan(const ExecutionPlan& plan) {
  std::string text =
      absl::StrFormat("%s: %d sequences in flight, prefill chunk %d (step %d tokens)",
                      PlanDeviceName(plan.device), plan.batch, plan.prefill_chunk, plan.max_step_tokens());
  if (plan.device == PlanDevice::kGpu) {
    if (plan.gpus > 1) absl::StrAppendFormat(&text, ", %d GPUs (experts split)", plan.gpus);
    if (plan.expert_shards > 0 && plan.expert_shards != plan.gpus)
      absl::StrAppendFormat(&text, ", %d expert shards", plan.expert_shards);
    absl::StrAppendFormat(&text, ", %d micro-batch%s, ring of %d slots", plan.micro_batches,
                          plan.micro_batches == 1 ? "" : "es", plan.ring_sections);
    if (plan.layer_parts > 1) absl::StrAppendFormat(&text, " of 1/%d layer", plan.layer_parts);
    if (plan.parts_one_at_a_time()) absl::StrAppend(&text, " (parts run one at a time)");
    if (plan.routed_expert_copies) absl::StrAppend(&text, ", routed copies");
    if (plan.expert_tile_tokens > 0 && plan.expert_tile_tokens < plan.max_step_tokens())
      absl::StrAppendFormat(&text, ", experts in tiles of %d tokens", plan.expert_tile_tokens);
    if (!plan.prefill_attention_on_gpu) absl::StrAppend(&text, ", prompts' attention on the CPU");
    absl::StrAppendFormat(&text, "; experts %s (%d on the GPU, %d streamed", TiersText(plan.expert_tiers),
                          plan.resident_moe_layers(), plan.streamed_moe_layers());
    if (plan.ssd_moe_layers() > 0)
      absl::StrAppendFormat(&text, ", %d of them from SSD", plan.ssd_moe_layers());
    text += ")";
  }
  absl::StrAppendFormat(
      &text, "; KV %s in blocks of %d, host %s", io::DTypeName(plan.kv.dtype), plan.kv.block_tokens,
      plan.kv.host_bytes > 0 ? absl::StrFormat("%.2f GiB", plan.kv.host_bytes / 1073741824.0)
                             : std::string("up to half the free RAM"));
  if (plan.kv.gpu_bytes > 0) {
    absl::StrAppendFormat(&text, ", GPU %.2f GiB (%.0f%% of the sequences)", plan.kv.gpu_bytes / 1073741824.0,
                          plan.kv.gpu_fraction * 100);
  }
  if (plan.expert_dtype != io::DType::kBF16) {
    absl::StrAppendFormat(&text, "; routed experts %s (128x128 blocks)", io::DTypeName(plan.expert_dtype));
  }
  if (plan.budgets.gpu_bytes > 0)
    absl::StrAppendFormat(&text, "; GPU cap %.2f GiB", plan.budgets.gpu_bytes / 1073741824.0);
  return text;
}

std::string PlanToJson(const ExecutionPlan& plan) {
  json tiers = json::array();
  for (ExpertTier tier : plan.expert_tiers) tiers.push_back(std::string(ExpertTierName(tier)));
  json out = {{"device", std::string(PlanDeviceName(plan.device))},
              {"batch", plan.batch},
              {"prefill_chunk", plan.prefill_chunk},
              {"max_step_tokens", plan.max_step_tokens()},
              {"micro_batches", plan.micro_batches},
              {"ring_sections", plan.ring_sections},
              {"layer_parts", plan.layer_parts},
              {"routed_expert_copies", plan.routed_expert_copies},
              {"prefill_attention_on_gpu", plan.prefill_attention_on_gpu},
              {"max_resident_moe_layers", plan.max_resident_moe_layers},
              {"resident_moe_layers", plan.resident_moe_layers()},
              {"expert_tiers", tiers},
              {"expert_dtype", std::string(io::DTypeName(plan.expert_dtype))},
              {"kv",
               {{"block_tokens", plan.kv.block_tokens},
                {"dtype", std::string(io::DTypeName(plan.kv.dtype))},
                {"host_bytes", plan.kv.host_bytes},
                {"gpu_fraction", plan.kv.gpu_fraction},
                {"gpu_bytes", plan.kv.gpu_bytes}}},
              {"budgets", {{"gpu_bytes", plan.budgets.gpu_bytes}, {"cpu_bytes", plan.budgets.cpu_bytes}}}};
  if (plan.gpus != 1) out["gpus"] = plan.gpus;  // One-GPU plans keep their form.
  if (plan.expert_tile_tokens != 0) out["expert_tile_tokens"] = plan.expert_tile_tokens;  // Likewise.
  if (plan.expert_shards != 0) out["expert_shards"] = plan.expert_shards;                 // 0: one per GPU
  return out.dump(2);
}

absl::StatusOr<ExecutionPlan> PlanFromJson(std::string_view text) {
  json root = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object()) return absl::InvalidArgumentError("plan: not a JSON object");
  ExecutionPlan plan;
  std::string missing;
  // Reads `key` of `object` into `out`; notes the first missing or mistyped field.
  auto read = [&](const json& object, const char* key, auto* out) {
    using T = std::remove_pointer_t<decltype(out)>;
    auto it = object.find(key);
    bool ok = it != object.end();
    if (ok) {
      if constexpr (std::is_same_v<T, bool>) {
        ok = it->is_boolean();
      } else if constexpr (std::is_same_v<T, std::string>) {
        ok = it->is_string();
      } else if constexpr (std::is_floating_point_v<T>) {
        ok = it->is_number();
      } else {
        ok = it->is_number_integer();
      }
    }
    if (!ok) {
      if (missing.empty()) missing = key;
      return;
    }
    *out = it->template get<T>();
  };
  std::string device, dtype;
  read(root, "device", &device);
  read(root, "batch", &plan.batch);
  read(root, "prefill_chunk", &plan.prefill_chunk);
  read(root, "micro_batches", &plan.micro_batches);
  read(root, "ring_sections", &plan.ring_sections);
  read(root, "layer_parts", &plan.layer_parts);
  read(root, "routed_expert_copies", &plan.routed_expert_copies);
  read(root, "prefill_attention_on_gpu", &plan.prefill_attention_on_gpu);
  read(root, "max_resident_moe_layers", &plan.max_resident_moe_layers);
  const json empty = json::object();
  const json& kv = root.contains("kv") && root["kv"].is_object() ? root["kv"] : empty;
  if (&kv == &empty && missing.empty()) missing = "kv";
  read(kv, "block_tokens", &plan.kv.block_tokens);
  read(kv, "dtype", &dtype);
  read(kv, "host_bytes", &plan.kv.host_bytes);
  read(kv, "gpu_fraction", &plan.kv.gpu_fraction);
  read(kv, "gpu_bytes", &plan.kv.gpu_bytes);
  const json& budgets = root.contains("budgets") && root["budgets"].is_object() ? root["budgets"] : empty;
  if (&budgets == &empty && missing.empty()) missing = "budgets";
  read(budgets, "gpu_bytes", &plan.budgets.gpu_bytes);
  read(budgets, "cpu_bytes", &plan.budgets.cpu_bytes);
  if (!missing.empty())
    return absl::InvalidArgumentError(absl::StrCat("plan: missing or mistyped field '", missing, "'"));
  if (device != "gpu" && device != "cpu") {
    return absl::InvalidArgumentError(absl::StrCat("plan: device must be gpu or cpu, not '", device, "'"));
  }
  plan.device = device == "gpu" ? PlanDevice::kGpu : PlanDevice::kCpu;
  if (dtype == "BF16" || dtype == "bf16") {
    plan.kv.dtype = io::DType::kBF16;
  } else if (dtype == "F32" || dtype == "f32") {
    plan.kv.dtype = io::DType::kF32;
  } else if (dtype == "F8_E4M3") {
    plan.kv.dtype = io::DType::kF8E4M3;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("plan: kv.dtype must be BF16, F32 or F8_E4M3, not '", dtype, "'"));
  }
  // Optional (one-GPU plans): 1.
  if (auto gpus = root.find("gpus"); gpus != root.end()) {
    if (!gpus->is_number_integer() || gpus->get<int>() < 1)
      return absl::InvalidArgumentError(
          absl::StrCat("plan: gpus must be a positive integer, not ", gpus->dump()));
    plan.gpus = gpus->get<int>();
  }
  // Optional (plans written before tiles): 0, whole micro-batches.
  if (auto tile = root.find("expert_tile_tokens"); tile != root.end()) {
    if (!tile->is_number_integer() || tile->get<int>() < 0)
      return absl::InvalidArgumentError(
          absl::StrCat("plan: expert_tile_tokens must be a non-negative integer, not ", tile->dump()));
    plan.expert_tile_tokens = tile->get<int>();
  }
  // Optional: 0 (one shard per GPU).
  if (auto shards = root.find("expert_shards"); shards != root.end()) {
    if (!shards->is_number_integer() || shards->get<int>() < 0)
      return absl::InvalidArgumentError(
          absl::StrCat("plan: expert_shards must be a non-negative integer, not ", shards->dump()));
    plan.expert_shards = shards->get<int>();
  }
  // Optional (plans written before FP8 experts): BF16.
  if (auto expert_dtype = root.find("expert_dtype"); expert_dtype != root.end()) {
    if (*expert_dtype == "BF16") {
      plan.expert_dtype = io::DType::kBF16;
    } else if (*expert_dtype == "F8_E4M3") {
      plan.expert_dtype = io::DType::kF8E4M3;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("plan: expert_dtype must be BF16 or F8_E4M3, not ", expert_dtype->dump()));
    }
  }
  auto tiers = root.find("expert_tiers");
  if (tiers == root.end() || !tiers->is_array())
    return absl::InvalidArgumentError("plan: missing field 'expert_tiers'");
  for (const json& tier : *tiers) {
    const ExpertTier* found = nullptr;
    for (const ExpertTier& candidate : kTiers) {
      if (tier.is_string() && tier.get<std::string>() == ExpertTierName(candidate)) found = &candidate;
    }
    if (found == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("plan: expert_tiers holds '", tier.dump(), "'; expected none, gpu, pinned or ssd"));
    }
    plan.expert_tiers.push_back(*found);
  }
  return plan;
}

bool operator==(const KvPlacement& a, const KvPlacement& b) {
  return a.block_tokens == b.block_tokens && a.dtype == b.dtype && a.host_bytes == b.host_bytes &&
         a.gpu_fraction == b.gpu_fraction && a.gpu_bytes == b.gpu_bytes;
}

bool operator==(const Budgets& a, const Budgets& b) {
  return a.gpu_bytes == b.gpu_bytes && a.cpu_bytes == b.cpu_bytes;
}

bool operator==(const ExecutionPlan& a, const ExecutionPlan& b) {
  return a.device == b.device && a.batch == b.batch && a.prefill_chunk == b.prefill_chunk &&
         a.micro_batches == b.micro_batches && a.ring_sections == b.ring_sections &&
         a.layer_parts == b.layer_parts && a.routed_expert_copies == b.routed_expert_copies &&
         a.prefill_attention_on_gpu == b.prefill_attention_on_gpu &&
         a.expert_tile_tokens == b.expert_tile_tokens &&
         a.max_resident_moe_layers == b.max_resident_moe_layers && a.expert_tiers == b.expert_tiers &&
         a.expert_dtype == b.expert_dtype && a.kv == b.kv && a.budgets == b.budgets && a.gpus == b.gpus &&
         a.expert_shards == b.expert_shards;
}

}  // namespace ringmoe::planner
