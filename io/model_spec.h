// ModelSpec: the parsed config.json of a supported MoE checkpoint. Immutable after parsing; safe to share.
//
// Accepts both the keys of published checkpoints and those transformers 5 writes (num_experts /
// num_local_experts, rope_theta / rope_parameters, ...). Everything downstream (weights, ops, planner) reads
// shapes from here rather than from config.json.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ringmoe {

enum class ModelType { kMixtral, kQwen2Moe, kQwen3Moe, kOlmoe, kDeepseekV2, kDeepseekV3 };

// How attention normalises q and k before RoPE.
enum class QkNorm {
  kNone,
  kPerHead,    // Qwen3: RMSNorm over head_dim, one weight shared by all heads.
  kFullWidth,  // OLMoE: RMSNorm over num_heads * head_dim (q) and num_kv_heads * head_dim (k).
};

// How router probabilities become expert weights.
enum class RouterKind {
  kSoftmaxTopK,  // softmax over all experts, then top-k; renormalised only when norm_topk_prob.
  kTopKSoftmax,  // Mixtral: top-k logits, then softmax over those k (always sums to one).
  // DeepSeek (cpu/group_routing.h): the best topk_group of n_group expert groups, then top-k within them;
  // renormalised when norm_topk_prob, then times routed_scaling_factor.
  kSoftmaxGroupTopK,  // DeepSeek-V2 greedy (n_group 1) / group_limited_greedy: softmax, groups by their max.
  kSigmoidGroupTopK,  // DeepSeek-V3 noaux_tc: sigmoid; choice by score + e_score_correction_bias, groups by
                      // the sum of their top-2 biased scores; weights from the unbiased scores.
};

// Multi-head latent attention (DeepSeek-V2/V3, io/deepseek_config.cc). kv_lora_rank 0: not MLA.
struct MlaSpec {
  int q_lora_rank =
      0;  // 0: a direct q_proj (config q_lora_rank null); else q_a_proj, q_a_layernorm, q_b_proj
  int kv_lora_rank = 0;
  int qk_nope_head_dim = 0;
  int qk_rope_head_dim = 0;  // the rotary part of q and of the one shared rope key
  int v_head_dim = 0;
  int qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
  // Values the KV cache keeps per token per layer: the normed latent, then the rotated rope key.
  int cache_width() const { return kv_lora_rank + qk_rope_head_dim; }
};

// rope_scaling / rope_parameters. Only "default" and (for DeepSeek) "yarn" are accepted.
struct RopeScaling {
  bool yarn = false;
  double factor = 1.0;
  int original_max_position_embeddings = 0;
  double beta_fast = 32.0, beta_slow = 1.0;
  double mscale = 0.0, mscale_all_dim = 0.0;  // 0: not given
  double attention_factor = 1.0;              // multiplies cos and sin (derived unless given)
  bool truncate = true;
};

// How the checkpoint's linear weights are quantised: config.json's quantization_config.
enum class WeightQuantization {
  kNone,
  // Hugging Face's fine-grained FP8 ({"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [128,
  // 128]}): F8_E4M3 weights, each with a `<name>_scale_inv` tensor (F32 or BF16) of one factor per block of
  // block_rows x block_cols, shape [ceil(out / block_rows), ceil(in / block_cols)]; value = fp8 * scale_inv.
  kFp8Block,
};

struct QuantizationSpec {
  WeightQuantization method = WeightQuantization::kNone;
  int block_rows = 128;  // weight_block_size[0]: along the output dimension
  int block_cols = 128;  // weight_block_size[1]: along the input dimension
  // Modules left in the checkpoint's float dtype (names or name suffixes, e.g. "lm_head",
  // "model.layers.0.mlp.gate").
  std::vector<std::string> modules_to_not_convert;
  std::string activation_scheme = "dynamic";  // Only "dynamic" (no stored activation scales) is supported.

  // Whether the module (a weight's name without ".weight") may hold FP8 weights: false when
  // modules_to_not_convert names it exactly, as a dotted suffix, or as a dotted prefix.
  bool Converts(absl::string_view module) const;
};

struct LayerSpec {
  bool is_moe = true;              // false: a dense SwiGLU MLP of intermediate_size.
  bool has_shared_expert = false;  // Qwen2-MoE (sigmoid-gated) or DeepSeek (ungated) shared SwiGLU expert.
};

struct ModelSpec {
  ModelType type = ModelType::kMixtral;
  std::string model_type;  // As written in config.json.

  int vocab_size = 0;
  int hidden_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int intermediate_size = 0;      // Dense MLP layers.
  int moe_intermediate_size = 0;  // Each routed expert.
  int shared_expert_intermediate_size = 0;
  int num_experts = 0;
  int num_experts_per_tok = 0;
  bool norm_topk_prob = true;
  RouterKind router = RouterKind::kSoftmaxTopK;
  bool attention_bias = false;  // q/k/v projections carry biases.
  QkNorm qk_norm = QkNorm::kNone;
  float clip_qkv = 0.0f;  // OLMoE: clamp q/k/v to [-clip, clip] when > 0.
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  int max_position_embeddings = 0;
  int sliding_window = 0;  // 0 = full attention.
  bool tie_word_embeddings = false;
  std::vector<int32_t> eos_token_ids;
  int32_t bos_token_id = -1;
  std::string torch_dtype;  // "bfloat16", "float32", ... (informational).
  std::vector<LayerSpec> layers;
  QuantizationSpec quantization;  // kNone without a quantization_config.

  // DeepSeek-V2/V3 (zero/defaults elsewhere). For MLA models head_dim is qk_head_dim() and num_kv_heads is
  // num_heads: the widths of the expanded (naive) q and k, which the planner prices GPU scratch by.
  MlaSpec mla;
  RopeScaling rope_scaling;
  bool rope_interleave = false;     // RoPE rotates pairs (2i, 2i+1) (GPT-J style) instead of (i, i + d/2).
  double attention_scale = 0.0;     // softmax scale; 0: head_dim^-0.5
  bool shared_expert_gated = true;  // Qwen2-MoE's sigmoid gate; DeepSeek's shared experts have none.
  int n_group = 1, topk_group = 1;  // expert groups, and how many of them a token may use
  double routed_scaling_factor = 1.0;
  int first_k_dense_replace = 0;  // layers before it are dense
  int moe_layer_freq = 1;
  int num_nextn_predict_layers = 0;  // multi-token-prediction layers after the last: never loaded

  bool is_mla() const { return mla.kv_lora_rank > 0; }
  bool is_deepseek() const { return type == ModelType::kDeepseekV2 || type == ModelType::kDeepseekV3; }
  float softmax_scale() const;

  int q_width() const { return num_heads * head_dim; }
  int kv_width() const { return num_kv_heads * head_dim; }
  // Width of attention's output rows, o_proj's input: q_width(), or heads * v_head_dim for MLA.
  int attention_out_width() const { return is_mla() ? num_heads * mla.v_head_dim : q_width(); }
  int num_moe_layers() const;
  // Parameter counts, for reports and the planner.
  int64_t expert_params() const;     // One routed expert (gate, up, down).
  int64_t attention_params() const;  // One layer's q, k, v, o (+ biases, norms); MLA's projections.
  int64_t router_params() const;     // One MoE layer's gate (+ DeepSeek-V3's correction bias).
  int64_t total_params() const;
};

// Parses config.json text. `source` names the file in error messages. (Debian's Abseil is built with its own
// string_view, distinct from std::string_view: both accept std::string.)
absl::StatusOr<ModelSpec> ParseModelSpec(absl::string_view config_json, absl::string_view source);
// Reads <dir>/config.json, and eos ids from <dir>/generation_config.json when present.
absl::StatusOr<ModelSpec> LoadModelSpec(const std::string& model_dir);

}  // namespace ringmoe
