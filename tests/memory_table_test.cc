// The memory table (planner/memory_table.h) against what it claims to count: the engine's GPU weights as the
// checkpoint's tensors give them, the planner's workspace price, and a plan's tiers.
#include "planner/memory_table.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>

#include "io/checkpoint.h"
#include "io/model_spec.h"
#include "planner/model_costs.h"

namespace ringmoe::planner {
namespace {

const std::string kTinyModel = std::string(RINGMOE_SOURCE_DIR) + "/tests/data/models/tiny-qwen3-moe";

int64_t Charged(int64_t bytes) { return (bytes + 511) / 512 * 512; }

bool EndsWith(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() &&
         text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The GPU keeps attention matrices in bf16 and norms in f32, one allocation each; routers in f32. Counted
// from the checkpoint's own tensor list, not from the config, so a formula slip in the table shows.
TEST(MemoryTable, DenseWeightsAreTheCheckpointsTensorsAsTheGpuKeepsThem) {
  absl::StatusOr<ModelSpec> spec = LoadModelSpec(kTinyModel);
  ASSERT_TRUE(spec.ok()) << spec.status();
  absl::StatusOr<std::unique_ptr<io::Checkpoint>> checkpoint = io::Checkpoint::Open(kTinyModel);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  int64_t attention = 0, routers = 0, lm_head = 0;
  for (const std::string& name : (*checkpoint)->Names()) {
    const io::TensorView* tensor = (*checkpoint)->Find(name);
    int64_t elements = 1;
    for (int64_t dim : tensor->shape()) elements *= dim;
    if (name.find("self_attn.") != std::string::npos && EndsWith(name, "_proj.weight")) {
      attention += Charged(elements * 2);
    } else if (EndsWith(name, "layernorm.weight") || EndsWith(name, "_norm.weight")) {
      attention += Charged(elements * 4);
    } else if (EndsWith(name, "mlp.gate.weight")) {
      routers += Charged(elements * 4);
    } else if (name == "lm_head.weight") {
      lm_head += Charged(elements * 2);
    } else if (name == "model.norm.weight") {
      lm_head += Charged(elements * 4);
    }
  }
  MemoryTable table;
  table.items = DenseWeightItems(*spec);
  EXPECT_EQ(table.Sum("weights: attention"), attention);
  EXPECT_EQ(table.Sum("weights: routers"), routers);
  EXPECT_EQ(table.Sum("weights: lm_head"), lm_head);
  EXPECT_EQ(table.Sum("weights: shared"), 0);  // Qwen3-MoE: no shared experts, no dense layers
}

// What the engine allocates for a step of `step` tokens whose expert runners take `runner` rows at once, and
// how many step buffers that is (each may round up by the arena's granularity).
std::pair<int64_t, int> EngineWorkspace(const ModelSpec& spec, int step, int runner) {
  int64_t allocated = kCublasWorkspaceBytes;
  int items = 0;
  for (const MemoryItem& item : StepBufferItems(spec, step, 4, 0, 0)) {
    if (item.tier != MemoryTier::kGpu || item.bytes == 0) continue;
    allocated += Charged(item.bytes);
    ++items;
  }
  for (const MemoryItem& item : MoeRunnerItems(spec, runner)) {
    if (item.tier == MemoryTier::kGpu) allocated += item.bytes;
  }
  return {allocated, items};
}

// The planner prices the GPU workspace from the same lists the engine allocates: never below them, and above
// them only by the margin it states (cuBLAS's workspace, 8 MiB for CUB's scratch, the arena's rounding).
// With the expert runners in tiles (ExecutionPlan::expert_tile_tokens) the step buffers grow with the step
// and the runners' scratch with the tile: the price follows both.
TEST(MemoryTable, WorkspacePriceCoversWhatTheEngineAllocates) {
  absl::StatusOr<ModelSpec> spec = LoadModelSpec(kTinyModel);
  ASSERT_TRUE(spec.ok()) << spec.status();
  const GpuWorkspace workspace = GpuWorkspaceBytes(*spec);
  ASSERT_GT(workspace.runner_bytes_per_token, 0);
  ASSERT_LT(workspace.runner_bytes_per_token, workspace.bytes_per_token);
  for (const auto& [step, tile] : {std::pair{1, 1}, std::pair{48, 48}, std::pair{2304, 2304},
                                   std::pair{9216, 9216}, std::pair{9216, 1024}, std::pair{2304, 48}}) {
    SCOPED_TRACE(testing::Message() << step << " tokens, runners for " << tile);
    const auto [allocated, items] = EngineWorkspace(*spec, step, tile);
    const int64_t priced = workspace.bytes(step, tile);
    EXPECT_GE(priced, allocated);
    EXPECT_LE(priced - allocated, (int64_t{8} << 20) + (items + 1) * 512 + step);
    // Untiled, the price is the per-token figure; tiles save the runners' growth between tile and step.
    if (step == tile) EXPECT_EQ(priced, workspace.fixed_bytes + step * workspace.bytes_per_token);
    EXPECT_EQ(workspace.bytes(step, step) - priced, (step - tile) * workspace.runner_bytes_per_token);
  }
}

TEST(MemoryTable, TiledPlanSizesTheRunnersForTheTile) {
  absl::StatusOr<ModelSpec> spec = LoadModelSpec(kTinyModel);
  ASSERT_TRUE(spec.ok()) << spec.status();
  // The memory table of a tiled plan sizes the runners for the tile.
  ExecutionPlan plan = DefaultPlan(PlanDevice::kGpu);
  plan.expert_tiers = SpreadResidentLayers(*spec, 0);
  const MemoryTable untiled = ComputeMemoryTable(*spec, plan, 64);
  plan.expert_tile_tokens = 256;
  const MemoryTable tiled = ComputeMemoryTable(*spec, plan, 64);
  int64_t runner_untiled = 0, runner_tiled = 0;
  for (const MemoryItem& item : MoeRunnerItems(*spec, plan.max_step_tokens()))
    if (item.tier == MemoryTier::kGpu) runner_untiled += item.bytes;
  for (const MemoryItem& item : MoeRunnerItems(*spec, 256))
    if (item.tier == MemoryTier::kGpu) runner_tiled += item.bytes;
  EXPECT_EQ(untiled.Sum("MoE runner") - tiled.Sum("MoE runner"), runner_untiled - runner_tiled);
  EXPECT_GT(runner_untiled, runner_tiled);
}

TEST(MemoryTable, PlanTiersPlaceEveryExpertOnceAndTheRingOnlyWhenSomethingStreams) {
  absl::StatusOr<ModelSpec> spec = LoadModelSpec(kTinyModel);
  ASSERT_TRUE(spec.ok()) << spec.status();
  ExecutionPlan plan = DefaultPlan(PlanDevice::kGpu);
  plan.batch = 4;
  plan.prefill_chunk = 44;
  const int64_t stride = PackedExpertStride(128, 64);
  EXPECT_EQ(stride, 49152);  // 3 x 64 x 128 x 2 = 49152, already a multiple of 4096
  const int64_t layer = 8 * stride;
  for (int resident : {0, 1, 4}) {
    SCOPED_TRACE(resident);
    plan.expert_tiers = SpreadResidentLayers(*spec, resident);
    const MemoryTable table = ComputeMemoryTable(*spec, plan, /*max_context_tokens=*/100);
    EXPECT_EQ(table.Sum("resident experts"), resident * layer);
    EXPECT_EQ(table.Sum("streamed experts"), (4 - resident) * layer);
    EXPECT_EQ(table.Sum("ring slots"), resident < 4 ? 2 * layer : 0);  // two whole-layer slots
    // The host KV cache the plan's 4 sequences touch: 7 blocks of 16 tokens, K and V of 4 layers x 64 bf16.
    EXPECT_EQ(table.Sum("KV cache (host)"), 4 * 7 * 16 * (2 * 4 * 64 * 2));
    int64_t gpu = 0;
    for (const MemoryItem& item : table.items) gpu += item.tier == MemoryTier::kGpu ? item.bytes : 0;
    EXPECT_EQ(table.Total(MemoryTier::kGpu), gpu);
  }
  plan.layer_parts = 2;
  plan.ring_sections = 3;
  plan.expert_tiers = SpreadResidentLayers(*spec, 0);
  EXPECT_EQ(ComputeMemoryTable(*spec, plan, 100).Sum("ring slots"), 3 * 4 * stride);

  // Two streamed layers on SSD: the pinned tier holds the other two, and a staging buffer per ring slot and
  // one more, each of a half layer's tensors (4 experts x 3 tensors, each with up to 2 x 4 KiB of
  // alignment), are pinned instead.
  plan.expert_tiers = SpreadSsdLayers(SpreadResidentLayers(*spec, 0), 2);
  const MemoryTable with_ssd = ComputeMemoryTable(*spec, plan, 100);
  EXPECT_EQ(with_ssd.Sum("streamed experts"), 2 * layer);
  EXPECT_EQ(with_ssd.Sum("SSD staging buffers"), 4 * 4 * (3 * 64 * 128 * 2 + 3 * 2 * 4096));
  EXPECT_EQ(with_ssd.Sum("ring slots"), 3 * 4 * stride);
}

}  // namespace
}  // namespace ringmoe::planner
