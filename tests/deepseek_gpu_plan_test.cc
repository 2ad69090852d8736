// DeepSeek (MLA) on a GPU plan, all without a GPU: the memory table lists what the GPU path allocates for
// it (the checkpoint's own tensors as the GPU keeps them, MLA's step buffers), the cost model puts its
// attention and kv_b's absorption on the CPU, and the search plans the GPU with the cache on the host and
// the dense first layers resident.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

#include "io/checkpoint.h"
#include "io/model_spec.h"
#include "planner/execution_plan.h"
#include "planner/memory_table.h"
#include "planner/model_costs.h"
#include "planner/perf_model.h"
#include "planner/plan_search.h"

namespace ringmoe::planner {
namespace {

const std::string kGoldens = std::string(RINGMOE_SOURCE_DIR) + "/tests/data/golden_deepseek/";

int64_t Charged(int64_t bytes) { return (bytes + 511) / 512 * 512; }

bool EndsWith(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() &&
         text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

ModelSpec LoadConfig(const std::string& name) {
  const std::string path = std::string(RINGMOE_SOURCE_DIR) + "/tests/data/configs/" + name;
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  absl::StatusOr<ModelSpec> spec = ParseModelSpec(text.str(), path);
  EXPECT_TRUE(spec.ok()) << spec.status();
  return spec.ok() ? *spec : ModelSpec{};
}

HardwareProfile H200() {
  absl::StatusOr<HardwareProfile> profile =
      LoadProfile(std::string(RINGMOE_SOURCE_DIR) + "/bench/h200_profile.json");
  EXPECT_TRUE(profile.ok()) << profile.status();
  return profile.ok() ? *profile : HardwareProfile{};
}

// The GPU keeps MLA's q_a, q_b or q_proj, kv_a and o_proj in bf16, kv_b, q_a's and kv_a's norms and the
// layer norms in f32; the CPU's attention keeps kv_b in f32 too (and absorb_q's transposed copy of it).
// Routers and V3's correction bias in f32; the shared experts packed, with no gate. Counted from each golden
// checkpoint's tensor list.
TEST(DeepseekGpuPlan, DenseWeightsAreTheCheckpointsTensorsAsTheGpuKeepsThem) {
  for (const char* name : {"deepseek_v3", "deepseek_v3_no_qlora", "deepseek_v2"}) {
    SCOPED_TRACE(name);
    const std::string dir = kGoldens + name;
    absl::StatusOr<ModelSpec> spec = LoadModelSpec(dir);
    ASSERT_TRUE(spec.ok()) << spec.status();
    absl::StatusOr<std::unique_ptr<io::Checkpoint>> checkpoint = io::Checkpoint::Open(dir);
    ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
    int64_t attention = 0, routers = 0, mlps = 0, host = 0;
    int shared_layers = 0, dense_layers = 0;
    for (const std::string& tensor_name : (*checkpoint)->Names()) {
      // The multi-token-prediction layers after the last are never loaded.
      if (tensor_name.find("layers." + std::to_string(spec->num_layers) + ".") != std::string::npos) continue;
      const io::TensorView* tensor = (*checkpoint)->Find(tensor_name);
      int64_t elements = 1;
      for (int64_t dim : tensor->shape()) elements *= dim;
      if (EndsWith(tensor_name, "kv_b_proj.weight")) {
        host += elements * 4;                // f32, plus absorb_q's copy of its W_UK rows (below)
        attention += Charged(elements * 4);  // and on the GPU, for fresh prompts
      } else if (EndsWith(tensor_name, "kv_a_layernorm.weight")) {
        host += elements * 4;
        attention += Charged(elements * 4);
      } else if (tensor_name.find("self_attn.") != std::string::npos &&
                 (EndsWith(tensor_name, "_proj.weight") || EndsWith(tensor_name, "_mqa.weight"))) {
        attention += Charged(elements * 2);
      } else if (EndsWith(tensor_name, "layernorm.weight")) {
        attention += Charged(elements * 4);
      } else if (EndsWith(tensor_name, "mlp.gate.weight") ||
                 EndsWith(tensor_name, "e_score_correction_bias")) {
        routers += Charged(elements * 4);
      } else if (EndsWith(tensor_name, "shared_experts.gate_proj.weight")) {
        ++shared_layers;
      } else if (tensor_name.find("experts") == std::string::npos &&
                 EndsWith(tensor_name, "mlp.gate_proj.weight")) {
        ++dense_layers;
      }
    }
    host +=
        int64_t{spec->num_layers} * spec->num_heads * spec->mla.qk_nope_head_dim * spec->mla.kv_lora_rank * 4;
    mlps = shared_layers *
               Charged(PackedExpertStride(spec->hidden_size, spec->shared_expert_intermediate_size)) +
           dense_layers * Charged(PackedExpertStride(spec->hidden_size, spec->intermediate_size));
    EXPECT_EQ(dense_layers, spec->first_k_dense_replace);
    EXPECT_EQ(shared_layers, spec->num_moe_layers());
    MemoryTable table;
    table.items = DenseWeightItems(*spec);
    EXPECT_EQ(table.Sum("weights: attention"), attention);
    EXPECT_EQ(table.Sum("weights: routers"), routers);
    EXPECT_EQ(table.Sum("weights: shared experts and dense MLPs"), mlps);
    EXPECT_EQ(MlaHostWeightBytes(*spec), host);
  }
}

// MLA's step buffers: k holds kv_a's rows (latent + rope), no v, attention rows heads * v_head_dim, and the
// q LoRA's two buffers; the workspace price still covers every allocation.
TEST(DeepseekGpuPlan, StepBuffersHaveMlaWidths) {
  absl::StatusOr<ModelSpec> spec = LoadModelSpec(kGoldens + "deepseek_v3");
  ASSERT_TRUE(spec.ok()) << spec.status();
  const int tokens = 100;
  MemoryTable table;
  table.items = StepBufferItems(*spec, tokens, 2, 0, 0);
  const int64_t row = spec->mla.cache_width(), heads = spec->num_heads;
  EXPECT_EQ(row, 32 + 8);
  EXPECT_EQ(table.Sum("q"), tokens * heads * 24 * 4 + tokens * 32 * (4 + 2));  // q, then the q LoRA buffers
  EXPECT_EQ(table.Sum("k"), tokens * row * 4);
  EXPECT_EQ(table.Sum("v"), 0);
  EXPECT_EQ(table.Sum("attention"), tokens * heads * 12 * (4 + 2));
  EXPECT_EQ(table.Sum("q LoRA"), tokens * 32 * (4 + 2));
  EXPECT_EQ(table.Sum("staging: k"), tokens * row * 4);
  EXPECT_EQ(table.Sum("staging: v"), 0);
  EXPECT_EQ(table.Sum("staging: attention"), tokens * heads * 12 * 4);

  const GpuWorkspace workspace = GpuWorkspaceBytes(*spec);
  for (int step : {1, 48, 2304}) {
    int64_t allocated = kCublasWorkspaceBytes;
    for (const MemoryItem& item : StepBufferItems(*spec, step, 4, 0, 0)) {
      if (item.tier == MemoryTier::kGpu && item.bytes > 0) allocated += Charged(item.bytes);
    }
    for (const MemoryItem& item : MoeRunnerItems(*spec, step)) {
      if (item.tier == MemoryTier::kGpu) allocated += item.bytes;
    }
    EXPECT_GE(workspace.fixed_bytes + step * workspace.bytes_per_token, allocated) << step;
  }

  // Without a q LoRA there are no q LoRA buffers.
  absl::StatusOr<ModelSpec> no_lora = LoadModelSpec(kGoldens + "deepseek_v3_no_qlora");
  ASSERT_TRUE(no_lora.ok()) << no_lora.status();
  table.items = StepBufferItems(*no_lora, tokens, 2, 0, 0);
  EXPECT_EQ(table.Sum("q LoRA"), 0);
}

// The cost model: kv_b's absorption is the CPU's, the rows crossing PCIe have MLA's widths, and fresh
// prompts' attention on the GPU has a scratch price per token.
TEST(DeepseekGpuPlan, CostsPutAttentionAndAbsorptionOnTheCpu) {
  const ModelSpec spec = LoadConfig("deepseek-v3.json");
  const ModelCosts costs = ComputeModelCosts(spec);
  EXPECT_TRUE(costs.mla);
  EXPECT_GT(costs.mla_prefill_bytes_per_token, 0);
  EXPECT_EQ(costs.attention_out_width, 128 * 128);
  EXPECT_EQ(costs.kv_rows_width, 512 + 64);
  for (const LayerCosts& layer : costs.layers) {
    // W_UK (128 heads x 128 x 512) into the queries, W_UV (128 x 128 x 512) out of the latent.
    EXPECT_DOUBLE_EQ(layer.mla_absorb_flops, 2.0 * 128 * 512 * (128 + 128));
    EXPECT_LT(layer.mla_absorb_flops, layer.attention_projection_flops);
  }
  const ModelCosts qwen = ComputeModelCosts(LoadConfig("qwen3-30b-a3b.json"));
  EXPECT_FALSE(qwen.mla);
  EXPECT_EQ(qwen.mla_prefill_bytes_per_token, 0);
  EXPECT_EQ(qwen.attention_out_width, qwen.q_width);
  EXPECT_EQ(qwen.kv_rows_width, 2 * qwen.kv_width);
  EXPECT_DOUBLE_EQ(qwen.layers[0].mla_absorb_flops, 0);
}

// The search over DeepSeek-V3's first 7 layers (3 dense + 4 MoE) on the H200 with 48 GiB of GPU memory (a
// bf16 layer's routed experts are 22.5 GB: the ring's slots are quarter layers): a GPU plan, the dense
// layers' MLPs resident (no tier), the MoE layers' experts placed, no GPU share of the cache, decodes'
// attention on the CPU and fresh prompts' on the GPU; the plan validates, and pinning a GPU share of the
// cache is refused.
TEST(DeepseekGpuPlan, SearchPlansTheGpuWithTheCacheOnTheHost) {
  const ModelSpec spec = LoadConfig("deepseek-v3.json");
  const HardwareProfile h200 = H200();
  Workload job;
  job.num_requests = 1024;
  job.mean_prompt_tokens = 512;
  job.mean_gen_tokens = 256;
  job.max_context_tokens = 768;
  Budgets budgets;
  budgets.gpu_bytes = int64_t{48} << 30;
  const ModelCosts costs = ComputeModelCosts(spec, 7);
  PerfModel model(h200, costs, job, ResolveBudgets(h200, budgets));
  absl::StatusOr<SearchResult> result = SearchPlan(model, PlanDevice::kGpu);
  ASSERT_TRUE(result.ok()) << result.status();
  const Prediction& best = result->best;
  EXPECT_EQ(best.plan.device, PlanDevice::kGpu);
  EXPECT_EQ(best.plan.kv.gpu_fraction, 0);
  EXPECT_EQ(best.plan.kv.gpu_bytes, 0);
  EXPECT_TRUE(best.plan.prefill_attention_on_gpu);
  ASSERT_EQ(best.plan.expert_tiers.size(), 7u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(best.plan.expert_tiers[i], ExpertTier::kNone) << i;
  for (int i = 3; i < 7; ++i) EXPECT_NE(best.plan.expert_tiers[i], ExpertTier::kNone) << i;
  EXPECT_EQ(best.decode_step.gpu_attention, 0);
  EXPECT_GT(best.prefill_chunk.gpu_attention, 0);
  EXPECT_GT(best.prefill_chunk.cpu_attention, 0);  // the continuations
  EXPECT_LE(best.memory.gpu_used(), best.memory.gpu_budget);
  // Every non-expert weight is resident, the dense layers' MLPs among them (the engine streams none).
  for (WeightGroup group :
       {WeightGroup::kAttention, WeightGroup::kRouter, WeightGroup::kSharedMlp, WeightGroup::kLmHead}) {
    EXPECT_EQ(best.memory.gpu_resident_bytes[static_cast<int>(group)], costs.group_bytes(group))
        << WeightGroupName(group);
  }
  EXPECT_GE(costs.group_bytes(WeightGroup::kSharedMlp), 3LL * 3 * 7168 * 18432 * 2);

  ExecutionPlan shared = best.plan;
  shared.kv.gpu_fraction = 0.25;
  EXPECT_FALSE(model.Predict(shared).ok());
  PlanPins pins;
  pins.kv_gpu_fraction = 0.5;
  EXPECT_FALSE(SearchPlan(model, PlanDevice::kGpu, pins).ok());
}

// Fresh prompts on the GPU path: with prefill_attention_on_gpu their attention is the GPU's (its scratch in
// the workspace), without it the CPU's; GQA models price them on the GPU as before.
TEST(DeepseekGpuPlan, FreshPromptsFollowThePlan) {
  const HardwareProfile h200 = H200();
  Workload job;
  job.num_requests = 64;
  job.mean_prompt_tokens = 1024;
  job.mean_gen_tokens = 16;
  job.max_context_tokens = 1040;
  ExecutionPlan plan = DefaultPlan(PlanDevice::kGpu);
  plan.batch = 16;
  plan.prefill_chunk = 1024;
  const ModelSpec deepseek = LoadConfig("deepseek-v3.json");
  PerfModel mla(h200, ComputeModelCosts(deepseek, 4), job, ResolveBudgets(h200, {}));
  absl::StatusOr<Prediction> on_gpu = mla.Predict(plan);
  ASSERT_TRUE(on_gpu.ok()) << on_gpu.status();
  plan.prefill_attention_on_gpu = false;
  absl::StatusOr<Prediction> on_cpu = mla.Predict(plan);
  ASSERT_TRUE(on_cpu.ok()) << on_cpu.status();
  EXPECT_GT(on_gpu->prefill_chunk.gpu_attention, 0);
  EXPECT_EQ(on_cpu->prefill_chunk.gpu_attention, 0);
  EXPECT_GT(on_cpu->prefill_chunk.cpu_attention, on_gpu->prefill_chunk.cpu_attention);
  EXPECT_EQ(on_gpu->memory.gpu_workspace_bytes - on_cpu->memory.gpu_workspace_bytes,
            (plan.batch + plan.prefill_chunk) * ComputeModelCosts(deepseek, 4).mla_prefill_bytes_per_token);

  plan.prefill_attention_on_gpu = true;
  PerfModel gqa(h200, ComputeModelCosts(LoadConfig("qwen3-30b-a3b.json")), job, ResolveBudgets(h200, {}));
  absl::StatusOr<Prediction> qwen = gqa.Predict(plan);
  ASSERT_TRUE(qwen.ok()) << qwen.status();
  EXPECT_GT(qwen->prefill_chunk.gpu_attention, 0);
}

// The memory table of a GPU plan carries MLA's prefill scratch exactly when fresh prompts attend on the GPU.
TEST(DeepseekGpuPlan, MemoryTableHasThePrefillScratchWhenPlanned) {
  absl::StatusOr<ModelSpec> spec = LoadModelSpec(kGoldens + "deepseek_v3");
  ASSERT_TRUE(spec.ok()) << spec.status();
  ExecutionPlan plan = DefaultPlan(PlanDevice::kGpu);
  plan.batch = 4;
  plan.prefill_chunk = 60;
  plan.expert_tiers = SpreadResidentLayers(*spec, 0);
  const MemoryTable with = ComputeMemoryTable(*spec, plan, 64);
  plan.prefill_attention_on_gpu = false;
  const MemoryTable without = ComputeMemoryTable(*spec, plan, 64);
  EXPECT_GT(with.Sum("MLA prefill"), 0);
  EXPECT_EQ(without.Sum("MLA prefill"), 0);
  int64_t scratch = 0;
  for (const MemoryItem& item : MlaPrefillItems(*spec, plan.max_step_tokens()))
    scratch += Charged(item.bytes);
  EXPECT_EQ(with.Sum("MLA prefill"), scratch);
  EXPECT_EQ(with.Total(MemoryTier::kGpu) - without.Total(MemoryTier::kGpu), scratch);
}

}  // namespace
}  // namespace ringmoe::planner
