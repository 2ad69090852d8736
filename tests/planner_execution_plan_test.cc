// planner::ExecutionPlan, the value the engine runs: JSON both ways, pins, defaults, the spread of resident
// layers, validation, KV sizes and the text form. Every expectation is an exact, hand-computed value.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"
#include "planner/execution_plan.h"

namespace ringmoe::planner {
namespace {

using nlohmann::json;
using testing::HasSubstr;

constexpr int64_t kGiB = int64_t{1} << 30;

// One letter a layer, as the plan's text form writes them: G on the GPU, P pinned host, S SSD, - dense.
std::string Tiers(const std::vector<ExpertTier>& tiers) {
  std::string text;
  for (ExpertTier tier : tiers) {
    text += tier == ExpertTier::kGpu          ? 'G'
            : tier == ExpertTier::kPinnedHost ? 'P'
            : tier == ExpertTier::kSsd        ? 'S'
                                              : '-';
  }
  return text;
}

// A spec with the given layers ('M' MoE, 'D' dense): 2 KV heads of 128 (kv width 256), 8 experts.
ModelSpec SpecOf(const std::string& layers) {
  ModelSpec spec;
  spec.num_layers = static_cast<int>(layers.size());
  spec.hidden_size = 1024;
  spec.num_heads = 8;
  spec.num_kv_heads = 2;
  spec.head_dim = 128;
  spec.num_experts = 8;
  spec.num_experts_per_tok = 2;
  spec.max_position_embeddings = 4096;
  for (char c : layers) {
    LayerSpec layer;
    layer.is_moe = c == 'M';
    spec.layers.push_back(layer);
  }
  return spec;
}

// A GPU plan for SpecOf("MMDM") that ValidatePlan accepts, with nothing left at its default.
ExecutionPlan GoodGpuPlan() {
  ExecutionPlan plan;
  plan.device = PlanDevice::kGpu;
  plan.batch = 48;
  plan.prefill_chunk = 464;
  plan.micro_batches = 3;
  plan.ring_sections = 5;
  plan.layer_parts = 4;
  plan.routed_expert_copies = true;
  plan.prefill_attention_on_gpu = false;
  plan.max_resident_moe_layers = 1;
  plan.expert_tiers = {ExpertTier::kPinnedHost, ExpertTier::kGpu, ExpertTier::kNone, ExpertTier::kPinnedHost};
  plan.kv.block_tokens = 32;
  plan.kv.dtype = io::DType::kBF16;
  plan.kv.host_bytes = 3 * kGiB + 12345;
  plan.kv.gpu_fraction = 0.3125;
  plan.kv.gpu_bytes = 987654321;
  plan.budgets.gpu_bytes = 6 * kGiB;
  plan.budgets.cpu_bytes = 100 * kGiB;
  return plan;
}

ExecutionPlan CpuPlan() {
  ExecutionPlan plan = DefaultPlan(PlanDevice::kCpu);
  plan.batch = 7;
  plan.prefill_chunk = 93;
  plan.kv.dtype = io::DType::kF32;
  plan.kv.host_bytes = 5 * kGiB;
  plan.kv.gpu_fraction = 0;
  plan.budgets.cpu_bytes = 31 * kGiB + 1;
  return plan;
}

// ---- JSON ----

TEST(ExecutionPlanJson, CpuPlanRoundTrips) {
  const ExecutionPlan plan = CpuPlan();
  const std::string text = PlanToJson(plan);
  absl::StatusOr<ExecutionPlan> back = PlanFromJson(text);
  ASSERT_TRUE(back.ok()) << back.status() << "\n" << text;
  EXPECT_TRUE(*back == plan) << text << "\nvs\n" << PlanToJson(*back);
  // The fields as written, not only as read back.
  const json parsed = json::parse(text);
  EXPECT_EQ(parsed["device"], "cpu");
  EXPECT_EQ(parsed["batch"], 7);
  EXPECT_EQ(parsed["prefill_chunk"], 93);
  EXPECT_EQ(parsed["max_step_tokens"], 100);
  EXPECT_EQ(parsed["micro_batches"], 1);
  EXPECT_EQ(parsed["kv"]["dtype"], "F32");
  EXPECT_EQ(parsed["kv"]["host_bytes"].get<int64_t>(), 5 * kGiB);
  EXPECT_EQ(parsed["budgets"]["cpu_bytes"].get<int64_t>(), 31 * kGiB + 1);
  EXPECT_EQ(parsed["expert_tiers"], json::array());
}

TEST(ExecutionPlanJson, GpuPlanWithMixedTiersRoundTrips) {
  const ExecutionPlan plan = GoodGpuPlan();
  const std::string text = PlanToJson(plan);
  absl::StatusOr<ExecutionPlan> back = PlanFromJson(text);
  ASSERT_TRUE(back.ok()) << back.status() << "\n" << text;
  EXPECT_TRUE(*back == plan) << text << "\nvs\n" << PlanToJson(*back);
  EXPECT_EQ(back->expert_tiers, plan.expert_tiers);
  EXPECT_EQ(back->kv.gpu_fraction, 0.3125);
  EXPECT_EQ(back->kv.dtype, io::DType::kBF16);
  const json parsed = json::parse(text);
  EXPECT_EQ(parsed["device"], "gpu");
  EXPECT_EQ(parsed["expert_tiers"], json({"pinned", "gpu", "none", "pinned"}));
  EXPECT_EQ(parsed["resident_moe_layers"], 1);
  EXPECT_EQ(parsed["kv"]["dtype"], "BF16");
  EXPECT_EQ(parsed["budgets"]["gpu_bytes"].get<int64_t>(), 6 * kGiB);
  EXPECT_EQ(parsed["expert_dtype"], "BF16");

  // FP8 experts survive; a plan written before expert_dtype existed reads as BF16.
  ExecutionPlan fp8 = plan;
  fp8.expert_dtype = io::DType::kF8E4M3;
  fp8.kv.dtype = io::DType::kF8E4M3;
  absl::StatusOr<ExecutionPlan> fp8_back = PlanFromJson(PlanToJson(fp8));
  ASSERT_TRUE(fp8_back.ok()) << fp8_back.status();
  EXPECT_TRUE(*fp8_back == fp8);
  EXPECT_NE(FormatExecutionPlan(fp8).find("routed experts F8_E4M3"), std::string::npos)
      << FormatExecutionPlan(fp8);
  json old = parsed;
  old.erase("expert_dtype");
  absl::StatusOr<ExecutionPlan> old_back = PlanFromJson(old.dump());
  ASSERT_TRUE(old_back.ok()) << old_back.status();
  EXPECT_EQ(old_back->expert_dtype, io::DType::kBF16);

  // Expert tiles survive and show; plans without the field (older ones, and untiled plans, which do not
  // write it) read as untiled.
  ExecutionPlan tiled = plan;
  tiled.expert_tile_tokens = 1024;
  absl::StatusOr<ExecutionPlan> tiled_back = PlanFromJson(PlanToJson(tiled));
  ASSERT_TRUE(tiled_back.ok()) << tiled_back.status();
  EXPECT_TRUE(*tiled_back == tiled);
  EXPECT_EQ(tiled_back->expert_tile_tokens, 1024);
  EXPECT_FALSE(parsed.contains("expert_tile_tokens"));
  EXPECT_EQ(PlanFromJson(text)->expert_tile_tokens, 0);
  EXPECT_EQ(tiled.expert_runner_tokens(), std::min(1024, tiled.max_step_tokens()));
  EXPECT_EQ(plan.expert_runner_tokens(), plan.max_step_tokens());

  // A fraction with no short binary form survives too.
  ExecutionPlan odd = plan;
  odd.kv.gpu_fraction = 0.1 + 0.2;  // 0.30000000000000004
  absl::StatusOr<ExecutionPlan> odd_back = PlanFromJson(PlanToJson(odd));
  ASSERT_TRUE(odd_back.ok()) << odd_back.status();
  EXPECT_EQ(odd_back->kv.gpu_fraction, odd.kv.gpu_fraction);
  EXPECT_TRUE(*odd_back == odd);
}

TEST(ExecutionPlanJson, EqualityNoticesEachField) {
  const ExecutionPlan base = GoodGpuPlan();
  EXPECT_TRUE(base == GoodGpuPlan());
  std::vector<ExecutionPlan> changed(15, base);
  changed[0].device = PlanDevice::kCpu;
  changed[1].batch += 1;
  changed[2].prefill_chunk += 1;
  changed[3].micro_batches += 1;
  changed[4].ring_sections += 1;
  changed[5].layer_parts += 1;
  changed[6].routed_expert_copies = !base.routed_expert_copies;
  changed[7].prefill_attention_on_gpu = !base.prefill_attention_on_gpu;
  changed[8].max_resident_moe_layers += 1;
  changed[9].expert_tiers[0] = ExpertTier::kGpu;
  changed[10].kv.gpu_fraction = 0.5;
  changed[11].budgets.cpu_bytes += 1;
  changed[12].kv.host_bytes += 1;
  changed[13].expert_dtype = io::DType::kF8E4M3;
  changed[14].expert_tile_tokens = 4096;
  for (size_t i = 0; i < changed.size(); ++i) EXPECT_FALSE(changed[i] == base) << "change " << i;
}

// The JSON of GoodGpuPlan() with `edit` applied.
std::string EditedJson(const std::function<void(json&)>& edit) {
  json root = json::parse(PlanToJson(GoodGpuPlan()));
  edit(root);
  return root.dump();
}

void ExpectErrorNaming(const absl::StatusOr<ExecutionPlan>& plan, const std::string& field) {
  ASSERT_FALSE(plan.ok()) << "expected an error naming " << field;
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument) << plan.status();
  EXPECT_THAT(std::string(plan.status().message()), HasSubstr(field));
}

TEST(ExecutionPlanJson, ErrorsNameTheField) {
  ExpectErrorNaming(PlanFromJson(EditedJson([](json& j) { j.erase("batch"); })), "'batch'");
  ExpectErrorNaming(PlanFromJson(EditedJson([](json& j) { j["micro_batches"] = "2"; })), "'micro_batches'");
  ExpectErrorNaming(PlanFromJson(EditedJson([](json& j) { j["device"] = "tpu"; })), "device");
  ExpectErrorNaming(PlanFromJson(EditedJson([](json& j) { j["device"] = "tpu"; })), "tpu");
  ExpectErrorNaming(PlanFromJson(EditedJson([](json& j) { j["kv"]["dtype"] = "F16"; })), "kv.dtype");
  ExpectErrorNaming(PlanFromJson(EditedJson([](json& j) { j["kv"]["dtype"] = "F16"; })), "'F16'");
  ExpectErrorNaming(PlanFromJson(EditedJson([](json& j) { j["expert_tiers"][1] = "fast"; })), "expert_tiers");
  ExpectErrorNaming(PlanFromJson(EditedJson([](json& j) { j["expert_tiers"][1] = "fast"; })), "fast");
  ExpectErrorNaming(PlanFromJson(EditedJson([](json& j) { j["kv"].erase("gpu_fraction"); })),
                    "'gpu_fraction'");
  ExpectErrorNaming(PlanFromJson(EditedJson([](json& j) { j["routed_expert_copies"] = 1; })),
                    "'routed_expert_copies'");
  ExpectErrorNaming(PlanFromJson(EditedJson([](json& j) { j.erase("kv"); })), "'kv'");
  ExpectErrorNaming(PlanFromJson(EditedJson([](json& j) { j.erase("budgets"); })), "'budgets'");
  ExpectErrorNaming(PlanFromJson(EditedJson([](json& j) { j.erase("expert_tiers"); })), "expert_tiers");
  ExpectErrorNaming(PlanFromJson(EditedJson([](json& j) { j["expert_dtype"] = "INT4"; })), "expert_dtype");
  ExpectErrorNaming(PlanFromJson(EditedJson([](json& j) { j["expert_tile_tokens"] = -4; })),
                    "expert_tile_tokens");
  // Not an object at all.
  ExpectErrorNaming(PlanFromJson("[1, 2, 3]"), "not a JSON object");
  ExpectErrorNaming(PlanFromJson("42"), "not a JSON object");
  ExpectErrorNaming(PlanFromJson("{\"batch\": "), "not a JSON object");
  ExpectErrorNaming(PlanFromJson(""), "not a JSON object");
  // The unedited text parses: the errors above come from the edits.
  EXPECT_TRUE(PlanFromJson(EditedJson([](json&) {})).ok());
}

// ---- Pins ----

TEST(ApplyPins, EachPinLandsInItsField) {
  const ExecutionPlan base = GoodGpuPlan();
  PlanPins pins;
  EXPECT_FALSE(pins.any());
  EXPECT_TRUE(ApplyPins(base, pins) == base);

  auto pinned = [&](auto set) {
    PlanPins one;
    set(one);
    EXPECT_TRUE(one.any());
    return ApplyPins(base, one);
  };
  ExecutionPlan expected = base;

  expected = base;
  expected.batch = 11;
  EXPECT_TRUE(pinned([](PlanPins& p) { p.batch = 11; }) == expected);
  expected = base;
  expected.prefill_chunk = 333;
  EXPECT_TRUE(pinned([](PlanPins& p) { p.prefill_chunk = 333; }) == expected);
  expected = base;
  expected.micro_batches = 1;
  EXPECT_TRUE(pinned([](PlanPins& p) { p.micro_batches = 1; }) == expected);
  expected = base;
  expected.max_resident_moe_layers = 0;
  EXPECT_TRUE(pinned([](PlanPins& p) { p.max_resident_moe_layers = 0; }) == expected);
  expected = base;
  expected.kv.gpu_fraction = 0.75;
  EXPECT_TRUE(pinned([](PlanPins& p) { p.kv_gpu_fraction = 0.75; }) == expected);
  expected = base;
  expected.ring_sections = 9;
  EXPECT_TRUE(pinned([](PlanPins& p) { p.ring_sections = 9; }) == expected);
  expected = base;
  expected.routed_expert_copies = false;
  EXPECT_TRUE(pinned([](PlanPins& p) { p.routed_expert_copies = false; }) == expected);
  expected = base;
  expected.prefill_attention_on_gpu = true;
  EXPECT_TRUE(pinned([](PlanPins& p) { p.prefill_attention_on_gpu = true; }) == expected);
  expected = base;
  expected.kv.host_bytes = 1 * kGiB;
  EXPECT_TRUE(pinned([](PlanPins& p) { p.kv_host_bytes = kGiB; }) == expected);
  // layer_parts 2 with the base ring of 5: the ring stays.
  expected = base;
  expected.layer_parts = 2;
  EXPECT_TRUE(pinned([](PlanPins& p) { p.layer_parts = 2; }) == expected);
}

TEST(ApplyPins, AllPinsTogetherKeepNothingOfTheBase) {
  const ExecutionPlan base = DefaultPlan(PlanDevice::kGpu);
  PlanPins pins;
  pins.batch = 5;
  pins.prefill_chunk = 60;
  pins.micro_batches = 4;
  pins.max_resident_moe_layers = 3;
  pins.kv_gpu_fraction = 0.25;
  pins.layer_parts = 2;
  pins.ring_sections = 7;
  pins.routed_expert_copies = true;
  pins.prefill_attention_on_gpu = false;
  pins.kv_host_bytes = 123456789;
  const ExecutionPlan plan = ApplyPins(base, pins);
  EXPECT_EQ(plan.device, PlanDevice::kGpu);
  EXPECT_EQ(plan.batch, 5);
  EXPECT_EQ(plan.prefill_chunk, 60);
  EXPECT_EQ(plan.max_step_tokens(), 65);
  EXPECT_EQ(plan.micro_batches, 4);
  EXPECT_EQ(plan.max_resident_moe_layers, 3);
  EXPECT_EQ(plan.kv.gpu_fraction, 0.25);
  EXPECT_EQ(plan.layer_parts, 2);
  EXPECT_EQ(plan.ring_sections, 7);
  EXPECT_TRUE(plan.routed_expert_copies);
  EXPECT_FALSE(plan.prefill_attention_on_gpu);
  EXPECT_EQ(plan.kv.host_bytes, 123456789);
  // Unpinned: the base's.
  EXPECT_EQ(plan.kv.block_tokens, base.kv.block_tokens);
  EXPECT_EQ(plan.kv.dtype, base.kv.dtype);
  EXPECT_EQ(plan.kv.gpu_bytes, base.kv.gpu_bytes);
  EXPECT_TRUE(plan.budgets == base.budgets);
  EXPECT_EQ(plan.expert_tiers, base.expert_tiers);
}

TEST(ApplyPins, LayerPartsRaiseTheRingUnlessItIsPinned) {
  ExecutionPlan base = DefaultPlan(PlanDevice::kGpu);
  ASSERT_EQ(base.ring_sections, 2);
  PlanPins parts;
  parts.layer_parts = 4;
  ExecutionPlan plan = ApplyPins(base, parts);
  EXPECT_EQ(plan.layer_parts, 4);
  EXPECT_EQ(plan.ring_sections, 5);  // parts + 1
  parts.layer_parts = 1;
  EXPECT_EQ(ApplyPins(base, parts).ring_sections, 2);
  // A ring already larger than parts + 1 stays as it is.
  base.ring_sections = 8;
  parts.layer_parts = 4;
  EXPECT_EQ(ApplyPins(base, parts).ring_sections, 8);
  // Pinned, the ring is the user's, even when too small (ValidatePlan names it then).
  base.ring_sections = 2;
  parts.ring_sections = 3;
  plan = ApplyPins(base, parts);
  EXPECT_EQ(plan.layer_parts, 4);
  EXPECT_EQ(plan.ring_sections, 3);
  parts.ring_sections = 6;
  EXPECT_EQ(ApplyPins(base, parts).ring_sections, 6);
}

// ---- Defaults ----

TEST(DefaultPlan, CpuAndGpu) {
  const ExecutionPlan cpu = DefaultPlan(PlanDevice::kCpu);
  EXPECT_EQ(cpu.device, PlanDevice::kCpu);
  EXPECT_EQ(cpu.batch, 256);
  EXPECT_EQ(cpu.prefill_chunk, 1792);
  EXPECT_EQ(cpu.max_step_tokens(), 2048);
  EXPECT_EQ(cpu.micro_batches, 1);
  EXPECT_TRUE(cpu.expert_tiers.empty());
  EXPECT_EQ(cpu.kv.block_tokens, kKvBlockTokens);
  EXPECT_EQ(cpu.max_resident_moe_layers, -1);

  const ExecutionPlan gpu = DefaultPlan(PlanDevice::kGpu);
  EXPECT_EQ(gpu.device, PlanDevice::kGpu);
  EXPECT_EQ(gpu.batch, 256);
  EXPECT_EQ(gpu.max_step_tokens(), 2048);
  EXPECT_EQ(gpu.micro_batches, 2);
  EXPECT_EQ(gpu.ring_sections, 2);
  EXPECT_EQ(gpu.layer_parts, 1);
  EXPECT_EQ(gpu.kv.dtype, io::DType::kBF16);
}

// ---- Resident layers ----

TEST(SpreadResidentLayers, EvenlyAmongTheStreamed) {
  const ModelSpec eight = SpecOf("MMMMMMMM");
  EXPECT_EQ(Tiers(SpreadResidentLayers(eight, 4)), "PGPGPGPG");
  EXPECT_EQ(Tiers(SpreadResidentLayers(eight, 0)), "PPPPPPPP");
  EXPECT_EQ(Tiers(SpreadResidentLayers(eight, 8)), "GGGGGGGG");
  EXPECT_EQ(Tiers(SpreadResidentLayers(eight, 12)), "GGGGGGGG");  // clamped to the MoE layers
  EXPECT_EQ(Tiers(SpreadResidentLayers(eight, -3)), "PPPPPPPP");
  EXPECT_EQ(Tiers(SpreadResidentLayers(eight, 2)), "PPPGPPPG");
  EXPECT_EQ(Tiers(SpreadResidentLayers(eight, 1)), "PPPPPPPG");
  EXPECT_EQ(Tiers(SpreadResidentLayers(eight, 6)), "PGGGPGGG");
  EXPECT_EQ(Tiers(SpreadResidentLayers(eight, 3)), "PPGPPGPG");
}

TEST(SpreadSsdLayers, EvenlyAmongThePinnedOnes) {
  const ModelSpec eight = SpecOf("MMMMMMMM");
  EXPECT_EQ(Tiers(SpreadSsdLayers(SpreadResidentLayers(eight, 0), 4)), "PSPSPSPS");
  EXPECT_EQ(Tiers(SpreadSsdLayers(SpreadResidentLayers(eight, 0), 8)), "SSSSSSSS");
  EXPECT_EQ(Tiers(SpreadSsdLayers(SpreadResidentLayers(eight, 0), 9)), "SSSSSSSS");  // clamped
  EXPECT_EQ(Tiers(SpreadSsdLayers(SpreadResidentLayers(eight, 0), 0)), "PPPPPPPP");
  EXPECT_EQ(Tiers(SpreadSsdLayers(SpreadResidentLayers(eight, 4), 2)), "PGSGPGSG");
  EXPECT_EQ(Tiers(SpreadSsdLayers(SpreadResidentLayers(eight, 4), 4)), "SGSGSGSG");
  EXPECT_EQ(Tiers(SpreadSsdLayers(SpreadResidentLayers(SpecOf("MMDMM"), 1), 1)), "PP-SG");
}

TEST(SpreadSsdLayers, PlansWithSsdLayersRoundTripAndCountThemAsStreamed) {
  ExecutionPlan plan = GoodGpuPlan();
  plan.expert_tiers = {ExpertTier::kSsd, ExpertTier::kGpu, ExpertTier::kNone, ExpertTier::kPinnedHost};
  EXPECT_EQ(plan.resident_moe_layers(), 1);
  EXPECT_EQ(plan.streamed_moe_layers(), 2);
  EXPECT_EQ(plan.ssd_moe_layers(), 1);
  EXPECT_TRUE(ValidatePlan(plan, SpecOf("MMDM")).ok());
  absl::StatusOr<ExecutionPlan> back = PlanFromJson(PlanToJson(plan));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, plan);
  EXPECT_THAT(PlanToJson(plan), HasSubstr("\"ssd\""));
  EXPECT_THAT(FormatExecutionPlan(plan),
              HasSubstr("experts SG-P (1 on the GPU, 2 streamed, 1 of them from SSD)"));
}

TEST(SpreadResidentLayers, DenseLayersHaveNoTier) {
  const ModelSpec spec = SpecOf("MMDMM");
  EXPECT_EQ(Tiers(SpreadResidentLayers(spec, 0)), "PP-PP");
  EXPECT_EQ(Tiers(SpreadResidentLayers(spec, 1)), "PP-PG");
  EXPECT_EQ(Tiers(SpreadResidentLayers(spec, 2)), "PG-PG");
  EXPECT_EQ(Tiers(SpreadResidentLayers(spec, 3)), "PG-GG");
  EXPECT_EQ(Tiers(SpreadResidentLayers(spec, 4)), "GG-GG");
  // The is-MoE form agrees.
  EXPECT_EQ(Tiers(SpreadResidentLayers(std::vector<bool>{true, true, false, true, true}, 2)), "PG-PG");
  EXPECT_EQ(Tiers(SpreadResidentLayers(std::vector<bool>{false, false}, 2)), "--");
}

TEST(SpreadResidentLayers, LayersLimit) {
  const ModelSpec spec = SpecOf("MMDMMMMM");
  // The first 4 layers (3 MoE): 2 resident.
  EXPECT_EQ(Tiers(SpreadResidentLayers(spec, 2, 4)), "PG-G");
  EXPECT_EQ(Tiers(SpreadResidentLayers(spec, 7, 4)), "GG-G");
  EXPECT_EQ(Tiers(SpreadResidentLayers(spec, 0, 1)), "P");
  // 0, or more than the model has: every layer.
  EXPECT_EQ(Tiers(SpreadResidentLayers(spec, 0, 0)), "PP-PPPPP");
  EXPECT_EQ(Tiers(SpreadResidentLayers(spec, 7, 100)), "GG-GGGGG");
}

// ---- Validation ----

void ExpectInvalidNaming(const absl::Status& status, const std::string& field) {
  ASSERT_FALSE(status.ok()) << "expected an error naming " << field;
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr(field));
}

TEST(ValidatePlan, AcceptsGoodPlansAndNamesTheBadField) {
  const ModelSpec spec = SpecOf("MMDM");
  EXPECT_TRUE(ValidatePlan(GoodGpuPlan(), spec).ok()) << ValidatePlan(GoodGpuPlan(), spec);
  ExecutionPlan cpu = CpuPlan();
  EXPECT_TRUE(ValidatePlan(cpu, spec).ok()) << ValidatePlan(cpu, spec);
  ExecutionPlan gpu_default = DefaultPlan(PlanDevice::kGpu);
  gpu_default.expert_tiers = SpreadResidentLayers(spec, 1);
  EXPECT_TRUE(ValidatePlan(gpu_default, spec).ok()) << ValidatePlan(gpu_default, spec);

  ExecutionPlan plan = GoodGpuPlan();
  plan.batch = 0;
  ExpectInvalidNaming(ValidatePlan(plan, spec), "batch = 0");

  // An fp8 KV cache: on the CPU, and on the GPU path while the GPU holds no share of it.
  ExecutionPlan fp8_cpu = CpuPlan();
  fp8_cpu.kv.dtype = io::DType::kF8E4M3;
  EXPECT_TRUE(ValidatePlan(fp8_cpu, spec).ok()) << ValidatePlan(fp8_cpu, spec);
  ExecutionPlan fp8_gpu = GoodGpuPlan();
  fp8_gpu.kv.dtype = io::DType::kF8E4M3;
  ExpectInvalidNaming(ValidatePlan(fp8_gpu, spec), "--kv-gpu-fraction 0");
  fp8_gpu.kv.gpu_fraction = 0;
  fp8_gpu.kv.gpu_bytes = 0;
  EXPECT_TRUE(ValidatePlan(fp8_gpu, spec).ok()) << ValidatePlan(fp8_gpu, spec);
  fp8_gpu.kv.dtype = io::DType::kF8E5M2;
  ExpectInvalidNaming(ValidatePlan(fp8_gpu, spec), "kv.dtype");
  cpu.batch = 0;
  ExpectInvalidNaming(ValidatePlan(cpu, spec), "batch = 0");

  plan = GoodGpuPlan();
  plan.prefill_chunk = 0;
  ExpectInvalidNaming(ValidatePlan(plan, spec), "prefill_chunk");

  plan = GoodGpuPlan();
  plan.micro_batches = 0;
  ExpectInvalidNaming(ValidatePlan(plan, spec), "micro_batches");

  plan = GoodGpuPlan();    // 4 parts, 3 micro-batches, routed copies
  plan.ring_sections = 4;  // shallower than a layer: the parts run one at a time, which these plans cannot
  ExpectInvalidNaming(ValidatePlan(plan, spec), "micro_batches = 3");
  plan.micro_batches = 1;
  ExpectInvalidNaming(ValidatePlan(plan, spec), "routed_expert_copies");
  plan.routed_expert_copies = false;
  plan.expert_tile_tokens = 128;  // below the step's 512 tokens
  ExpectInvalidNaming(ValidatePlan(plan, spec), "expert_tile_tokens");
  plan.expert_tile_tokens = 0;
  EXPECT_TRUE(plan.parts_one_at_a_time());
  EXPECT_TRUE(ValidatePlan(plan, spec).ok()) << ValidatePlan(plan, spec);
  plan.ring_sections = 2;  // the fewest: one part computes while the next fills
  EXPECT_TRUE(ValidatePlan(plan, spec).ok()) << ValidatePlan(plan, spec);
  EXPECT_THAT(FormatExecutionPlan(plan), HasSubstr("ring of 2 slots of 1/4 layer (parts run one at a time)"));
  plan.ring_sections = 5;
  EXPECT_FALSE(plan.parts_one_at_a_time());
  plan.micro_batches = 3;
  EXPECT_TRUE(ValidatePlan(plan, spec).ok());
  plan.layer_parts = 1;
  plan.ring_sections = 1;
  ExpectInvalidNaming(ValidatePlan(plan, spec), "ring_sections = 1");

  plan = GoodGpuPlan();
  plan.layer_parts = 9;  // more parts than the 8 experts
  plan.ring_sections = 10;
  ExpectInvalidNaming(ValidatePlan(plan, spec), "layer_parts");

  plan = GoodGpuPlan();
  plan.expert_tiers.pop_back();
  ExpectInvalidNaming(ValidatePlan(plan, spec), "expert_tiers");
  plan.expert_tiers = {};
  ExpectInvalidNaming(ValidatePlan(plan, spec), "expert_tiers");
  plan.expert_tiers = std::vector<ExpertTier>(5, ExpertTier::kGpu);
  ExpectInvalidNaming(ValidatePlan(plan, spec), "expert_tiers");

  plan = GoodGpuPlan();
  plan.expert_tiers[2] = ExpertTier::kGpu;  // layer 2 is dense
  ExpectInvalidNaming(ValidatePlan(plan, spec), "expert_tiers[2]");
  plan.expert_tiers[2] = ExpertTier::kPinnedHost;
  ExpectInvalidNaming(ValidatePlan(plan, spec), "expert_tiers[2]");
  plan = GoodGpuPlan();
  plan.expert_tiers[3] = ExpertTier::kNone;  // layer 3 is MoE
  ExpectInvalidNaming(ValidatePlan(plan, spec), "expert_tiers[3]");

  plan = GoodGpuPlan();
  plan.kv.dtype = io::DType::kF32;
  ExpectInvalidNaming(ValidatePlan(plan, spec), "kv.dtype");
  plan.device = PlanDevice::kCpu;  // f32 is the CPU's to choose
  EXPECT_TRUE(ValidatePlan(plan, spec).ok());
  plan.kv.dtype = io::DType::kF16;
  ExpectInvalidNaming(ValidatePlan(plan, spec), "kv.dtype");

  plan = GoodGpuPlan();
  plan.kv.gpu_fraction = 1.5;
  ExpectInvalidNaming(ValidatePlan(plan, spec), "kv.gpu_fraction");
  plan.kv.gpu_fraction = -0.1;
  ExpectInvalidNaming(ValidatePlan(plan, spec), "kv.gpu_fraction");
  plan.kv.gpu_fraction = 1.0;
  EXPECT_TRUE(ValidatePlan(plan, spec).ok());

  plan = GoodGpuPlan();
  plan.kv.block_tokens = 0;
  ExpectInvalidNaming(ValidatePlan(plan, spec), "kv.block_tokens");
  plan = GoodGpuPlan();
  plan.kv.host_bytes = -1;
  ExpectInvalidNaming(ValidatePlan(plan, spec), "host_bytes");
}

// ---- KV sizes ----

TEST(KvBytes, WholeBlocksHandComputed) {
  // 4 layers x K and V x 2 heads x 128 = 2048 elements a token.
  const ModelSpec spec = SpecOf("MMDM");
  EXPECT_EQ(KvBytesPerToken(spec, io::DType::kBF16), 4096);
  EXPECT_EQ(KvBytesPerToken(spec, io::DType::kF32), 8192);
  // e4m3: a byte an element, plus an f32 scale per kv head of each K and V row (4 layers x 2 x 2 heads x 4).
  EXPECT_EQ(KvBytesPerToken(spec, io::DType::kF8E4M3), 2048 + 4 * 2 * 2 * 4);
  KvPlacement kv;  // blocks of 16, bf16
  // 100 tokens: 7 blocks = 112 tokens; 3 sequences.
  EXPECT_EQ(KvBytesForSequences(spec, kv, 3, 100), 3 * 112 * 4096);
  EXPECT_EQ(KvBytesForSequences(spec, kv, 3, 100), 1376256);
  EXPECT_EQ(KvBytesForSequences(spec, kv, 1, 64), 64 * 4096);  // exactly 4 blocks
  EXPECT_EQ(KvBytesForSequences(spec, kv, 1, 65), 80 * 4096);
  EXPECT_EQ(KvBytesForSequences(spec, kv, 1, 1), 16 * 4096);
  EXPECT_EQ(KvBytesForSequences(spec, kv, 0, 100), 0);
  kv.block_tokens = 32;
  EXPECT_EQ(KvBytesForSequences(spec, kv, 3, 100), 3 * 128 * 4096);
  kv.dtype = io::DType::kF32;
  EXPECT_EQ(KvBytesForSequences(spec, kv, 3, 100), 3 * 128 * 8192);
  // Large enough to need 64-bit arithmetic: 4096 sequences of 32768 tokens in f32 = 1 TiB.
  kv.block_tokens = 16;
  EXPECT_EQ(KvBytesForSequences(spec, kv, 4096, 32768), int64_t{4096} * 32768 * 8192);
}

// ---- Text ----

TEST(FormatExecutionPlan, MentionsTheDecisions) {
  const std::string gpu = FormatExecutionPlan(GoodGpuPlan());
  EXPECT_THAT(gpu, HasSubstr("gpu: 48 sequences in flight")) << gpu;
  EXPECT_THAT(gpu, HasSubstr("prefill chunk 464 (step 512 tokens)")) << gpu;
  EXPECT_THAT(gpu, HasSubstr("3 micro-batches, ring of 5 slots of 1/4 layer")) << gpu;
  EXPECT_THAT(gpu, HasSubstr("experts PG-P (1 on the GPU, 2 streamed)")) << gpu;
  EXPECT_THAT(gpu, HasSubstr("routed copies")) << gpu;
  EXPECT_THAT(gpu, HasSubstr("prompts' attention on the CPU")) << gpu;
  EXPECT_THAT(gpu, HasSubstr("KV BF16 in blocks of 32")) << gpu;
  EXPECT_THAT(gpu, HasSubstr("GPU cap 6.00 GiB")) << gpu;

  const std::string cpu = FormatExecutionPlan(CpuPlan());
  EXPECT_THAT(cpu, HasSubstr("cpu: 7 sequences in flight, prefill chunk 93 (step 100 tokens)")) << cpu;
  EXPECT_THAT(cpu, HasSubstr("KV F32 in blocks of 16, host 5.00 GiB")) << cpu;
  EXPECT_THAT(cpu, testing::Not(HasSubstr("micro-batch"))) << cpu;
}

}  // namespace
}  // namespace ringmoe::planner
