// ExecutionPlan search and report: no plan ever exceeds a budget (random shapes and budgets), user pins are
// honoured and priced against the free choice, and the report/JSON carry the prediction and measured errors.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "planner/plan_search.h"
#include "planner/report.h"
#include "planner_test_util.h"

namespace ringmoe::planner {
namespace {

using testing::ConfigNamed;
using testing::kGiB;
using testing::ParseOrDie;

HardwareProfile H200() {
  absl::StatusOr<HardwareProfile> profile =
      LoadProfile(std::string(RINGMOE_SOURCE_DIR) + "/bench/h200_profile.json");
  EXPECT_TRUE(profile.ok()) << profile.status();
  return *profile;
}

// Qwen3-30B-A3B on the committed H200 profile, `layers` of its layers at a GPU budget of `gpu_gib`, for
// `requests` x (512 + 256) tokens; what-ifs off unless a test turns them on.
PlanInputs Qwen3OnH200(int layers, int64_t gpu_gib, int requests, std::string prompts_note = "") {
  PlanInputs inputs;
  inputs.spec = ConfigNamed("qwen3-30b-a3b.json");
  inputs.model_name = "qwen3-30b-a3b";
  inputs.layers_override = layers;
  inputs.profile = H200();
  inputs.profile_path = "bench/h200_profile.json";
  inputs.workload = Workload{requests, 512, 256, 768, std::move(prompts_note)};
  inputs.requested_budgets.gpu_bytes = gpu_gib * kGiB;
  inputs.explore_what_ifs = false;
  return inputs;
}

void ExpectWithinBudgets(const Prediction& p, const std::string& context) {
  SCOPED_TRACE(context);
  const MemoryPlan& m = p.memory;
  if (p.plan.device == PlanDevice::kGpu) {
    EXPECT_LE(m.gpu_used(), m.gpu_budget);
    EXPECT_GE(m.gpu_ring_bytes, 0);
    if (m.pinned_limit > 0) {
      EXPECT_LE(m.pinned_bytes, m.pinned_limit);
    }
    // Streamed weights live on the host; a ring with a slot for each keeps them after the first fill.
    EXPECT_EQ(m.ring_holds_streamed ? 0 : m.cpu_weight_bytes + m.ssd_weight_bytes, m.streamed_bytes_per_step);
    if (m.ring_holds_streamed) {
      EXPECT_GT(m.cpu_weight_bytes + m.ssd_weight_bytes, 0);
    }
    if (m.streamed_bytes_per_step > 0) {
      EXPECT_GT(m.gpu_ring_bytes, 0);
    }
  }
  EXPECT_LE(m.cpu_used(), m.cpu_budget);
  EXPECT_GE(m.cpu_weight_bytes, 0);
  EXPECT_GE(m.ssd_weight_bytes, 0);
  EXPECT_GT(p.duration_s, 0);
  EXPECT_GT(p.total_tokens_per_s, 0);
  EXPECT_LE(p.effective_batch, p.plan.batch);
}

TEST(PlannerSearch, NoPlanEverExceedsABudget) {
  std::mt19937 random(20261128);
  auto pick = [&](int low, int high) { return std::uniform_int_distribution<int>(low, high)(random); };
  HardwareProfile base = H200();
  int planned = 0;
  for (int trial = 0; trial < 60; ++trial) {
    int heads = 4 << pick(0, 4);
    int kv_heads = std::max(1, heads >> pick(0, 3));
    int experts = 4 << pick(0, 6);
    std::string config =
        absl::StrCat(R"({"model_type": "qwen3_moe", "vocab_size": )", pick(1000, 160000),
                     R"(, "hidden_size": )", 256 * pick(1, 28), R"(, "num_hidden_layers": )", pick(1, 24),
                     R"(, "num_attention_heads": )", heads, R"(, "num_key_value_heads": )", kv_heads,
                     R"(, "head_dim": 128, "intermediate_size": 4096,)", R"( "moe_intermediate_size": )",
                     128 * pick(1, 16), R"(, "num_experts": )", experts, R"(, "num_experts_per_tok": )",
                     std::min(experts, pick(1, 8)), R"(, "max_position_embeddings": 65536})");
    ModelSpec spec = ParseOrDie(config, "random config");
    HardwareProfile profile = base;
    if (pick(0, 2) == 0) {
      profile.ssd.reset();
      profile.ssd_absent_reason = "removed";
    }
    if (pick(0, 3) == 0) profile.pinned_limit_bytes = int64_t{pick(1, 64)} * kGiB;
    Budgets budgets{int64_t{pick(1, 96)} * kGiB / 2, int64_t{pick(1, 256)} * kGiB / 2};
    int prompt = pick(1, 4000);
    int gen = pick(0, 2000);
    Workload job{pick(1, 5000), static_cast<double>(prompt), static_cast<double>(gen), prompt + gen, ""};
    PerfModel model(profile, ComputeModelCosts(spec), job, ResolveBudgets(profile, budgets));
    for (PlanDevice device : {PlanDevice::kGpu, PlanDevice::kCpu}) {
      std::string context =
          absl::StrCat("trial ", trial, " device ", std::string(PlanDeviceName(device)), ": ", config);
      absl::StatusOr<SearchResult> result = SearchPlan(model, device);
      if (!result.ok()) {
        // Only a capacity limit may stop every plan, and the message must say which.
        EXPECT_TRUE(absl::IsResourceExhausted(result.status())) << context << ": " << result.status();
        continue;
      }
      ++planned;
      ExpectWithinBudgets(result->best, context);
      // Random plans too, not just the winner.
      for (int i = 0; i < 5; ++i) {
        ExecutionPlan plan;
        plan.device = device;
        plan.batch = pick(1, 2048);
        plan.micro_batches = pick(1, 4);
        plan.prefill_chunk = 64 << pick(0, 7);
        plan.kv.gpu_fraction = device == PlanDevice::kGpu ? pick(0, 4) / 4.0 : 0;
        plan.max_resident_moe_layers = pick(0, 1) ? -1 : pick(0, 24);
        absl::StatusOr<Prediction> prediction = model.Predict(plan);
        if (prediction.ok()) ExpectWithinBudgets(*prediction, context + " (random plan)");
      }
    }
  }
  EXPECT_GT(planned, 40);  // most random cases have some feasible plan
}

TEST(PlannerSearch, PinsAreHonouredAndPricedAgainstTheFreeChoice) {
  PlanInputs inputs = Qwen3OnH200(16, 6, 4096);
  inputs.pins.batch = 8;
  inputs.pins.micro_batches = 1;
  absl::StatusOr<PlanReport> report = BuildPlanReport(inputs);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->prediction.plan.batch, 8);
  EXPECT_EQ(report->prediction.plan.micro_batches, 1);
  ASSERT_TRUE(report->unpinned.has_value());
  // Eight sequences cannot amortise 16 GiB of streamed experts: the free choice is much faster.
  EXPECT_GT(report->unpinned->total_tokens_per_s, 10 * report->prediction.total_tokens_per_s);
  std::string text = FormatPlanReport(*report);
  EXPECT_NE(text.find("without your pins the planner would pick"), std::string::npos) << text;
}

// Issue 17's small job on the H200 profile: at 6 GiB a step of 1024 decodes and an 8192-token chunk is the
// largest whose expert runners fit whole; in tiles the runners' scratch stops growing with the chunk, so the
// search takes a larger chunk (the first wave's prompts in half the streaming steps) and predicts more.
TEST(PlannerSearch, ExpertTilesLetLargerPrefillChunksFitASmallGpu) {
  PlanInputs inputs = Qwen3OnH200(16, 6, 1024);
  absl::StatusOr<PlanReport> free = BuildPlanReport(inputs);
  ASSERT_TRUE(free.ok()) << free.status();
  const ExecutionPlan& plan = free->prediction.plan;
  EXPECT_GT(plan.prefill_chunk, 8192);
  EXPECT_GT(plan.expert_tile_tokens, 0);
  EXPECT_LT(plan.expert_tile_tokens, plan.max_step_tokens());
  EXPECT_LE(free->prediction.memory.gpu_used(), free->prediction.memory.gpu_budget);

  // Without tiles the same chunk fits only with the layers' parts run one at a time (one micro-batch),
  // which is slower, and the best untiled plan is slower too.
  inputs.pins.expert_tile_tokens = 0;
  inputs.pins.prefill_chunk = plan.prefill_chunk;
  absl::StatusOr<PlanReport> same_chunk = BuildPlanReport(inputs);
  if (same_chunk.ok()) {
    EXPECT_TRUE(same_chunk->prediction.plan.parts_one_at_a_time());
    EXPECT_GT(free->prediction.total_tokens_per_s, same_chunk->prediction.total_tokens_per_s);
  }
  inputs.pins.prefill_chunk.reset();
  absl::StatusOr<PlanReport> untiled = BuildPlanReport(inputs);
  ASSERT_TRUE(untiled.ok()) << untiled.status();
  EXPECT_LE(untiled->prediction.plan.prefill_chunk, 8192);
  EXPECT_GT(free->prediction.total_tokens_per_s, untiled->prediction.total_tokens_per_s * 1.05);
  // Fewer steps stream the first wave's prompts.
  EXPECT_LT(free->prediction.fill_steps, untiled->prediction.fill_steps);
}

// With a profile that knows the GPU's memory bandwidth the search may put KV on the GPU; for a plan the
// engine runs (it keeps the whole cache on the host) it must not, and that is not reported as a user's pin.
TEST(PlannerSearch, PlansForTheEngineKeepTheKvCacheOnTheHost) {
  PlanInputs inputs = Qwen3OnH200(2, 40, 512);
  inputs.profile.gpu->attention_kv_gbps = 4000;  // H200 HBM: attention there beats the CPU by far
  absl::StatusOr<PlanReport> free = BuildPlanReport(inputs);
  ASSERT_TRUE(free.ok()) << free.status();
  EXPECT_GT(free->prediction.plan.kv.gpu_fraction, 0);
  inputs.pins.kv_gpu_fraction = 0.0;
  absl::StatusOr<PlanReport> host = BuildPlanReport(inputs);
  ASSERT_TRUE(host.ok()) << host.status();
  EXPECT_EQ(host->prediction.plan.kv.gpu_fraction, 0);
  ASSERT_TRUE(host->unpinned.has_value());  // the report shows what the pin costs
  EXPECT_GT(host->unpinned->plan.kv.gpu_fraction, 0);
  EXPECT_LT(host->prediction.total_tokens_per_s, free->prediction.total_tokens_per_s);
}

TEST(PlannerReport, TableJsonAndMeasuredErrors) {
  PlanInputs inputs = Qwen3OnH200(16, 6, 4096, "test prompts");
  inputs.explore_what_ifs = true;
  absl::StatusOr<PlanReport> report = BuildPlanReport(inputs);
  ASSERT_TRUE(report.ok()) << report.status();
  const Prediction& p = report->prediction;
  EXPECT_EQ(p.memory.gpu_budget, 6 * kGiB);
  EXPECT_LE(p.memory.gpu_used(), 6 * kGiB);
  EXPECT_GT(p.memory.streamed_bytes_per_step, 0);  // 18 GiB of experts cannot all stay on a 6 GiB GPU

  std::string text = FormatPlanReport(*report);
  for (const char* expected : {"memory plan", "routed experts", "time per step", "bottleneck", "tokens/s",
                               "+1 GiB GPU memory", "+1 GiB CPU memory", "test prompts"}) {
    EXPECT_NE(text.find(expected), std::string::npos) << expected << "\n" << text;
  }
  // More GPU memory never predicts less throughput (more experts stay resident).
  ASSERT_FALSE(report->what_ifs.empty());
  EXPECT_EQ(report->what_ifs[0].change, "+1 GiB GPU memory");
  EXPECT_GE(report->what_ifs[0].gain_percent, -1e-9);

  MeasuredRun measured;
  measured.wall_seconds = 2 * p.duration_s;
  measured.requests = 4096;
  measured.prompt_tokens = 4096 * 512;
  measured.generated_tokens = 4096 * 256;
  measured.stage_seconds["h2d_copy"] = p.job_stage_seconds.at("h2d_copy") * 1.25;
  std::string beside = FormatMeasuredBesidePredicted(*report, measured);
  EXPECT_NE(beside.find("-50.0%"), std::string::npos) << beside;
  EXPECT_NE(beside.find("-20.0%"), std::string::npos) << beside;

  nlohmann::json json = nlohmann::json::parse(PlanReportJson(*report, &measured));
  EXPECT_NEAR(json["measured"]["error_percent"]["duration"].get<double>(), -50.0, 1e-9);
  EXPECT_NEAR(json["measured"]["error_percent"]["total_tokens_per_s"].get<double>(), 100.0, 1e-6);
  EXPECT_NEAR(json["measured"]["error_percent"]["h2d_copy"].get<double>(), -20.0, 1e-9);
  EXPECT_EQ(json["prediction"]["plan"]["batch"].get<int>(), p.plan.batch);
  EXPECT_EQ(json["hardware"]["profile"]["gpu"]["name"], "NVIDIA H200");
  EXPECT_FALSE(nlohmann::json::parse(PlanReportJson(*report)).contains("measured"));
}

// DeepSeek-V3 (7 layers, bf16) on 16 GiB: no ring that holds a layer (21 GiB) fits, so the plan runs the
// layers' parts one at a time through a shallow ring (one micro-batch, no tiles). On 8 GiB nothing fits, and
// the reason comes from the ring that needs the least GPU memory (two sixteenths of a layer), not from the
// first ring tried (two whole layers): it says how far the closest plan is from fitting.
TEST(PlannerSearch, LayersLargerThanTheGpuRunPartByPartOrNameTheSmallestRing) {
  PlanInputs inputs;
  inputs.spec = ConfigNamed("deepseek-v3.json");
  inputs.model_name = "deepseek-v3";
  inputs.layers_override = 7;
  inputs.profile = H200();
  inputs.workload = Workload{128, 512, 64, 576, ""};
  inputs.requested_budgets.gpu_bytes = 16 * kGiB;
  inputs.device = PlanDevice::kGpu;
  inputs.explore_what_ifs = false;
  absl::StatusOr<PlanReport> report = BuildPlanReport(inputs);
  ASSERT_TRUE(report.ok()) << report.status();
  const ExecutionPlan& plan = report->prediction.plan;
  EXPECT_TRUE(plan.parts_one_at_a_time()) << FormatExecutionPlan(plan);
  EXPECT_EQ(plan.micro_batches, 1);
  EXPECT_EQ(plan.expert_tile_tokens, 0);
  EXPECT_LE(report->prediction.memory.gpu_used(), report->prediction.memory.gpu_budget);
  EXPECT_GT(report->prediction.output_tokens_per_s, 0);
  EXPECT_THAT(FormatExecutionPlan(plan), ::testing::HasSubstr("parts run one at a time"));
  EXPECT_THAT(report->notes, ::testing::Contains(::testing::HasSubstr("not yet run on a GPU")));

  inputs.requested_budgets.gpu_bytes = 8 * kGiB;
  report = BuildPlanReport(inputs);
  ASSERT_FALSE(report.ok());
  const std::string message(report.status().message());
  EXPECT_NE(message.find("no plan fits"), std::string::npos) << message;
  EXPECT_NE(message.find("a ring of 2 sections of 1/16 layer"), std::string::npos) << message;
}

TEST(PlannerReport, GpuPlanWithoutAGpuFailsClearly) {
  PlanInputs inputs;
  inputs.spec = ConfigNamed("mixtral-8x7b.json");
  inputs.profile = H200();
  inputs.profile.gpu.reset();
  inputs.profile.gpu_absent_reason = "GPU layer not built";
  inputs.profile_path = "here.json";
  inputs.workload = Workload{10, 100, 10, 110, ""};
  inputs.device = PlanDevice::kGpu;
  absl::StatusOr<PlanReport> report = BuildPlanReport(inputs);
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(report.status().message().find("GPU layer not built"), std::string::npos);
  EXPECT_NE(report.status().message().find("here.json"), std::string::npos);

  inputs.device = PlanDevice::kCpu;
  inputs.explore_what_ifs = false;
  report = BuildPlanReport(inputs);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->prediction.plan.device, PlanDevice::kCpu);
  EXPECT_EQ(report->prediction.plan.micro_batches, 1);
}

}  // namespace
}  // namespace ringmoe::planner
