// ModelCosts: bytes and FLOPs of a model, counted from its ModelSpec (config.json) alone, per layer and per
// weight group. Weight groups are listed in the order the engine keeps them resident on the GPU.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

#include "io/dtype.h"
#include "io/model_spec.h"

namespace ringmoe::planner {

// Residency priority: the engine keeps whole groups on the GPU in this order, routed experts last.
enum class WeightGroup { kAttention, kRouter, kSharedMlp, kLmHead, kRoutedExperts };
inline constexpr int kNumWeightGroups = 5;
std::string_view WeightGroupName(WeightGroup group);

struct LayerCosts {
  bool is_moe = true;
  int64_t attention_bytes = 0;   // q, k, v, o (+ biases, q/k norms, both layer norms).
  int64_t router_bytes = 0;      // The gate over routed experts (MoE layers).
  int64_t shared_mlp_bytes = 0;  // Shared expert and its gate (Qwen2-MoE), or the dense MLP of a dense layer.
  int64_t expert_bytes = 0;      // One routed expert (gate, up, down).
  int num_experts = 0;           // Routed experts (0 in dense layers).
  int top_k = 0;

  // FLOPs per token (a multiply-add is 2).
  double attention_projection_flops = 0;  // q, k, v and o projections.
  // MLA (DeepSeek): of attention_projection_flops, the absorption of kv_b (W_UK into the queries, W_UV out of
  // the latent), which runs on the CPU beside its attention on both paths; for fresh prompts attending on the
  // GPU, applying kv_b to their latents costs the GPU the same.
  double mla_absorb_flops = 0;
  double router_flops = 0;
  double shared_mlp_flops = 0;
  double expert_flops = 0;  // One token through one routed expert; a token visits top_k of them.

  int64_t routed_expert_bytes() const { return expert_bytes * num_experts; }
  int64_t weight_bytes() const {
    return attention_bytes + router_bytes + shared_mlp_bytes + routed_expert_bytes();
  }
};

struct ModelCosts {
  int hidden = 0, q_width = 0, kv_width = 0, vocab = 0, heads = 0, kv_heads = 0, head_dim = 0;
  int attention_out_width = 0;  // o_proj's input per token: q_width, or heads * v_head_dim (MLA)
  int kv_rows_width = 0;        // k/v values per token the GPU path sends the host: 2 kv_width, or MLA's row
  // MLA (DeepSeek) on the GPU path: its cache stays on the host (no share on the GPU), and fresh prompts
  // attend on the GPU only with ExecutionPlan::prefill_attention_on_gpu (else on the CPU with the rest),
  // which then also needs mla_prefill_bytes_per_token of device scratch per step token (MlaPrefillItems).
  bool mla = false;
  int64_t mla_prefill_bytes_per_token = 0;
  int weight_bytes_per_param = 2;  // bf16 weights
  int kv_bytes_per_element = 2;    // bf16 KV cache
  io::DType kv_dtype = io::DType::kBF16;  // The KV cache's type (PriceKvCache); decode attention's FLOP rate
                                          // depends on it (CpuAttentionRate::fp8_gflops).
  // The dtype the checkpoint stores weights in: what the SSD tier reads (config.json's torch_dtype).
  io::DType checkpoint_dtype = io::DType::kBF16;
  // The routed experts' values (the plan's expert_dtype, or F8_E4M3 for an FP8 checkpoint), and the type the
  // engine holds and streams them in, which LayerCosts::expert_bytes prices (HeldExpertDType).
  io::DType expert_dtype = io::DType::kBF16;
  io::DType held_expert_dtype = io::DType::kBF16;
  std::vector<LayerCosts> layers;
  int64_t embedding_bytes = 0;  // Token embeddings: looked up on the CPU, never streamed.
  int64_t lm_head_bytes = 0;    // Final norm and lm_head (a GPU copy even when tied to the embeddings).
  double lm_head_flops = 0;     // Per token that needs logits.

  // KV cache bytes one token adds, over all layers (K and V).
  int64_t kv_bytes_per_token = 0;
  // Attention-core FLOPs per query token per context token over all layers (q.k and p.v: 4 * heads * head_dim
  // per layer).
  double attention_flops_per_context_token = 0;
  // GPU activation bytes per token in flight (hidden states, q/k/v, router logits, expert intermediates).
  int64_t activation_bytes_per_token = 0;
  // The GPU path's device workspace for a step of T tokens whose expert runners take R at once:
  // fixed + (T - R) * (per_token - runner_per_token) + R * per_token (GpuWorkspaceBytes).
  int64_t gpu_workspace_fixed_bytes = 0;
  int64_t gpu_workspace_bytes_per_token = 0;
  int64_t gpu_workspace_runner_bytes_per_token = 0;
  int64_t gpu_workspace_bytes(int64_t step_tokens, int64_t runner_tokens) const {
    return gpu_workspace_fixed_bytes +
           step_tokens * (gpu_workspace_bytes_per_token - gpu_workspace_runner_bytes_per_token) +
           runner_tokens * gpu_workspace_runner_bytes_per_token;
  }
  int64_t gpu_workspace_bytes(int64_t step_tokens) const {
    return gpu_workspace_bytes(step_tokens, step_tokens);
  }

  int num_layers() const { return static_cast<int>(layers.size()); }
  // Bytes of one weight group over the whole model.
  int64_t group_bytes(WeightGroup group) const;
  // Every weight the GPU path needs (all groups); the embeddings are extra, on the host.
  int64_t gpu_weight_bytes() const;
  int64_t total_weight_bytes() const { return gpu_weight_bytes() + embedding_bytes; }
  // Dense FLOPs per token over all layers: projections, router, shared MLPs and top_k experts (no lm_head).
  double dense_flops_per_token() const;
};

// Device bytes the GPU forward pass allocates for activations and scratch at `step_tokens` tokens per step
// (priced from planner/memory_table.h's StepBufferItems and MoeRunnerItems, the lists the engine allocates).
// per_token and fixed are the two parts; the total is fixed + step_tokens * per_token.
struct GpuWorkspace {
  int64_t fixed_bytes = 0;
  int64_t bytes_per_token = 0;  // Per token of a step whose expert runners take the whole step at once.
  // Of bytes_per_token, the expert runners' share: it grows with the runners' tokens (a tile, with
  // ExecutionPlan::expert_tile_tokens), the rest with the step's.
  int64_t runner_bytes_per_token = 0;
  int64_t bytes(int64_t step_tokens, int64_t runner_tokens) const {
    return fixed_bytes + step_tokens * (bytes_per_token - runner_bytes_per_token) +
           runner_tokens * runner_bytes_per_token;
  }
};
// held_expert_dtype F8_E4M3 adds the routed-expert runner's FP8 dequantisation scratch.
GpuWorkspace GpuWorkspaceBytes(const ModelSpec& spec, io::DType held_expert_dtype = io::DType::kBF16);

// Bytes of one routed expert (gate, up, down) stored in `dtype`: F8_E4M3 is a byte per parameter plus an f32
// scale per 128x128 block of each matrix (the published block-FP8 layout); other types their element size.
int64_t ExpertBytes(const ModelSpec& spec, io::DType dtype);
// The type the GPU engine holds and streams routed experts in, for experts whose values are `expert_dtype`:
// F8_E4M3 experts stay FP8 blocks in pinned memory, over PCIe and in ring slots and resident layers, and
// are dequantised on the GPU beside their GEMMs (gpu/moe_ops.h); anything else is held as bf16. (The CPU
// engine dequantises FP8 at load.)
io::DType HeldExpertDType(io::DType expert_dtype);

// Prices the KV cache in `kv_dtype` (the plan's --kv-dtype): kv_bytes_per_token over the costed layers from
// the same per-layer count as KvBytesPerToken (F8_E4M3: a byte per element plus an f32 scale per kv head).
void PriceKvCache(const ModelSpec& spec, io::DType kv_dtype, ModelCosts* costs);

// Counts costs for `spec`; `layers_override` > 0 keeps only the first that many layers (plan --layers).
// expert_dtype: the plan's (--expert-dtype); an FP8 checkpoint (spec.quantization) makes it F8_E4M3.
ModelCosts ComputeModelCosts(const ModelSpec& spec, int layers_override = 0, int weight_bytes_per_param = 2,
                             int kv_bytes_per_element = 2, io::DType expert_dtype = io::DType::kBF16);

}  // namespace ringmoe::planner
