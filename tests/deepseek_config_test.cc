// config.json of DeepSeek-V2/V3 (io/deepseek_config.cc): MLA dimensions, DeepSeekMoE routing keys, YaRN, and
// a clear error naming the key for each kind of bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "io/model_spec.h"
#include "nlohmann/json.hpp"

namespace ringmoe {
namespace {

using nlohmann::json;

// The published DeepSeek-V3 config.json (deepseek-ai/DeepSeek-V3), less its auto_map and quantization_config.
json DeepseekV3() {
  return json::parse(R"({
  "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3", "vocab_size": 129280,
  "hidden_size": 7168, "intermediate_size": 18432, "moe_intermediate_size": 2048, "num_hidden_layers": 61,
  "num_nextn_predict_layers": 1, "num_attention_heads": 128, "num_key_value_heads": 128,
  "n_shared_experts": 1, "n_routed_experts": 256, "ep_size": 1, "routed_scaling_factor": 2.5,
  "kv_lora_rank": 512, "q_lora_rank": 1536, "qk_rope_head_dim": 64, "v_head_dim": 128,
  "qk_nope_head_dim": 128, "topk_method": "noaux_tc", "n_group": 8, "topk_group": 4,
  "num_experts_per_tok": 8, "moe_layer_freq": 1, "first_k_dense_replace": 3, "norm_topk_prob": true,
  "scoring_func": "sigmoid", "hidden_act": "silu", "max_position_embeddings": 163840, "rms_norm_eps": 1e-06,
  "rope_theta": 10000, "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 1.0,
  "mscale_all_dim": 1.0, "original_max_position_embeddings": 4096, "type": "yarn"},
  "tie_word_embeddings": false, "torch_dtype": "bfloat16", "bos_token_id": 0, "eos_token_id": 1})");
}

// DeepSeek-V2-Lite's shape (q_lora_rank null, greedy softmax routing, one dense layer).
json DeepseekV2Lite() {
  return json::parse(R"({
  "model_type": "deepseek_v2", "vocab_size": 102400, "hidden_size": 2048, "intermediate_size": 10944,
  "moe_intermediate_size": 1408, "num_hidden_layers": 27, "num_attention_heads": 16, "num_key_value_heads": 16,
  "n_shared_experts": 2, "n_routed_experts": 64, "routed_scaling_factor": 1.0, "kv_lora_rank": 512,
  "q_lora_rank": null, "qk_rope_head_dim": 64, "v_head_dim": 128, "qk_nope_head_dim": 128,
  "topk_method": "greedy", "n_group": 1, "topk_group": 1, "num_experts_per_tok": 6, "moe_layer_freq": 1,
  "first_k_dense_replace": 1, "norm_topk_prob": false, "scoring_func": "softmax",
  "max_position_embeddings": 163840, "rms_norm_eps": 1e-06, "rope_theta": 10000,
  "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 0.707, "mscale_all_dim": 0.707,
  "original_max_position_embeddings": 4096, "type": "yarn"}, "torch_dtype": "bfloat16"})");
}

absl::StatusOr<ModelSpec> Parse(const json& config) { return ParseModelSpec(config.dump(), "config.json"); }

// The error of parsing `config`, which must fail and name `key`.
std::string ErrorNaming(const json& config, const std::string& key) {
  absl::StatusOr<ModelSpec> spec = Parse(config);
  EXPECT_FALSE(spec.ok()) << "accepted a config that should name " << key;
  if (spec.ok()) return "";
  EXPECT_NE(spec.status().message().find(key), std::string::npos) << spec.status();
  EXPECT_NE(spec.status().message().find("config.json"), std::string::npos) << spec.status();
  return std::string(spec.status().message());
}

TEST(DeepseekConfig, PublishedV3) {
  absl::StatusOr<ModelSpec> spec = Parse(DeepseekV3());
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->type, ModelType::kDeepseekV3);
  ASSERT_TRUE(spec->is_mla());
  EXPECT_EQ(spec->mla.q_lora_rank, 1536);
  EXPECT_EQ(spec->mla.kv_lora_rank, 512);
  EXPECT_EQ(spec->mla.qk_head_dim(), 192);
  EXPECT_EQ(spec->mla.cache_width(), 576);
  EXPECT_EQ(spec->head_dim, 192);
  EXPECT_EQ(spec->num_kv_heads, 128);
  EXPECT_EQ(spec->num_experts, 256);
  EXPECT_EQ(spec->moe_intermediate_size, 2048);
  EXPECT_EQ(spec->shared_expert_intermediate_size, 2048);
  EXPECT_FALSE(spec->shared_expert_gated);
  EXPECT_EQ(spec->router, RouterKind::kSigmoidGroupTopK);
  EXPECT_EQ(spec->n_group, 8);
  EXPECT_EQ(spec->topk_group, 4);
  EXPECT_TRUE(spec->norm_topk_prob);
  EXPECT_DOUBLE_EQ(spec->routed_scaling_factor, 2.5);
  EXPECT_TRUE(spec->rope_interleave);
  EXPECT_EQ(spec->num_nextn_predict_layers, 1);
  ASSERT_EQ(spec->layers.size(), 61u);
  for (int i = 0; i < 61; ++i) {
    EXPECT_EQ(spec->layers[i].is_moe, i >= 3) << i;
    EXPECT_EQ(spec->layers[i].has_shared_expert, i >= 3) << i;
  }
  // YaRN: factor 40 with mscale == mscale_all_dim: cos/sin factor 1; softmax scale 192^-0.5 * m^2 with
  // m = 0.1 ln 40 + 1 (0.1352338, moe-architectures.md section 6.3).
  EXPECT_TRUE(spec->rope_scaling.yarn);
  EXPECT_DOUBLE_EQ(spec->rope_scaling.factor, 40.0);
  EXPECT_EQ(spec->rope_scaling.original_max_position_embeddings, 4096);
  EXPECT_DOUBLE_EQ(spec->rope_scaling.attention_factor, 1.0);
  EXPECT_NEAR(spec->softmax_scale(), 0.1352338, 1e-6);
  // 671.0B parameters without the MTP layer (moe-architectures.md section 10).
  EXPECT_NEAR(spec->total_params() / 1e9, 671.0, 0.1);
}

TEST(DeepseekConfig, V2LiteWithoutQLora) {
  absl::StatusOr<ModelSpec> spec = Parse(DeepseekV2Lite());
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->type, ModelType::kDeepseekV2);
  EXPECT_EQ(spec->mla.q_lora_rank, 0);
  EXPECT_EQ(spec->router, RouterKind::kSoftmaxGroupTopK);
  EXPECT_EQ(spec->n_group, 1);
  EXPECT_FALSE(spec->norm_topk_prob);
  EXPECT_EQ(spec->shared_expert_intermediate_size, 2 * 1408);
  EXPECT_FALSE(spec->layers[0].is_moe);
  EXPECT_TRUE(spec->layers[1].is_moe);
  EXPECT_NEAR(spec->softmax_scale(), 0.1147214, 1e-6);
  EXPECT_NEAR(spec->total_params() / 1e9, 15.7, 0.1);
}

TEST(DeepseekConfig, Transformers5RopeParametersAndGroupLimitedV2) {
  json v3 = DeepseekV3();
  v3.erase("rope_scaling");
  v3.erase("rope_theta");
  v3["rope_parameters"] = {{"rope_type", "yarn"}, {"rope_theta", 10000.0},
                           {"factor", 4.0},       {"original_max_position_embeddings", 64},
                           {"mscale", 1.0},       {"mscale_all_dim", 0.5}};
  v3["rope_interleave"] = false;
  v3["head_dim"] = 64;  // transformers writes head_dim = qk_rope_head_dim
  absl::StatusOr<ModelSpec> spec = Parse(v3);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_FALSE(spec->rope_interleave);
  EXPECT_DOUBLE_EQ(spec->rope_theta, 10000.0);
  const double m1 = 0.1 * std::log(4.0) + 1, m_half = 0.05 * std::log(4.0) + 1;
  EXPECT_NEAR(spec->rope_scaling.attention_factor, m1 / m_half, 1e-12);
  EXPECT_NEAR(spec->softmax_scale(), m_half * m_half / std::sqrt(192.0), 1e-6);

  json v2 = DeepseekV2Lite();
  v2["topk_method"] = "group_limited_greedy";
  v2["n_group"] = 8;
  v2["topk_group"] = 3;
  spec = Parse(v2);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->n_group, 8);
  EXPECT_EQ(spec->topk_group, 3);
}

TEST(DeepseekConfig, MoeLayerFreqAndNoSharedExperts) {
  json v3 = DeepseekV3();
  v3["num_hidden_layers"] = 8;
  v3["first_k_dense_replace"] = 1;
  v3["moe_layer_freq"] = 2;
  v3["n_shared_experts"] = 0;
  absl::StatusOr<ModelSpec> spec = Parse(v3);
  ASSERT_TRUE(spec.ok()) << spec.status();
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(spec->layers[i].is_moe, i >= 1 && i % 2 == 0) << i;
    EXPECT_FALSE(spec->layers[i].has_shared_expert);
  }
}

TEST(DeepseekConfig, BadInputNamesTheKey) {
  json config = DeepseekV3();
  config["topk_group"] = 9;
  EXPECT_NE(ErrorNaming(config, "topk_group").find("n_group"), std::string::npos);

  config = DeepseekV3();
  config["topk_method"] = "aux_free";
  EXPECT_NE(ErrorNaming(config, "topk_method").find("aux_free"), std::string::npos);
  config = DeepseekV2Lite();
  config["topk_method"] = "noaux_tc";
  ErrorNaming(config, "topk_method");

  config = DeepseekV3();
  config["scoring_func"] = "softmax";
  ErrorNaming(config, "scoring_func");
  config = DeepseekV2Lite();
  config["scoring_func"] = "sqrtsoftplus";
  ErrorNaming(config, "scoring_func");

  // Inconsistent head dims.
  config = DeepseekV3();
  config["head_dim"] = 128;
  ErrorNaming(config, "head_dim");
  config = DeepseekV3();
  config["qk_rope_head_dim"] = 63;
  ErrorNaming(config, "qk_rope_head_dim");
  config = DeepseekV3();
  config["v_head_dim"] = 0;
  ErrorNaming(config, "v_head_dim");
  config = DeepseekV3();
  config.erase("kv_lora_rank");
  ErrorNaming(config, "kv_lora_rank");
  config = DeepseekV3();
  config.erase("q_lora_rank");
  ErrorNaming(config, "q_lora_rank");
  config = DeepseekV3();
  config["q_lora_rank"] = -4;
  ErrorNaming(config, "q_lora_rank");

  config = DeepseekV3();
  config["n_group"] = 7;  // 256 experts do not split into 7 groups
  ErrorNaming(config, "n_group");
  config = DeepseekV3();
  config["n_group"] = 256;  // one expert per group: no top-2 per group
  config["topk_group"] = 4;
  ErrorNaming(config, "n_group");
  config = DeepseekV3();
  config["topk_group"] = 1;
  config["num_experts_per_tok"] = 40;  // more than the 32 experts of one group
  ErrorNaming(config, "num_experts_per_tok");
  config = DeepseekV3();
  config["first_k_dense_replace"] = 62;
  ErrorNaming(config, "first_k_dense_replace");
  config = DeepseekV3();
  config["moe_layer_freq"] = 0;
  ErrorNaming(config, "moe_layer_freq");
  config = DeepseekV3();
  config["routed_scaling_factor"] = -1.0;
  ErrorNaming(config, "routed_scaling_factor");
  config = DeepseekV3();
  config["n_group"] = "eight";
  ErrorNaming(config, "n_group");

  config = DeepseekV3();
  config["attention_bias"] = true;
  ErrorNaming(config, "attention_bias");

  config = DeepseekV3();
  config["rope_scaling"]["factor"] = 0;
  ErrorNaming(config, "rope_scaling.factor");
  config = DeepseekV3();
  config["rope_scaling"]["type"] = "longrope";
  ErrorNaming(config, "longrope");
}

TEST(DeepseekConfig, YarnStaysRefusedForOtherModels) {
  absl::StatusOr<ModelSpec> spec = ParseModelSpec(R"({
    "model_type": "qwen3_moe", "vocab_size": 100, "hidden_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "intermediate_size": 96,
    "moe_intermediate_size": 32, "num_experts": 8, "num_experts_per_tok": 2, "max_position_embeddings": 256,
    "rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64}})",
                                                  "config.json");
  ASSERT_FALSE(spec.ok());
  EXPECT_NE(spec.status().message().find("yarn"), std::string::npos) << spec.status();
}

}  // namespace
}  // namespace ringmoe
