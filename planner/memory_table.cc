#include "planner/memory_table.h"

#include <algorithm>

#include "absl/strings/str_format.h"
#include "gpu/expert_packing.h"
#include "planner/expert_shards.h"
#include "planner/model_costs.h"

namespace ringmoe::planner {
namespace {

int64_t Charged(int64_t bytes) {
  return (bytes + kArenaGranularity - 1) / kArenaGranularity * kArenaGranularity;
}

}  // namespace

std::string_view MemoryTierName(MemoryTier tier) {
  switch (tier) {
    case MemoryTier::kGpu:
      return "gpu";
    case MemoryTier::kPinned:
      return "pinned";
    case MemoryTier::kHost:
      return "host";
  }
  return "?";
}

int64_t MemoryTable::Total(MemoryTier tier) const {
  int64_t total = 0;
  for (const MemoryItem& item : items) total += item.tier == tier ? item.bytes : 0;
  return total;
}

int64_t MemoryTable::Sum(std::string_view prefix) const {
  int64_t total = 0;
  for (const MemoryItem& item : items) total += item.what.rfind(prefix, 0) == 0 ? item.bytes : 0;
  return total;
}

std::string MemoryTable::Format() const {
  std::string text;
  for (MemoryTier tier : {MemoryTier::kGpu, MemoryTier::kPinned, MemoryTier::kHost}) {
    absl::StrAppendFormat(&text, "%-6s %10.3f GiB\n", MemoryTierName(tier), Total(tier) / 1073741824.0);
    for (const MemoryItem& item : items) {
      if (item.tier == tier) absl::StrAppendFormat(&text, "  %-40s %14d\n", item.what, item.bytes);
    }
  }
  return text;
}

int64_t PackedExpertStride(int hidden, int intermediate) {
  const int64_t bytes = int64_t{3} * intermediate * hidden * 2;
  return (bytes + gpu::kPackAlignment - 1) / gpu::kPackAlignment * gpu::kPackAlignment;
}

std::vector<MemoryItem> StepBufferItems(const ModelSpec& spec, int max_tokens, int micro_batches,
                                        int device_kv_blocks, int64_t device_kv_bytes) {
  const int64_t t = max_tokens, h = spec.hidden_size, qw = spec.q_width();
  // MLA (DeepSeek): "k" holds kv_a's [latent ; rope key] rows and there is no "v"; attention rows are
  // heads * v_head_dim wide; q_b's input (the normed q LoRA rows) has buffers of its own.
  const bool mla = spec.is_mla();
  const int64_t kw = mla ? spec.mla.cache_width() : spec.kv_width(), vw = mla ? 0 : spec.kv_width();
  const int64_t aw = spec.attention_out_width(), lora = mla ? spec.mla.q_lora_rank : 0;
  const int64_t top_k = spec.num_experts_per_tok, e = spec.num_experts, vocab = spec.vocab_size;
  const int64_t offsets = t + micro_batches + 1;
  const int64_t tables = std::max(1, device_kv_blocks) * 4LL;
  const MemoryTier gpu = MemoryTier::kGpu, pinned = MemoryTier::kPinned;
  return {{gpu, "hidden states", t * h * 4},
          {gpu, "normed", t * h * 4},
          {gpu, "normed bf16", t * h * 2},
          {gpu, "q", t * qw * 4},
          {gpu, "k", t * kw * 4},
          {gpu, "v", t * vw * 4},
          {gpu, "attention", t * aw * 4},
          {gpu, "attention bf16", t * aw * 2},
          {gpu, "o_proj out", t * h * 4},
          {gpu, "router logits", t * e * 4},
          {gpu, "expert ids", t * top_k * 4},
          {gpu, "routing weights", t * top_k * 4},
          {gpu, "single-expert ids", t * 4},
          {gpu, "unit weights", t * 4},
          {gpu, "shared gate", t * 4},
          {gpu, "positions", t * 4},
          {gpu, "fresh-prompt offsets", offsets * 4},
          {gpu, "logit rows", t * 4},
          {gpu, "final rows", kLogitsRows * h * 4},
          {gpu, "final bf16", kLogitsRows * h * 2},
          {gpu, "logits", kLogitsRows * vocab * 4},
          {gpu, "picked tokens", t * 4},
          {gpu, "picked logprobs", t * 4},
          {gpu, "device KV row tables", t * 4},
          {gpu, "device KV tables", tables},
          {gpu, "device KV cache (K)", device_kv_bytes / 2},
          {gpu, "device KV cache (V)", device_kv_bytes / 2},
          {gpu, "q LoRA", t * lora * 4},
          {gpu, "q LoRA bf16", t * lora * 2},
          {pinned, "staging: hidden states", t * h * 4},
          {pinned, "staging: q", t * qw * 4},
          {pinned, "staging: k", t * kw * 4},
          {pinned, "staging: v", t * vw * 4},
          {pinned, "staging: attention", t * aw * 4},
          {pinned, "staging: positions", t * 4},
          {pinned, "staging: fresh-prompt offsets", offsets * 4},
          {pinned, "staging: logit rows", t * 4},
          {pinned, "staging: logits", kLogitsRows * vocab * 4},
          {pinned, "staging: picked tokens", t * 4},
          {pinned, "staging: picked logprobs", t * 4},
          {pinned, "staging: device KV row tables", t * 4},
          {pinned, "staging: device KV tables", tables}};
}

gpu::PackedLayerIndex RoutedExpertLayerIndex(const ModelSpec& spec, io::DType held_expert_dtype) {
  if (held_expert_dtype != io::DType::kF8E4M3) {
    return gpu::MakePackedLayerIndex(spec.num_experts, spec.hidden_size, spec.moe_intermediate_size);
  }
  const bool checkpoint_blocks = spec.quantization.method == WeightQuantization::kFp8Block;
  return gpu::MakeFp8PackedLayerIndex(spec.num_experts, spec.hidden_size, spec.moe_intermediate_size,
                                      checkpoint_blocks ? spec.quantization.block_rows : 128,
                                      checkpoint_blocks ? spec.quantization.block_cols : 128);
}

std::vector<MemoryItem> MoeRunnerItems(const ModelSpec& spec, int max_tokens, io::DType held_expert_dtype) {
  std::vector<MemoryItem> items;
  const bool fp8 = held_expert_dtype == io::DType::kF8E4M3;
  // gpu/moe_ops.cc's MoeRunner::Create, one runner per shape.
  auto runner = [&](const char* name, int64_t experts, int64_t top_k, int64_t intermediate, bool grouped) {
    // Grouped GEMM pointer arrays: six per expert, a seventh with FP8 dequantisation (routed experts only).
    const int64_t pointers = grouped ? (fp8 ? 7 : 6) * experts * 8 : 0;
    const int64_t a = int64_t{max_tokens} * top_k, h = spec.hidden_size;
    const int64_t device = Charged(4 * (experts + 1)) * 2 + Charged(4 * a) * 2 +
                           // CUB's radix sort: keys and values (2 x 4a) plus its own temporary storage,
                           // about 4a and a little more at these sizes.
                           Charged(2 * 4 * a + 4 * a + (int64_t{64} << 10)) + Charged(2 * a * h) +
                           Charged(4 * a * 2 * intermediate) + Charged(2 * a * intermediate) +
                           Charged(4 * a * h) + (grouped ? Charged(pointers) : 0);
    items.push_back({MemoryTier::kGpu, std::string("MoE runner: ") + name, device});
    items.push_back({MemoryTier::kPinned, std::string("MoE runner: ") + name,
                     4 * (experts + 1) + (grouped ? pointers : 0)});
  };
  if (fp8 && spec.num_experts > 0) {
    const int scratch = gpu::Fp8DequantScratchExperts(spec.num_experts, spec.hidden_size,
                                                      spec.moe_intermediate_size);
    items.push_back({MemoryTier::kGpu, "MoE runner: FP8 dequantisation scratch",
                     Charged(scratch * PackedExpertStride(spec.hidden_size, spec.moe_intermediate_size))});
  }
  // The engine makes the routed-expert runner whatever the layers (runtime/engine/gpu_step_ops.cc).
  runner("routed experts", spec.num_experts, spec.num_experts_per_tok, spec.moe_intermediate_size, true);
  if (spec.intermediate_size > 0 && spec.num_moe_layers() < spec.num_layers) {
    runner("dense MLPs", 1, 1, spec.intermediate_size, false);
  }
  if (spec.shared_expert_intermediate_size > 0) {
    runner("shared experts", 1, 1, spec.shared_expert_intermediate_size, false);
  }
  return items;
}

std::vector<MemoryItem> DenseWeightItems(const ModelSpec& spec) {
  const int64_t h = spec.hidden_size, qw = spec.q_width(), kvw = spec.kv_width();
  int64_t attention = 0, routers = 0, mlps = 0;
  for (int i = 0; i < spec.num_layers; ++i) {
    if (spec.is_mla()) {
      // q_a, its norm and q_b (or q_proj), kv_a and its norm, kv_b (f32, as the CPU's absorbed attention
      // keeps it: fresh prompts' attention), o_proj and the two layer norms. The CPU's attention keeps its
      // own (MlaHostWeightBytes).
      const int64_t lora = spec.mla.q_lora_rank;
      attention +=
          lora > 0 ? Charged(lora * h * 2) + Charged(4 * lora) + Charged(qw * lora * 2) : Charged(qw * h * 2);
      const int64_t kv_b =
          int64_t{spec.num_heads} * (spec.mla.qk_nope_head_dim + spec.mla.v_head_dim) * spec.mla.kv_lora_rank;
      attention += Charged(int64_t{spec.mla.cache_width()} * h * 2) + Charged(4LL * spec.mla.kv_lora_rank) +
                   Charged(kv_b * 4) + Charged(h * spec.attention_out_width() * 2) + 2 * Charged(4 * h);
    } else {
      attention += Charged(qw * h * 2) + 2 * Charged(kvw * h * 2) + Charged(h * qw * 2) + 2 * Charged(4 * h);
    }
    if (spec.attention_bias) attention += Charged(4 * qw) + 2 * Charged(4 * kvw);
    if (spec.qk_norm == QkNorm::kPerHead) attention += 2 * Charged(4LL * spec.head_dim);
    if (spec.qk_norm == QkNorm::kFullWidth) attention += Charged(4 * qw) + Charged(4 * kvw);
    if (spec.layers[i].is_moe) {
      routers += Charged(4LL * spec.num_experts * h);
      // DeepSeek-V3's e_score_correction_bias, f32, beside its router.
      if (spec.router == RouterKind::kSigmoidGroupTopK) routers += Charged(4LL * spec.num_experts);
      if (spec.layers[i].has_shared_expert) {
        mlps += Charged(PackedExpertStride(spec.hidden_size, spec.shared_expert_intermediate_size)) +
                (spec.shared_expert_gated ? Charged(2 * h) : 0);
      }
    } else {
      mlps += Charged(PackedExpertStride(spec.hidden_size, spec.intermediate_size));
    }
  }
  return {{MemoryTier::kGpu, "weights: attention", attention},
          {MemoryTier::kGpu, "weights: routers", routers},
          {MemoryTier::kGpu, "weights: shared experts and dense MLPs", mlps},
          {MemoryTier::kGpu, "weights: lm_head and final norm",
           Charged(int64_t{spec.vocab_size} * h * 2) + Charged(4 * h)}};
}

std::vector<MemoryItem> MlaPrefillItems(const ModelSpec& spec, int max_tokens) {
  if (!spec.is_mla()) return {};
  const MlaSpec& mla = spec.mla;
  const int64_t t = max_tokens, heads = spec.num_heads, qk = mla.qk_head_dim();
  const MemoryTier gpu = MemoryTier::kGpu;
  return {{gpu, "MLA prefill: latents", t * mla.kv_lora_rank * 4},
          {gpu, "MLA prefill: bf16 rounding", t * std::max(mla.kv_lora_rank, mla.qk_rope_head_dim) * 2},
          {gpu, "MLA prefill: rope keys", t * mla.qk_rope_head_dim * 4},
          {gpu, "MLA prefill: kv_b out", t * heads * (mla.qk_nope_head_dim + mla.v_head_dim) * 4},
          {gpu, "MLA prefill: k", t * heads * qk * 4},
          {gpu, "MLA prefill: v", t * heads * qk * 4},
          {gpu, "MLA prefill: out", t * heads * qk * 4}};
}

std::vector<MemoryItem> ExpertShardItems(const ModelSpec& spec, int max_tokens, int shards, int gpus) {
  if (shards <= 1 || spec.num_moe_layers() == 0) return {};
  std::vector<MemoryItem> items;
  const int here = std::max(1, shards / std::max(gpus, 1));
  for (int g = 0; g < here; ++g) {
    items.push_back({MemoryTier::kGpu, absl::StrFormat("expert shard %d partial output", g),
                     int64_t{max_tokens} * spec.hidden_size * 4});
  }
  return items;
}

int64_t MlaHostWeightBytes(const ModelSpec& spec) {
  if (!spec.is_mla()) return 0;
  const MlaSpec& mla = spec.mla;
  // kv_b [heads * (nope + v), latent] in f32, absorb_q's transposed copy of its W_UK part, kv_a's norm.
  const int64_t per_layer =
      int64_t{spec.num_heads} * (mla.qk_nope_head_dim + mla.v_head_dim) * mla.kv_lora_rank * 4 +
      int64_t{spec.num_heads} * mla.qk_nope_head_dim * mla.kv_lora_rank * 4 + int64_t{mla.kv_lora_rank} * 4;
  return per_layer * spec.num_layers;
}

int64_t SsdStagingBufferBytes(int64_t experts, int64_t expert_bf16_bytes, io::DType stored) {
  const int64_t stored_bytes = expert_bf16_bytes / 2 * static_cast<int64_t>(io::DTypeSize(stored));
  const int64_t read = experts * (stored_bytes + 3 * 2 * kSsdReadAlignment);
  return read + (stored == io::DType::kBF16 ? 0 : experts * expert_bf16_bytes);
}

io::DType CheckpointDType(const ModelSpec& spec) {
  if (spec.torch_dtype == "float32") return io::DType::kF32;
  if (spec.torch_dtype == "float16") return io::DType::kF16;
  return io::DType::kBF16;
}

MemoryTable ComputeMemoryTable(const ModelSpec& spec, const ExecutionPlan& plan, int max_context_tokens) {
  MemoryTable table;
  const int64_t h = spec.hidden_size;
  const int64_t kv_per_token = KvBytesPerToken(spec, plan.kv.dtype);
  const int64_t blocks_per_sequence = (max_context_tokens + plan.kv.block_tokens - 1) / plan.kv.block_tokens;
  int64_t host_kv = plan.batch * blocks_per_sequence * plan.kv.block_tokens * kv_per_token;
  if (plan.kv.host_bytes > 0) host_kv = std::min(host_kv, plan.kv.host_bytes);
  // Embedding rows are looked up on the host from the mapped checkpoint (bf16 in the checkpoints we plan
  // for).
  table.items.push_back({MemoryTier::kHost, "embeddings (mapped)", int64_t{spec.vocab_size} * h * 2});
  if (plan.device == PlanDevice::kCpu) {
    // The CPU path's KV takes its compute type (bf16 or f32), so the KV dtype names the weights' type too,
    // except an fp8 KV cache (--kv-dtype fp8), which says nothing about it: bf16 then, the usual case.
    const io::DType compute = plan.kv.dtype == io::DType::kF8E4M3 ? io::DType::kBF16 : plan.kv.dtype;
    const int64_t weights = (spec.total_params() - int64_t{spec.vocab_size} * h) * io::DTypeSize(compute);
    table.items.push_back({MemoryTier::kHost, "weights (mapped or converted)", weights});
    table.items.push_back({MemoryTier::kHost, "KV cache (host)", host_kv});
    return table;
  }
  for (MemoryItem& item : DenseWeightItems(spec)) table.items.push_back(std::move(item));
  const io::DType held = HeldExpertDType(plan.expert_dtype);
  const gpu::PackedLayerIndex expert_index = RoutedExpertLayerIndex(spec, held);
  const int64_t layer_bytes = expert_index.total_bytes();
  const int resident = plan.resident_moe_layers(), streamed = plan.streamed_moe_layers();
  table.items.push_back({MemoryTier::kGpu, "resident experts", Charged(layer_bytes) * resident});
  if (streamed > 0) {
    // The largest of a layer's ring parts, cut shard-major (planner/expert_shards.h); each GPU cuts its own
    // shards into layer_parts parts.
    const int64_t part_experts = MaxPartExperts(spec.num_experts, plan.expert_shard_count(),
                                                plan.layer_parts * std::max(plan.gpus, 1));
    const int64_t slot = part_experts * expert_index.expert_stride_bytes;
    table.items.push_back({MemoryTier::kGpu, "ring slots", Charged(slot) * plan.ring_sections});
    const int ssd = plan.ssd_moe_layers();
    table.items.push_back({MemoryTier::kPinned, "streamed experts", layer_bytes * (streamed - ssd)});
    if (ssd > 0) {
      const int64_t expert_bytes = int64_t{3} * spec.moe_intermediate_size * h * 2;
      table.items.push_back({MemoryTier::kPinned, "SSD staging buffers",
                             SsdStagingBuffers(plan.ring_sections) *
                                 SsdStagingBufferBytes(part_experts, expert_bytes, CheckpointDType(spec))});
    }
  }
  table.items.push_back({MemoryTier::kGpu, "cuBLAS workspace", kCublasWorkspaceBytes});
  const int64_t device_block_bytes = kv_per_token * plan.kv.block_tokens;
  const int device_blocks =
      device_block_bytes > 0 ? static_cast<int>(plan.kv.gpu_bytes / device_block_bytes) : 0;
  for (MemoryItem& item : StepBufferItems(spec, plan.max_step_tokens(), plan.micro_batches, device_blocks,
                                          int64_t{device_blocks} * device_block_bytes)) {
    if (item.tier == MemoryTier::kGpu) item.bytes = Charged(item.bytes);
    if (item.bytes > 0) table.items.push_back(std::move(item));
  }
  for (MemoryItem& item : MoeRunnerItems(spec, plan.expert_runner_tokens(), held))
    table.items.push_back(std::move(item));
  for (MemoryItem& item :
       ExpertShardItems(spec, plan.max_step_tokens(), plan.expert_shard_count(), plan.gpus)) {
    item.bytes = Charged(item.bytes);
    table.items.push_back(std::move(item));
  }
  if (spec.is_mla()) {
    if (plan.prefill_attention_on_gpu) {
      for (MemoryItem& item : MlaPrefillItems(spec, plan.max_step_tokens())) {
        item.bytes = Charged(item.bytes);
        table.items.push_back(std::move(item));
      }
    }
    table.items.push_back({MemoryTier::kHost, "weights: MLA kv_b and its absorbed copy (f32, CPU attention)",
                           MlaHostWeightBytes(spec)});
  }
  table.items.push_back({MemoryTier::kHost, "KV cache (host)", host_kv});
  return table;
}

}  // namespace ringmoe::planner
