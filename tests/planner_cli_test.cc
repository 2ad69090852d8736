// `ringmoe plan` and `ringmoe probe` as a user runs them (needs the `ringmoe` target built, as `ninja` does).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "nlohmann/json.hpp"
#include "planner/hardware_profile.h"

namespace {

namespace fs = std::filesystem;

const std::string kBinary = std::string(RINGMOE_BINARY_DIR) + "/ringmoe";
const std::string kSource = RINGMOE_SOURCE_DIR;

struct Output {
  int exit_code;
  std::string out, err;
};

std::string Slurp(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

class PlannerCliTest : public testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fs::exists(kBinary)) << kBinary << " is missing: build the ringmoe target first";
    dir_ = fs::temp_directory_path() / ("ringmoe_planner_cli_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  Output Run(const std::string& arguments) {
    // A private cache folder: the test never reads or writes the user's probe cache.
    std::string command = "XDG_CACHE_HOME=" + (dir_ / "cache").string() + " " + kBinary + " " + arguments +
                          " > " + (dir_ / "out.txt").string() + " 2> " + (dir_ / "err.txt").string();
    int status = std::system(command.c_str());
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, Slurp(dir_ / "out.txt"), Slurp(dir_ / "err.txt")};
  }
  fs::path dir_;
};

TEST_F(PlannerCliTest, PlanOnTheH200Profile) {
  fs::path json_path = dir_ / "report.json";
  Output run =
      Run("plan --model " + kSource + "/tests/data/configs/qwen3-30b-a3b.json --layers 16 --hardware " +
          kSource + "/bench/h200_profile.json --gpu-mem 6GiB --prompt-len 512 --gen-len 256 " +
          "--num-requests 4096 --report-json " + json_path.string());
  ASSERT_EQ(run.exit_code, 0) << run.err;
  for (const char* expected :
       {"16 of 48 layers", "NVIDIA H200", "memory plan", "bottleneck", "end-to-end", "+1 GiB GPU memory"}) {
    EXPECT_NE(run.out.find(expected), std::string::npos) << expected << "\n" << run.out;
  }
  nlohmann::json report = nlohmann::json::parse(Slurp(json_path));
  EXPECT_EQ(report["budgets"]["gpu_bytes"].get<int64_t>(), int64_t{6} << 30);
  EXPECT_GT(report["prediction"]["throughput"]["total_tokens_per_s"].get<double>(), 0);
  const double bound = report["prediction"]["hardware_bound"]["output_tokens_per_s"].get<double>();
  EXPECT_GE(bound, report["prediction"]["throughput"]["output_tokens_per_s"].get<double>());
  EXPECT_NE(run.out.find("hardware bound of this plan"), std::string::npos) << run.out;
}

TEST_F(PlannerCliTest, RingOfPartLayersCanBePinned) {
  // Mixtral-8x7B's 2.8 GB layers at 6 GiB: a pinned half-layer ring, as the report and its JSON say.
  fs::path json_path = dir_ / "report.json";
  Output run =
      Run("plan --model " + kSource + "/tests/data/configs/mixtral-8x7b.json --layers 4 --hardware " +
          kSource + "/bench/h200_profile.json --gpu-mem 6GiB --prompt-len 512 --gen-len 256 " +
          "--num-requests 512 --layer-parts 2 --no-what-if --report-json " + json_path.string());
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_NE(run.out.find("slots of 1/2 layer"), std::string::npos) << run.out;
  nlohmann::json report = nlohmann::json::parse(Slurp(json_path));
  EXPECT_EQ(report["prediction"]["plan"]["layer_parts"].get<int>(), 2);
  EXPECT_GE(report["prediction"]["plan"]["ring_sections"].get<int>(), 3);
  EXPECT_LE(report["prediction"]["memory"]["gpu_used"].get<int64_t>(), int64_t{6} << 30);
}

TEST_F(PlannerCliTest, UsageAndInputErrors) {
  std::string model = " --model " + kSource + "/tests/data/configs/mixtral-8x7b.json --hardware " + kSource +
                      "/bench/h200_profile.json";
  Output bad_size = Run("plan" + model + " --prompt-len 10 --gen-len 10 --num-requests 1 --gpu-mem 6x");
  EXPECT_EQ(bad_size.exit_code, 2);
  EXPECT_NE(bad_size.err.find("6x"), std::string::npos) << bad_size.err;
  Output no_workload = Run("plan" + model);
  EXPECT_EQ(no_workload.exit_code, 2);
  EXPECT_NE(no_workload.err.find("--prompt-len"), std::string::npos) << no_workload.err;
  Output missing =
      Run("plan --model " + (dir_ / "nowhere").string() + " --prompt-len 1 --gen-len 1 --num-requests 1");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("nowhere"), std::string::npos) << missing.err;
}

// Qwen3-30B-A3B at 6 GiB with 4 sequences: the plan copies only the routed experts (a decode step touches
// about a quarter of them), says so, and predicts more than with --routed-copies off; a pinned ring shape is
// the one planned.
TEST_F(PlannerCliTest, SmallBatchesCopyOnlyTheRoutedExperts) {
  std::string job = "plan --model " + kSource +
                    "/tests/data/configs/qwen3-30b-a3b.json --layers 16 --hardware " + kSource +
                    "/bench/h200_profile.json --gpu-mem 6GiB --prompt-len 128 --gen-len 64 " +
                    "--num-requests 4 --no-what-if";
  fs::path routed_json = dir_ / "routed.json", whole_json = dir_ / "whole.json";
  Output routed = Run(job + " --report-json " + routed_json.string());
  ASSERT_EQ(routed.exit_code, 0) << routed.err;
  EXPECT_NE(routed.out.find("copying only the routed experts"), std::string::npos) << routed.out;
  EXPECT_NE(routed.out.find("routed experts, fetched after routing"), std::string::npos) << routed.out;
  Output whole =
      Run(job + " --routed-copies off --layer-parts 2 --ring-slots 3 --report-json " + whole_json.string());
  ASSERT_EQ(whole.exit_code, 0) << whole.err;
  const size_t pinned = whole.out.find("plan (your choices pinned):");
  ASSERT_NE(pinned, std::string::npos) << whole.out;
  const std::string pinned_line = whole.out.substr(pinned, whole.out.find('\n', pinned) - pinned);
  EXPECT_EQ(pinned_line.find("copying only the routed experts"), std::string::npos) << pinned_line;
  EXPECT_NE(pinned_line.find("a ring of 3 slots of 1/2 layer"), std::string::npos) << pinned_line;
  // The report names the consequence: the unpinned plan copies only the routed experts.
  const size_t unpinned = whole.out.find("without your pins the planner would pick:");
  ASSERT_NE(unpinned, std::string::npos) << whole.out;
  EXPECT_NE(whole.out.find("copying only the routed experts", unpinned), std::string::npos) << whole.out;
  nlohmann::json with = nlohmann::json::parse(Slurp(routed_json));
  nlohmann::json without = nlohmann::json::parse(Slurp(whole_json));
  EXPECT_TRUE(with["prediction"]["plan"]["routed_expert_copies"].get<bool>());
  EXPECT_FALSE(without["prediction"]["plan"]["routed_expert_copies"].get<bool>());
  EXPECT_GT(with["prediction"]["throughput"]["output_tokens_per_s"].get<double>(),
            2 * without["prediction"]["throughput"]["output_tokens_per_s"].get<double>());
  Output bad = Run(job + " --routed-copies sometimes");
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("sometimes"), std::string::npos) << bad.err;
}

// Issue 24: `ringmoe plan --gpus 4` plans the experts split over four GPUs at --gpu-mem each and says that
// the profile probed one; `ringmoe run --gpus 4` refuses, naming the flag, since the engine runs one GPU.
TEST_F(PlannerCliTest, PlanForSeveralGpusAndRunRefusesThem) {
  const std::string job = " --model " + kSource + "/tests/data/configs/qwen3-30b-a3b.json --hardware " +
                          kSource +
                          "/bench/h200_profile.json --gpu-mem 16GiB --prompt-len 512 --gen-len 256 " +
                          "--num-requests 1024 --no-what-if";
  fs::path one_json = dir_ / "one.json", four_json = dir_ / "four.json";
  Output one = Run("plan" + job + " --report-json " + one_json.string());
  ASSERT_EQ(one.exit_code, 0) << one.err;
  EXPECT_EQ(one.out.find("GPU   x"), std::string::npos) << one.out;
  Output four = Run("plan" + job + " --gpus 4 --report-json " + four_json.string());
  ASSERT_EQ(four.exit_code, 0) << four.err;
  for (const char* expected :
       {"GPU   x4, each: budget 16.00 GiB", "4 GPUs (experts split)", "planned for  gpu",
        "the profile is a one-GPU probe: 4 GPUs like it", "not runnable yet"}) {
    EXPECT_NE(four.out.find(expected), std::string::npos) << expected << "\n" << four.out;
  }
  nlohmann::json single = nlohmann::json::parse(Slurp(one_json));
  nlohmann::json split = nlohmann::json::parse(Slurp(four_json));
  EXPECT_EQ(split["prediction"]["plan"]["gpus"].get<int>(), 4);
  EXPECT_LE(split["prediction"]["memory"]["gpu_used"].get<int64_t>(), int64_t{16} << 30);  // per GPU
  // Four GPUs' memory holds more of the experts and four links stream the rest.
  EXPECT_GT(split["prediction"]["memory"]["gpu_resident_experts"].get<int64_t>(),
            single["prediction"]["memory"]["gpu_resident_experts"].get<int64_t>());
  EXPECT_GT(split["prediction"]["throughput"]["output_tokens_per_s"].get<double>(),
            single["prediction"]["throughput"]["output_tokens_per_s"].get<double>());

  std::ofstream(dir_ / "in.jsonl") << R"({"custom_id": "a", "prompt": [1], "max_tokens": 1})"
                                   << "\n";
  Output run = Run("run --model " + kSource + "/tests/data/models/tiny-qwen3-moe --input " +
                   (dir_ / "in.jsonl").string() + " --output " + (dir_ / "out.jsonl").string() + " --gpus 4");
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find("--gpus 4: multi-GPU execution is not implemented; plan only"), std::string::npos)
      << run.err;
  EXPECT_FALSE(fs::exists(dir_ / "out.jsonl"));
  Output zero = Run("plan" + job + " --gpus 0");
  EXPECT_EQ(zero.exit_code, 2);
  EXPECT_NE(zero.err.find("--gpus must be at least 1"), std::string::npos) << zero.err;
}

TEST_F(PlannerCliTest, ProbeThenPlanWithoutAGpu) {
  fs::path profile_path = dir_ / "here.json";
  Output probe =
      Run("probe --quick --no-cache --threads 2 --dir " + dir_.string() + " --out " + profile_path.string());
  ASSERT_EQ(probe.exit_code, 0) << probe.err;
  absl::StatusOr<ringmoe::planner::HardwareProfile> profile =
      ringmoe::planner::LoadProfile(profile_path.string());
  ASSERT_TRUE(profile.ok()) << profile.status();
  if (profile->gpu.has_value()) GTEST_SKIP() << "this machine has a GPU: the GPU-less path is not exercised";

  std::string plan = "plan --model " + kSource +
                     "/tests/data/configs/qwen3-30b-a3b.json --layers 2 --hardware " + profile_path.string() +
                     " --prompt-len 64 --gen-len 16 --num-requests 8 --no-what-if";
  Output gpu = Run(plan + " --device gpu");
  EXPECT_EQ(gpu.exit_code, 1);
  EXPECT_NE(gpu.err.find("has no GPU"), std::string::npos) << gpu.err;
  Output cpu = Run(plan);  // --device auto picks the CPU
  ASSERT_EQ(cpu.exit_code, 0) << cpu.err;
  EXPECT_NE(cpu.out.find("device cpu"), std::string::npos) << cpu.out;
}

}  // namespace
