#include <gtest/gtest.h>

#include "io/model_spec.h"

namespace ringmoe {
namespace {

constexpr char kQwen2Moe[] = R"({
  "model_type": "qwen2_moe", "vocab_size": 100, "hidden_size": 64, "num_hidden_layers": 4,
  "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 96, "moe_intermediate_size": 32,
  "shared_expert_intermediate_size": 48, "num_experts": 8, "num_experts_per_tok": 2, "norm_topk_prob": false,
  "mlp_only_layers": [2], "decoder_sparse_step": 1, "rope_theta": 50000.0, "max_position_embeddings": 256,
  "rms_norm_eps": 1e-6, "eos_token_id": 5})";

TEST(ModelConfig, Qwen2MoeLayersSharedExpertAndBias) {
  absl::StatusOr<ModelSpec> spec = ParseModelSpec(kQwen2Moe, "config.json");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->type, ModelType::kQwen2Moe);
  EXPECT_EQ(spec->head_dim, 16);
  EXPECT_TRUE(spec->attention_bias);
  EXPECT_FALSE(spec->norm_topk_prob);
  EXPECT_DOUBLE_EQ(spec->rope_theta, 50000.0);
  ASSERT_EQ(spec->layers.size(), 4u);
  EXPECT_TRUE(spec->layers[0].is_moe);
  EXPECT_TRUE(spec->layers[0].has_shared_expert);
  EXPECT_FALSE(spec->layers[2].is_moe);
  EXPECT_FALSE(spec->layers[2].has_shared_expert);
  EXPECT_EQ(spec->num_moe_layers(), 3);
  EXPECT_EQ(spec->eos_token_ids, std::vector<int32_t>{5});
}

TEST(ModelConfig, Transformers5SpellingsAndSparseStep) {
  absl::StatusOr<ModelSpec> spec = ParseModelSpec(R"({
    "model_type": "qwen3_moe", "vocab_size": 100, "hidden_size": 64, "num_hidden_layers": 4,
    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32, "intermediate_size": 96,
    "moe_intermediate_size": 32, "num_local_experts": 8, "num_experts_per_tok": 2, "norm_topk_prob": true,
    "decoder_sparse_step": 2, "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
    "max_position_embeddings": 256, "dtype": "bfloat16", "eos_token_id": [1, 2]})",
                                                  "config.json");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->num_experts, 8);
  EXPECT_EQ(spec->head_dim, 32);
  EXPECT_EQ(spec->qk_norm, QkNorm::kPerHead);
  EXPECT_DOUBLE_EQ(spec->rope_theta, 1e6);
  EXPECT_EQ(spec->torch_dtype, "bfloat16");
  EXPECT_FALSE(spec->layers[0].is_moe);
  EXPECT_TRUE(spec->layers[1].is_moe);
  EXPECT_FALSE(spec->layers[2].is_moe);
  EXPECT_TRUE(spec->layers[3].is_moe);
  EXPECT_EQ(spec->eos_token_ids, (std::vector<int32_t>{1, 2}));
}

TEST(ModelConfig, MixtralRoutesTopKThenSoftmax) {
  absl::StatusOr<ModelSpec> spec = ParseModelSpec(R"({
    "model_type": "mixtral", "vocab_size": 100, "hidden_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 4, "intermediate_size": 96, "num_local_experts": 8,
    "num_experts_per_tok": 2, "max_position_embeddings": 256, "sliding_window": null})",
                                                  "config.json");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->router, RouterKind::kTopKSoftmax);
  EXPECT_EQ(spec->moe_intermediate_size, 96);
  EXPECT_EQ(spec->sliding_window, 0);
  EXPECT_EQ(spec->total_params(),
            100 * 64 * 2 + 64 + 2 * (spec->attention_params() + 8 * 3 * 64 * 96 + 8 * 64));
}

TEST(ModelConfig, ErrorsNameTheProblem) {
  auto unknown = ParseModelSpec(R"({"model_type": "llama"})", "m/config.json");
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(unknown.status().message().find("llama"), std::string::npos);
  EXPECT_NE(unknown.status().message().find("m/config.json"), std::string::npos);

  auto not_json = ParseModelSpec("{", "c.json");
  EXPECT_FALSE(not_json.ok());

  auto wrong_type = ParseModelSpec(R"({"model_type": "olmoe", "hidden_size": "big"})", "c.json");
  ASSERT_FALSE(wrong_type.ok());
  EXPECT_NE(wrong_type.status().message().find("hidden_size"), std::string::npos);

  auto zero_layers = ParseModelSpec(R"({"model_type": "olmoe", "vocab_size": 10, "hidden_size": 8,
      "num_hidden_layers": 0, "num_attention_heads": 2, "intermediate_size": 4, "num_experts": 2,
      "num_experts_per_tok": 1, "max_position_embeddings": 16})",
                                    "c.json");
  ASSERT_FALSE(zero_layers.ok());
  EXPECT_NE(zero_layers.status().message().find("num_hidden_layers"), std::string::npos);

  auto bad_topk = ParseModelSpec(R"({"model_type": "olmoe", "vocab_size": 10, "hidden_size": 8,
      "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 4, "num_experts": 2,
      "num_experts_per_tok": 3, "max_position_embeddings": 16})",
                                 "c.json");
  EXPECT_FALSE(bad_topk.ok());

  auto scaled_rope = ParseModelSpec(R"({"model_type": "olmoe", "vocab_size": 10, "hidden_size": 8,
      "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 4, "num_experts": 2,
      "num_experts_per_tok": 1, "max_position_embeddings": 16, "rope_scaling": {"type": "yarn"}})",
                                    "c.json");
  EXPECT_EQ(scaled_rope.status().code(), absl::StatusCode::kUnimplemented);
}

std::string WithQuantization(const std::string& quantization_config) {
  std::string config = kQwen2Moe;
  config.pop_back();  // the closing brace
  return config + ", \"quantization_config\": " + quantization_config + "}";
}

TEST(ModelConfig, ReadsFineGrainedFp8QuantizationConfig) {
  absl::StatusOr<ModelSpec> spec = ParseModelSpec(
      WithQuantization(R"({"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                           "weight_block_size": [128, 64],
                           "modules_to_not_convert": ["lm_head", "model.layers.0.mlp.gate"]})"),
      "config.json");
  ASSERT_TRUE(spec.ok()) << spec.status();
  const QuantizationSpec& q = spec->quantization;
  EXPECT_EQ(q.method, WeightQuantization::kFp8Block);
  EXPECT_EQ(q.block_rows, 128);
  EXPECT_EQ(q.block_cols, 64);
  EXPECT_FALSE(q.Converts("lm_head"));
  EXPECT_FALSE(q.Converts("model.layers.0.mlp.gate"));
  EXPECT_TRUE(q.Converts("model.layers.0.mlp.gate_proj"));  // not a dotted match
  EXPECT_TRUE(q.Converts("model.layers.10.mlp.gate"));
  EXPECT_FALSE(q.Converts("model.layers.0.mlp.gate.sub"));  // inside a listed module
  EXPECT_TRUE(q.Converts("model.layers.0.self_attn.q_proj"));

  absl::StatusOr<ModelSpec> plain = ParseModelSpec(kQwen2Moe, "config.json");
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->quantization.method, WeightQuantization::kNone);
  // Defaults: 128 x 128 blocks, dynamic activations.
  absl::StatusOr<ModelSpec> defaults = ParseModelSpec(WithQuantization(R"({"quant_method": "fp8"})"), "c");
  ASSERT_TRUE(defaults.ok()) << defaults.status();
  EXPECT_EQ(defaults->quantization.block_rows, 128);
  EXPECT_EQ(defaults->quantization.block_cols, 128);
}

TEST(ModelConfig, RefusesQuantizationItCannotRunNamingTheField) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"quant_method": "awq", "bits": 4})", "quantization_config.quant_method 'awq'"},
      {R"({"fmt": "e4m3"})", "quantization_config.quant_method ''"},
      {R"({"quant_method": "fp8", "fmt": "e5m2"})", "quantization_config.fmt 'e5m2'"},
      {R"({"quant_method": "fp8", "activation_scheme": "static"})", "quantization_config.activation_scheme"},
      {R"({"quant_method": "fp8", "weight_block_size": null})", "quantization_config.weight_block_size"},
      {R"({"quant_method": "fp8", "weight_block_size": [128]})", "quantization_config.weight_block_size"},
      {R"({"quant_method": "fp8", "weight_block_size": [0, 128]})", "quantization_config.weight_block_size"},
      {R"({"quant_method": "fp8", "modules_to_not_convert": "lm_head"})", "modules_to_not_convert"},
      {R"("fp8")", "quantization_config is a JSON string"},
  };
  for (const auto& [quantization, expected] : cases) {
    absl::StatusOr<ModelSpec> spec = ParseModelSpec(WithQuantization(quantization), "config.json");
    ASSERT_FALSE(spec.ok()) << quantization;
    EXPECT_NE(spec.status().message().find(expected), std::string::npos) << spec.status();
    EXPECT_NE(spec.status().message().find("config.json"), std::string::npos) << spec.status();
  }
}

}  // namespace
}  // namespace ringmoe
