// DeepSeek on the CPU path without transformers: a tiny random DeepSeek-V3 checkpoint written here (f32), its
// MLA attention in the absorbed form (runtime/engine/mla_step.h, the cache holding only [latent ; rope key])
// against the naive form (K and V expanded through kv_b per head, transformers' permuted interleaved RoPE,
// YaRN computed in double), and the engine's handling of DeepSeek checkpoints: both q variants load and
// generate the same tokens whatever the schedule, the MTP layer is skipped, and bad input fails clearly.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "cpu/cpu_features.h"
#include "cpu/fp8_blocks.h"
#include "cpu/thread_pool.h"
#include "io/checkpoint.h"
#include "io/model_spec.h"
#include "nlohmann/json.hpp"
#include "planner/execution_plan.h"
#include "ringmoe/engine.h"
#include "runtime/engine/compute_type.h"
#include "runtime/engine/forward.h"
#include "runtime/engine/kv_cache.h"
#include "runtime/engine/mla_step.h"
#include "runtime/engine/model_weights.h"
#include "runtime/frontend/job_plan.h"
#include "tests/testing/safetensors_writer.h"

namespace ringmoe {
namespace {

using nlohmann::json;
using testing::TempDir;
using testing::TensorSpec;

constexpr int kHidden = 32, kHeads = 4, kQLora = 24, kLatent = 16, kNope = 8, kRope = 8, kV = 12;
constexpr int kVocab = 64, kLayers = 3, kExperts = 8, kMoeInter = 16, kDenseInter = 40;

struct Options {
  bool q_lora = true;
  bool mtp_layer = true;  // tensors of a multi-token-prediction layer after the last one
  bool correction_bias = true;
  bool rope_interleave = true;
};

json Config(const Options& options) {
  json config = {{"model_type", "deepseek_v3"},
                 {"vocab_size", kVocab},
                 {"hidden_size", kHidden},
                 {"intermediate_size", kDenseInter},
                 {"moe_intermediate_size", kMoeInter},
                 {"num_hidden_layers", kLayers},
                 {"num_nextn_predict_layers", options.mtp_layer ? 1 : 0},
                 {"num_attention_heads", kHeads},
                 {"num_key_value_heads", kHeads},
                 {"n_shared_experts", 1},
                 {"n_routed_experts", kExperts},
                 {"routed_scaling_factor", 2.5},
                 {"kv_lora_rank", kLatent},
                 {"q_lora_rank", options.q_lora ? json(kQLora) : json(nullptr)},
                 {"qk_rope_head_dim", kRope},
                 {"v_head_dim", kV},
                 {"qk_nope_head_dim", kNope},
                 {"topk_method", "noaux_tc"},
                 {"n_group", 4},
                 {"topk_group", 2},
                 {"num_experts_per_tok", 2},
                 {"moe_layer_freq", 1},
                 {"first_k_dense_replace", 1},
                 {"norm_topk_prob", true},
                 {"scoring_func", "sigmoid"},
                 {"max_position_embeddings", 256},
                 {"rms_norm_eps", 1e-6},
                 {"rope_theta", 10000.0},
                 {"rope_interleave", options.rope_interleave},
                 {"tie_word_embeddings", false},
                 {"torch_dtype", "float32"},
                 {"eos_token_id", 1},
                 {"bos_token_id", 0}};
  config["rope_scaling"] = {
      {"type", "yarn"},       {"factor", 4.0},  {"original_max_position_embeddings", 64},
      {"beta_fast", 32},      {"beta_slow", 1}, {"mscale", 1.0},
      {"mscale_all_dim", 0.8}};
  return config;
}

// name -> (shape, f32 values), normal(0, 1/sqrt(fan_in)); norms 1 + 0.1 N; the router wider so routing is
// decisive; correction biases in [0, 0.2).
using Tensors = std::map<std::string, std::pair<std::vector<int64_t>, std::vector<float>>>;

Tensors MakeTensors(const Options& options, uint32_t seed) {
  std::mt19937 random(seed);
  std::normal_distribution<float> normal;
  Tensors tensors;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, float scale, float offset = 0.0f) {
    int64_t count = 1;
    for (int64_t side : shape) count *= side;
    std::vector<float> values(count);
    for (float& v : values) v = offset + scale * normal(random);
    tensors[name] = {shape, values};
  };
  auto matrix = [&](const std::string& name, int64_t rows, int64_t cols, float gain = 1.0f) {
    add(name, {rows, cols}, gain / std::sqrt(static_cast<float>(cols)));
  };
  add("model.embed_tokens.weight", {kVocab, kHidden}, 1.0f);
  add("model.norm.weight", {kHidden}, 0.1f, 1.0f);
  matrix("lm_head.weight", kVocab, kHidden, 2.0f);
  for (int layer = 0; layer < kLayers + (options.mtp_layer ? 1 : 0); ++layer) {
    const std::string p = "model.layers." + std::to_string(layer) + ".";
    add(p + "input_layernorm.weight", {kHidden}, 0.1f, 1.0f);
    add(p + "post_attention_layernorm.weight", {kHidden}, 0.1f, 1.0f);
    if (options.q_lora) {
      matrix(p + "self_attn.q_a_proj.weight", kQLora, kHidden);
      add(p + "self_attn.q_a_layernorm.weight", {kQLora}, 0.1f, 1.0f);
      matrix(p + "self_attn.q_b_proj.weight", kHeads * (kNope + kRope), kQLora);
    } else {
      matrix(p + "self_attn.q_proj.weight", kHeads * (kNope + kRope), kHidden);
    }
    matrix(p + "self_attn.kv_a_proj_with_mqa.weight", kLatent + kRope, kHidden);
    add(p + "self_attn.kv_a_layernorm.weight", {kLatent}, 0.1f, 1.0f);
    matrix(p + "self_attn.kv_b_proj.weight", kHeads * (kNope + kV), kLatent);
    matrix(p + "self_attn.o_proj.weight", kHidden, kHeads * kV);
    if (layer == 0) {
      matrix(p + "mlp.gate_proj.weight", kDenseInter, kHidden);
      matrix(p + "mlp.up_proj.weight", kDenseInter, kHidden);
      matrix(p + "mlp.down_proj.weight", kHidden, kDenseInter);
      continue;
    }
    matrix(p + "mlp.gate.weight", kExperts, kHidden, 4.0f);
    if (options.correction_bias) {
      add(p + "mlp.gate.e_score_correction_bias", {kExperts}, 0.0f);
      for (float& b : tensors[p + "mlp.gate.e_score_correction_bias"].second)
        b = 0.2f * std::uniform_real_distribution<float>()(random);
    }
    for (int e = 0; e < kExperts; ++e) {
      const std::string x = p + "mlp.experts." + std::to_string(e) + ".";
      matrix(x + "gate_proj.weight", kMoeInter, kHidden);
      matrix(x + "up_proj.weight", kMoeInter, kHidden);
      matrix(x + "down_proj.weight", kHidden, kMoeInter);
    }
    matrix(p + "mlp.shared_experts.gate_proj.weight", kMoeInter, kHidden);
    matrix(p + "mlp.shared_experts.up_proj.weight", kMoeInter, kHidden);
    matrix(p + "mlp.shared_experts.down_proj.weight", kHidden, kMoeInter);
  }
  return tensors;
}

bool WriteCheckpoint(const std::string& dir, const Options& options, const Tensors& tensors,
                     bool bf16 = false) {
  std::vector<TensorSpec> specs;
  for (const auto& [name, tensor] : tensors) {
    specs.push_back({name, bf16 ? "BF16" : "F32", tensor.first,
                     bf16 ? testing::BF16Bytes(tensor.second) : testing::F32Bytes(tensor.second)});
  }
  return testing::WriteFile(dir + "/config.json", Config(options).dump(2)) &&
         testing::WriteSafetensors(dir + "/model.safetensors", specs);
}

// ---- the naive reference, in double ----

using Vector = std::vector<double>;

Vector MatVec(const Tensors& tensors, const std::string& name, const Vector& x) {
  const auto& [shape, w] = tensors.at(name);
  Vector y(shape[0], 0.0);
  for (int64_t r = 0; r < shape[0]; ++r)
    for (int64_t c = 0; c < shape[1]; ++c) y[r] += static_cast<double>(w[r * shape[1] + c]) * x[c];
  return y;
}

Vector RmsNorm(const Vector& x, const std::vector<float>& weight) {
  double mean = 0;
  for (double v : x) mean += v * v;
  const double inverse = 1.0 / std::sqrt(mean / x.size() + 1e-6);
  Vector y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * inverse * weight[i];
  return y;
}

struct Yarn {
  std::vector<double> inv_freq;
  double attention_factor, scale;
};

// transformers' _compute_yarn_parameters and DeepSeek's softmax scale for the config above.
Yarn ReferenceYarn() {
  const double theta = 10000, factor = 4, original = 64;
  auto correction = [&](double rotations) {
    return kRope * std::log(original / (rotations * 2 * M_PI)) / (2 * std::log(theta));
  };
  const double low = std::max(0.0, std::floor(correction(32))),
               high = std::min(kRope - 1.0, std::ceil(correction(1)));
  Yarn yarn;
  for (int i = 0; i < kRope / 2; ++i) {
    const double base = std::pow(theta, 2.0 * i / kRope);
    const double ramp = std::clamp((i - low) / (high - low), 0.0, 1.0);
    yarn.inv_freq.push_back(1.0 / (factor * base) * ramp + 1.0 / base * (1 - ramp));
  }
  auto mscale = [&](double m) { return 0.1 * m * std::log(factor) + 1; };
  yarn.attention_factor = mscale(1.0) / mscale(0.8);
  yarn.scale = mscale(0.8) * mscale(0.8) / std::sqrt(static_cast<double>(kNope + kRope));
  return yarn;
}

// transformers' apply_rotary_pos_emb_interleave: [x0, x2, ..., x1, x3, ...], then rotate_half; with
// rope_interleave false, apply_rotary_pos_emb: rotate_half on x as it is.
Vector Rope(const Vector& x, int position, const Yarn& yarn, bool interleave) {
  const int half = kRope / 2;
  Vector permuted(x), out(kRope);
  for (int i = 0; i < half && interleave; ++i) {
    permuted[i] = x[2 * i];
    permuted[i + half] = x[2 * i + 1];
  }
  for (int i = 0; i < kRope; ++i) {
    const double angle = position * yarn.inv_freq[i % half];
    const double rotated = i < half ? -permuted[i + half] : permuted[i - half];
    out[i] = (permuted[i] * std::cos(angle) + rotated * std::sin(angle)) * yarn.attention_factor;
  }
  return out;
}

// Attention output rows [positions, heads * v] of one sequence whose inputs are rows x (naive MLA).
std::vector<Vector> NaiveMla(const Tensors& t, const std::string& p, const std::vector<Vector>& x,
                             bool q_lora, bool interleave) {
  const Yarn yarn = ReferenceYarn();
  const int n = static_cast<int>(x.size());
  std::vector<Vector> q(n), k_nope(n), values(n), k_rope(n);
  for (int s = 0; s < n; ++s) {
    q[s] =
        q_lora
            ? MatVec(t, p + "q_b_proj.weight",
                     RmsNorm(MatVec(t, p + "q_a_proj.weight", x[s]), t.at(p + "q_a_layernorm.weight").second))
            : MatVec(t, p + "q_proj.weight", x[s]);
    Vector ckv = MatVec(t, p + "kv_a_proj_with_mqa.weight", x[s]);
    Vector c = RmsNorm(Vector(ckv.begin(), ckv.begin() + kLatent), t.at(p + "kv_a_layernorm.weight").second);
    k_rope[s] = Rope(Vector(ckv.begin() + kLatent, ckv.end()), s, yarn, interleave);
    Vector kv = MatVec(t, p + "kv_b_proj.weight", c);  // [heads, nope + v]
    k_nope[s] = kv;
    values[s] = kv;
  }
  std::vector<Vector> out(n, Vector(kHeads * kV, 0.0));
  for (int s = 0; s < n; ++s) {
    for (int h = 0; h < kHeads; ++h) {
      const double* qh = q[s].data() + h * (kNope + kRope);
      const Vector q_rope = Rope(Vector(qh + kNope, qh + kNope + kRope), s, yarn, interleave);
      std::vector<double> scores(s + 1);
      double top = -1e300;
      for (int u = 0; u <= s; ++u) {
        double dot = 0;
        for (int i = 0; i < kNope; ++i) dot += qh[i] * k_nope[u][h * (kNope + kV) + i];
        for (int i = 0; i < kRope; ++i) dot += q_rope[i] * k_rope[u][i];
        scores[u] = dot * yarn.scale;
        top = std::max(top, scores[u]);
      }
      double sum = 0;
      for (double& v : scores) sum += v = std::exp(v - top);
      for (int u = 0; u <= s; ++u)
        for (int i = 0; i < kV; ++i)
          out[s][h * kV + i] += scores[u] / sum * values[u][h * (kNope + kV) + kNope + i];
    }
  }
  return out;
}

class MlaTest : public ::testing::TestWithParam<std::tuple<bool, bool>> {};  // q_lora, rope_interleave

// Two sequences: a 11-token and a 40-token prompt in one step (the second long enough to be split into row
// and head blocks), then three decode steps of both; every output row against the naive form.
TEST_P(MlaTest, AbsorbedDecodeMatchesTheNaiveForm) {
  Options options;
  options.q_lora = std::get<0>(GetParam());
  options.rope_interleave = std::get<1>(GetParam());
  TempDir dir;
  const Tensors tensors = MakeTensors(options, 7);
  ASSERT_TRUE(WriteCheckpoint(dir.path(), options, tensors));
  absl::StatusOr<ModelSpec> spec = LoadModelSpec(dir.path());
  ASSERT_TRUE(spec.ok()) << spec.status();
  absl::StatusOr<std::unique_ptr<io::Checkpoint>> checkpoint = io::Checkpoint::Open(dir.path());
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  absl::StatusOr<std::unique_ptr<ModelWeights>> weights =
      ModelWeights::Load(*spec, std::move(*checkpoint), io::DType::kF32);
  ASSERT_TRUE(weights.ok()) << weights.status();
  for (io::DType cache_dtype : {io::DType::kF32, io::DType::kBF16}) {
    KvCache cache(*spec, cache_dtype, 8, 64);
    EXPECT_EQ(cache.bytes_per_token(), int64_t{kLayers} * (kLatent + kRope) * io::DTypeSize(cache_dtype));
    cpu::CpuWorkers workers(2);
    MlaScratch scratch;
    const cpu::RotaryEmbedding rope = MlaRotary(*spec);
    const int layer = 1;
    const std::string prefix = "model.layers.1.self_attn.";
    const std::vector<int> lengths = {11 + 3, 40 + 3};
    std::mt19937 random(3);
    std::normal_distribution<float> normal;
    std::vector<std::vector<Vector>> inputs(2);
    for (int s = 0; s < 2; ++s) {
      for (int i = 0; i < lengths[s]; ++i) {
        Vector row(kHidden);
        for (double& v : row) v = normal(random);
        inputs[s].push_back(row);
      }
    }
    std::vector<std::vector<int32_t>> tables(2);
    for (int s = 0; s < 2; ++s) ASSERT_TRUE(cache.Reserve(lengths[s], &tables[s]));
    std::vector<std::vector<Vector>> got(2);
    // Step 0: both prompts; steps 1..3: one decode token each.
    for (int step = 0; step < 4; ++step) {
      std::vector<StepChunk> chunks;
      std::vector<float> x;
      for (int s = 0; s < 2; ++s) {
        StepChunk chunk;
        chunk.start = step == 0 ? 0 : lengths[s] - 4 + step;
        chunk.count = step == 0 ? lengths[s] - 3 : 1;
        chunk.block_table = &tables[s];
        for (int i = 0; i < chunk.count; ++i)
          for (double v : inputs[s][chunk.start + i]) x.push_back(static_cast<float>(v));
        chunks.push_back(chunk);
      }
      const int tokens = static_cast<int>(x.size()) / kHidden;
      std::vector<float> out(static_cast<size_t>(tokens) * kHeads * kV);
      MlaAttentionOnCpu(*spec, (*weights)->layer(layer).attention, rope, layer, chunks, x.data(), tokens,
                        out.data(), cache, workers, scratch);
      int row = 0;
      for (int s = 0; s < 2; ++s) {
        for (int i = 0; i < chunks[s].count; ++i, ++row)
          got[s].push_back(Vector(out.begin() + row * kHeads * kV, out.begin() + (row + 1) * kHeads * kV));
      }
    }
    const double tolerance = cache_dtype == io::DType::kF32 ? 2e-5 : 2e-2;  // bf16 rounds the cached rows
    double worst = 0;
    for (int s = 0; s < 2; ++s) {
      const std::vector<Vector> want =
          NaiveMla(tensors, prefix, inputs[s], options.q_lora, options.rope_interleave);
      ASSERT_EQ(got[s].size(), want.size());
      for (size_t i = 0; i < want.size(); ++i)
        for (size_t j = 0; j < want[i].size(); ++j) {
          worst = std::max(worst, std::abs(got[s][i][j] - want[i][j]));
          ASSERT_NEAR(got[s][i][j], want[i][j], tolerance)
              << "sequence " << s << " position " << i << " value " << j << " cache "
              << io::DTypeName(cache_dtype);
        }
    }
    EXPECT_GT(worst, 0.0);
  }
}

INSTANTIATE_TEST_SUITE_P(Variants, MlaTest, ::testing::Combine(::testing::Bool(), ::testing::Bool()),
                         [](const ::testing::TestParamInfo<MlaTest::ParamType>& info) {
                           return std::string(std::get<0>(info.param) ? "QLora" : "QProj") +
                                  (std::get<1>(info.param) ? "Interleaved" : "HalfRope");
                         });

std::vector<Request> Requests() {
  std::vector<Request> requests;
  for (int i = 0; i < 5; ++i) {
    Request request;
    request.id = "r" + std::to_string(i);
    for (int j = 0; j < 3 + 9 * i; ++j) request.prompt_ids.push_back(2 + (j * 7 + i * 13) % (kVocab - 2));
    request.max_tokens = 6;
    request.logprobs = true;
    request.ignore_eos = true;
    requests.push_back(request);
  }
  return requests;
}

absl::StatusOr<std::vector<Result>> Generate(const std::string& dir, int batch, int step_tokens,
                                             io::DType kv_dtype = io::DType::kF32,
                                             ComputeType compute = ComputeType::kF32) {
  EngineOptions options;
  options.cpu_compute = compute;
  options.threads = 2;
  options.plan.batch = batch;
  options.plan.prefill_chunk = step_tokens - batch;
  options.plan.kv.block_tokens = 4;
  options.plan.kv.dtype = kv_dtype;
  absl::StatusOr<Engine> engine = Engine::Open(dir, options);
  if (!engine.ok()) return engine.status();
  return engine->Generate(Requests());
}

// Whole prompts in one step, and chunked prefill with continuous batching (prefix chunks attend over the
// cache): the same tokens, logprobs within f32 noise; and the MTP layer's tensors are left alone.
TEST(DeepseekEngine, GeneratesTheSameWhateverTheSchedule) {
  for (bool q_lora : {true, false}) {
    Options options;
    options.q_lora = q_lora;
    TempDir dir;
    ASSERT_TRUE(WriteCheckpoint(dir.path(), options, MakeTensors(options, 11)));
    absl::StatusOr<std::vector<Result>> whole = Generate(dir.path(), 8, 512);
    ASSERT_TRUE(whole.ok()) << whole.status();
    absl::StatusOr<std::vector<Result>> chunked = Generate(dir.path(), 2, 7);
    ASSERT_TRUE(chunked.ok()) << chunked.status();
    ASSERT_EQ(whole->size(), chunked->size());
    std::set<int32_t> distinct;
    for (size_t i = 0; i < whole->size(); ++i) {
      ASSERT_TRUE((*whole)[i].status.ok()) << (*whole)[i].status;
      EXPECT_EQ((*whole)[i].token_ids, (*chunked)[i].token_ids) << "request " << i;
      for (size_t t = 0; t < (*whole)[i].logprobs.size(); ++t)
        EXPECT_NEAR((*whole)[i].logprobs[t], (*chunked)[i].logprobs[t], 1e-4);
      distinct.insert((*whole)[i].token_ids.begin(), (*whole)[i].token_ids.end());
    }
    EXPECT_GT(distinct.size(), 2u);  // not one token repeated
  }
}

TEST(DeepseekEngine, BadInputFailsClearly) {
  Options options;
  TempDir dir;
  options.correction_bias = false;
  ASSERT_TRUE(WriteCheckpoint(dir.path(), options, MakeTensors(options, 5)));
  absl::StatusOr<std::vector<Result>> results = Generate(dir.path(), 2, 64);
  ASSERT_FALSE(results.ok());
  EXPECT_NE(results.status().message().find("model.layers.1.mlp.gate.e_score_correction_bias"),
            std::string::npos)
      << results.status();
  EXPECT_NE(results.status().message().find("noaux_tc"), std::string::npos) << results.status();

  // The config says q LoRA, the checkpoint has q_proj.
  TempDir mismatched;
  Options with_q_proj;
  with_q_proj.q_lora = false;
  ASSERT_TRUE(WriteCheckpoint(mismatched.path(), with_q_proj, MakeTensors(with_q_proj, 5)));
  ASSERT_TRUE(testing::WriteFile(mismatched.path() + "/config.json", Config(Options{}).dump()));
  results = Generate(mismatched.path(), 2, 64);
  ASSERT_FALSE(results.ok());
  EXPECT_NE(results.status().message().find("q_proj"), std::string::npos) << results.status();

  // A GPU plan may not put any of the MLA cache on the GPU (its attention runs on the CPU), naming the field.
  absl::StatusOr<ModelSpec> mla_spec = LoadModelSpec(mismatched.path());
  ASSERT_TRUE(mla_spec.ok()) << mla_spec.status();
  planner::ExecutionPlan gpu_plan = planner::DefaultPlan(planner::PlanDevice::kGpu);
  gpu_plan.expert_tiers = planner::SpreadResidentLayers(*mla_spec, 0);
  EXPECT_TRUE(planner::ValidatePlan(gpu_plan, *mla_spec).ok());
  gpu_plan.kv.gpu_fraction = 0.5;
  const absl::Status gpu_share = planner::ValidatePlan(gpu_plan, *mla_spec);
  EXPECT_TRUE(absl::IsInvalidArgument(gpu_share)) << gpu_share;
  EXPECT_NE(gpu_share.message().find("kv.gpu_fraction"), std::string::npos) << gpu_share;

  // An fp8 KV cache is refused for MLA, naming the field.
  TempDir good;
  ASSERT_TRUE(WriteCheckpoint(good.path(), Options{}, MakeTensors(Options{}, 5)));
  results = Generate(good.path(), 2, 64, io::DType::kF8E4M3);
  ASSERT_FALSE(results.ok());
  EXPECT_NE(results.status().message().find("kv.dtype"), std::string::npos) << results.status();
}

// Block-FP8 (DeepSeek ships FP8): every projection (q LoRA, kv_a, kv_b, o, dense MLP, experts, shared
// experts) as F8_E4M3 with weight_scale_inv blocks of 8 x 12 (which divide none of the sides evenly), the
// router, norms and correction bias as they are. The engine must give the same tokens and logprobs as on an
// f32 checkpoint of the dequantised values.
TEST(DeepseekEngine, BlockFp8CheckpointMatchesItsDequantisedValues) {
  const Options options;
  const Tensors tensors = MakeTensors(options, 11);
  std::vector<TensorSpec> fp8, reference;
  int quantised = 0;
  for (const auto& [name, tensor] : tensors) {
    const auto& [shape, values] = tensor;
    const bool projection = name.find("_proj.weight") != std::string::npos ||
                            name.find("_proj_with_mqa.weight") != std::string::npos;
    if (!projection) {
      fp8.push_back({name, "F32", shape, testing::F32Bytes(values)});
      reference.push_back({name, "F32", shape, testing::F32Bytes(values)});
      continue;
    }
    const cpu::Fp8BlockShape block{shape[0], shape[1], 8, 12};
    std::vector<uint8_t> weight(values.size());
    std::vector<float> scales(static_cast<size_t>(block.num_scales())), dequantised(values.size());
    cpu::QuantizeFp8Blocks(block, values.data(), weight.data(), scales.data());
    cpu::DequantizeFp8Blocks(block, io::DType::kF8E4M3, weight.data(), io::DType::kF32, scales.data(),
                             dequantised.data());
    fp8.push_back({name, "F8_E4M3", shape, weight});
    fp8.push_back(
        {name + "_scale_inv", "F32", {block.scale_rows(), block.scale_cols()}, testing::F32Bytes(scales)});
    reference.push_back({name, "F32", shape, testing::F32Bytes(dequantised)});
    ++quantised;
  }
  EXPECT_GT(quantised, 50);
  json config = Config(options);
  TempDir fp8_dir, reference_dir;
  ASSERT_TRUE(testing::WriteFile(reference_dir.path() + "/config.json", config.dump()));
  ASSERT_TRUE(testing::WriteSafetensors(reference_dir.path() + "/model.safetensors", reference));
  config["quantization_config"] = {{"quant_method", "fp8"},
                                   {"fmt", "e4m3"},
                                   {"activation_scheme", "dynamic"},
                                   {"weight_block_size", {8, 12}}};
  ASSERT_TRUE(testing::WriteFile(fp8_dir.path() + "/config.json", config.dump()));
  ASSERT_TRUE(testing::WriteSafetensors(fp8_dir.path() + "/model.safetensors", fp8));
  absl::StatusOr<std::vector<Result>> from_fp8 = Generate(fp8_dir.path(), 8, 512);
  ASSERT_TRUE(from_fp8.ok()) << from_fp8.status();
  absl::StatusOr<std::vector<Result>> from_reference = Generate(reference_dir.path(), 8, 512);
  ASSERT_TRUE(from_reference.ok()) << from_reference.status();
  for (size_t i = 0; i < from_fp8->size(); ++i) {
    EXPECT_EQ((*from_fp8)[i].token_ids, (*from_reference)[i].token_ids) << "request " << i;
    for (size_t t = 0; t < (*from_fp8)[i].logprobs.size(); ++t)
      EXPECT_NEAR((*from_fp8)[i].logprobs[t], (*from_reference)[i].logprobs[t], 1e-5);
  }
}

// bf16 compute (matmul weights in bf16, the latent cache in bf16; kv_b and the absorbed matrices stay f32):
// the first generated token of each prompt, where bf16's drift has not compounded, stays the f32 one's with
// its logprob within 0.05.
TEST(DeepseekEngine, Bf16ComputeStaysCloseToF32) {
  TempDir dir;
  ASSERT_TRUE(WriteCheckpoint(dir.path(), Options{}, MakeTensors(Options{}, 11)));
  absl::StatusOr<std::vector<Result>> f32 = Generate(dir.path(), 8, 512);
  ASSERT_TRUE(f32.ok()) << f32.status();
  absl::StatusOr<std::vector<Result>> bf16 =
      Generate(dir.path(), 8, 512, io::DType::kBF16, ComputeType::kBF16);
  ASSERT_TRUE(bf16.ok()) << bf16.status();
  for (size_t i = 0; i < f32->size(); ++i) {
    ASSERT_FALSE((*bf16)[i].token_ids.empty());
    EXPECT_EQ((*bf16)[i].token_ids[0], (*f32)[i].token_ids[0]) << "request " << i;
    EXPECT_NEAR((*bf16)[i].logprobs[0], (*f32)[i].logprobs[0], 0.05) << "request " << i;
  }
}

// --cpu-compute auto decides by the checkpoint's dtype, probed on a tensor every DeepSeek variant has (with q
// LoRA there is no q_proj): a bf16 checkpoint computes in bf16 where the CPU has native bf16.
TEST(DeepseekEngine, AutoComputeTypeSeesABf16Checkpoint) {
  TempDir bf16_dir, f32_dir;
  ASSERT_TRUE(WriteCheckpoint(bf16_dir.path(), Options{}, MakeTensors(Options{}, 3), /*bf16=*/true));
  ASSERT_TRUE(WriteCheckpoint(f32_dir.path(), Options{}, MakeTensors(Options{}, 3)));
  EXPECT_EQ(ChooseComputeType(ComputeType::kAuto, bf16_dir.path(), false),
            cpu::CpuHasNativeBf16() ? io::DType::kBF16 : io::DType::kF32);
  EXPECT_EQ(ChooseComputeType(ComputeType::kAuto, f32_dir.path(), false), io::DType::kF32);
}

// --device auto plans an MLA model for the GPU where the profile has one, as any model, with no GPU share of
// its cache; --device cpu keeps it on the CPU.
// --device gpu plans MLA models for the GPU path (the latent cache on the host); auto keeps them on the CPU
// path until the GPU path has passed its goldens on a GPU; other models go to the GPU under auto.
TEST(DeepseekEngine, GpuDevicePlansMlaAutoKeepsItOnTheCpu) {
  TempDir dir;
  ASSERT_TRUE(WriteCheckpoint(dir.path(), Options{}, MakeTensors(Options{}, 3)));
  absl::StatusOr<ModelSpec> spec = LoadModelSpec(dir.path());
  ASSERT_TRUE(spec.ok()) << spec.status();
  planner::Workload workload;
  workload.num_requests = 8;
  workload.mean_prompt_tokens = 16;
  workload.mean_gen_tokens = 8;
  workload.max_context_tokens = 24;
  JobPlanOptions options;
  options.model = dir.path();
  options.hardware = std::string(RINGMOE_SOURCE_DIR) + "/bench/h200_profile.json";
  options.device = "auto";
  absl::StatusOr<planner::ExecutionPlan> plan = PlanJobWithoutSearch(*spec, workload, options);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->device, planner::PlanDevice::kCpu);
  options.device = "gpu";
  plan = PlanJobWithoutSearch(*spec, workload, options);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->device, planner::PlanDevice::kGpu);
  EXPECT_EQ(plan->kv.gpu_bytes, 0);
  EXPECT_TRUE(planner::ValidatePlan(*plan, *spec).ok()) << planner::ValidatePlan(*plan, *spec);
  options.device = "cpu";
  plan = PlanJobWithoutSearch(*spec, workload, options);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->device, planner::PlanDevice::kCpu);
  const std::string qwen3 = std::string(RINGMOE_SOURCE_DIR) + "/tests/data/golden/qwen3_moe";
  absl::StatusOr<ModelSpec> gqa = LoadModelSpec(qwen3);
  ASSERT_TRUE(gqa.ok()) << gqa.status();
  options.model = qwen3;
  options.device = "auto";
  plan = PlanJobWithoutSearch(*gqa, workload, options);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->device, planner::PlanDevice::kGpu);
}

// Planner and engine price the cache from the same count: one latent + rope row per token and layer.
TEST(DeepseekEngine, KvBytesPerTokenIsTheCompressedRow) {
  absl::StatusOr<ModelSpec> spec = ParseModelSpec(Config(Options{}).dump(), "config.json");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(planner::KvBytesPerToken(*spec, io::DType::kBF16), int64_t{kLayers} * (kLatent + kRope) * 2);
  KvCache cache(*spec, io::DType::kBF16, 16, 4);
  EXPECT_EQ(cache.bytes_per_token(), planner::KvBytesPerToken(*spec, io::DType::kBF16));
  EXPECT_EQ(KvCache::BytesPerToken(*spec, io::DType::kBF16), cache.bytes_per_token());
}

}  // namespace
}  // namespace ringmoe
