#include "planner/model_costs.h"

#include <algorithm>
#include <cassert>

#include "planner/execution_plan.h"
#include "planner/memory_table.h"

namespace ringmoe::planner {

std::string_view WeightGroupName(WeightGroup group) {
  switch (group) {
    case WeightGroup::kAttention:
      return "attention";
    case WeightGroup::kRouter:
      return "routers";
    case WeightGroup::kSharedMlp:
      return "shared/dense MLPs";
    case WeightGroup::kLmHead:
      return "lm_head";
    case WeightGroup::kRoutedExperts:
      return "routed experts";
  }
  return "?";
}

int64_t ModelCosts::group_bytes(WeightGroup group) const {
  int64_t bytes = 0;
  for (const LayerCosts& layer : layers) {
    switch (group) {
      case WeightGroup::kAttention:
        bytes += layer.attention_bytes;
        break;
      case WeightGroup::kRouter:
        bytes += layer.router_bytes;
        break;
      case WeightGroup::kSharedMlp:
        bytes += layer.shared_mlp_bytes;
        break;
      case WeightGroup::kRoutedExperts:
        bytes += layer.routed_expert_bytes();
        break;
      case WeightGroup::kLmHead:
        break;
    }
  }
  if (group == WeightGroup::kLmHead) bytes = lm_head_bytes;
  return bytes;
}

int64_t ModelCosts::gpu_weight_bytes() const {
  int64_t bytes = 0;
  for (int g = 0; g < kNumWeightGroups; ++g) bytes += group_bytes(static_cast<WeightGroup>(g));
  return bytes;
}

double ModelCosts::dense_flops_per_token() const {
  double flops = 0;
  for (const LayerCosts& layer : layers) {
    flops += layer.attention_projection_flops + layer.router_flops + layer.shared_mlp_flops +
             layer.top_k * layer.expert_flops;
  }
  return flops;
}

GpuWorkspace GpuWorkspaceBytes(const ModelSpec& spec, io::DType held_expert_dtype) {
  // The memory table's step buffers and MoE runner workspaces (what the engine allocates) are linear in the
  // step's tokens: fixed = their size at 0 tokens, per_token = the growth per token. Up to four
  // micro-batches' offsets, every allocation's arena rounding, cuBLAS's workspace, and 8 MiB for CUB's sort
  // scratch, whose size the table estimates, come on top.
  auto buffers = [&](int tokens) {
    int64_t bytes = 0;
    for (const MemoryItem& item : StepBufferItems(spec, tokens, 4, 0, 0)) {
      if (item.tier == MemoryTier::kGpu) bytes += item.bytes + kArenaGranularity;
    }
    return bytes;
  };
  auto runners = [&](int tokens) {
    int64_t bytes = 0;
    for (const MemoryItem& item : MoeRunnerItems(spec, tokens, held_expert_dtype)) {
      if (item.tier == MemoryTier::kGpu) bytes += item.bytes;
    }
    return bytes;
  };
  GpuWorkspace workspace;
  workspace.fixed_bytes = buffers(0) + runners(0) + kCublasWorkspaceBytes + (int64_t{8} << 20);
  const int64_t buffer_per_token = (buffers(1024) - buffers(0) + 1023) / 1024;
  workspace.runner_bytes_per_token = (runners(1024) - runners(0) + 1023) / 1024;
  workspace.bytes_per_token = buffer_per_token + workspace.runner_bytes_per_token;
  return workspace;
}

int64_t ExpertBytes(const ModelSpec& spec, io::DType dtype) {
  if (dtype != io::DType::kF8E4M3) return spec.expert_params() * static_cast<int64_t>(io::DTypeSize(dtype));
  const int64_t hidden_blocks = (spec.hidden_size + 127) / 128;
  const int64_t inter_blocks = (spec.moe_intermediate_size + 127) / 128;
  return spec.expert_params() + 3 * hidden_blocks * inter_blocks * static_cast<int64_t>(sizeof(float));
}

void PriceKvCache(const ModelSpec& spec, io::DType kv_dtype, ModelCosts* costs) {
  if (spec.num_layers <= 0) return;
  costs->kv_bytes_per_element = static_cast<int>(io::DTypeSize(kv_dtype));
  costs->kv_dtype = kv_dtype;
  costs->kv_bytes_per_token = KvBytesPerToken(spec, kv_dtype) / spec.num_layers * costs->num_layers();
}

io::DType HeldExpertDType(io::DType expert_dtype) {
  return expert_dtype == io::DType::kF8E4M3 ? io::DType::kF8E4M3 : io::DType::kBF16;
}

ModelCosts ComputeModelCosts(const ModelSpec& spec, int layers_override, int weight_bytes_per_param,
                             int kv_bytes_per_element, io::DType expert_dtype) {
  assert(weight_bytes_per_param > 0 && kv_bytes_per_element > 0);
  ModelCosts costs;
  costs.hidden = spec.hidden_size;
  costs.q_width = spec.q_width();
  costs.kv_width = spec.kv_width();
  costs.attention_out_width = spec.attention_out_width();
  costs.kv_rows_width = spec.is_mla() ? spec.mla.cache_width() : 2 * spec.kv_width();
  costs.mla = spec.is_mla();
  if (costs.mla) {
    int64_t bytes = 0;
    for (const MemoryItem& item : MlaPrefillItems(spec, 1024)) bytes += item.bytes;
    costs.mla_prefill_bytes_per_token = (bytes + 1023) / 1024;
  }
  costs.vocab = spec.vocab_size;
  costs.heads = spec.num_heads;
  costs.kv_heads = spec.num_kv_heads;
  costs.head_dim = spec.head_dim;
  costs.weight_bytes_per_param = weight_bytes_per_param;
  costs.kv_bytes_per_element = kv_bytes_per_element;
  costs.checkpoint_dtype = CheckpointDType(spec);
  costs.expert_dtype =
      spec.quantization.method == WeightQuantization::kFp8Block ? io::DType::kF8E4M3 : expert_dtype;
  costs.held_expert_dtype = HeldExpertDType(costs.expert_dtype);
  // Held experts priced by their type; bf16 is the weight_bytes_per_param the callers pass for everything.
  const int64_t expert_bytes = costs.held_expert_dtype == io::DType::kBF16
                                   ? spec.expert_params() * weight_bytes_per_param
                                   : ExpertBytes(spec, costs.held_expert_dtype);

  const int64_t h = spec.hidden_size;
  const int64_t bpp = weight_bytes_per_param;
  int num_layers = static_cast<int>(spec.layers.size());
  if (layers_override > 0) num_layers = std::min(num_layers, layers_override);

  for (int i = 0; i < num_layers; ++i) {
    const LayerSpec& layer_spec = spec.layers[i];
    LayerCosts layer;
    layer.is_moe = layer_spec.is_moe;
    layer.attention_bytes = spec.attention_params() * bpp;
    layer.attention_projection_flops =
        2.0 * h * (spec.q_width() + 2 * spec.kv_width()) + 2.0 * spec.q_width() * h;
    if (spec.is_mla()) {
      // Every projection once per token. kv_b never meets the cache in the absorbed form; its place is taken
      // by the absorption (q_nope into the latent through W_UK, each head's latent output through W_UV),
      // which multiplies by the same number of weights.
      layer.attention_projection_flops = 2.0 * static_cast<double>(spec.attention_params() - 2 * h);
      layer.mla_absorb_flops = 2.0 * spec.num_heads * spec.mla.kv_lora_rank *
                               static_cast<double>(spec.mla.qk_nope_head_dim + spec.mla.v_head_dim);
      // kv_b is held in f32 (the absorbed attention's, and the GPU's for fresh prompts): 2 more bytes a
      // weight.
      layer.attention_bytes +=
          2LL * spec.num_heads * spec.mla.kv_lora_rank * (spec.mla.qk_nope_head_dim + spec.mla.v_head_dim);
    }
    if (layer_spec.is_moe) {
      layer.num_experts = spec.num_experts;
      layer.top_k = spec.num_experts_per_tok;
      layer.router_bytes = spec.router_params() * bpp;
      layer.router_flops = 2.0 * h * spec.num_experts;
      layer.expert_bytes = expert_bytes;
      layer.expert_flops = 6.0 * h * spec.moe_intermediate_size;
      if (layer_spec.has_shared_expert) {
        layer.shared_mlp_bytes =
            (3 * h * spec.shared_expert_intermediate_size + (spec.shared_expert_gated ? h : 0)) * bpp;
        layer.shared_mlp_flops = 6.0 * h * spec.shared_expert_intermediate_size + 2.0 * h;
      }
    } else {
      layer.shared_mlp_bytes = 3 * h * spec.intermediate_size * bpp;
      layer.shared_mlp_flops = 6.0 * h * spec.intermediate_size;
    }
    costs.layers.push_back(layer);
  }

  costs.embedding_bytes = static_cast<int64_t>(spec.vocab_size) * h * bpp;
  costs.lm_head_bytes = (static_cast<int64_t>(spec.vocab_size) * h + h) * bpp;
  costs.lm_head_flops = 2.0 * spec.vocab_size * h;
  const io::DType kv_dtype = kv_bytes_per_element == 4   ? io::DType::kF32
                             : kv_bytes_per_element == 1 ? io::DType::kF8E4M3
                                                         : io::DType::kBF16;
  costs.kv_bytes_per_token =
      spec.num_layers > 0 ? KvBytesPerToken(spec, kv_dtype) / spec.num_layers * num_layers : 0;
  // MLA's absorbed attention: per head, q.[c; k_rope] over the whole cache row and p.c over the latent.
  costs.attention_flops_per_context_token =
      spec.is_mla()
          ? 2.0 * spec.num_heads * (2 * spec.mla.kv_lora_rank + spec.mla.qk_rope_head_dim) * num_layers
          : 4.0 * spec.num_heads * spec.head_dim * num_layers;

  // Per token in flight on the GPU: residual and normed hidden (f32 + bf16), q/k/v and attention output,
  // router logits, and for each of top_k experts the gate/up/activation intermediates (bf16).
  int64_t moe_width = 0;
  if (spec.num_moe_layers() > 0) {
    moe_width = static_cast<int64_t>(spec.num_experts_per_tok) * 3 * spec.moe_intermediate_size +
                3LL * spec.shared_expert_intermediate_size;
  }
  int64_t dense_width = 3LL * spec.intermediate_size;
  const GpuWorkspace workspace = GpuWorkspaceBytes(spec, costs.held_expert_dtype);
  costs.gpu_workspace_fixed_bytes = workspace.fixed_bytes;
  costs.gpu_workspace_bytes_per_token = workspace.bytes_per_token;
  costs.gpu_workspace_runner_bytes_per_token = workspace.runner_bytes_per_token;
  costs.activation_bytes_per_token = 4 * h + 2 * h + 2 * (2LL * spec.q_width() + 2 * spec.kv_width()) +
                                     4LL * spec.num_experts + 2 * std::max(moe_width, dense_width) + 2 * h;
  return costs;
}

}  // namespace ringmoe::planner
