// The shared plan flags (runtime/frontend/plan_flags.h) as CLI11 parses them: each flag lands in its pin or
// budget, no flag pins nothing, errors name the flag, and the spellings issue 16 replaced are unknown.
#include "runtime/frontend/plan_flags.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "CLI/CLI.hpp"

namespace ringmoe {
namespace {

using testing::HasSubstr;

constexpr int64_t kGiB = int64_t{1} << 30;

// Parses `args` (without the program name) into fresh PlanFlags. Throws what CLI11 throws.
PlanFlags Parse(const std::vector<std::string>& args) {
  CLI::App app{"plan flags test"};
  PlanFlags flags;
  AddPlanFlags(app, &flags);
  std::vector<const char*> argv = {"ringmoe"};
  for (const std::string& arg : args) argv.push_back(arg.c_str());
  app.parse(static_cast<int>(argv.size()), argv.data());
  return flags;
}

planner::PlanPins Pins(const std::vector<std::string>& args) {
  absl::StatusOr<planner::PlanPins> pins = PinsFromFlags(Parse(args));
  EXPECT_TRUE(pins.ok()) << pins.status();
  return pins.ok() ? *pins : planner::PlanPins{};
}

planner::Budgets BudgetsOf(const std::vector<std::string>& args) {
  absl::StatusOr<planner::Budgets> budgets = BudgetsFromFlags(Parse(args));
  EXPECT_TRUE(budgets.ok()) << budgets.status();
  return budgets.ok() ? *budgets : planner::Budgets{};
}

// Exactly one pin is set, and it is `field` with `value`.
template <typename T>
void ExpectOnlyPin(const planner::PlanPins& pins, std::optional<T> planner::PlanPins::*field, T value) {
  ASSERT_TRUE((pins.*field).has_value());
  EXPECT_EQ(*(pins.*field), value);
  planner::PlanPins rest = pins;
  rest.*field = std::nullopt;
  EXPECT_FALSE(rest.any()) << "another pin is set too";
}

TEST(PlanFlags, NoFlagsPinNothing) {
  const PlanFlags flags = Parse({});
  EXPECT_EQ(flags.device, "auto");
  absl::StatusOr<planner::PlanPins> pins = PinsFromFlags(flags);
  ASSERT_TRUE(pins.ok()) << pins.status();
  EXPECT_FALSE(pins->any());
  absl::StatusOr<planner::Budgets> budgets = BudgetsFromFlags(flags);
  ASSERT_TRUE(budgets.ok()) << budgets.status();
  EXPECT_EQ(budgets->gpu_bytes, 0);
  EXPECT_EQ(budgets->cpu_bytes, 0);
  // Flags that are not pins pin nothing either.
  EXPECT_FALSE(Pins({"--device", "cpu", "--hardware", "/tmp/h.json", "--routed-copies", "auto"}).any());
}

TEST(PlanFlags, EachFlagLandsInItsPin) {
  using P = planner::PlanPins;
  ExpectOnlyPin<int>(Pins({"--max-batch", "17"}), &P::batch, 17);
  ExpectOnlyPin<int>(Pins({"--prefill-chunk", "40"}), &P::prefill_chunk, 40);
  ExpectOnlyPin<int>(Pins({"--micro-batches", "3"}), &P::micro_batches, 3);
  ExpectOnlyPin<int>(Pins({"--resident-moe-layers", "5"}), &P::max_resident_moe_layers, 5);
  ExpectOnlyPin<int>(Pins({"--resident-moe-layers", "0"}), &P::max_resident_moe_layers, 0);
  ExpectOnlyPin<int>(Pins({"--layer-parts", "4"}), &P::layer_parts, 4);
  ExpectOnlyPin<int>(Pins({"--ring-slots", "6"}), &P::ring_sections, 6);
  ExpectOnlyPin<double>(Pins({"--kv-gpu-fraction", "0.35"}), &P::kv_gpu_fraction, 0.35);
  ExpectOnlyPin<double>(Pins({"--kv-gpu-fraction", "0"}), &P::kv_gpu_fraction, 0.0);
  ExpectOnlyPin<bool>(Pins({"--routed-copies", "on"}), &P::routed_expert_copies, true);
  ExpectOnlyPin<bool>(Pins({"--routed-copies", "off"}), &P::routed_expert_copies, false);
  ExpectOnlyPin<bool>(Pins({"--cpu-prefill-attention"}), &P::prefill_attention_on_gpu, false);
  ExpectOnlyPin<int64_t>(Pins({"--kv-cache", "1GiB"}), &P::kv_host_bytes, kGiB);
  ExpectOnlyPin<int64_t>(Pins({"--kv-cache", "512MiB"}), &P::kv_host_bytes, 512 << 20);
  ExpectOnlyPin<io::DType>(Pins({"--expert-dtype", "fp8"}), &P::expert_dtype, io::DType::kF8E4M3);
  ExpectOnlyPin<io::DType>(Pins({"--expert-dtype", "bf16"}), &P::expert_dtype, io::DType::kBF16);
  EXPECT_FALSE(Pins({"--expert-dtype", "auto"}).any());
  EXPECT_FALSE(Pins({"--kv-dtype", "auto"}).any());
  // An fp8 cache lives in host memory: it pins the GPU's share to 0 as well.
  const planner::PlanPins fp8_kv = Pins({"--kv-dtype", "fp8"});
  EXPECT_EQ(fp8_kv.kv_dtype, io::DType::kF8E4M3);
  EXPECT_EQ(fp8_kv.kv_gpu_fraction, 0.0);
  EXPECT_EQ(Pins({"--kv-dtype", "fp8", "--kv-gpu-fraction", "0"}).kv_dtype, io::DType::kF8E4M3);
  // The '=' spelling too.
  ExpectOnlyPin<int>(Pins({"--max-batch=9"}), &P::batch, 9);
}

TEST(PlanFlags, AllPinsAndBudgetsTogether) {
  // clang-format off
  const std::vector<std::string> args = {
      "--device", "gpu", "--max-batch", "12", "--prefill-chunk", "500", "--micro-batches", "2",
      "--layer-parts", "2", "--ring-slots", "4", "--resident-moe-layers", "7", "--kv-gpu-fraction", "0.5",
      "--routed-copies", "off", "--cpu-prefill-attention", "--kv-cache", "3GiB", "--gpu-mem", "6GiB",
      "--cpu-mem", "100GiB"};
  // clang-format on
  const PlanFlags flags = Parse(args);
  EXPECT_EQ(flags.device, "gpu");
  const planner::PlanPins pins = Pins(args);
  EXPECT_EQ(pins.batch, 12);
  EXPECT_EQ(pins.prefill_chunk, 500);
  EXPECT_EQ(pins.micro_batches, 2);
  EXPECT_EQ(pins.layer_parts, 2);
  EXPECT_EQ(pins.ring_sections, 4);
  EXPECT_EQ(pins.max_resident_moe_layers, 7);
  EXPECT_EQ(pins.kv_gpu_fraction, 0.5);
  EXPECT_EQ(pins.routed_expert_copies, false);
  EXPECT_EQ(pins.prefill_attention_on_gpu, false);
  EXPECT_EQ(pins.kv_host_bytes, 3 * kGiB);
  const planner::Budgets budgets = BudgetsOf(args);
  EXPECT_EQ(budgets.gpu_bytes, 6 * kGiB);
  EXPECT_EQ(budgets.cpu_bytes, 100 * kGiB);
}

TEST(PlanFlags, MemoryFlagsSetTheBudgets) {
  planner::Budgets gpu = BudgetsOf({"--gpu-mem", "6GiB"});
  EXPECT_EQ(gpu.gpu_bytes, 6 * kGiB);
  EXPECT_EQ(gpu.cpu_bytes, 0);
  planner::Budgets cpu = BudgetsOf({"--cpu-mem", "100GiB"});
  EXPECT_EQ(cpu.gpu_bytes, 0);
  EXPECT_EQ(cpu.cpu_bytes, 100 * kGiB);
  EXPECT_EQ(BudgetsOf({"--gpu-mem", "1.5GB"}).gpu_bytes, 1500000000);
  EXPECT_EQ(BudgetsOf({"--cpu-mem", "4096"}).cpu_bytes, 4096);
  // Budgets are not pins, and pins are not budgets.
  EXPECT_FALSE(Pins({"--gpu-mem", "6GiB", "--cpu-mem", "100GiB"}).any());
  planner::Budgets none = BudgetsOf({"--kv-cache", "1GiB", "--max-batch", "4"});
  EXPECT_EQ(none.gpu_bytes, 0);
  EXPECT_EQ(none.cpu_bytes, 0);
}

void ExpectPinsErrorNaming(const std::vector<std::string>& args, const std::vector<std::string>& words) {
  absl::StatusOr<planner::PlanPins> pins = PinsFromFlags(Parse(args));
  ASSERT_FALSE(pins.ok()) << args[0];
  EXPECT_EQ(pins.status().code(), absl::StatusCode::kInvalidArgument);
  for (const std::string& word : words) EXPECT_THAT(std::string(pins.status().message()), HasSubstr(word));
}

void ExpectBudgetsErrorNaming(const std::vector<std::string>& args, const std::vector<std::string>& words) {
  absl::StatusOr<planner::Budgets> budgets = BudgetsFromFlags(Parse(args));
  ASSERT_FALSE(budgets.ok()) << args[0];
  EXPECT_EQ(budgets.status().code(), absl::StatusCode::kInvalidArgument);
  for (const std::string& word : words) EXPECT_THAT(std::string(budgets.status().message()), HasSubstr(word));
}

TEST(PlanFlags, ErrorsNameTheFlag) {
  ExpectPinsErrorNaming({"--max-batch", "0"}, {"--max-batch"});
  ExpectPinsErrorNaming({"--max-batch=-2"}, {"--max-batch"});
  ExpectPinsErrorNaming({"--max-batch", "-2"}, {"--max-batch"});
  ExpectPinsErrorNaming({"--prefill-chunk", "0"}, {"--prefill-chunk"});
  ExpectPinsErrorNaming({"--micro-batches", "0"}, {"--micro-batches"});
  ExpectPinsErrorNaming({"--layer-parts", "0"}, {"--layer-parts"});
  ExpectPinsErrorNaming({"--ring-slots", "0"}, {"--ring-slots"});
  ExpectPinsErrorNaming({"--resident-moe-layers=-1"}, {"--resident-moe-layers"});
  ExpectPinsErrorNaming({"--routed-copies", "maybe"}, {"--routed-copies", "maybe"});
  ExpectPinsErrorNaming({"--kv-cache", "lots"}, {"--kv-cache", "lots"});
  ExpectPinsErrorNaming({"--kv-cache", "0"}, {"--kv-cache"});
  ExpectPinsErrorNaming({"--expert-dtype", "int4"}, {"--expert-dtype", "int4"});
  ExpectPinsErrorNaming({"--kv-dtype", "e5m2"}, {"--kv-dtype", "e5m2"});
  ExpectPinsErrorNaming({"--kv-dtype", "fp8", "--kv-gpu-fraction", "0.5"},
                        {"--kv-dtype fp8", "--kv-gpu-fraction"});
  ExpectBudgetsErrorNaming({"--gpu-mem=-1"}, {"--gpu-mem", "-1"});
  ExpectBudgetsErrorNaming({"--gpu-mem", "-1"}, {"--gpu-mem", "-1"});
  ExpectBudgetsErrorNaming({"--gpu-mem", "lots"}, {"--gpu-mem", "lots"});
  ExpectBudgetsErrorNaming({"--gpu-mem", "0"}, {"--gpu-mem"});
  ExpectBudgetsErrorNaming({"--cpu-mem", "6x"}, {"--cpu-mem", "6x"});
  // A good flag beside a bad one: the bad one is named.
  ExpectBudgetsErrorNaming({"--gpu-mem", "6GiB", "--cpu-mem", "lots"}, {"--cpu-mem", "lots"});
}

// --gpus says what the server has (not a plan choice), plans it, and commands that execute refuse it above 1.
TEST(PlanFlags, GpusPlansSeveralAndExecutionRefusesThem) {
  const planner::PlanPins pins = Pins({"--gpus", "4"});
  EXPECT_EQ(pins.gpus, 4);
  EXPECT_FALSE(pins.any());
  EXPECT_EQ(planner::ApplyPins(planner::ExecutionPlan{}, pins).gpus, 4);
  EXPECT_TRUE(RefuseMultiGpuExecution(Parse({})).ok());
  EXPECT_TRUE(RefuseMultiGpuExecution(Parse({"--gpus", "1"})).ok());
  const absl::Status refused = RefuseMultiGpuExecution(Parse({"--gpus", "4"}));
  EXPECT_TRUE(absl::IsUnimplemented(refused)) << refused;
  EXPECT_NE(refused.message().find("--gpus 4: multi-GPU execution is not implemented; plan only"),
            std::string::npos)
      << refused;
  ExpectPinsErrorNaming({"--gpus", "0"}, {"--gpus"});
  ExpectPinsErrorNaming({"--gpus", "2", "--kv-gpu-fraction", "0.5"}, {"--gpus", "--kv-gpu-fraction"});
}

TEST(PlanFlags, Cli11RejectsMalformedValues) {
  EXPECT_THROW(Parse({"--max-batch", "many"}), CLI::ParseError);
  EXPECT_THROW(Parse({"--kv-gpu-fraction", "1.5"}), CLI::ParseError);  // CLI::Range(0, 1)
  EXPECT_THROW(Parse({"--kv-gpu-fraction", "-0.5"}), CLI::ParseError);
}

TEST(PlanFlags, DroppedSpellingsAreUnknown) {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"--batch", "4"}, {"--max-step-tokens", "64"}, {"--resident-layers", "2"}}) {
    try {
      Parse(args);
      ADD_FAILURE() << args[0] << " was accepted";
    } catch (const CLI::ExtrasError& error) {
      EXPECT_THAT(std::string(error.what()), HasSubstr(args[0])) << args[0];
    } catch (const CLI::ParseError& error) {
      ADD_FAILURE() << args[0] << ": expected an unknown-option error, got " << error.get_name() << ": "
                    << error.what();
    }
  }
}

}  // namespace
}  // namespace ringmoe
