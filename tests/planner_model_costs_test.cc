// Model costs counted from config.json: hand-computed bytes, KV and FLOPs for real shapes, and the helpers
// the performance model is built on (expert coverage, curve interpolation).
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

#include "io/model_spec.h"
#include "planner/execution_plan.h"
#include "planner/model_costs.h"
#include "planner/perf_model.h"

namespace ringmoe::planner {
namespace {

ModelSpec LoadConfig(const std::string& name) {
  std::string path = std::string(RINGMOE_SOURCE_DIR) + "/tests/data/configs/" + name;
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  absl::StatusOr<ModelSpec> spec = ParseModelSpec(text.str(), path);
  EXPECT_TRUE(spec.ok()) << spec.status();
  return *spec;
}

TEST(PlannerModelCosts, Qwen3_30bA3bByHand) {
  ModelSpec spec = LoadConfig("qwen3-30b-a3b.json");
  ModelCosts costs = ComputeModelCosts(spec);
  ASSERT_EQ(costs.num_layers(), 48);
  const LayerCosts& layer = costs.layers[0];
  // q, k, v: 2048 x (4096 + 512 + 512); o: 4096 x 2048; q/k norms 2 x 128; two layer norms 2 x 2048; bf16.
  EXPECT_EQ(layer.attention_bytes, (2048LL * 5120 + 4096LL * 2048 + 256 + 4096) * 2);
  EXPECT_EQ(layer.expert_bytes, 3LL * 2048 * 768 * 2);  // 9,437,184
  EXPECT_EQ(layer.routed_expert_bytes(), 128LL * 9437184);
  EXPECT_EQ(layer.router_bytes, 128LL * 2048 * 2);
  EXPECT_EQ(layer.shared_mlp_bytes, 0);
  EXPECT_EQ(layer.top_k, 8);
  EXPECT_DOUBLE_EQ(layer.expert_flops, 6.0 * 2048 * 768);
  // K and V, 4 kv heads x 128, bf16, 48 layers.
  EXPECT_EQ(costs.kv_bytes_per_token, 2LL * 512 * 2 * 48);  // 98,304
  EXPECT_DOUBLE_EQ(costs.attention_flops_per_context_token, 4.0 * 32 * 128 * 48);
  EXPECT_EQ(costs.embedding_bytes, 151936LL * 2048 * 2);
  EXPECT_EQ(costs.lm_head_bytes, (151936LL * 2048 + 2048) * 2);
  // The whole model is 2 bytes per parameter of what config.json describes (about 30.5B).
  EXPECT_EQ(costs.total_weight_bytes(), 2 * spec.total_params());
  EXPECT_NEAR(spec.total_params() / 1e9, 30.5, 0.1);
}

// DeepSeek-V3 (tests/data/configs/deepseek-v3.json, the published config.json): MLA's compressed KV and
// absorbed attention FLOPs, dense first layers, the ungated shared expert and the router's correction bias.
TEST(PlannerModelCosts, DeepseekV3ByHand) {
  ModelSpec spec = LoadConfig("deepseek-v3.json");
  ModelCosts costs = ComputeModelCosts(spec);
  ASSERT_EQ(costs.num_layers(), 61);
  // q_a [1536, 7168] + q_a_layernorm + q_b [128 x 192, 1536]; kv_a [576, 7168] + kv_a_layernorm;
  // kv_b [128 x 256, 512]; o [7168, 128 x 128]; two layer norms; bf16.
  const int64_t attention = 7168LL * 1536 + 1536 + 1536LL * 128 * 192 + 7168LL * 576 + 512 +
                            512LL * 128 * 256 + 128LL * 128 * 7168 + 2 * 7168;
  const int64_t kv_b = 512LL * 128 * 256;  // held in f32: 2 more bytes a weight than the rest
  for (int i = 0; i < 61; ++i) {
    const LayerCosts& layer = costs.layers[i];
    EXPECT_EQ(layer.attention_bytes, attention * 2 + kv_b * 2) << i;
    // Every projection once per token: the absorption of kv_b costs what applying it would.
    EXPECT_DOUBLE_EQ(layer.attention_projection_flops, 2.0 * (attention - 2 * 7168)) << i;
    EXPECT_EQ(layer.is_moe, i >= 3) << i;
    if (i < 3) {
      EXPECT_EQ(layer.shared_mlp_bytes, 3LL * 7168 * 18432 * 2) << i;  // the dense MLP
      EXPECT_EQ(layer.routed_expert_bytes(), 0) << i;
      continue;
    }
    EXPECT_EQ(layer.router_bytes, (256LL * 7168 + 256) * 2) << i;   // gate + e_score_correction_bias
    EXPECT_EQ(layer.shared_mlp_bytes, 3LL * 7168 * 2048 * 2) << i;  // one shared expert, no gate
    EXPECT_EQ(layer.expert_bytes, 3LL * 7168 * 2048 * 2) << i;
    EXPECT_EQ(layer.num_experts, 256);
    EXPECT_EQ(layer.top_k, 8);
  }
  // One row of kv_lora_rank + qk_rope_head_dim = 576 values per token and layer, bf16 (section 10 of
  // moe-architectures.md: "latent 70272"); the engine's KvCache counts the same.
  EXPECT_EQ(costs.kv_bytes_per_token, 576LL * 2 * 61);
  EXPECT_EQ(costs.kv_bytes_per_token, KvBytesPerToken(spec, io::DType::kBF16));
  // Absorbed attention per head: q . [c ; k_rope] (576) and p . c (512), a multiply-add each.
  EXPECT_DOUBLE_EQ(costs.attention_flops_per_context_token, 2.0 * 128 * (2 * 512 + 64) * 61);
  EXPECT_EQ(costs.total_weight_bytes(), 2 * spec.total_params() + 61 * kv_b * 2);
  EXPECT_NEAR(spec.total_params() / 1e9, 671.0, 0.1);
  // --layers keeps the first layers' share of the KV.
  EXPECT_EQ(ComputeModelCosts(spec, 7).kv_bytes_per_token, 576LL * 2 * 7);
}

TEST(PlannerModelCosts, Fp8ExpertBytesAndTheHeldType) {
  ModelSpec spec = LoadConfig("qwen3-30b-a3b.json");
  // A byte per parameter plus an f32 scale per 128x128 block: gate and up [768, 2048], down [2048, 768].
  EXPECT_EQ(ExpertBytes(spec, io::DType::kF8E4M3), 3LL * 2048 * 768 + 3 * (6 * 16) * 4);
  EXPECT_EQ(ExpertBytes(spec, io::DType::kBF16), 3LL * 2048 * 768 * 2);
  // Partial blocks count whole.
  spec.moe_intermediate_size = 700;
  EXPECT_EQ(ExpertBytes(spec, io::DType::kF8E4M3), 3LL * 2048 * 700 + 3 * (6 * 16) * 4);
  spec.moe_intermediate_size = 768;
  // The engine dequantises FP8 experts at load for now, so the plan prices them as bf16 but records the type.
  ModelCosts fp8 = ComputeModelCosts(spec, 0, 2, 2, io::DType::kF8E4M3);
  EXPECT_EQ(fp8.expert_dtype, io::DType::kF8E4M3);
  EXPECT_EQ(fp8.held_expert_dtype, HeldExpertDType(io::DType::kF8E4M3));
  EXPECT_EQ(fp8.layers[0].expert_bytes, ExpertBytes(spec, fp8.held_expert_dtype));
  // An FP8 checkpoint's experts are FP8 whatever the caller passes.
  spec.quantization.method = WeightQuantization::kFp8Block;
  EXPECT_EQ(ComputeModelCosts(spec).expert_dtype, io::DType::kF8E4M3);
}

TEST(PlannerModelCosts, Fp8KvCacheIsPricedByTheSharedCount) {
  ModelSpec spec = LoadConfig("qwen3-30b-a3b.json");
  ModelCosts costs = ComputeModelCosts(spec, 16);
  EXPECT_EQ(costs.kv_bytes_per_token, 2LL * 512 * 2 * 16);
  PriceKvCache(spec, io::DType::kF8E4M3, &costs);
  // 16 of 48 layers: K and V, 512 e4m3 elements and 4 f32 scales each.
  EXPECT_EQ(costs.kv_bytes_per_token, 2LL * (512 + 4 * 4) * 16);
  EXPECT_EQ(costs.kv_bytes_per_token, KvBytesPerToken(spec, io::DType::kF8E4M3) / 3);
  EXPECT_EQ(costs.kv_bytes_per_element, 1);
}

TEST(PlannerModelCosts, MixtralAndLayerOverride) {
  ModelSpec spec = LoadConfig("mixtral-8x7b.json");
  ModelCosts costs = ComputeModelCosts(spec);
  EXPECT_EQ(costs.layers[0].expert_bytes, 3LL * 4096 * 14336 * 2);
  EXPECT_EQ(costs.group_bytes(WeightGroup::kRoutedExperts), 32LL * 8 * 3 * 4096 * 14336 * 2);
  EXPECT_EQ(costs.kv_bytes_per_token, 2LL * 1024 * 2 * 32);
  EXPECT_NEAR(spec.total_params() / 1e9, 46.7, 0.1);
  EXPECT_EQ(costs.total_weight_bytes(), 2 * spec.total_params());

  ModelCosts eight = ComputeModelCosts(spec, /*layers_override=*/8);
  EXPECT_EQ(eight.num_layers(), 8);
  EXPECT_EQ(eight.kv_bytes_per_token * 4, costs.kv_bytes_per_token);
  EXPECT_EQ(eight.group_bytes(WeightGroup::kAttention) * 4, costs.group_bytes(WeightGroup::kAttention));
  EXPECT_EQ(eight.lm_head_bytes, costs.lm_head_bytes);
  // Per token: the projections, the router and two experts of each layer.
  double per_layer = 2.0 * 4096 * (4096 + 2048) + 2.0 * 4096 * 4096 + 2.0 * 4096 * 8 + 2 * 6.0 * 4096 * 14336;
  EXPECT_DOUBLE_EQ(costs.dense_flops_per_token(), 32 * per_layer);
}

TEST(PlannerModelCosts, SharedExpertsAndDenseLayers) {
  absl::StatusOr<ModelSpec> spec = ParseModelSpec(R"({
    "model_type": "qwen2_moe", "vocab_size": 100, "hidden_size": 64, "num_hidden_layers": 3,
    "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 96, "moe_intermediate_size": 32,
    "shared_expert_intermediate_size": 48, "num_experts": 8, "num_experts_per_tok": 2, "mlp_only_layers": [1],
    "max_position_embeddings": 256})",
                                                  "config.json");
  ASSERT_TRUE(spec.ok()) << spec.status();
  ModelCosts costs = ComputeModelCosts(*spec);
  EXPECT_EQ(costs.layers[0].shared_mlp_bytes, (3 * 64 * 48 + 64) * 2);
  EXPECT_FALSE(costs.layers[1].is_moe);
  EXPECT_EQ(costs.layers[1].shared_mlp_bytes, 3 * 64 * 96 * 2);
  EXPECT_EQ(costs.layers[1].routed_expert_bytes(), 0);
  EXPECT_EQ(costs.total_weight_bytes(), 2 * spec->total_params());
}

TEST(PlannerModelCosts, ExpectedTouchedExperts) {
  EXPECT_DOUBLE_EQ(ExpectedTouchedExperts(1, 128, 8), 8.0);
  EXPECT_NEAR(ExpectedTouchedExperts(2, 8, 2), 8 * (1 - 0.75 * 0.75), 1e-12);
  EXPECT_NEAR(ExpectedTouchedExperts(10000, 128, 8), 128.0, 1e-6);
  EXPECT_DOUBLE_EQ(ExpectedTouchedExperts(0, 128, 8), 0.0);
}

TEST(PlannerModelCosts, InterpolateRateOnTheCurve) {
  std::vector<RatePoint> curve = {{16, 50}, {64, 200}, {256, 600}};
  EXPECT_DOUBLE_EQ(InterpolateRate(curve, 64, true), 200e12);
  // Halfway in log between 16 and 64 is 32.
  EXPECT_NEAR(InterpolateRate(curve, 32, true), 125e12, 1e3);
  // Below the first point a weight-bound kernel keeps its time: the rate falls with the tokens.
  EXPECT_DOUBLE_EQ(InterpolateRate(curve, 4, true), 12.5e12);
  EXPECT_DOUBLE_EQ(InterpolateRate(curve, 4, false), 50e12);
  EXPECT_DOUBLE_EQ(InterpolateRate(curve, 100000, true), 600e12);
}

}  // namespace
}  // namespace ringmoe::planner
