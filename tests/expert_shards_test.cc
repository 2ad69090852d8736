// Expert shards (issue 24, planner/expert_shards.h) on the CPU: the split arithmetic, the plan field that
// switches it on (validation, JSON, the memory it is priced at), and the CPU twin of the split pass: the MoE
// output as the sum of the shards' partial passes equals the unsplit pass. The GPU side is
// tests/gpu_expert_shards_test.cc.
#include "planner/expert_shards.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "cpu/moe.h"
#include "io/model_spec.h"
#include "planner/execution_plan.h"
#include "planner/memory_table.h"
#include "planner/model_costs.h"
#include "planner/perf_model.h"
#include "planner_test_util.h"
#include "runtime/engine/gpu_forward.h"

namespace ringmoe::planner {
namespace {

TEST(ExpertShards, ShardsCoverTheLayerEvenlyInOrder) {
  for (int experts : {1, 2, 7, 8, 60, 64, 128, 256}) {
    for (int shards = 1; shards <= std::min(experts, 9); ++shards) {
      const std::vector<ExpertRange> ranges = ShardRanges(experts, shards);
      ASSERT_EQ(static_cast<int>(ranges.size()), shards);
      int next = 0, largest = 0, smallest = experts;
      for (int g = 0; g < shards; ++g) {
        EXPECT_EQ(ranges[g].first, next) << experts << " over " << shards << ", shard " << g;
        EXPECT_GT(ranges[g].count, 0) << "an empty shard: " << experts << " over " << shards;
        EXPECT_EQ(ranges[g], ShardExperts(experts, shards, g));
        for (int e = ranges[g].first; e < ranges[g].end(); ++e) {
          EXPECT_EQ(ShardOfExpert(experts, shards, e), g) << "expert " << e << " of " << experts;
        }
        largest = std::max(largest, ranges[g].count);
        smallest = std::min(smallest, ranges[g].count);
        next = ranges[g].end();
      }
      EXPECT_EQ(next, experts);
      EXPECT_LE(largest - smallest, 1);
      // The planner prices each GPU's share at ceil(E / G): the largest shard.
      EXPECT_EQ(largest, (experts + shards - 1) / shards);
    }
  }
  EXPECT_EQ(ShardExperts(10, 3, 0), (ExpertRange{0, 4}));
  EXPECT_EQ(ShardExperts(10, 3, 1), (ExpertRange{4, 3}));
  EXPECT_EQ(ShardExperts(10, 3, 2), (ExpertRange{7, 3}));
}

TEST(ExpertShards, OneShardCutsPartsAsTheEngineAlwaysDid) {
  // GpuModel's cut before shards: part p of P holds E / P experts, one more for the first E % P parts.
  for (int experts : {8, 60, 128}) {
    for (int parts : {1, 2, 3, 4, 5}) {
      const std::vector<ExpertRange> ranges = LayerPartRanges(experts, 1, parts);
      ASSERT_EQ(static_cast<int>(ranges.size()), parts);
      for (int p = 0, first = 0; p < parts; ++p) {
        const int count = experts / parts + (p < experts % parts ? 1 : 0);
        EXPECT_EQ(ranges[p], (ExpertRange{first, count})) << experts << " in " << parts << ", part " << p;
        first += count;
      }
      EXPECT_EQ(MaxPartExperts(experts, 1, parts), (experts + parts - 1) / parts);
    }
  }
}

TEST(ExpertShards, EveryPartBelongsToOneShard) {
  for (int experts : {8, 10, 60, 61, 128}) {
    for (int shards : {2, 3, 4}) {
      for (int per_shard : {1, 2, 3}) {
        const int parts = shards * per_shard;
        if (per_shard > experts / shards) {  // the smallest shard cannot fill its parts
          EXPECT_FALSE(CheckExpertShards(experts, shards, parts, true).ok()) << experts << "/" << shards;
          continue;
        }
        EXPECT_TRUE(CheckExpertShards(experts, shards, parts, true).ok()) << experts << "/" << shards;
        const std::vector<ExpertRange> ranges = LayerPartRanges(experts, shards, parts);
        ASSERT_EQ(static_cast<int>(ranges.size()), parts);
        int next = 0, largest = 0;
        for (int p = 0; p < parts; ++p) {
          EXPECT_EQ(ranges[p].first, next);
          ASSERT_GT(ranges[p].count, 0);
          const int shard = ShardOfExpert(experts, shards, ranges[p].first);
          EXPECT_EQ(shard, p / per_shard)
              << "part " << p << " of " << experts << "/" << shards << "/" << parts;
          EXPECT_EQ(ShardOfExpert(experts, shards, ranges[p].end() - 1), shard)
              << "part " << p << " straddles";
          largest = std::max(largest, ranges[p].count);
          next = ranges[p].end();
        }
        EXPECT_EQ(next, experts);
        EXPECT_EQ(MaxPartExperts(experts, shards, parts), largest)
            << experts << "/" << shards << "/" << parts;
      }
    }
  }
  // 10 experts, 2 shards of 5, 4 parts: [0,3) [3,5) | [5,8) [8,10); the layer's own cut would be 3,3,2,2,
  // whose second part straddles the shards.
  EXPECT_EQ(LayerPartRanges(10, 2, 4), (std::vector<ExpertRange>{{0, 3}, {3, 2}, {5, 3}, {8, 2}}));
}

TEST(ExpertShards, ChecksNameThePlanFields) {
  EXPECT_TRUE(CheckExpertShards(8, 2, 2, true).ok());
  EXPECT_TRUE(CheckExpertShards(8, 2, 1, false).ok()) << "resident layers have no parts to align";
  const absl::Status misaligned = CheckExpertShards(8, 2, 3, true);
  EXPECT_FALSE(misaligned.ok());
  EXPECT_NE(misaligned.message().find("layer_parts"), std::string_view::npos) << misaligned;
  const absl::Status too_many = CheckExpertShards(8, 9, 9, true);
  EXPECT_FALSE(too_many.ok());
  EXPECT_NE(too_many.message().find("expert_shards"), std::string_view::npos) << too_many;
  EXPECT_FALSE(CheckExpertShards(8, 0, 1, false).ok());
  // 8 experts over 3 shards are 3, 3 and 2: three parts a shard would leave one empty.
  EXPECT_TRUE(CheckExpertShards(8, 3, 6, true).ok());
  EXPECT_FALSE(CheckExpertShards(8, 3, 9, true).ok());
}

ModelSpec TinySpec() { return testing::ParseOrDie(testing::kTinyMoe, "tiny"); }  // 4 layers of 16 experts

ExecutionPlan GpuPlan(const ModelSpec& spec, int resident) {
  ExecutionPlan plan = DefaultPlan(PlanDevice::kGpu);
  plan.batch = 8;
  plan.prefill_chunk = 64;
  plan.expert_tiers = SpreadResidentLayers(spec, resident);
  return plan;
}

TEST(ExpertShardsPlan, ValidatePlanTakesShardsOnOneGpu) {
  const ModelSpec spec = TinySpec();
  ExecutionPlan plan = GpuPlan(spec, 4);  // every layer resident
  EXPECT_EQ(plan.expert_shard_count(), 1) << "0 means one shard per GPU";
  plan.expert_shards = 2;
  EXPECT_EQ(plan.expert_shard_count(), 2);
  EXPECT_TRUE(ValidatePlan(plan, spec).ok()) << ValidatePlan(plan, spec);
  plan.expert_shards = 17;
  EXPECT_FALSE(ValidatePlan(plan, spec).ok()) << "more shards than experts";
  plan.expert_shards = -1;
  EXPECT_FALSE(ValidatePlan(plan, spec).ok());

  ExecutionPlan streamed = GpuPlan(spec, 0);
  streamed.expert_shards = 2;
  const absl::Status whole_layers = ValidatePlan(streamed, spec);
  EXPECT_FALSE(whole_layers.ok()) << "a whole-layer part would straddle the two shards";
  EXPECT_NE(whole_layers.message().find("layer_parts"), std::string_view::npos) << whole_layers;
  streamed.layer_parts = 2;
  streamed.ring_sections = 3;
  EXPECT_TRUE(ValidatePlan(streamed, spec).ok()) << ValidatePlan(streamed, spec);

  ExecutionPlan cpu = DefaultPlan(PlanDevice::kCpu);
  cpu.expert_shards = 2;
  EXPECT_FALSE(ValidatePlan(cpu, spec).ok()) << "the CPU device runs its experts unsplit";
  // Several GPUs stay plan-only: the engine has no multi-device path.
  ExecutionPlan two_gpus = GpuPlan(spec, 4);
  two_gpus.gpus = 2;
  EXPECT_FALSE(ValidatePlan(two_gpus, spec).ok());
  EXPECT_EQ(two_gpus.expert_shard_count(), 2);
}

TEST(ExpertShardsPlan, JsonRoundTripKeepsTheFieldAndOldPlansRead) {
  const ModelSpec spec = TinySpec();
  ExecutionPlan plan = GpuPlan(spec, 2);
  const std::string unsplit = PlanToJson(plan);
  EXPECT_EQ(unsplit.find("expert_shards"), std::string::npos) << "one-shard plans keep their form";
  plan.expert_shards = 2;
  plan.layer_parts = 2;
  plan.ring_sections = 3;
  absl::StatusOr<ExecutionPlan> back = PlanFromJson(PlanToJson(plan));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->expert_shards, 2);
  EXPECT_TRUE(*back == plan);
  absl::StatusOr<ExecutionPlan> old = PlanFromJson(unsplit);
  ASSERT_TRUE(old.ok()) << old.status();
  EXPECT_EQ(old->expert_shards, 0);
  ExecutionPlan other = plan;
  other.expert_shards = 4;
  EXPECT_FALSE(other == plan);
  std::string bad = PlanToJson(plan);
  bad.replace(bad.find("\"expert_shards\": 2"), 18, "\"expert_shards\": -3");
  EXPECT_FALSE(PlanFromJson(bad).ok());
  EXPECT_NE(FormatExecutionPlan(plan).find("2 expert shards"), std::string::npos)
      << FormatExecutionPlan(plan);
}

TEST(ExpertShardsPlan, MemoryTablePricesThePartialsAndTheShardMajorSlots) {
  ModelSpec spec = TinySpec();
  ExecutionPlan plan = GpuPlan(spec, 0);
  plan.layer_parts = 2;
  plan.ring_sections = 3;
  const MemoryTable unsplit = ComputeMemoryTable(spec, plan, 256);
  EXPECT_EQ(unsplit.Sum("expert shard"), 0);
  plan.expert_shards = 2;
  const MemoryTable split = ComputeMemoryTable(spec, plan, 256);
  const int64_t partial = int64_t{plan.max_step_tokens()} * spec.hidden_size * 4;
  EXPECT_EQ(split.Sum("expert shard"), 2 * partial) << split.Format();
  EXPECT_EQ(split.Total(MemoryTier::kGpu) - unsplit.Total(MemoryTier::kGpu), 2 * partial)
      << "16 experts in 2 parts: the same slots whether shard-major or not";
  // 10 experts over 2 shards in 4 parts: slots of 3 experts, as the layer's own cut (3,3,2,2) has.
  spec.num_experts = 10;
  plan.layer_parts = 4;
  plan.ring_sections = 5;
  const int64_t stride = RoutedExpertLayerIndex(spec, io::DType::kBF16).expert_stride_bytes;
  EXPECT_EQ(ComputeMemoryTable(spec, plan, 256).Sum("ring slots"), 5 * 3 * stride);
  // 6 experts over 3 shards in 3 parts would be 2 a slot; 7 experts: shards of 3,2,2, slots of 3.
  spec.num_experts = 7;
  plan.expert_shards = 3;
  plan.layer_parts = 3;
  plan.ring_sections = 4;
  EXPECT_EQ(ComputeMemoryTable(spec, plan, 256).Sum("ring slots"), 4 * 3 * stride);
  EXPECT_EQ(ExpertShardItems(spec, 100, 1).size(), 0u);
  EXPECT_EQ(ExpertShardItems(spec, 100, 4, 2).size(), 2u) << "two shards on each of two GPUs";
}

// The planner's workspace grows by the partials the engine allocates (at least: it adds an arena unit each),
// and the engine reserves them too (GpuForward::WorkspaceBytes), so a plan with shards still fits its budget.
TEST(ExpertShardsPlan, PlannerAndEnginePriceThePartials) {
  const ModelSpec spec = TinySpec();
  const Workload job{32, 64, 16, 80, ""};  // requests, prompt, generation, longest context
  const HardwareProfile machine = testing::InstantMachine();
  PerfModel model(machine, ComputeModelCosts(spec), job, ResolveBudgets(machine, {}));
  ExecutionPlan plan = GpuPlan(spec, 4);
  absl::StatusOr<Prediction> unsplit = model.Predict(plan);
  ASSERT_TRUE(unsplit.ok()) << unsplit.status();
  plan.expert_shards = 2;
  absl::StatusOr<Prediction> split = model.Predict(plan);
  ASSERT_TRUE(split.ok()) << split.status();
  int64_t partials = 0;
  for (const MemoryItem& item : ExpertShardItems(spec, plan.max_step_tokens(), 2)) {
    partials += (item.bytes + kArenaGranularity - 1) / kArenaGranularity * kArenaGranularity;
  }
  ASSERT_GT(partials, 0);
  const int64_t priced = split->memory.gpu_workspace_bytes - unsplit->memory.gpu_workspace_bytes;
  EXPECT_GE(priced, partials);
  EXPECT_LE(priced, partials + 2 * kArenaGranularity);
  EXPECT_EQ(GpuForward::WorkspaceBytes(spec, plan.max_step_tokens(), io::DType::kBF16, false, 2) -
                GpuForward::WorkspaceBytes(spec, plan.max_step_tokens()),
            partials);
}

// The CPU twin of the GPU's split: each shard's pass over its experts into a zeroed partial, the partials
// added to the residual in shard order, against the unsplit pass into the same residual.
TEST(ExpertShardsCpuTwin, SumOfShardPartialsIsTheUnsplitMoe) {
  constexpr int kHidden = 48, kInter = 32, kExperts = 10, kTopK = 3, kTokens = 37;
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 0.5f);
  std::vector<std::vector<float>> storage;
  std::vector<cpu::ExpertWeights> experts(kExperts);
  auto matrix = [&](int rows, int cols) {
    std::vector<float>& data = storage.emplace_back(static_cast<size_t>(rows) * cols);
    for (float& v : data) v = normal(rng);
    return cpu::Matrix{io::DType::kF32, data.data(), rows, cols};
  };
  storage.reserve(3 * kExperts);
  for (cpu::ExpertWeights& e : experts) {
    e.gate = matrix(kInter, kHidden);
    e.up = matrix(kInter, kHidden);
    e.down = matrix(kHidden, kInter);
  }
  std::vector<float> x(kTokens * kHidden), residual(x.size());
  for (float& v : x) v = normal(rng);
  for (float& v : residual) v = normal(rng);
  std::vector<int32_t> ids(kTokens * kTopK);
  std::vector<float> weights(ids.size());
  for (int t = 0; t < kTokens; ++t) {
    // Distinct experts per token, chosen at random; token 0 only in the first shard's experts.
    std::vector<int32_t> all(kExperts);
    for (int e = 0; e < kExperts; ++e) all[e] = e;
    std::shuffle(all.begin(), all.end(), rng);
    if (t == 0) all = {0, 1, 2};
    for (int j = 0; j < kTopK; ++j) {
      ids[t * kTopK + j] = all[j];
      weights[t * kTopK + j] = std::uniform_real_distribution<float>(0.1f, 1.0f)(rng);
    }
  }
  std::vector<float> unsplit = residual;
  cpu::MoeForward(x.data(), kTokens, kHidden, ids.data(), weights.data(), kTopK, experts, unsplit.data());
  double scale = 0;
  for (size_t i = 0; i < unsplit.size(); ++i)
    scale = std::max(scale, std::abs(double{unsplit[i]} - residual[i]));
  ASSERT_GT(scale, 0.1) << "the MoE output should not be negligible";
  for (int shards : {2, 3, 4}) {
    std::vector<float> combined = residual;
    for (const ExpertRange& range : ShardRanges(kExperts, shards)) {
      std::vector<float> partial(x.size(), 0.0f);
      cpu::MoeForwardExperts(x.data(), kTokens, kHidden, ids.data(), weights.data(), kTopK, experts,
                             range.first, range.end(), partial.data());
      if (range.first > 2) {
        for (int i = 0; i < kHidden; ++i) EXPECT_EQ(partial[i], 0.0f) << "token 0 is all in shard 0";
      }
      for (size_t i = 0; i < combined.size(); ++i) combined[i] += partial[i];
    }
    double worst = 0;
    for (size_t i = 0; i < combined.size(); ++i)
      worst = std::max(worst, std::abs(double{combined[i]} - unsplit[i]));
    EXPECT_LE(worst, 1e-5 * scale) << shards << " shards: max difference " << worst << " (output scale "
                                   << scale << ")";
  }
  // One shard over everything is the unsplit pass, to the bit.
  std::vector<float> whole = residual;
  cpu::MoeForwardExperts(x.data(), kTokens, kHidden, ids.data(), weights.data(), kTopK, experts, 0, kExperts,
                         whole.data());
  EXPECT_EQ(whole, unsplit);
}

}  // namespace
}  // namespace ringmoe::planner
