// FP8 checkpoints through the engine on the CPU path. Each test builds, from the bf16 golden qwen3_moe
// checkpoint, a block-FP8 copy (attention projections and routed experts in F8_E4M3 with weight_scale_inv
// beside them, blocks that do not divide the shapes, one module left unquantised) and an f32 copy holding
// exactly the dequantised values: the engine must give identical results on both. Then every way an FP8
// checkpoint can be malformed must fail at Open with an error naming the tensor or field.
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "cpu/fp8_blocks.h"
#include "gpu/device.h"
#include "gtest/gtest.h"
#include "io/checkpoint.h"
#include "io/dtype.h"
#include "io/model_spec.h"
#include "nlohmann/json.hpp"
#include "ringmoe/engine.h"
#include "planner/execution_plan.h"
#include "planner/memory_table.h"
#include "runtime/frontend/job_plan.h"
#include "tests/testing/safetensors_writer.h"

namespace ringmoe {
namespace {

using testing::TempDir;
using testing::TensorSpec;

const std::string kGolden = std::string(RINGMOE_SOURCE_DIR) + "/tests/data/golden/qwen3_moe";
constexpr int kBlockRows = 24, kBlockCols = 40;  // divide none of the tiny model's sides
const char kUnconverted[] = "model.layers.0.self_attn.o_proj";

bool Quantised(const std::string& name) {
  if (name.rfind(std::string(kUnconverted) + ".", 0) == 0) return false;
  return name.find("_proj.weight") != std::string::npos;  // attention projections, experts, dense MLPs
}

std::vector<float> ToF32(const io::TensorView& view) {
  std::vector<float> values(static_cast<size_t>(view.numel()));
  EXPECT_TRUE(io::ConvertToF32(view.dtype(), view.data(), values.data(), values.size()).ok());
  return values;
}

struct Fp8Copies {
  std::vector<TensorSpec> fp8;        // the FP8 checkpoint
  std::vector<TensorSpec> reference;  // f32, the dequantised values
};

// scale_dtype: "F32" or "BF16" (the scales are rounded to it before the reference is dequantised).
Fp8Copies MakeCopies(const std::string& scale_dtype) {
  Fp8Copies copies;
  absl::StatusOr<std::unique_ptr<io::Checkpoint>> golden = io::Checkpoint::Open(kGolden);
  EXPECT_TRUE(golden.ok()) << golden.status();
  if (!golden.ok()) return copies;
  for (const std::string& name : (*golden)->Names()) {
    const io::TensorView& view = *(*golden)->Find(name);
    std::vector<int64_t> shape(view.shape().begin(), view.shape().end());
    std::vector<float> values = ToF32(view);
    if (!Quantised(name)) {
      copies.fp8.push_back({name, "F32", shape, testing::F32Bytes(values)});
      copies.reference.push_back({name, "F32", shape, testing::F32Bytes(values)});
      continue;
    }
    const cpu::Fp8BlockShape block{shape[0], shape[1], kBlockRows, kBlockCols};
    std::vector<uint8_t> weight(values.size());
    std::vector<float> scales(static_cast<size_t>(block.num_scales()));
    cpu::QuantizeFp8Blocks(block, values.data(), weight.data(), scales.data());
    std::vector<uint8_t> scale_bytes = testing::F32Bytes(scales);
    if (scale_dtype == "BF16") {
      scale_bytes = testing::BF16Bytes(scales);
      for (float& s : scales) s = io::BF16ToF32(io::F32ToBF16(s));
    }
    std::vector<float> dequantised(values.size());
    cpu::DequantizeFp8Blocks(block, io::DType::kF8E4M3, weight.data(), io::DType::kF32, scales.data(),
                             dequantised.data());
    copies.fp8.push_back({name, "F8_E4M3", shape, weight});
    copies.fp8.push_back(
        {name + "_scale_inv", scale_dtype, {block.scale_rows(), block.scale_cols()}, scale_bytes});
    copies.reference.push_back({name, "F32", shape, testing::F32Bytes(dequantised)});
  }
  return copies;
}

nlohmann::json GoldenConfig() {
  std::ifstream in(kGolden + "/config.json");
  return nlohmann::json::parse(in);
}

nlohmann::json Fp8Config() {
  nlohmann::json config = GoldenConfig();
  config["quantization_config"] = {{"quant_method", "fp8"},
                                   {"fmt", "e4m3"},
                                   {"activation_scheme", "dynamic"},
                                   {"weight_block_size", {kBlockRows, kBlockCols}},
                                   {"modules_to_not_convert", {"lm_head", kUnconverted}}};
  return config;
}

void WriteModel(const std::string& dir, const nlohmann::json& config,
                const std::vector<TensorSpec>& tensors) {
  ASSERT_TRUE(testing::WriteFile(dir + "/config.json", config.dump(2)));
  ASSERT_TRUE(testing::WriteSafetensors(dir + "/model.safetensors", tensors));
}

// Two greedy prompts of 8 tokens each with logprobs, through an engine opened with `options`; the run's
// streamed expert bytes into *streamed_bytes when given.
std::vector<Result> GenerateWith(const std::string& dir, const EngineOptions& options,
                                 int64_t* streamed_bytes = nullptr) {
  absl::StatusOr<Engine> engine = Engine::Open(dir, options);
  EXPECT_TRUE(engine.ok()) << engine.status();
  if (!engine.ok()) return {};
  std::vector<Request> requests;
  for (std::vector<int32_t> prompt :
       {std::vector<int32_t>{5, 17, 200}, std::vector<int32_t>{300, 4, 4, 90, 11, 7}}) {
    Request request;
    request.prompt_ids = prompt;
    request.max_tokens = 8;
    request.logprobs = true;
    request.ignore_eos = true;
    requests.push_back(request);
  }
  absl::StatusOr<std::vector<Result>> results = engine->Generate(requests);
  EXPECT_TRUE(results.ok()) << results.status();
  if (streamed_bytes != nullptr) *streamed_bytes = engine->last_run_stats().streamed_bytes;
  return results.ok() ? *results : std::vector<Result>{};
}

std::vector<Result> Generate(const std::string& dir, io::DType expert_dtype = io::DType::kBF16) {
  EngineOptions options;
  options.cpu_compute = ComputeType::kF32;
  options.threads = 2;
  options.plan.kv.block_tokens = 8;
  options.plan.expert_dtype = expert_dtype;
  return GenerateWith(dir, options);
}

void ExpectSameResults(const std::vector<Result>& a, const std::vector<Result>& b) {
  ASSERT_EQ(a.size(), b.size());
  ASSERT_FALSE(a.empty());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_TRUE(a[i].status.ok()) << a[i].status;
    EXPECT_EQ(a[i].token_ids, b[i].token_ids) << i;
    ASSERT_EQ(a[i].logprobs.size(), b[i].logprobs.size());
    for (size_t t = 0; t < a[i].logprobs.size(); ++t) EXPECT_NEAR(a[i].logprobs[t], b[i].logprobs[t], 1e-6);
  }
}

TEST(EngineFp8Test, Fp8CheckpointRunsAsItsDequantisedValues) {
  for (const std::string scale_dtype : {"F32", "BF16"}) {
    SCOPED_TRACE(scale_dtype);
    const Fp8Copies copies = MakeCopies(scale_dtype);
    TempDir fp8, reference;
    WriteModel(fp8.path(), Fp8Config(), copies.fp8);
    WriteModel(reference.path(), GoldenConfig(), copies.reference);
    const std::vector<Result> from_fp8 = Generate(fp8.path());
    ExpectSameResults(from_fp8, Generate(reference.path()));
    // And the FP8 rounding is real: the original bf16 weights give other logprobs.
    const std::vector<Result> original = Generate(kGolden);
    ASSERT_FALSE(original.empty());
    double drift = 0;
    for (size_t t = 0; t < original[0].logprobs.size() && t < from_fp8[0].logprobs.size(); ++t) {
      drift =
          std::max(drift, std::abs(static_cast<double>(original[0].logprobs[t] - from_fp8[0].logprobs[t])));
    }
    EXPECT_GT(drift, 1e-5);
  }
}

TEST(EngineFp8Test, ExpertDtypeFp8QuantisesTheRoutedExpertsOnly) {
  // The bf16 golden with --expert-dtype fp8 equals a checkpoint whose routed experts were quantised to
  // 128x128 blocks and dequantised offline, every other tensor as it was.
  absl::StatusOr<std::unique_ptr<io::Checkpoint>> golden = io::Checkpoint::Open(kGolden);
  ASSERT_TRUE(golden.ok()) << golden.status();
  std::vector<TensorSpec> tensors;
  int quantised = 0;
  for (const std::string& name : (*golden)->Names()) {
    const io::TensorView& view = *(*golden)->Find(name);
    std::vector<int64_t> shape(view.shape().begin(), view.shape().end());
    std::vector<float> values = ToF32(view);
    if (name.find(".experts.") != std::string::npos) {
      cpu::RoundTripFp8Blocks({shape[0], shape[1], 128, 128}, values.data());
      ++quantised;
    }
    tensors.push_back({name, "F32", shape, testing::F32Bytes(values)});
  }
  EXPECT_EQ(quantised, 2 * 8 * 3);  // two MoE layers of eight experts
  TempDir offline;
  WriteModel(offline.path(), GoldenConfig(), tensors);
  ExpectSameResults(Generate(kGolden, io::DType::kF8E4M3), Generate(offline.path()));
}

// The same requests on the GPU path: every MoE layer streamed through the ring (or every one resident).
// expert_dtype F8_E4M3 streams FP8 blocks that the GPU dequantises beside its GEMMs.
std::vector<Result> GenerateOnGpu(const std::string& dir, io::DType expert_dtype, bool resident,
                                  int64_t* streamed_bytes) {
  absl::StatusOr<ModelSpec> spec = LoadModelSpec(dir);
  EXPECT_TRUE(spec.ok()) << spec.status();
  if (!spec.ok()) return {};
  EngineOptions options;
  options.threads = 2;
  options.plan = planner::DefaultPlan(planner::PlanDevice::kGpu);
  options.plan.batch = 2;
  options.plan.budgets.gpu_bytes = int64_t{2} << 30;
  options.plan.expert_dtype = expert_dtype;
  options.plan.expert_tiers = planner::SpreadResidentLayers(*spec, resident ? spec->num_layers : 0);
  return GenerateWith(dir, options, streamed_bytes);
}

// On the GPU the bf16 GEMMs of both runs see the same bf16 weights (the kernel's dequantisation rounds as the
// loader does); only cuBLAS's choice of algorithm per call may differ with the group sizes.
void ExpectSameGpuResults(const std::vector<Result>& a, const std::vector<Result>& b) {
  ASSERT_EQ(a.size(), b.size());
  ASSERT_FALSE(a.empty());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_TRUE(a[i].status.ok()) << a[i].status;
    EXPECT_EQ(a[i].token_ids, b[i].token_ids) << i;
    ASSERT_EQ(a[i].logprobs.size(), b[i].logprobs.size());
    for (size_t t = 0; t < a[i].logprobs.size(); ++t) EXPECT_NEAR(a[i].logprobs[t], b[i].logprobs[t], 2e-3);
  }
}

// The ring streamed each run's experts in their packed layouts: FP8 blocks (a byte a weight, the scales, each
// expert padded to 4 KiB: at the tiny model's sizes the padding keeps it near 2/3 of bf16, at real sizes 0.5).
void ExpectFp8Bytes(const std::string& fp8_dir, int64_t fp8_bytes, const std::string& bf16_dir,
                    int64_t bf16_bytes) {
  absl::StatusOr<ModelSpec> fp8_spec = LoadModelSpec(fp8_dir), bf16_spec = LoadModelSpec(bf16_dir);
  ASSERT_TRUE(fp8_spec.ok() && bf16_spec.ok());
  const int64_t fp8_stride =
      planner::RoutedExpertLayerIndex(*fp8_spec, io::DType::kF8E4M3).expert_stride_bytes;
  const int64_t bf16_stride =
      planner::RoutedExpertLayerIndex(*bf16_spec, io::DType::kBF16).expert_stride_bytes;
  std::printf("streamed bytes per run: FP8 %lld, bf16 %lld (%.3f; expert strides %lld and %lld)\n",
              static_cast<long long>(fp8_bytes), static_cast<long long>(bf16_bytes),
              static_cast<double>(fp8_bytes) / bf16_bytes, static_cast<long long>(fp8_stride),
              static_cast<long long>(bf16_stride));
  EXPECT_GT(bf16_bytes, 0);
  EXPECT_LT(fp8_stride, bf16_stride);
  EXPECT_EQ(fp8_bytes * bf16_stride, bf16_bytes * fp8_stride);
}

TEST(EngineFp8Test, GpuStreamsFp8ExpertsAsTheirDequantisedValuesAtHalfTheBytes) {
  std::string why;
  if (!gpu::GpuAvailable(&why)) GTEST_SKIP() << "no GPU: " << why;
  const Fp8Copies copies = MakeCopies("BF16");
  TempDir fp8, reference;
  WriteModel(fp8.path(), Fp8Config(), copies.fp8);
  WriteModel(reference.path(), GoldenConfig(), copies.reference);
  for (bool resident : {false, true}) {
    SCOPED_TRACE(resident ? "resident" : "streamed");
    int64_t fp8_bytes = 0, bf16_bytes = 0;
    const std::vector<Result> from_fp8 = GenerateOnGpu(fp8.path(), io::DType::kF8E4M3, resident, &fp8_bytes);
    ExpectSameGpuResults(from_fp8, GenerateOnGpu(reference.path(), io::DType::kBF16, resident, &bf16_bytes));
    if (!resident) ExpectFp8Bytes(fp8.path(), fp8_bytes, reference.path(), bf16_bytes);
  }
}

TEST(EngineFp8Test, GpuExpertDtypeFp8EqualsTheOfflineQuantisedCheckpoint) {
  std::string why;
  if (!gpu::GpuAvailable(&why)) GTEST_SKIP() << "no GPU: " << why;
  absl::StatusOr<std::unique_ptr<io::Checkpoint>> golden = io::Checkpoint::Open(kGolden);
  ASSERT_TRUE(golden.ok()) << golden.status();
  std::vector<TensorSpec> tensors;
  for (const std::string& name : (*golden)->Names()) {
    const io::TensorView& view = *(*golden)->Find(name);
    std::vector<int64_t> shape(view.shape().begin(), view.shape().end());
    std::vector<float> values = ToF32(view);
    if (name.find(".experts.") != std::string::npos) cpu::RoundTripFp8Blocks({shape[0], shape[1], 128, 128}, values.data());
    tensors.push_back({name, "F32", shape, testing::F32Bytes(values)});
  }
  TempDir offline;
  WriteModel(offline.path(), GoldenConfig(), tensors);
  int64_t fp8_bytes = 0, bf16_bytes = 0;
  ExpectSameGpuResults(GenerateOnGpu(kGolden, io::DType::kF8E4M3, false, &fp8_bytes),
                       GenerateOnGpu(offline.path(), io::DType::kBF16, false, &bf16_bytes));
  ExpectFp8Bytes(kGolden, fp8_bytes, offline.path(), bf16_bytes);
}

struct BadCase {
  const char* what;
  std::function<void(nlohmann::json&, std::vector<TensorSpec>&)> mutate;
  const char* expected;  // a substring of the error
};

TensorSpec& Named(std::vector<TensorSpec>& tensors, const std::string& name) {
  for (TensorSpec& tensor : tensors) {
    if (tensor.name == name) return tensor;
  }
  ADD_FAILURE() << "no tensor " << name;
  return tensors.front();
}

void Erase(std::vector<TensorSpec>& tensors, const std::string& name) {
  std::erase_if(tensors, [&](const TensorSpec& t) { return t.name == name; });
}

TEST(EngineFp8Test, MalformedFp8CheckpointsFailNamingTheTensorOrField) {
  const std::string q = "model.layers.1.self_attn.q_proj.weight";  // [64, 64]: scales [3, 2]
  const std::string expert = "model.layers.1.mlp.experts.3.down_proj.weight";
  const std::vector<BadCase> cases = {
      {"missing scale", [&](auto&, auto& t) { Erase(t, q + "_scale_inv"); },
       "tensor 'model.layers.1.self_attn.q_proj.weight' (in model.safetensors, F8_E4M3 [64, 64]) is FP8 but "
       "the "
       "checkpoint has no tensor 'model.layers.1.self_attn.q_proj.weight_scale_inv' (expected F32 or BF16 "
       "[3, 2]"},
      {"scale of the wrong shape",
       [&](auto&, auto& t) {
         TensorSpec& s = Named(t, expert + "_scale_inv");
         s.shape = {1, 2};
         s.bytes.resize(8);
       },
       "tensor 'model.layers.1.mlp.experts.3.down_proj.weight_scale_inv' (in model.safetensors, F32 [1, 2]) "
       "should "
       "be F32 or BF16 [3, 1] (one per 24x40 block of [64, 32])"},
      {"scale of the wrong dtype",
       [&](auto&, auto& t) {
         TensorSpec& s = Named(t, q + "_scale_inv");
         s.dtype = "I32";
       },
       "weight_scale_inv' (in model.safetensors, I32 [3, 2]) should be F32 or BF16 [3, 2]"},
      {"fp8 norm",
       [&](auto&, auto& t) {
         TensorSpec& s = Named(t, "model.norm.weight");
         s.dtype = "F8_E4M3";
         s.bytes.resize(64);
       },
       "tensor 'model.norm.weight' (in model.safetensors, F8_E4M3 [64]): the fp8 format allows FP8 only on "
       "the 2-D "
       "weights of linear layers"},
      {"fp8 embeddings",
       [&](auto&, auto& t) {
         TensorSpec& s = Named(t, "model.embed_tokens.weight");
         s.dtype = "F8_E4M3";
         s.bytes.resize(384 * 64);
       },
       "'model.embed_tokens.weight' (in model.safetensors, F8_E4M3 [384, 64]): the fp8 format allows FP8 "
       "only"},
      {"no quantization_config", [&](auto& c, auto&) { c.erase("quantization_config"); },
       "is FP8 but config.json has no quantization_config with quant_method \"fp8\""},
      {"unconverted module in fp8",
       [&](auto& c, auto&) {
         c["quantization_config"]["modules_to_not_convert"].push_back("model.layers.1.self_attn.q_proj");
       },
       "is FP8 but quantization_config.modules_to_not_convert names module "
       "'model.layers.1.self_attn.q_proj'"},
      {"e5m2 weights", [&](auto&, auto& t) { Named(t, q).dtype = "F8_E5M2"; },
       "F8_E5M2 [64, 64]) does not match quantization_config.fmt \"e4m3\""},
      {"stray scale",
       [&](auto&, auto& t) {
         t.push_back({"model.layers.0.self_attn.o_proj.weight_scale_inv", "F32", {1, 1}, {0, 0, 0x80, 0x3f}});
       },
       "tensor 'model.layers.0.self_attn.o_proj.weight_scale_inv' (in model.safetensors, F32 [1, 1]) has no "
       "FP8 "
       "weight 'model.layers.0.self_attn.o_proj.weight' beside it (that tensor is F32)"},
      {"unknown quant_method", [&](auto& c, auto&) { c["quantization_config"]["quant_method"] = "gptq"; },
       "quantization_config.quant_method 'gptq' is not supported"},
  };
  const Fp8Copies copies = MakeCopies("F32");
  for (const BadCase& bad : cases) {
    SCOPED_TRACE(bad.what);
    nlohmann::json config = Fp8Config();
    std::vector<TensorSpec> tensors = copies.fp8;
    bad.mutate(config, tensors);
    TempDir dir;
    WriteModel(dir.path(), config, tensors);
    EngineOptions options;
    options.cpu_compute = ComputeType::kF32;
    options.threads = 1;
    absl::StatusOr<Engine> engine = Engine::Open(dir.path(), options);
    ASSERT_FALSE(engine.ok());
    EXPECT_NE(engine.status().message().find(bad.expected), std::string::npos) << engine.status();
    // `plan` refuses it too, with the same words: at config.json, or from the checkpoint's headers.
    absl::StatusOr<ModelSpec> spec = LoadModelSpec(dir.path());
    if (!spec.ok()) {
      EXPECT_NE(spec.status().message().find(bad.expected), std::string::npos) << spec.status();
      continue;
    }
    JobPlanOptions plan_options;
    plan_options.model = dir.path();
    plan_options.device = "cpu";
    planner::Workload workload;
    workload.num_requests = 1;
    workload.mean_prompt_tokens = 4;
    workload.mean_gen_tokens = 4;
    workload.max_context_tokens = 8;
    absl::StatusOr<planner::ExecutionPlan> plan = PlanJobWithoutSearch(*spec, workload, plan_options);
    ASSERT_FALSE(plan.ok());
    EXPECT_EQ(plan.status().message(), engine.status().message());
  }
}

}  // namespace
}  // namespace ringmoe
