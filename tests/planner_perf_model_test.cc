// The performance model against hand-computed cases: pure weight streaming, a KV-capacity-bound batch, DRAM
// contention between copies and CPU attention, the CPU device reading weights from DRAM, and the tier that
// binds for models far larger than the machine.
#include <gtest/gtest.h>

#include "planner/memory_table.h"
#include "planner/model_costs.h"
#include "planner/perf_model.h"
#include "planner/plan_search.h"
#include "planner_test_util.h"

namespace ringmoe::planner {
namespace {

using testing::ConfigNamed;
using testing::InstantMachine;
using testing::kGiB;
using testing::kTinyMoe;
using testing::ParseOrDie;

// Tiny model: one expert is 3 x 1024 x 512 bf16; 4 layers x 16 experts stream when none stay resident.
constexpr int64_t kTinyExpertBytes = 3LL * 1024 * 512 * 2;         // 3,145,728
constexpr int64_t kTinyRoutedBytes = 4LL * 16 * kTinyExpertBytes;  // 201,326,592
constexpr int64_t kTinyKvPerToken = 2LL * 256 * 2 * 4;             // K and V, 2 kv heads x 128, 4 layers

Workload Job(int64_t requests, int prompt, int gen) {
  return Workload{requests, static_cast<double>(prompt), static_cast<double>(gen), prompt + gen, ""};
}

TEST(PlannerPerfModel, RoutedCopiesMoveOnlyTheRoutedExpertsAndWaitForTheRouting) {
  HardwareProfile profile = InstantMachine();
  profile.gpu->h2d_gbps = 10;
  profile.contention = DramContention{10, 1e6, 10, 1e6};
  ModelCosts costs = ComputeModelCosts(ParseOrDie(kTinyMoe, "tiny"));
  PerfModel model(profile, costs, Job(1, 100, 50), ResolveBudgets(profile, {}));
  ExecutionPlan plan;
  plan.device = PlanDevice::kGpu;
  plan.batch = 1;
  plan.micro_batches = 1;
  plan.prefill_chunk = 256;
  plan.max_resident_moe_layers = 0;
  plan.ring_sections = 3;  // fewer slots than the 4 streamed layers: they rotate
  plan.routed_expert_copies = true;
  absl::StatusOr<MemoryPlan> memory = model.PlanMemory(plan);
  ASSERT_TRUE(memory.ok()) << memory.status();
  ASSERT_EQ(memory->streamed_bytes_per_step, kTinyRoutedBytes);
  // One decode token routes to top_k = 2 of each layer's 16 experts: 1/8 of the bytes go down, plus its
  // attention output (q width 1024, f32, 4 layers). The copies wait for the routing, so the GPU's work (here
  // only the engine's fixed overhead: 1 ms a step + 1 ms per layer) comes on top.
  EXPECT_DOUBLE_EQ(RoutedCopyShare(costs, 1), 2.0 / 16);
  const double bytes_down = kTinyRoutedBytes / 8.0 + 1.0 * 1024 * 4 * 4;
  StageTimes step = model.StepTime(plan, *memory, 1, 125, 0, 100);
  EXPECT_NEAR(step.h2d_copy, bytes_down / 10e9, 1e-12);
  EXPECT_NEAR(step.engine_overhead, 1e-3 + 4 * 1e-3, 1e-12);
  EXPECT_NEAR(step.step, step.engine_overhead + bytes_down / 10e9, 1e-8);  // + the instant GEMMs
  EXPECT_EQ(step.bottleneck, "h2d_copy (routed experts, fetched after routing)");
  // Copying whole layers ahead takes longer for one token: all the bytes, overlapped, with the copy engine
  // busy kRingCopyDuty of the step.
  plan.routed_expert_copies = false;
  EXPECT_NEAR(model.StepTime(plan, *memory, 1, 125, 0, 100).step,
              (kTinyRoutedBytes + 1024 * 16.0) / 10e9 / kRingCopyDuty, 1e-12);
  // 16 tokens touch 16 (1 - (14/16)^16) = 14.8 experts, over three quarters: whole parts, as the engine
  // copies.
  EXPECT_DOUBLE_EQ(RoutedCopyShare(costs, 16), 1.0);
  EXPECT_NEAR(RoutedCopyShare(costs, 4), 1 - std::pow(14.0 / 16, 4), 1e-12);

  // The search takes routed copies for a one-sequence job, and not for a 64-sequence one.
  absl::StatusOr<SearchResult> small =
      SearchPlan(model, PlanDevice::kGpu, PlanPins{.batch = 1, .max_resident_moe_layers = 0});
  ASSERT_TRUE(small.ok()) << small.status();
  EXPECT_TRUE(small->best.plan.routed_expert_copies);
  PerfModel large_job(profile, costs, Job(64, 100, 50), ResolveBudgets(profile, {}));
  absl::StatusOr<SearchResult> large =
      SearchPlan(large_job, PlanDevice::kGpu, PlanPins{.batch = 64, .max_resident_moe_layers = 0});
  ASSERT_TRUE(large.ok()) << large.status();
  EXPECT_FALSE(large->best.plan.routed_expert_copies);
}

// Decode attention reads KV at the probed byte rate or as fast as its FLOPs let it, whichever is slower, and
// the driving thread's step is that attention plus one (layer, micro-batch) share of the GPU's work and the
// step's host work.
TEST(PlannerPerfModel, DecodeAttentionIsTheSlowerOfItsBytesAndItsFlops) {
  HardwareProfile profile = InstantMachine();
  profile.contention = DramContention{1, 1, 1, 1};  // sharing costs nothing here
  ModelCosts costs = ComputeModelCosts(ParseOrDie(kTinyMoe, "tiny"));
  // 8 query heads over 2 KV heads: 4 FLOPs per KV byte (4 x 8 x 128 x 4 layers per 2 x 2 x 128 x 2 x 4
  // bytes).
  ASSERT_DOUBLE_EQ(costs.attention_flops_per_context_token / costs.kv_bytes_per_token, 4.0);
  ExecutionPlan plan;
  plan.device = PlanDevice::kGpu;
  plan.batch = 64;
  plan.micro_batches = 2;
  const double kv_bytes = 64.0 * 10000 * 4096;  // 64 decodes over 10000 tokens of 4 KiB
  // The engine reads its cache at kEngineKvReadShare of the probe's byte rate.
  for (auto [gflops, read_gbps] : {std::pair{200.0, 50.0}, std::pair{800.0, 100.0 * kEngineKvReadShare}}) {
    SCOPED_TRACE(gflops);
    profile.cpu.attention.kv_gbps = 100;
    profile.cpu.attention.gflops = gflops;  // 200: FLOP-bound at 50 GB/s; 800: byte-bound at 86
    PerfModel model(profile, costs, Job(64, 100, 50), ResolveBudgets(profile, {}));
    absl::StatusOr<MemoryPlan> memory = model.PlanMemory(plan);
    ASSERT_TRUE(memory.ok()) << memory.status();
    StageTimes step = model.StepTime(plan, *memory, 64, 10000, 0, 100);
    EXPECT_NEAR(step.cpu_attention, kv_bytes / (read_gbps * 1e9), 1e-12);
    // 1 ms a step + 1 ms per (layer, micro-batch) of engine overhead is nearly all the GPU does here.
    const double gpu_busy = step.gpu_gemm + step.gpu_attention + step.engine_overhead;
    EXPECT_NEAR(step.engine_overhead, 1e-3 + 8e-3, 1e-12);
    EXPECT_NEAR(step.step, step.cpu_attention + gpu_busy / 8 + 1e-3, 1e-12);
    EXPECT_EQ(step.bottleneck, "cpu_attention (with the step's pipeline fill and drain)");
  }
  // The hardware bound reads the KV at the faster of the DRAM probe and the attention probe: a bound below a
  // rate the machine was measured reaching is no bound (the H200's attention probe reads 92.7 GB/s, its DRAM
  // probe 78.4).
  profile.cpu.dram_read_gbps = 80;
  profile.cpu.attention.gflops = 1e9;
  for (auto [probe_gbps, bound_gbps] : {std::pair{100.0, 100.0}, std::pair{60.0, 80.0}}) {
    SCOPED_TRACE(probe_gbps);
    profile.cpu.attention.kv_gbps = probe_gbps;
    PerfModel model(profile, costs, Job(64, 100, 50), ResolveBudgets(profile, {}));
    absl::StatusOr<MemoryPlan> memory = model.PlanMemory(plan);
    ASSERT_TRUE(memory.ok()) << memory.status();
    StageTimes bound = model.StepTime(plan, *memory, 64, 10000, 0, 100, /*bound=*/true);
    EXPECT_NEAR(bound.cpu_attention, kv_bytes / (bound_gbps * 1e9), 1e-12);
  }
}

TEST(PlannerPerfModel, PureStreamingThroughputIsTokensTimesBandwidthOverBytes) {
  HardwareProfile profile = InstantMachine();
  profile.gpu->h2d_gbps = 10;  // the only finite rate
  profile.contention = DramContention{10, 1e6, 10, 1e6};
  ModelCosts costs = ComputeModelCosts(ParseOrDie(kTinyMoe, "tiny"));
  PerfModel model(profile, costs, Job(64, 100, 50), ResolveBudgets(profile, {}));

  ExecutionPlan plan;
  plan.device = PlanDevice::kGpu;
  plan.batch = 64;
  plan.micro_batches = 2;
  plan.prefill_chunk = 256;
  plan.max_resident_moe_layers = 0;
  absl::StatusOr<MemoryPlan> memory = model.PlanMemory(plan);
  ASSERT_TRUE(memory.ok()) << memory.status();
  EXPECT_EQ(memory->streamed_bytes_per_step, kTinyRoutedBytes);
  EXPECT_EQ(memory->gpu_resident_experts, 0);
  EXPECT_EQ(memory->gpu_ring_bytes, 2 * 16 * kTinyExpertBytes);  // two slots of one layer's experts

  // Bytes down per step: the experts, plus each token's attention output (q width 1024, f32) in 4 layers.
  const double bytes_down = kTinyRoutedBytes + 64.0 * 1024 * 4 * 4;
  // At the hardware's limit a step is those bytes over the link; the engine's copy engine is busy
  // kRingCopyDuty of a copy-bound step.
  EXPECT_NEAR(model.StepTime(plan, *memory, 64, 125, 0, 100, /*bound=*/true).step, bytes_down / 10e9, 1e-12);
  StageTimes step = model.StepTime(plan, *memory, 64, 125, 0, 100);
  EXPECT_NEAR(step.h2d_copy, bytes_down / 10e9, 1e-12);
  EXPECT_NEAR(step.step, bytes_down / 10e9 / kRingCopyDuty, 1e-12);
  EXPECT_EQ(step.bottleneck, "h2d_copy");

  absl::StatusOr<Prediction> prediction = model.Predict(plan);
  ASSERT_TRUE(prediction.ok()) << prediction.status();
  EXPECT_EQ(prediction->effective_batch, 64);
  EXPECT_NEAR(prediction->decode_tokens_per_s, 64 * 10e9 / bytes_down * kRingCopyDuty, 1e-6);

  // One MoE layer resident: three layers take turns in the two slots, 3/4 of the bytes each step.
  plan.max_resident_moe_layers = 1;
  memory = model.PlanMemory(plan);
  ASSERT_TRUE(memory.ok());
  EXPECT_FALSE(memory->ring_holds_streamed);
  EXPECT_EQ(memory->streamed_bytes_per_step, kTinyRoutedBytes / 4 * 3);
  EXPECT_NEAR(model.StepTime(plan, *memory, 64, 125, 0, 100).step,
              (kTinyRoutedBytes / 4 * 3 + 64.0 * 1024 * 4 * 4) / 10e9 / kRingCopyDuty, 1e-12);

  // Half resident: the two streamed layers get a slot each and stay in it (the engine refills slots only
  // when sections outnumber them), so after the first fill only the activations go down.
  plan.max_resident_moe_layers = 2;
  memory = model.PlanMemory(plan);
  ASSERT_TRUE(memory.ok());
  EXPECT_TRUE(memory->ring_holds_streamed);
  EXPECT_EQ(memory->streamed_bytes_per_step, 0);
  EXPECT_EQ(memory->cpu_weight_bytes, kTinyRoutedBytes / 2);  // still the ring's pinned source
  EXPECT_EQ(memory->gpu_ring_bytes, 2 * 16 * kTinyExpertBytes);
  EXPECT_NEAR(model.StepTime(plan, *memory, 64, 125, 0, 100).h2d_copy, 64.0 * 1024 * 4 * 4 / 10e9, 1e-12);
  // Cut into halves, the same two layers need four slots; three make them stream again.
  plan.layer_parts = 2;
  plan.ring_sections = 3;
  memory = model.PlanMemory(plan);
  ASSERT_TRUE(memory.ok());
  EXPECT_FALSE(memory->ring_holds_streamed);
  EXPECT_EQ(memory->streamed_bytes_per_step, kTinyRoutedBytes / 2);
  plan.layer_parts = 1;
  plan.ring_sections = 2;

  // Everything fits the GPU: nothing streams, no ring.
  plan.max_resident_moe_layers = -1;
  memory = model.PlanMemory(plan);
  ASSERT_TRUE(memory.ok());
  EXPECT_EQ(memory->streamed_bytes_per_step, 0);
  EXPECT_EQ(memory->gpu_ring_bytes, 0);
  EXPECT_EQ(memory->gpu_resident_experts, 64);
  EXPECT_EQ(memory->gpu_resident_moe_layers, 4);
}

// What does not fit the CPU budget goes to the SSD tier in whole MoE layers, spread among the pinned ones,
// with pinned staging buffers of a ring section each, one per ring slot and one more; every step reads those
// layers from the SSD.
TEST(PlannerPerfModel, SsdTierTakesTheWholeLayersThatDoNotFitTheCpuBudget) {
  HardwareProfile profile = InstantMachine();
  profile.gpu->h2d_gbps = 10;
  profile.contention = DramContention{10, 1e6, 10, 1e6};
  profile.ssd = SsdProfile{"/ssd", {{32, 4 << 20, 2.0}}};
  ModelCosts costs = ComputeModelCosts(ParseOrDie(kTinyMoe, "tiny"));
  const int64_t layer = 16 * kTinyExpertBytes;
  // Quarter layers in a ring of 5: 6 staging buffers of 4 experts, each expert's 3 tensors read with both
  // ends rounded out to 4 KiB, bf16 in place.
  const int64_t staging_buffer = 4 * (kTinyExpertBytes + 3 * 2 * 4096);
  EXPECT_EQ(SsdStagingBufferBytes(4, kTinyExpertBytes, io::DType::kBF16), staging_buffer);
  EXPECT_EQ(SsdStagingBufferBytes(4, kTinyExpertBytes, io::DType::kF32),
            4 * (2 * kTinyExpertBytes + 3 * 2 * 4096) + 4 * kTinyExpertBytes);  // f32 read, bf16 converted
  const int64_t kv = 64 * 2000 * kTinyKvPerToken, embedding = 1000LL * 1024 * 2;
  const int64_t activations = (64 + 256) * (2 * 1024 + 2 * 256) * 4 * 2;
  // Room for two of the four streamed layers beside the KV cache, the buffers and six staging buffers.
  const int64_t cpu_budget = embedding + kv + activations + 6 * staging_buffer + 2 * layer + 1000;
  PerfModel model(profile, costs, Job(1000, 1000, 1000), Budgets{40 * kGiB, cpu_budget});
  ExecutionPlan plan;
  plan.device = PlanDevice::kGpu;
  plan.batch = 64;
  plan.prefill_chunk = 256;
  plan.max_resident_moe_layers = 0;
  plan.layer_parts = 4;
  plan.ring_sections = 5;
  absl::StatusOr<Prediction> prediction = model.Predict(plan);
  ASSERT_TRUE(prediction.ok()) << prediction.status();
  const MemoryPlan& memory = prediction->memory;
  EXPECT_EQ(memory.ssd_moe_layers, 2);
  EXPECT_EQ(memory.ssd_weight_bytes, 2 * layer);
  EXPECT_EQ(memory.cpu_weight_bytes, 2 * layer);
  EXPECT_EQ(memory.ssd_staging_bytes, 6 * staging_buffer);
  EXPECT_EQ(memory.cpu_staging_bytes, activations + 6 * staging_buffer);
  EXPECT_EQ(memory.streamed_bytes_per_step, 4 * layer);  // both tiers cross the link
  EXPECT_LE(memory.cpu_used(), cpu_budget);
  EXPECT_EQ(prediction->plan.expert_tiers,
            (std::vector<ExpertTier>{ExpertTier::kPinnedHost, ExpertTier::kSsd, ExpertTier::kPinnedHost,
                                     ExpertTier::kSsd}));
  // The SSD's 2 GB/s binds: 2 layers a step (50 ms) against 4 layers over a 10 GB/s link (23 ms, 27 with a
  // ring too shallow to overlap it all).
  EXPECT_NEAR(prediction->decode_step.ssd_read, 2.0 * layer / 2e9, 1e-12);
  EXPECT_EQ(prediction->decode_step.bottleneck, "ssd_read");
  EXPECT_NEAR(prediction->decode_step.step, 2.0 * layer / 2e9, 1e-12);
  // The job-level bound: 1000 x 1000 generated tokens in steps of 64, each reading 2 layers from the SSD.
  EXPECT_EQ(prediction->job_bound.limit, "ssd");
  EXPECT_NEAR(prediction->job_bound.stage_seconds.at("ssd"), 1e6 / 64 * 2.0 * layer / 2e9, 1e-6);
  EXPECT_NEAR(prediction->job_bound.stage_seconds.at("pcie"), 1e6 / 64 * 4.0 * layer / 10e9, 1e-6);

  // Striped over two drives (--ssd-dir A --ssd-dir B) the SSD reads at their sum: half the time.
  HardwareProfile striped = profile;
  striped.ssd->striped_gbps = 4.0;
  absl::StatusOr<Prediction> two =
      PerfModel(striped, costs, Job(1000, 1000, 1000), Budgets{40 * kGiB, cpu_budget}).Predict(plan);
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_NEAR(two->decode_step.ssd_read, 2.0 * layer / 4e9, 1e-12);
  EXPECT_NEAR(two->job_bound.stage_seconds.at("ssd"), 1e6 / 64 * 2.0 * layer / 4e9, 1e-6);

  // A byte less: only one layer stays pinned.
  PerfModel tighter(profile, costs, Job(1000, 1000, 1000), Budgets{40 * kGiB, cpu_budget - 1001});
  absl::StatusOr<MemoryPlan> three = tighter.PlanMemory(plan);
  ASSERT_TRUE(three.ok()) << three.status();
  EXPECT_EQ(three->ssd_moe_layers, 3);
  // Without room for the staging buffers, the plan fails and says why.
  PerfModel no_room(profile, costs, Job(1000, 1000, 1000),
                    Budgets{40 * kGiB, embedding + kv + activations + staging_buffer});
  absl::StatusOr<MemoryPlan> none = no_room.PlanMemory(plan);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(none.status().message().find("SSD staging buffers"), std::string::npos) << none.status();
  // Without an SSD reading, the plan fails and names the missing reading.
  profile.ssd.reset();
  profile.ssd_absent_reason = "no probe";
  PerfModel no_ssd(profile, costs, Job(1000, 1000, 1000), Budgets{40 * kGiB, cpu_budget});
  EXPECT_NE(no_ssd.PlanMemory(plan).status().message().find("no probe"), std::string::npos);
}

// FP8 experts on the SSD tier: only from section files (--ssd-dir), which hold the ring's FP8 layout; the
// checkpoint path reads bf16 sections only.
TEST(PlannerPerfModel, Fp8ExpertsGoToTheSsdTierOnlyFromSectionFiles) {
  HardwareProfile profile = InstantMachine();
  profile.ssd = SsdProfile{"/ssd", {{32, 4 << 20, 2.0}}};
  ModelCosts costs = ComputeModelCosts(ParseOrDie(kTinyMoe, "tiny"), 0, 2, 2, io::DType::kF8E4M3);
  ASSERT_EQ(costs.held_expert_dtype, io::DType::kF8E4M3);
  ExecutionPlan plan;
  plan.device = PlanDevice::kGpu;
  plan.batch = 64;
  plan.prefill_chunk = 256;
  plan.max_resident_moe_layers = 0;
  plan.layer_parts = 4;
  plan.ring_sections = 5;
  // A CPU budget a little over the fixed part: most streamed layers must go to the SSD.
  const int64_t kv = 64 * 2000 * kTinyKvPerToken, embedding = 1000LL * 1024 * 2;
  const int64_t activations = (64 + 256) * (2 * 1024 + 2 * 256) * 4 * 2;
  const int64_t cpu_budget = embedding + kv + activations + 4 * kTinyExpertBytes * 6 + 200000;
  PerfModel checkpoint_reads(profile, costs, Job(1000, 1000, 1000), Budgets{40 * kGiB, cpu_budget});
  absl::StatusOr<MemoryPlan> refused = checkpoint_reads.PlanMemory(plan);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnimplemented) << refused.status();
  EXPECT_NE(refused.status().message().find("--ssd-dir"), std::string::npos) << refused.status();
  profile.ssd->section_files = true;
  profile.ssd->striped_gbps = 2.0;
  PerfModel section_files(profile, costs, Job(1000, 1000, 1000), Budgets{40 * kGiB, cpu_budget});
  absl::StatusOr<MemoryPlan> memory = section_files.PlanMemory(plan);
  ASSERT_TRUE(memory.ok()) << memory.status();
  EXPECT_GT(memory->ssd_moe_layers, 0);
  EXPECT_LE(memory->cpu_used(), cpu_budget);
}

TEST(PlannerPerfModel, KvCapacityBoundsTheBatch) {
  HardwareProfile profile = InstantMachine();
  profile.gpu->h2d_gbps = 10;
  profile.contention = DramContention{10, 1e6, 10, 1e6};
  ModelCosts costs = ComputeModelCosts(ParseOrDie(kTinyMoe, "tiny"));
  EXPECT_EQ(costs.kv_bytes_per_token, kTinyKvPerToken);
  // 2000-token contexts: 8,192,000 KV bytes per sequence.
  const int64_t kv_per_sequence = 2000 * kTinyKvPerToken;
  const int64_t embedding = 1000LL * 1024 * 2;
  auto staging = [](int64_t batch) { return (batch + 256) * (2 * 1024 + 2 * 256) * 4 * 2; };
  // Room for the streamed experts, the embeddings and about 54 sequences.
  const int64_t cpu_budget = kTinyRoutedBytes + embedding + 450'000'000;
  PerfModel model(profile, costs, Job(1000, 1000, 1000), Budgets{40 * kGiB, cpu_budget});

  PlanPins overrides;
  overrides.prefill_chunk = 256;
  overrides.max_resident_moe_layers = 0;  // keep the step streaming-bound: throughput grows with the batch
  absl::StatusOr<SearchResult> result = SearchPlan(model, PlanDevice::kGpu, overrides);
  ASSERT_TRUE(result.ok()) << result.status();
  const Prediction& best = result->best;
  // The largest batch whose KV, staging buffers, embeddings and streamed experts fit:
  // B <= (budget - experts - embeddings - 256 chunk tokens of staging) / (KV + staging per sequence) = 54.16.
  const int64_t capacity =
      (cpu_budget - kTinyRoutedBytes - embedding - staging(0)) / (kv_per_sequence + staging(1) - staging(0));
  ASSERT_EQ(capacity, 54);
  EXPECT_EQ(best.plan.batch, capacity);
  EXPECT_EQ(best.memory.cpu_kv_bytes, capacity * kv_per_sequence);
  EXPECT_EQ(best.memory.cpu_staging_bytes, staging(capacity));
  EXPECT_LE(best.memory.cpu_used(), cpu_budget);
  EXPECT_EQ(best.memory.kv_capacity_sequences, capacity);

  ExecutionPlan bigger = best.plan;
  bigger.batch = capacity + 1;
  EXPECT_EQ(model.PlanMemory(bigger).status().code(), absl::StatusCode::kResourceExhausted);

  // With a (slow) SSD, larger batches fit by spilling whole layers to it (here all four: the staging
  // buffers, three whole layers, leave no room for one pinned), but every step then reads them from the SSD:
  // the search still stops at the edge where the weights just fit in memory. At 64 sequences even the
  // staging buffers do not fit.
  profile.ssd = SsdProfile{"/ssd", {{4, 1 << 20, 2.0}}};
  PerfModel with_ssd(profile, costs, Job(1000, 1000, 1000), Budgets{40 * kGiB, cpu_budget});
  absl::StatusOr<MemoryPlan> spilled = with_ssd.PlanMemory(bigger);
  ASSERT_TRUE(spilled.ok()) << spilled.status();
  EXPECT_EQ(spilled->ssd_moe_layers, 4);
  EXPECT_EQ(spilled->ssd_weight_bytes, kTinyRoutedBytes);
  bigger.batch = 64;
  EXPECT_EQ(with_ssd.PlanMemory(bigger).status().code(), absl::StatusCode::kResourceExhausted);
  result = SearchPlan(with_ssd, PlanDevice::kGpu, overrides);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->best.plan.batch, capacity);
  EXPECT_EQ(result->best.memory.ssd_weight_bytes, 0);
}

TEST(PlannerPerfModel, DramContentionSlowsCopiesAndAttentionTogether) {
  HardwareProfile profile = InstantMachine();
  // The H200 box: copies alone 55.3 GB/s, a 16-thread read alone 79.6, both at once 53.2 + 63.9. Attention
  // reads at a tenth of that (7.96 alone, 6.39 beside the copies), so that it outlasts the engine's fixed
  // per-layer costs of this 4-layer model.
  profile.gpu->h2d_gbps = 55.3;
  profile.cpu.attention.kv_gbps = 7.96 / kEngineKvReadShare;  // the engine reads 7.96 alone
  profile.contention = DramContention{55.3, 79.6, 53.2, 63.9};
  ModelCosts costs = ComputeModelCosts(ParseOrDie(kTinyMoe, "tiny"));
  PerfModel model(profile, costs, Job(64, 1000, 1000), ResolveBudgets(profile, {}));
  ExecutionPlan plan;
  plan.batch = 64;
  plan.max_resident_moe_layers = 0;
  absl::StatusOr<MemoryPlan> memory = model.PlanMemory(plan);
  ASSERT_TRUE(memory.ok()) << memory.status();

  const double dma_bytes = kTinyRoutedBytes + 64.0 * 1024 * 4 * 4;  // 202,375,168
  const double kv_bytes = 64.0 * 2000 * kTinyKvPerToken;            // 524,288,000
  // Both start together at the shared rates; the copy ends first (3.794 ms), then attention reads alone.
  const double copy_done = dma_bytes / 53.2e9;
  ASSERT_LT(copy_done, kv_bytes / 6.39e9);
  const double attention_done = copy_done + (kv_bytes - copy_done * 6.39e9) / 7.96e9;

  StageTimes step = model.StepTime(plan, *memory, 64, 2000, 0, 1000);
  EXPECT_NEAR(step.h2d_copy, copy_done, 1e-12);
  EXPECT_NEAR(step.cpu_attention, attention_done, 1e-12);
  EXPECT_GT(step.h2d_copy, dma_bytes / 55.3e9);
  EXPECT_GT(step.cpu_attention, kv_bytes / 7.96e9);
  // The step: that attention, then the GPU's last (layer, micro-batch) share (here its fixed overheads,
  // 1 ms + 8 x 1 ms over 8) and the step's host work (1 ms).
  EXPECT_EQ(step.bottleneck, "cpu_attention (with the step's pipeline fill and drain)");
  const double gpu_busy = step.gpu_gemm + step.gpu_attention + step.engine_overhead;
  EXPECT_NEAR(step.step, attention_done + gpu_busy / 8 + 1e-3, 1e-12);

  // One micro-batch cannot overlap the CPU attention with the GEMMs: they add up.
  profile.gpu->grouped_gemm_bf16 = {{1, 1e-3}};  // slow GEMMs: longer than the attention
  PerfModel slow_gemm(profile, costs, Job(64, 1000, 1000), ResolveBudgets(profile, {}));
  plan.micro_batches = 1;
  StageTimes serial = slow_gemm.StepTime(plan, *memory, 64, 2000, 0, 1000);
  // The host-side overheads: per step, and per (layer, micro-batch) of the 4 layers.
  EXPECT_NEAR(serial.engine_overhead, kStepOverheadSeconds + 4 * kGpuLayerOverheadSeconds, 1e-15);
  EXPECT_NEAR(serial.step, serial.gpu_gemm + serial.engine_overhead + serial.cpu_attention,
              1e-9 * serial.step);
  // The hardware bound has neither the chain nor the overheads: the slowest stage alone.
  StageTimes serial_bound = slow_gemm.StepTime(plan, *memory, 64, 2000, 0, 1000, /*bound=*/true);
  EXPECT_EQ(serial_bound.engine_overhead, 0);
  EXPECT_NEAR(serial_bound.step, std::max(serial_bound.gpu_gemm, serial_bound.cpu_attention), 1e-15);
  plan.micro_batches = 2;
  StageTimes overlapped = slow_gemm.StepTime(plan, *memory, 64, 2000, 0, 1000);
  EXPECT_LT(overlapped.step, serial.step);
}

TEST(PlannerPerfModel, CpuDeviceReadsTheTouchedWeightsFromDram) {
  HardwareProfile profile = InstantMachine();
  profile.gpu.reset();
  profile.gpu_absent_reason = "none";
  profile.cpu.dram_read_gbps = 50;
  ModelCosts costs = ComputeModelCosts(ParseOrDie(kTinyMoe, "tiny"));
  PerfModel model(profile, costs, Job(1, 100, 100), ResolveBudgets(profile, {}));
  ExecutionPlan plan;
  plan.device = PlanDevice::kCpu;
  plan.batch = 1;
  plan.micro_batches = 1;
  absl::StatusOr<MemoryPlan> memory = model.PlanMemory(plan);
  ASSERT_TRUE(memory.ok()) << memory.status();
  // One token per step touches exactly top_k = 2 experts per layer; attention, router and lm_head always.
  const int64_t attention_params = 1024LL * (1024 + 512) + 1024LL * 1024 + 2 * 128 + 2 * 1024;
  const double per_layer = attention_params * 2 + 16 * 1024 * 2 + 2 * kTinyExpertBytes;
  const double lm_head = (1000.0 * 1024 + 1024) * 2;
  StageTimes step = model.StepTime(plan, *memory, 1, 150, 0, 100);
  EXPECT_NEAR(step.cpu_matmul, (4 * per_layer + lm_head) / 50e9, 1e-12);
  // Matmuls, attention and the step's fixed host work take the cores in turn.
  EXPECT_NEAR(step.step, step.cpu_matmul + step.cpu_attention + kStepOverheadSeconds, 1e-12);
  EXPECT_EQ(step.bottleneck, step.cpu_matmul > kStepOverheadSeconds ? "cpu_matmul" : "engine overhead");
  EXPECT_EQ(model.StepTime(plan, *memory, 1, 150, 0, 100, /*bound=*/true).engine_overhead, 0);

  // No GPU in the profile: the GPU device is refused with a reason.
  plan.device = PlanDevice::kGpu;
  absl::StatusOr<MemoryPlan> gpu = model.PlanMemory(plan);
  EXPECT_EQ(gpu.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(gpu.status().message().find("--device cpu"), std::string::npos);
}

TEST(PlannerPerfModel, ModelsLargerThanTheMachineStreamFromSsd) {
  absl::StatusOr<HardwareProfile> h200 =
      LoadProfile(std::string(RINGMOE_SOURCE_DIR) + "/bench/h200_profile.json");
  ASSERT_TRUE(h200.ok()) << h200.status();
  Workload job = Job(4096, 512, 256);

  for (const char* name : {"qwen3-235b-a22b.json", "deepseek-v3-like.json"}) {
    SCOPED_TRACE(name);
    ModelCosts costs = ComputeModelCosts(ConfigNamed(name));
    ASSERT_GT(costs.total_weight_bytes(), h200->topology.memory_bytes);
    PerfModel model(*h200, costs, job, ResolveBudgets(*h200, {}));
    absl::StatusOr<SearchResult> result = SearchPlan(model, PlanDevice::kGpu);
    ASSERT_TRUE(result.ok()) << result.status();
    const Prediction& best = result->best;
    EXPECT_GT(best.memory.ssd_weight_bytes, 0);
    EXPECT_EQ(best.bottleneck, "ssd_read");
    EXPECT_LE(best.memory.gpu_used(), best.memory.gpu_budget);
    EXPECT_LE(best.memory.cpu_used(), best.memory.cpu_budget);
    EXPECT_LE(best.memory.pinned_bytes, best.memory.pinned_limit);
    // Every step reads the SSD tier once: the step is at least that long.
    EXPECT_GE(best.decode_step.step, best.memory.ssd_weight_bytes / (1.97e9) * (1 - 1e-9));
    EXPECT_GT(best.duration_s, 0);

    // The CPU device binds on the SSD too.
    absl::StatusOr<SearchResult> cpu = SearchPlan(model, PlanDevice::kCpu);
    ASSERT_TRUE(cpu.ok()) << cpu.status();
    EXPECT_EQ(cpu->best.bottleneck, "ssd_read");
  }

  // Give the 235B model a host that holds it: no SSD tier, and the host-to-GPU copies bind instead.
  HardwareProfile big_host = *h200;
  big_host.topology.memory_bytes = 1024 * kGiB;
  big_host.pinned_limit_bytes = 900 * kGiB;
  ModelCosts costs = ComputeModelCosts(ConfigNamed("qwen3-235b-a22b.json"));
  PerfModel model(big_host, costs, job, ResolveBudgets(big_host, {}));
  absl::StatusOr<SearchResult> result = SearchPlan(model, PlanDevice::kGpu);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->best.memory.ssd_weight_bytes, 0);
  EXPECT_GT(result->best.memory.streamed_bytes_per_step, 0);
  EXPECT_NE(result->best.bottleneck, "ssd_read");
}

TEST(PlannerPerfModel, JobPhasesAccountForEveryToken) {
  absl::StatusOr<HardwareProfile> h200 =
      LoadProfile(std::string(RINGMOE_SOURCE_DIR) + "/bench/h200_profile.json");
  ASSERT_TRUE(h200.ok()) << h200.status();
  ModelCosts costs = ComputeModelCosts(ConfigNamed("qwen3-30b-a3b.json"), 16);
  PerfModel model(*h200, costs, Job(4096, 512, 256), ResolveBudgets(*h200, {6 * kGiB, 0}));
  ExecutionPlan plan;
  plan.batch = 256;
  plan.prefill_chunk = 2048;
  absl::StatusOr<Prediction> p = model.Predict(plan);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->effective_batch, 256);
  EXPECT_DOUBLE_EQ(p->steady_prefill_tokens, 512);  // 256 sequences x 512 / 256 keeps the batch full
  // Decode tokens: steady steps and the tail each carry the batch; prefill: the fill plus the steady steps.
  EXPECT_NEAR((p->mixed_steps + p->tail_steps) * 256, 4096.0 * 256, 1e-6);
  EXPECT_NEAR(p->fill_steps * 2048 + p->mixed_steps * 512, 4096.0 * 512, 1e-6);
  EXPECT_NEAR(p->duration_s,
              p->fill_steps * p->fill_step_seconds + p->mixed_steps * p->mixed_step.step +
                  p->tail_steps * p->decode_step.step,
              1e-9 * p->duration_s);
  EXPECT_NEAR(p->total_tokens_per_s, 4096.0 * 768 / p->duration_s, 1e-6);
  EXPECT_GT(p->job_stage_seconds.at("h2d_copy"), 0);
}

}  // namespace
}  // namespace ringmoe::planner

namespace ringmoe::planner {
namespace {

TEST(PlannerPerfModel, WorkloadFromRequestLengths) {
  Workload workload = MakeWorkload({100, 0, 300}, {10, 20, 30}, 320, "counted");
  EXPECT_EQ(workload.num_requests, 3);
  EXPECT_DOUBLE_EQ(workload.mean_prompt_tokens,
                   (100 + 1 + 300) / 3.0);  // an empty prompt counts as one token
  EXPECT_DOUBLE_EQ(workload.mean_gen_tokens, 20);
  EXPECT_EQ(workload.max_context_tokens, 320);  // 330 capped at max_position
  EXPECT_EQ(workload.prompt_length_note, "counted");
}

}  // namespace
}  // namespace ringmoe::planner

namespace ringmoe::planner {
namespace {

TEST(PlannerPerfModel, PrefillChunkAttentionByHand) {
  HardwareProfile profile = testing::InstantMachine();
  profile.cpu.attention.gflops = 100;         // FLOP-bound first
  profile.gpu->prefill_attention_tflops = 0;  // not measured: the model's default
  ModelCosts costs = ComputeModelCosts(testing::ParseOrDie(testing::kTinyMoe, "tiny"));
  // 4 x heads 8 x head_dim 128 FLOPs per query token per context token, 4 layers.
  const double flops_per_context = 4.0 * 8 * 128 * 4;
  ASSERT_DOUBLE_EQ(costs.attention_flops_per_context_token, flops_per_context);
  PerfModel model(profile, costs, Workload{16, 1024, 16, 1040, ""}, ResolveBudgets(profile, {}));
  ExecutionPlan plan;
  plan.batch = 16;
  absl::StatusOr<MemoryPlan> memory = model.PlanMemory(plan);
  ASSERT_TRUE(memory.ok()) << memory.status();
  // A 256-token chunk of 1024-token prompts: half of it (128 tokens) continues a prompt cut by the step
  // before, at offset 896, on the CPU: 128 * (1024 - 64) query-key pairs. The other half is fresh prompts,
  // each token attending to half a prompt on average, on the GPU at the default 20 TFLOP/s.
  StageTimes chunk = model.StepTime(plan, *memory, 0, 0, 256, 1024);
  EXPECT_NEAR(chunk.cpu_attention, 128 * 960 * flops_per_context / 100e9, 1e-12);
  EXPECT_NEAR(chunk.gpu_attention, 128 * 512 * flops_per_context / (kDefaultPrefillAttentionTflops * 1e12),
              1e-15);
  // A measured continuation rate replaces the decode rate there.
  profile.cpu.attention.prefill_gflops = 400;
  PerfModel measured_prefill(profile, costs, Workload{16, 1024, 16, 1040, ""}, ResolveBudgets(profile, {}));
  EXPECT_NEAR(measured_prefill.StepTime(plan, *memory, 0, 0, 256, 1024).cpu_attention,
              128 * 960 * flops_per_context / 400e9, 1e-12);

  // Byte-bound instead: the chunk writes its 256 tokens' K/V and the continuation reads its prompt once.
  profile.cpu.attention = {1.0, 1e9, 0, 32, 4, 128, 2048, false};
  profile.contention = DramContention{1e6, 1.0, 1e6, 1.0};
  PerfModel byte_bound(profile, costs, Workload{16, 1024, 16, 1040, ""}, ResolveBudgets(profile, {}));
  chunk = byte_bound.StepTime(plan, *memory, 0, 0, 256, 1024);
  EXPECT_NEAR(chunk.cpu_attention, (256 + 1024) * 4096.0 / (1e9 * kEngineKvReadShare), 1e-9);
}

// Decode attention over an e4m3 cache runs at the probe's fp8 FLOP rate where the profile has one (its values
// are widened as they are read), at the bf16 rate where it has none; a bf16 cache never uses it.
TEST(PlannerPerfModel, Fp8KvDecodeAttentionAtItsOwnFlopRate) {
  HardwareProfile profile = testing::InstantMachine();
  profile.cpu.attention.gflops = 100;  // FLOP-bound: the byte rate is the instant machine's
  const ModelSpec spec = testing::ParseOrDie(testing::kTinyMoe, "tiny");
  const double flops_per_context = 4.0 * 8 * 128 * 4;
  ExecutionPlan plan;
  plan.batch = 16;
  const auto decode_attention = [&](io::DType kv_dtype, double fp8_gflops) {
    HardwareProfile p = profile;
    p.cpu.attention.fp8_gflops = fp8_gflops;
    ModelCosts costs = ComputeModelCosts(spec);
    PriceKvCache(spec, kv_dtype, &costs);
    PerfModel model(p, costs, Workload{16, 100, 16, 200, ""}, ResolveBudgets(p, {}));
    absl::StatusOr<MemoryPlan> memory = model.PlanMemory(plan);
    EXPECT_TRUE(memory.ok()) << memory.status();
    return memory.ok() ? model.StepTime(plan, *memory, 16, 150, 0, 0).cpu_attention : -1.0;
  };
  const double at_bf16_rate = 16 * 150 * flops_per_context / 100e9;
  EXPECT_NEAR(decode_attention(io::DType::kBF16, 0), at_bf16_rate, 1e-12);
  EXPECT_NEAR(decode_attention(io::DType::kBF16, 50), at_bf16_rate, 1e-12);
  EXPECT_NEAR(decode_attention(io::DType::kF8E4M3, 0), at_bf16_rate, 1e-12);
  EXPECT_NEAR(decode_attention(io::DType::kF8E4M3, 50), 2 * at_bf16_rate, 1e-12);
}

// MLA's decode attention (matmuls, cpu::PagedMlaAttention) runs at the probe's MLA rate where the profile
// has one, at the GQA kernel's FLOP rate where it has none; a GQA model never uses it.
TEST(PlannerPerfModel, MlaDecodeAttentionAtItsOwnFlopRate) {
  HardwareProfile profile = testing::InstantMachine();
  profile.cpu.attention.gflops = 100;  // FLOP-bound: the byte rate is the instant machine's
  ExecutionPlan plan = DefaultPlan(PlanDevice::kGpu);
  plan.batch = 16;
  const auto decode_attention = [&](const ModelSpec& spec, double mla_gflops) {
    HardwareProfile p = profile;
    p.cpu.attention.mla_gflops = mla_gflops;
    ModelCosts costs = ComputeModelCosts(spec, 2);
    PerfModel model(p, costs, Workload{16, 100, 16, 200, ""}, ResolveBudgets(p, {}));
    absl::StatusOr<MemoryPlan> memory = model.PlanMemory(plan);
    EXPECT_TRUE(memory.ok()) << memory.status();
    return memory.ok() ? model.StepTime(plan, *memory, 16, 150, 0, 0).cpu_attention : -1.0;
  };
  const ModelSpec mla = testing::ConfigNamed("deepseek-v3.json");
  ASSERT_TRUE(mla.is_mla());
  const double at_kernel_rate = decode_attention(mla, 0);
  ASSERT_GT(at_kernel_rate, 0);
  // (kv_b's absorption, at the instant machine's matmul rate, adds next to nothing to either.)
  EXPECT_NEAR(decode_attention(mla, 400), at_kernel_rate / 4, 1e-6 * at_kernel_rate);
  const ModelSpec gqa = testing::ParseOrDie(testing::kTinyMoe, "tiny");
  EXPECT_EQ(decode_attention(gqa, 400), decode_attention(gqa, 0));
}

}  // namespace
}  // namespace ringmoe::planner

namespace ringmoe::planner {
namespace {

TEST(PlannerPerfModel, HalfLayerRingSectionsFitWhereWholeLayersDoNot) {
  HardwareProfile profile = testing::InstantMachine();
  ModelCosts costs = ComputeModelCosts(testing::ParseOrDie(testing::kTinyMoe, "tiny"));
  ExecutionPlan plan;
  plan.batch = 16;
  plan.prefill_chunk = 256;
  plan.max_resident_moe_layers = 0;
  plan.layer_parts = 2;
  plan.ring_sections = 3;
  PerfModel roomy(profile, costs, Job(16, 100, 50), ResolveBudgets(profile, {}));
  absl::StatusOr<MemoryPlan> halves = roomy.PlanMemory(plan);
  ASSERT_TRUE(halves.ok()) << halves.status();
  EXPECT_EQ(halves->gpu_ring_bytes, 3 * 8 * kTinyExpertBytes);   // three slots of 8 of the 16 experts
  EXPECT_EQ(halves->streamed_bytes_per_step, kTinyRoutedBytes);  // parts change the slots, not the bytes

  // A ring of three half-layer slots needs p + 1 of them.
  ExecutionPlan too_few = plan;
  too_few.ring_sections = 2;
  EXPECT_EQ(roomy.PlanMemory(too_few).status().code(), absl::StatusCode::kInvalidArgument);

  // A budget with room for the half-layer ring but not for two whole-layer slots (32 experts' worth).
  const int64_t budget = halves->gpu_used() + kTinyExpertBytes / 2;
  PerfModel tight(profile, costs, Job(16, 100, 50), Budgets{budget, 32 * kGiB});
  ExecutionPlan whole = plan;
  whole.layer_parts = 1;
  whole.ring_sections = 2;
  EXPECT_EQ(tight.PlanMemory(whole).status().code(), absl::StatusCode::kResourceExhausted);
  PlanPins overrides;
  overrides.batch = 16;
  overrides.prefill_chunk = 256;
  overrides.max_resident_moe_layers = 0;
  absl::StatusOr<SearchResult> result = SearchPlan(tight, PlanDevice::kGpu, overrides);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_GE(result->best.plan.layer_parts, 2);
  EXPECT_GE(result->best.plan.ring_sections, result->best.plan.layer_parts + 1);
  EXPECT_LE(result->best.memory.gpu_used(), budget);
}

TEST(PlannerPerfModel, AShallowRingOverlapsOnlyPartOfTheCopies) {
  HardwareProfile profile = testing::InstantMachine();
  profile.gpu->h2d_gbps = 10;
  profile.contention = DramContention{10, 1e6, 10, 1e6};
  profile.gpu->grouped_gemm_bf16 = {{1, 2e-3}};  // GEMMs of the same order as the copies
  ModelCosts costs = ComputeModelCosts(testing::ParseOrDie(testing::kTinyMoe, "tiny"));
  PerfModel model(profile, costs, Job(64, 100, 50), ResolveBudgets(profile, {}));
  ExecutionPlan plan;
  plan.batch = 64;
  plan.max_resident_moe_layers = 0;
  plan.layer_parts = 4;
  for (int slots : {8, 6, 5}) {
    plan.ring_sections = slots;
    absl::StatusOr<MemoryPlan> memory = model.PlanMemory(plan);
    ASSERT_TRUE(memory.ok()) << memory.status();
    const StageTimes step = model.StepTime(plan, *memory, 64, 125, 0, 100);
    const StageTimes bound = model.StepTime(plan, *memory, 64, 125, 0, 100, /*bound=*/true);
    // The compute side: GPU work (with the host overheads), CPU attention or one micro-batch's chain.
    const double compute =
        std::max({step.gpu_gemm + step.engine_overhead, step.cpu_attention, step.serial_chain});
    const double phi = std::min(1.0, (slots - 4) / 4.0);  // parts of the next layer streaming ahead
    const double expected =
        compute > phi * step.h2d_copy ? compute + (1 - phi) * step.h2d_copy : step.h2d_copy;
    EXPECT_NEAR(step.step, std::max(expected, compute), 1e-12 * step.step) << slots << " slots";
    EXPECT_LE(bound.step, step.step) << slots << " slots";
  }
}

TEST(PlannerPerfModel, TheHardwareBoundIsNeverBelowThePrediction) {
  // The committed H200 profile and the benchmark's shapes: the bound drops only the engine's own costs.
  absl::StatusOr<HardwareProfile> profile =
      LoadProfile(std::string(RINGMOE_SOURCE_DIR) + "/bench/h200_profile.json");
  ASSERT_TRUE(profile.ok()) << profile.status();
  for (const char* name : {"qwen3-30b-a3b.json", "mixtral-8x7b.json"}) {
    ModelCosts costs = ComputeModelCosts(ConfigNamed(name), name[0] == 'q' ? 16 : 4);
    PerfModel model(*profile, costs, Job(1024, 512, 256), ResolveBudgets(*profile, {6 * kGiB, 0}));
    absl::StatusOr<SearchResult> result = SearchPlan(model, PlanDevice::kGpu);
    ASSERT_TRUE(result.ok()) << name << ": " << result.status();
    const Prediction& p = result->best;
    EXPECT_GT(p.bound_output_tokens_per_s, 0) << name;
    EXPECT_GE(p.bound_output_tokens_per_s, p.output_tokens_per_s * (1 - 1e-9)) << name;
    EXPECT_NEAR(p.bound_output_tokens_per_s * p.bound_duration_s, 1024.0 * 256, 1e-6 * 1024 * 256) << name;
    // Streaming at 6 GiB: the link caps the bound at batch * R_h2d / bytes streamed per step for decodes.
    const double link_decode = p.effective_batch * profile->gpu->h2d_gbps * 1e9 /
                               static_cast<double>(p.memory.streamed_bytes_per_step);
    EXPECT_LE(p.bound_output_tokens_per_s, link_decode * (1 + 1e-9)) << name;
  }
}

}  // namespace
}  // namespace ringmoe::planner

namespace ringmoe::planner {
namespace {

// The job-level bound by hand: the job's decode steps each stream every routed byte once over a 10 GB/s link,
// then the same job where only decode attention's KV reads (10 GB/s) are finite.
TEST(PlannerPerfModel, JobLevelBoundIsTheSlowestStageOverTheWholeJob) {
  ModelCosts costs = ComputeModelCosts(ParseOrDie(kTinyMoe, "tiny"));
  ExecutionPlan plan;
  plan.device = PlanDevice::kGpu;
  plan.batch = 64;
  plan.prefill_chunk = 256;
  plan.max_resident_moe_layers = 0;

  HardwareProfile link = InstantMachine();
  link.gpu->h2d_gbps = 10;
  PerfModel streaming(link, costs, Job(64, 100, 50), ResolveBudgets(link, {}));
  absl::StatusOr<MemoryPlan> memory = streaming.PlanMemory(plan);
  ASSERT_TRUE(memory.ok()) << memory.status();
  ASSERT_EQ(memory->streamed_bytes_per_step, kTinyRoutedBytes);
  // 64 x 50 generated tokens in decode steps of 64: 50 steps of 201,326,592 bytes at 10 GB/s = 1.00663296 s.
  JobBound job = streaming.JobLevelBound(plan, *memory, 64);
  EXPECT_EQ(job.limit, "pcie");
  EXPECT_NEAR(job.seconds, 50.0 * kTinyRoutedBytes / 10e9, 1e-9);
  EXPECT_NEAR(job.output_tokens_per_s, 3200 / (50.0 * kTinyRoutedBytes / 10e9), 1e-6);
  // Twice the batch halves the steps, so the bound doubles: each streamed byte serves twice the tokens.
  EXPECT_NEAR(streaming.JobLevelBound(plan, *memory, 128).output_tokens_per_s, 2 * job.output_tokens_per_s,
              1e-6);

  HardwareProfile dram = InstantMachine();
  dram.cpu.dram_read_gbps = 10;
  dram.cpu.attention.kv_gbps = 10;
  PerfModel reading(dram, costs, Job(64, 100, 50), ResolveBudgets(dram, {}));
  memory = reading.PlanMemory(plan);
  ASSERT_TRUE(memory.ok()) << memory.status();
  // Each of the 3200 generated tokens reads the prompt and on average 25.5 generated positions of 4096 bytes.
  const double kv_bytes = 3200.0 * (100 + 25.5) * kTinyKvPerToken;
  job = reading.JobLevelBound(plan, *memory, 64);
  EXPECT_EQ(job.limit, "kv_read");
  EXPECT_NEAR(job.seconds, kv_bytes / 10e9, 1e-9);
  // A quarter of the sequences on the GPU take a quarter of the reads off the CPU.
  plan.kv.gpu_fraction = 0.25;
  EXPECT_NEAR(reading.JobLevelBound(plan, *memory, 64).stage_seconds.at("kv_read"), 0.75 * kv_bytes / 10e9,
              1e-9);
  // A CPU that computes at 1 GFLOP/s (matmuls and decode attention alike): its decode attention binds, the
  // 3200 tokens' 125.5 positions each at attention_flops_per_context_token.
  HardwareProfile slow_cpu = InstantMachine();
  slow_cpu.cpu.matmul_bf16 = {{1, 1e-3}};
  slow_cpu.cpu.matmul_f32 = {{1, 1e-3}};
  slow_cpu.cpu.attention.gflops = 1;
  PerfModel computing(slow_cpu, costs, Job(64, 100, 50), ResolveBudgets(slow_cpu, {}));
  plan.kv.gpu_fraction = 0;
  memory = computing.PlanMemory(plan);
  ASSERT_TRUE(memory.ok()) << memory.status();
  const double attention_flops = 3200.0 * (100 + 25.5) * costs.attention_flops_per_context_token;
  job = computing.JobLevelBound(plan, *memory, 64);
  EXPECT_EQ(job.limit, "cpu_attention_flops");
  EXPECT_NEAR(job.seconds, attention_flops / 1e9, 1e-9 * job.seconds);
  // On the CPU device the same FLOPs join the dense ones in one CPU stage.
  ExecutionPlan on_cpu = plan;
  on_cpu.device = PlanDevice::kCpu;
  absl::StatusOr<MemoryPlan> cpu_memory = computing.PlanMemory(on_cpu);
  ASSERT_TRUE(cpu_memory.ok()) << cpu_memory.status();
  const double dense_flops = 64.0 * 150 * costs.dense_flops_per_token() + 3200.0 * costs.lm_head_flops;
  EXPECT_NEAR(computing.JobLevelBound(on_cpu, *cpu_memory, 64).stage_seconds.at("cpu_flops"),
              (dense_flops + attention_flops) / 1e9, 1e-9 * (dense_flops + attention_flops) / 1e9);

  // Predict reports the bound at the batch it runs.
  absl::StatusOr<Prediction> prediction = streaming.Predict(plan);
  ASSERT_TRUE(prediction.ok()) << prediction.status();
  EXPECT_EQ(prediction->job_bound.limit, "pcie");
  EXPECT_NEAR(
      prediction->job_bound.output_tokens_per_s,
      streaming.JobLevelBound(plan, prediction->memory, prediction->effective_batch).output_tokens_per_s,
      1e-9);
}

}  // namespace
}  // namespace ringmoe::planner
