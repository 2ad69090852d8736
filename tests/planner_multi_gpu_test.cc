// The planner's model of several GPUs in one server (planner/DESIGN.md, "Several GPUs") against
// hand-computed cases on the tiny model: each GPU streams its 1/G share of the experts over its own link, the
// links share DRAM, the experts' split adds the hidden states and partial outputs each way, each GPU holds
// its share of the resident layers; and the profile and plan forms that carry G.
#include <gtest/gtest.h>

#include <cmath>

#include "planner/execution_plan.h"
#include "planner/hardware_profile.h"
#include "planner/model_costs.h"
#include "planner/perf_model.h"
#include "planner/plan_search.h"
#include "planner_test_util.h"

namespace ringmoe::planner {
namespace {

using testing::InstantMachine;
using testing::kGiB;
using testing::kTinyMoe;
using testing::ParseOrDie;

// Tiny model: 4 MoE layers of 16 experts (top-2), hidden 1024; one expert is 3 x 1024 x 512 bf16.
constexpr double kExpertBytes = 3.0 * 1024 * 512 * 2;   // 3,145,728
constexpr double kRoutedBytes = 4 * 16 * kExpertBytes;  // every layer's experts: 201,326,592
// One decode row's attention output going down (q width 1024, f32, 4 layers) and its q and k/v coming back
// (1024 + 2 x 256, f32, 4 layers).
constexpr double kRowDown = 1024.0 * 4 * 4;
constexpr double kRowUp = (1024.0 + 512) * 4 * 4;

Workload Job(int64_t requests, int prompt, int gen) {
  return Workload{requests, static_cast<double>(prompt), static_cast<double>(gen), prompt + gen, ""};
}

// Hidden states in and partial outputs out for `tokens` tokens over each of `gpus` links, each way:
// tokens x 1024 x 2 bytes x (G - 1) / G, for each of the 4 MoE layers.
double Combine(double tokens, int gpus) { return tokens * 1024 * 2 * (gpus - 1.0) / gpus * 4; }

// Nothing resident, a ring of 3 whole-layer slots (the 4 streamed layers rotate), one micro-batch.
ExecutionPlan StreamingPlan(int gpus) {
  ExecutionPlan plan;
  plan.device = PlanDevice::kGpu;
  plan.batch = 1;
  plan.micro_batches = 1;
  plan.prefill_chunk = 256;
  plan.max_resident_moe_layers = 0;
  plan.ring_sections = 3;
  plan.gpus = gpus;
  return plan;
}

// A machine whose 10 GB/s link binds; DRAM all but free unless a test says otherwise.
HardwareProfile LinkBoundMachine() {
  HardwareProfile profile = InstantMachine();
  profile.gpu->h2d_gbps = 10;
  profile.contention = DramContention{10, 1e6, 10, 1e6};
  return profile;
}

TEST(PlannerMultiGpu, EachLinkStreamsItsShareSoPcieTimeHalvesAndQuarters) {
  const HardwareProfile profile = LinkBoundMachine();
  PerfModel model(profile, ComputeModelCosts(ParseOrDie(kTinyMoe, "tiny")), Job(1, 100, 50),
                  ResolveBudgets(profile, {}));
  double one_gpu_step = 0;
  for (int gpus : {1, 2, 4}) {
    SCOPED_TRACE(gpus);
    absl::StatusOr<MemoryPlan> memory = model.PlanMemory(StreamingPlan(gpus));
    ASSERT_TRUE(memory.ok()) << memory.status();
    EXPECT_EQ(memory->gpus, gpus);
    // All the links together carry every expert once a step.
    EXPECT_EQ(memory->streamed_bytes_per_step, static_cast<int64_t>(kRoutedBytes));
    StageTimes step = model.StepTime(StreamingPlan(gpus), *memory, 1, 125, 0, 100);
    // Each link: 1/G of the experts and of the decode row, plus the split's hidden states; the G links copy
    // at once at 10 GB/s each (DRAM does not bind here).
    const double per_link_down = (kRoutedBytes + kRowDown) / gpus + Combine(1, gpus);
    EXPECT_NEAR(step.h2d_copy, per_link_down / 10e9, 1e-12);
    EXPECT_NEAR(step.d2h_copy, (kRowUp / gpus + Combine(1, gpus)) / 1e6 / 1e9, 1e-15);
    // Copy-bound: the copy engine is busy kRingCopyDuty of the step.
    EXPECT_NEAR(step.step, per_link_down / 10e9 / kRingCopyDuty, 1e-12);
    EXPECT_EQ(step.bottleneck, kStageH2dCopy);
    if (gpus == 1) one_gpu_step = step.step;
  }
  // The numbers above: 23.4 ms on one GPU, 11.7 ms on two (plus 4 KB of hidden states), 5.9 ms on four.
  EXPECT_NEAR(one_gpu_step, (kRoutedBytes + kRowDown) / 10e9 / kRingCopyDuty, 1e-12);
  EXPECT_NEAR(one_gpu_step * 1000, 23.41, 0.01);
}

TEST(PlannerMultiGpu, DramCapsTheScalingOfTheLinks) {
  // DRAM gives 25 GB/s to everyone together: two 10 GB/s links fit in it, four do not.
  HardwareProfile profile = LinkBoundMachine();
  profile.cpu.dram_read_gbps = 25;
  profile.contention = DramContention{10, 15, 10, 15};
  PerfModel model(profile, ComputeModelCosts(ParseOrDie(kTinyMoe, "tiny")), Job(1, 100, 50),
                  ResolveBudgets(profile, {}));
  EXPECT_DOUBLE_EQ(model.DramTotalGbps(), 25);
  EXPECT_DOUBLE_EQ(model.AllLinksH2dBytesPerSecond(1), 10e9);
  EXPECT_DOUBLE_EQ(model.AllLinksH2dBytesPerSecond(2), 20e9);
  EXPECT_DOUBLE_EQ(model.AllLinksH2dBytesPerSecond(4), 25e9);
  auto copy_seconds = [&](int gpus) {
    absl::StatusOr<MemoryPlan> memory = model.PlanMemory(StreamingPlan(gpus));
    EXPECT_TRUE(memory.ok()) << memory.status();
    return model.StepTime(StreamingPlan(gpus), *memory, 1, 125, 0, 100).h2d_copy;
  };
  const double two = (kRoutedBytes + kRowDown) / 2 + Combine(1, 2);
  EXPECT_NEAR(copy_seconds(2), two / 10e9, 1e-12);
  // Four links move 4 x their share through DRAM at 25 GB/s, not 40: 2.5 times one GPU, not 4.
  const double four = (kRoutedBytes + kRowDown) / 4 + Combine(1, 4);
  EXPECT_NEAR(copy_seconds(4), 4 * four / 25e9, 1e-12);
  EXPECT_NEAR(copy_seconds(1) / copy_seconds(4), 2.5, 0.01);
  // A measured all-links figure replaces the assumption.
  profile.gpu->all_links_h2d_gbps = 18;
  PerfModel measured(profile, model.costs(), model.workload(), model.budgets());
  EXPECT_DOUBLE_EQ(measured.AllLinksH2dBytesPerSecond(4), 18e9);
  EXPECT_DOUBLE_EQ(measured.AllLinksH2dBytesPerSecond(1), 10e9);  // one link is the link's own rate
}

TEST(PlannerMultiGpu, LinksAndCpuAttentionShareDramInProportionWhenTheyAskMoreThanItGives) {
  // One link: 10 GB/s alone, 8 beside the CPU; the CPU reads KV at 20 GB/s alone (17.2 in the engine's loop,
  // kEngineKvReadShare), 16/20 of that beside a link; DRAM gives 30 GB/s in all.
  HardwareProfile profile = LinkBoundMachine();
  profile.cpu.dram_read_gbps = 30;
  profile.contention = DramContention{10, 20, 8, 16};
  profile.cpu.attention.kv_gbps = 20;
  ModelCosts costs = ComputeModelCosts(ParseOrDie(kTinyMoe, "tiny"));
  PerfModel model(profile, costs, Job(64, 1000, 500), ResolveBudgets(profile, {}));
  const double decodes = 64, context = 1250;
  const double kv_bytes = decodes * context * costs.kv_bytes_per_token;
  const double kv_alone = 20e9 * kEngineKvReadShare, kv_shared = kv_alone * 16 / 20;
  // Two DMA readers at once: whoever finishes first leaves the other its solo rate.
  auto contended_dma = [](double dma, double kv, double dma_alone, double dma_shared, double kv_shared) {
    const double dma_together = dma / dma_shared, kv_together = kv / kv_shared;
    return dma_together <= kv_together ? dma_together
                                       : kv_together + (dma - kv_together * dma_shared) / dma_alone;
  };
  for (int gpus : {2, 4}) {
    SCOPED_TRACE(gpus);
    ExecutionPlan plan = StreamingPlan(gpus);
    plan.batch = 64;
    absl::StatusOr<MemoryPlan> memory = model.PlanMemory(plan);
    ASSERT_TRUE(memory.ok()) << memory.status();
    StageTimes step = model.StepTime(plan, *memory, decodes, context, 0, 1000);
    const double per_link = (kRoutedBytes + decodes * kRowDown) / gpus + Combine(decodes, gpus);
    // Two links: 20 GB/s alone, 16 beside the CPU's 13.76: 29.76, within DRAM's 30.
    // Four: 30 GB/s alone (DRAM's cap), 24 beside the CPU's 13.76 = 37.76 > 30: both slow by 30 / 37.76.
    const double links = gpus == 2 ? 20e9 : 30e9;
    double dma_shared = 8e9 * links / 10e9, kv_beside = kv_shared;  // the one link's share, scaled
    if (dma_shared + kv_beside > 30e9) {
      const double squeeze = 30e9 / (dma_shared + kv_beside);
      dma_shared *= squeeze;
      kv_beside *= squeeze;
    }
    EXPECT_NEAR(step.h2d_copy, contended_dma(gpus * per_link, kv_bytes, links, dma_shared, kv_beside), 1e-9);
    EXPECT_GT(step.cpu_attention, kv_bytes / kv_alone);  // the links slow the CPU's reads
  }
}

TEST(PlannerMultiGpu, EachGpuHoldsItsShareSoMoreLayersStayResident) {
  const HardwareProfile profile = InstantMachine();
  const ModelCosts costs = ComputeModelCosts(ParseOrDie(kTinyMoe, "tiny"));
  // What a GPU holds besides routed experts and the ring: the other weights and the workspace.
  PerfModel probe(profile, costs, Job(1, 100, 50), ResolveBudgets(profile, {}));
  absl::StatusOr<MemoryPlan> base = probe.PlanMemory(StreamingPlan(1));
  ASSERT_TRUE(base.ok()) << base.status();
  const int64_t fixed = base->gpu_used() - base->gpu_ring_bytes;
  const int64_t expert = static_cast<int64_t>(kExpertBytes);
  // Per GPU: a ring of 3 slots of a quarter layer (4 experts: a GPU's half of a layer cut in 2 parts), two
  // layers' halves (8 experts each), and a little slack; less than all four halves (32 experts).
  Budgets budgets{fixed + 3 * 4 * expert + 2 * 8 * expert + expert / 2, 0};
  PerfModel model(profile, costs, Job(1, 100, 50), ResolveBudgets(profile, budgets));
  ExecutionPlan plan = StreamingPlan(2);
  plan.max_resident_moe_layers = -1;
  plan.layer_parts = 2;
  absl::StatusOr<MemoryPlan> two = model.PlanMemory(plan);
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_EQ(two->gpu_budget, budgets.gpu_bytes);  // --gpu-mem is each GPU's
  EXPECT_EQ(two->gpu_resident_moe_layers, 2);
  EXPECT_EQ(two->gpu_resident_bytes[static_cast<int>(WeightGroup::kRoutedExperts)], 2 * 8 * expert);
  EXPECT_EQ(two->gpu_resident_experts, 2 * 16);  // over both GPUs
  EXPECT_EQ(two->gpu_total_experts, 4 * 16);
  EXPECT_EQ(two->gpu_ring_bytes, 3 * 4 * expert);
  EXPECT_EQ(two->streamed_bytes_per_step, 2 * 16 * expert);  // two layers, each GPU its half
  EXPECT_EQ(two->cpu_weight_bytes, 2 * 16 * expert);         // held once in pinned memory
  EXPECT_LE(two->gpu_used(), budgets.gpu_bytes);
  // One GPU with the same budget holds a ring of 3 half layers (24 experts) and no layer beside it.
  plan.gpus = 1;
  absl::StatusOr<MemoryPlan> one = model.PlanMemory(plan);
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_EQ(one->gpu_resident_moe_layers, 0);
  EXPECT_EQ(one->gpu_ring_bytes, 3 * 8 * expert);
  EXPECT_EQ(one->streamed_bytes_per_step, 4 * 16 * expert);
  // Four GPUs hold a quarter of each layer: the whole model stays resident, nothing streams.
  plan.gpus = 4;
  absl::StatusOr<MemoryPlan> four = model.PlanMemory(plan);
  ASSERT_TRUE(four.ok()) << four.status();
  EXPECT_EQ(four->gpu_resident_moe_layers, 4);
  EXPECT_EQ(four->gpu_resident_bytes[static_cast<int>(WeightGroup::kRoutedExperts)], 4 * 4 * expert);
  EXPECT_EQ(four->streamed_bytes_per_step, 0);
  // The KV cache stays on the host over several GPUs.
  plan.kv.gpu_fraction = 0.5;
  EXPECT_TRUE(absl::IsInvalidArgument(model.PlanMemory(plan).status()));
}

TEST(PlannerMultiGpu, JobBoundTakesEveryLink) {
  const HardwareProfile profile = LinkBoundMachine();
  PerfModel model(profile, ComputeModelCosts(ParseOrDie(kTinyMoe, "tiny")), Job(100, 100, 50),
                  ResolveBudgets(profile, {}));
  const double decode_steps = 100.0 * 50 / 4;  // 4 sequences in flight
  for (int gpus : {1, 2, 4}) {
    SCOPED_TRACE(gpus);
    ExecutionPlan plan = StreamingPlan(gpus);
    absl::StatusOr<MemoryPlan> memory = model.PlanMemory(plan);
    ASSERT_TRUE(memory.ok()) << memory.status();
    JobBound bound = model.JobLevelBound(plan, *memory, 4);
    EXPECT_NEAR(bound.stage_seconds["pcie"],
                decode_steps * (kRoutedBytes + gpus * Combine(4, gpus)) / (gpus * 10e9), 1e-9);
    EXPECT_EQ(bound.limit, "pcie");
  }
}

TEST(PlannerMultiGpu, SearchKeepsTheGpuCountAndTheKvOnTheHost) {
  HardwareProfile profile = LinkBoundMachine();
  profile.gpu->attention_kv_gbps = 1000;  // one GPU would try KV shares
  PerfModel model(profile, ComputeModelCosts(ParseOrDie(kTinyMoe, "tiny")), Job(64, 100, 50),
                  ResolveBudgets(profile, {}));
  PlanPins pins;
  pins.gpus = 4;
  EXPECT_FALSE(pins.any());  // the machine, not a plan choice
  absl::StatusOr<SearchResult> result = SearchPlan(model, PlanDevice::kGpu, pins);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->best.plan.gpus, 4);
  EXPECT_EQ(result->best.plan.kv.gpu_fraction, 0);
  EXPECT_NE(FormatExecutionPlan(result->best.plan).find("4 GPUs (experts split)"), std::string::npos);
}

TEST(PlannerMultiGpu, ProfileCarriesTheGpuCountAndOneGpuProfilesKeepTheirForm) {
  HardwareProfile profile = InstantMachine();
  std::string one_gpu = ProfileToJson(profile);
  EXPECT_EQ(one_gpu.find("\"count\""), std::string::npos);
  EXPECT_EQ(one_gpu.find("all_links_h2d_gbps"), std::string::npos);
  absl::StatusOr<HardwareProfile> read = ProfileFromJson(one_gpu, "one.json");
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->gpu->count, 1);
  EXPECT_EQ(read->gpu->all_links_h2d_gbps, 0);
  EXPECT_EQ(ProfileToJson(*read), one_gpu);

  profile.gpu->count = 8;
  profile.gpu->all_links_h2d_gbps = 210.5;
  std::string eight = ProfileToJson(profile);
  absl::StatusOr<HardwareProfile> back = ProfileFromJson(eight, "eight.json");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->gpu->count, 8);
  EXPECT_DOUBLE_EQ(back->gpu->all_links_h2d_gbps, 210.5);
  EXPECT_EQ(ProfileToJson(*back), eight);

  // A plan for more GPUs than a multi-GPU profile has is refused.
  PerfModel model(*back, ComputeModelCosts(ParseOrDie(kTinyMoe, "tiny")), Job(1, 100, 50),
                  ResolveBudgets(*back, {}));
  EXPECT_TRUE(absl::IsFailedPrecondition(model.PlanMemory(StreamingPlan(16)).status()));
  EXPECT_TRUE(model.PlanMemory(StreamingPlan(8)).ok());

  std::string bad = eight;
  bad.replace(bad.find("\"count\": 8"), 10, "\"count\": 0");
  absl::StatusOr<HardwareProfile> rejected = ProfileFromJson(bad, "bad.json");
  ASSERT_FALSE(rejected.ok());
  EXPECT_NE(rejected.status().message().find("gpu.count"), std::string::npos) << rejected.status();
}

TEST(PlannerMultiGpu, PlanJsonCarriesTheGpuCountAndTheEngineRefusesIt) {
  ExecutionPlan plan = StreamingPlan(1);
  EXPECT_EQ(PlanToJson(plan).find("\"gpus\""), std::string::npos);  // one-GPU plans keep their form
  plan.gpus = 8;
  absl::StatusOr<ExecutionPlan> back = PlanFromJson(PlanToJson(plan));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->gpus, 8);
  EXPECT_TRUE(*back == plan);
  ModelSpec spec = ParseOrDie(kTinyMoe, "tiny");
  plan.expert_tiers = SpreadResidentLayers(spec, 0);
  absl::Status refused = ValidatePlan(plan, spec);
  EXPECT_TRUE(absl::IsInvalidArgument(refused));
  EXPECT_NE(refused.message().find("gpus = 8"), std::string::npos) << refused;
  EXPECT_NE(refused.message().find("multi-GPU execution is not implemented; plan only"), std::string::npos);
}

}  // namespace
}  // namespace ringmoe::planner
