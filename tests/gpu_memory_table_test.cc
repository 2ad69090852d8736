// On a GPU: what the engine's arena allocates for a plan is what the memory table (planner/memory_table.h)
// says, for every layout of the experts (resident, streamed, in half layers, in quarter layers run one at a
// time through 2 slots, as expert shards) and with a GPU share of the KV cache. The table's one estimate,
// CUB's sort scratch, is the only slack allowed.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "io/model_spec.h"
#include "planner/memory_table.h"
#include "ringmoe/engine.h"
#include "tests/testing/gpu_test_macros.h"

namespace ringmoe {
namespace {

const std::string kTinyModel = std::string(RINGMOE_SOURCE_DIR) + "/tests/data/models/tiny-qwen3-moe";

struct Layout {
  const char* name;
  int resident;
  int layer_parts;
  int gpu_kv_sequences;
  const char* model = nullptr;  // under tests/data; null: kTinyModel
  int expert_shards = 0;        // ExecutionPlan::expert_shards (logical shards on this GPU)
  int expert_tile_tokens = 0;   // > 0: the expert runners sized for tiles of this many rows
  int ring_slots = 0;           // > 0: the ring's slots (fewer than layer_parts + 1: parts one at a time)
};

class GpuMemoryTableTest : public testing::TestWithParam<Layout> {};

TEST_P(GpuMemoryTableTest, EngineAllocatesWhatTheTableSays) {
  SKIP_WITHOUT_GPU();
  const Layout& layout = GetParam();
  const std::string model =
      layout.model == nullptr ? kTinyModel : std::string(RINGMOE_SOURCE_DIR) + "/tests/data/" + layout.model;
  absl::StatusOr<ModelSpec> spec = LoadModelSpec(model);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EngineOptions options;
  options.threads = 2;
  planner::ExecutionPlan& plan = options.plan;
  plan = planner::DefaultPlan(planner::PlanDevice::kGpu);
  plan.batch = 4;
  plan.prefill_chunk = 60;
  plan.budgets.gpu_bytes = int64_t{1} << 30;
  plan.expert_tiers = planner::SpreadResidentLayers(*spec, layout.resident);
  plan.layer_parts = layout.layer_parts;
  plan.ring_sections = layout.ring_slots > 0 ? layout.ring_slots : layout.layer_parts + 1;
  if (plan.parts_one_at_a_time()) plan.micro_batches = 1;
  plan.expert_tile_tokens = layout.expert_tile_tokens;
  plan.expert_shards = layout.expert_shards;
  constexpr int kContext = 40;
  plan.kv.gpu_bytes = planner::KvBytesForSequences(*spec, plan.kv, layout.gpu_kv_sequences, kContext);
  absl::StatusOr<Engine> engine = Engine::Open(model, options);
  ASSERT_TRUE(engine.ok()) << engine.status();
  std::vector<Request> requests(6);
  for (size_t i = 0; i < requests.size(); ++i) {
    requests[i].id = std::to_string(i);
    requests[i].prompt_ids = std::vector<int32_t>(20 + i, static_cast<int32_t>(10 + i));
    requests[i].max_tokens = 8;
  }
  ASSERT_TRUE(engine->Generate(requests).ok());
  const planner::MemoryTable table = planner::ComputeMemoryTable(*spec, plan, kContext);
  const int64_t predicted = table.Total(planner::MemoryTier::kGpu);
  const int64_t allocated = engine->last_run_stats().gpu_peak_bytes;
  std::printf("%s: the arena's peak %lld bytes, the table's %lld\n", layout.name,
              static_cast<long long>(allocated), static_cast<long long>(predicted));
  EXPECT_NEAR(static_cast<double>(allocated), static_cast<double>(predicted), 256.0 * 1024) << table.Format();
}

INSTANTIATE_TEST_SUITE_P(Layouts, GpuMemoryTableTest,
                         testing::Values(Layout{"resident", 4, 1, 0}, Layout{"streamed", 0, 1, 0},
                                         Layout{"one_resident_half_layers", 1, 2, 0},
                                         Layout{"streamed_kv_on_gpu", 0, 1, 2},
                                         Layout{"streamed_expert_tiles_of_16", 0, 1, 0, nullptr, 0, 16},
                                         Layout{"quarter_layers_one_at_a_time", 0, 4, 0, nullptr, 0, 0, 2},
                                         // Expert shards' partial outputs and shard-major ring parts.
                                         Layout{"two_expert_shards_resident", 4, 1, 0, nullptr, 2},
                                         Layout{"three_expert_shards_streamed", 0, 3, 0, nullptr, 3}),
                         [](const testing::TestParamInfo<Layout>& info) { return info.param.name; });
// DeepSeek-V3 (MLA, a q LoRA, a dense first layer, shared experts, the router's correction bias): its own
// step buffers and resident weights (planner::DenseWeightItems' MLA branch).
INSTANTIATE_TEST_SUITE_P(
    DeepseekLayouts, GpuMemoryTableTest,
    testing::Values(Layout{"deepseek_resident", 3, 1, 0, "golden_deepseek/deepseek_v3"},
                    Layout{"deepseek_streamed_half_layers", 0, 2, 0, "golden_deepseek/deepseek_v3"},
                    Layout{"deepseek_no_qlora_streamed", 1, 1, 0, "golden_deepseek/deepseek_v3_no_qlora"}),
    [](const testing::TestParamInfo<Layout>& info) { return info.param.name; });

}  // namespace
}  // namespace ringmoe
