// ExecutionPlan: the one contract between the planner and the engine. The planner's search produces it,
// `ringmoe plan` prints it, `ringmoe run` and the benchmarks hand it to the engine, which executes it and
// decides nothing about placement itself, and --report-json records it. It is a plain value: text and JSON
// both ways.
//
// PlanPins is a partial plan: the choices a user pinned with flags (runtime/frontend/plan_flags.h); the
// search completes it, and --no-plan completes it with the defaults below instead of searching. Threading:
// plain values; no shared state.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "io/dtype.h"
#include "io/model_spec.h"

namespace ringmoe::planner {

enum class PlanDevice { kCpu, kGpu };
std::string_view PlanDeviceName(PlanDevice device);

// Tokens per paged KV-cache block: one constant for the planner's prices and the engine's cache.
inline constexpr int kKvBlockTokens = 16;

// Memory the plan may use. Zero fields take defaults from the hardware profile (ResolveBudgets).
struct Budgets {
  int64_t gpu_bytes = 0;
  int64_t cpu_bytes = 0;
};

// Where a layer's routed experts live. kNone: a dense layer (no routed experts). kPinnedHost and kSsd
// layers stream through the GPU ring every step; kSsd layers are read from the checkpoint's files on SSD
// (io_uring, O_DIRECT) into pinned staging buffers first, because they do not fit the CPU budget.
enum class ExpertTier { kNone, kGpu, kPinnedHost, kSsd };
std::string_view ExpertTierName(ExpertTier tier);

// The KV cache: its paging, its element type, and its two shares (host memory, and the GPU's share whose
// sequences also attend on the GPU).
struct KvPlacement {
  int block_tokens = kKvBlockTokens;
  // kBF16 or kF32; or kF8E4M3 (e4m3 with an f32 scale per token and kv head) in host memory when the GPU
  // holds no share (--kv-dtype fp8).
  io::DType dtype = io::DType::kBF16;
  int64_t host_bytes = 0;  // Host KV-cache budget; 0 = half the free host memory when the engine opens.
  double gpu_fraction =
      0;                  // Share of the sequences in flight whose KV lives on the GPU (the search's choice).
  int64_t gpu_bytes = 0;  // Device bytes of that share (what the engine allocates).
};

// A default-constructed plan is the search's starting point; DefaultPlan(device) is what --no-plan starts
// from.
struct ExecutionPlan {
  PlanDevice device = PlanDevice::kGpu;
  int batch = 1;             // Sequences in flight (the engine's admission limit).
  int prefill_chunk = 2048;  // Prefill tokens a step may add to its decodes.
  int micro_batches = 2;     // Slices of a step in flight at once (GPU device; 1 on the CPU).
  // The ring of GPU slots that streamed layers rotate through (GPU device).
  // Slots: at least layer_parts + 1 (a whole layer in the ring while the next part streams), or, for layers
  // cut into parts, as few as 2: then a layer's parts run one at a time (parts_one_at_a_time()).
  int ring_sections = 2;
  int layer_parts = 1;                // Ring sections each streamed MoE layer's routed experts are cut into.
  bool routed_expert_copies = false;  // Copy only the experts a step routes to, once its routing is known.
  bool prefill_attention_on_gpu = true;  // Fresh prompts' attention on the GPU (else on the CPU, as decodes).
  // The expert runners take a micro-batch's rows in tiles of at most this many tokens (0: the whole
  // micro-batch at once), so their scratch (about 160 KB a token for Qwen3-30B-A3B) stops growing with the
  // prefill chunk: large chunks fit a small GPU and the first wave's prompts take fewer streaming steps.
  int expert_tile_tokens = 0;
  // Search bound: at most this many MoE layers' routed experts on the GPU; -1 = all that fit. The placement
  // itself is expert_tiers.
  int max_resident_moe_layers = -1;
  // Per layer (config order): where its routed experts live. Empty on the CPU device. Resident layers are
  // spread evenly among the streamed ones (SpreadResidentLayers).
  std::vector<ExpertTier> expert_tiers;
  KvPlacement kv;
  // The routed experts' weight type: kBF16 = the checkpoint's own float values; kF8E4M3 = 128x128 FP8 blocks,
  // from an FP8 checkpoint or quantised at load (--expert-dtype fp8). The engine dequantises them at load for
  // now, so both paths hold and stream them in the compute type (planner/model_costs.h prices that).
  io::DType expert_dtype = io::DType::kBF16;
  Budgets budgets;  // The GPU cap the engine allocates under, and the host budget the plan was made for.
  // GPUs of one server the plan spreads over (GPU device), each on its own host link: each streamed or
  // resident MoE layer's routed experts are split evenly over them (expert parallel), every GPU keeps the
  // other weights, and budgets.gpu_bytes is each GPU's. The engine runs one GPU only: above 1 a plan is for
  // `ringmoe plan` alone (planner/DESIGN.md, "Several GPUs").
  int gpus = 1;
  // Expert shards (expert parallel, planner/expert_shards.h): every MoE layer's routed experts split into
  // this many contiguous shards, each running its expert pass into a partial output of its own, which are
  // then added to the residual stream in shard order. 0 = one shard per GPU (gpus). Above gpus, several
  // shards share a GPU: on one GPU that runs the split's whole structure as logical shards (tests compare it
  // against no split; gpu/DESIGN.md, "Expert shards"). A streamed layer's layer_parts must then be a
  // multiple of the shards per GPU, so that each ring part belongs to one shard. GPU device only.
  int expert_shards = 0;

  // The shards the engine runs: expert_shards, or one per GPU.
  int expert_shard_count() const { return expert_shards > 0 ? expert_shards : gpus; }
  // Tokens one step may hold: every sequence's decode plus a prefill chunk.
  int max_step_tokens() const { return batch + prefill_chunk; }
  // A ring shallower than a layer: each streamed layer's experts run part by part, every micro-batch's rows
  // (one micro-batch, no tiles) through a part before its slot takes the section N ahead, so models whose
  // layer dwarfs the GPU still stream (DeepSeek-V3's 10.5 GiB FP8 layers on a 16 GiB budget).
  bool parts_one_at_a_time() const { return layer_parts > 1 && ring_sections < layer_parts + 1; }
  // Rows the expert runners are sized for: a tile, or every token of a step.
  int expert_runner_tokens() const;
  int resident_moe_layers() const;
  int streamed_moe_layers() const;  // From pinned memory or SSD.
  int ssd_moe_layers() const;
};

// Rows the expert runners take at once in steps of up to step_tokens, with tiles of expert_tile_tokens
// (0: whole steps). The planner's price and the engine's allocation both come from it.
inline int ExpertRunnerTokens(int step_tokens, int expert_tile_tokens) {
  return expert_tile_tokens > 0 ? std::min(expert_tile_tokens, step_tokens) : step_tokens;
}
inline int ExecutionPlan::expert_runner_tokens() const {
  return ExpertRunnerTokens(max_step_tokens(), expert_tile_tokens);
}

// The choices a user pinned; unset fields are the search's (or, with --no-plan, the defaults').
struct PlanPins {
  std::optional<int> batch;
  std::optional<int> prefill_chunk;
  std::optional<int> micro_batches;
  std::optional<int> max_resident_moe_layers;
  std::optional<double> kv_gpu_fraction;
  std::optional<int> layer_parts;
  std::optional<int> ring_sections;
  std::optional<bool> routed_expert_copies;
  std::optional<bool> prefill_attention_on_gpu;
  std::optional<int> expert_tile_tokens;
  std::optional<int64_t> kv_host_bytes;
  std::optional<io::DType> expert_dtype;
  std::optional<io::DType> kv_dtype;  // --kv-dtype fp8
  std::optional<int> gpus;            // --gpus (planning only, see ExecutionPlan::gpus)
  bool any() const {
    return batch || prefill_chunk || micro_batches || max_resident_moe_layers || kv_gpu_fraction ||
           layer_parts || ring_sections || routed_expert_copies || prefill_attention_on_gpu ||
           expert_tile_tokens || kv_host_bytes || expert_dtype ||
           kv_dtype;  // gpus says what the machine is, not a plan choice
  }
};

// `plan` with every pinned choice of `pins` applied.
ExecutionPlan ApplyPins(ExecutionPlan plan, const PlanPins& pins);

// The plan --no-plan starts from on `device`: 256 sequences in flight and steps of 2048 tokens; on the GPU
// two micro-batches and a ring of two whole-layer slots.
ExecutionPlan DefaultPlan(PlanDevice device);

// Per layer of `spec` (the first `layers` when > 0): `resident` MoE layers on the GPU, spread evenly among
// the streamed ones (the ring streams ahead while a resident layer computes, instead of idling through a run
// of them and then falling behind); the other MoE layers in pinned host memory.
std::vector<ExpertTier> SpreadResidentLayers(const ModelSpec& spec, int resident, int layers = 0);
// The same over layers given as is-MoE flags.
std::vector<ExpertTier> SpreadResidentLayers(const std::vector<bool>& is_moe, int resident);

// `tiers` with `ssd_layers` of its pinned layers moved to the SSD tier, spread evenly among the pinned ones
// (so that each SSD layer's reads overlap the copies and compute of the pinned layers around it).
std::vector<ExpertTier> SpreadSsdLayers(std::vector<ExpertTier> tiers, int ssd_layers);

// Bytes of the GPU share of the KV cache for `sequences` sequences of `context_tokens` each (whole blocks).
int64_t KvBytesForSequences(const ModelSpec& spec, const KvPlacement& kv, int sequences, int context_tokens);
// KV-cache bytes one token adds over all layers (K and V) in `dtype`; F8_E4M3 adds its f32 scale per kv head.
// MLA models (DeepSeek) keep one row of mla.cache_width() values per token and layer instead.
// The one count the planner and the engine's KvCache both use.
int64_t KvBytesPerToken(const ModelSpec& spec, io::DType dtype);

// Checks what the engine relies on (positive sizes, a ring that can turn, tiers for every layer on the GPU,
// one GPU).
// Errors name the field.
absl::Status ValidatePlan(const ExecutionPlan& plan, const ModelSpec& spec);

// OK unless the plan runs its layers' parts one at a time (ExecutionPlan::parts_one_at_a_time) in a way that
// cannot: several micro-batches, expert tiles, routed copies or several expert shards (InvalidArgument naming
// the field). ValidatePlan and the planner's Predict both ask it.
absl::Status CheckPartsOneAtATime(const ExecutionPlan& plan);

// The plan as one line per decision, for reports ("plan  batch 64, prefill chunk 512, ...").
std::string FormatExecutionPlan(const ExecutionPlan& plan);
// JSON both ways; PlanFromJson(PlanToJson(p)) == p. Errors name the field.
std::string PlanToJson(const ExecutionPlan& plan);
absl::StatusOr<ExecutionPlan> PlanFromJson(std::string_view json);

bool operator==(const KvPlacement& a, const KvPlacement& b);
bool operator==(const Budgets& a, const Budgets& b);
bool operator==(const ExecutionPlan& a, const ExecutionPlan& b);

}  // namespace ringmoe::planner
