// Hardware profiles: JSON round trip, the committed H200 profile in exactly the probe's format, errors that
// name the file and field, and a quick probe of this machine.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

#include "planner/hardware_profile.h"
#include "planner/probe/probe.h"
#include "planner_test_util.h"

namespace ringmoe::planner {
namespace {

using testing::ReadSourceFile;

TEST(PlannerProfile, H200ProfileLoadsInTheProbeFormat) {
  std::string text = ReadSourceFile("bench/h200_profile.json");
  absl::StatusOr<HardwareProfile> profile = ProfileFromJson(text, "bench/h200_profile.json");
  ASSERT_TRUE(profile.ok()) << profile.status();
  EXPECT_EQ(profile->source,
            "ringmoe probe on the H200 box, 2026-12-02 run 8 (dram_contention transcribed from "
            "shared/hardware/h200-box.md)");
  ASSERT_TRUE(profile->gpu.has_value());
  EXPECT_EQ(profile->gpu->name, "NVIDIA H200");
  EXPECT_NEAR(profile->gpu->h2d_gbps, 55.42, 0.01);
  EXPECT_NEAR(profile->gpu->d2h_gbps, 55.33, 0.01);
  EXPECT_NEAR(profile->gpu->prefill_attention_tflops, 29.65, 0.01);
  ASSERT_EQ(profile->gpu->grouped_gemm_bf16.size(), 6u);
  EXPECT_NEAR(profile->gpu->grouped_gemm_bf16[5].tflops, 257.6, 0.1);
  EXPECT_NEAR(profile->cpu.dram_read_gbps, 78.42, 0.01);
  EXPECT_NEAR(profile->cpu.attention.kv_gbps, 92.71, 0.01);  // at 32 query heads over 8 KV heads
  EXPECT_EQ(profile->cpu.attention.bytes_kv_heads, 8);
  EXPECT_NEAR(profile->cpu.attention.gflops, 555.42, 0.01);  // at 32 over 4
  EXPECT_EQ(profile->cpu.attention.kv_heads, 4);
  EXPECT_NEAR(profile->cpu.attention.prefill_gflops, 970.60, 0.01);
  EXPECT_NEAR(profile->gpu->attention_kv_gbps, 377.33, 0.01);  // the GPU's paged attention
  ASSERT_TRUE(profile->contention.has_value());
  EXPECT_DOUBLE_EQ(profile->contention->cpu_shared_gbps, 63.9);
  ASSERT_TRUE(profile->ssd.has_value());
  EXPECT_NEAR(profile->ssd->best_gbps(), 1.871, 0.001);
  EXPECT_EQ(profile->topology.cores, 16);
  // Written back by the probe's own writer it is byte for byte the committed file.
  EXPECT_EQ(ProfileToJson(*profile), text);
}

TEST(PlannerProfile, RoundTripWithoutGpuOrSsd) {
  HardwareProfile profile = testing::InstantMachine();
  profile.gpu.reset();
  profile.gpu_absent_reason = "no GPU here";
  profile.contention.reset();
  profile.notes = {"a note"};
  std::string path = std::string(RINGMOE_BINARY_DIR) + "/planner_profile_test.json";
  ASSERT_TRUE(SaveProfile(profile, path).ok());
  absl::StatusOr<HardwareProfile> loaded = LoadProfile(path);
  std::filesystem::remove(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_FALSE(loaded->gpu.has_value());
  EXPECT_EQ(loaded->gpu_absent_reason, "no GPU here");
  EXPECT_FALSE(loaded->ssd.has_value());
  EXPECT_EQ(loaded->ssd_absent_reason, "test machine has no SSD");
  EXPECT_FALSE(loaded->contention.has_value());
  EXPECT_EQ(ProfileToJson(*loaded), ProfileToJson(profile));
}

TEST(PlannerProfile, SsdDirectFlagRoundTripsAndOldProfilesReadAsDirect) {
  absl::StatusOr<HardwareProfile> old =
      LoadProfile(std::string(RINGMOE_SOURCE_DIR) + "/bench/h200_profile.json");
  ASSERT_TRUE(old.ok()) << old.status();
  ASSERT_TRUE(old->ssd.has_value());
  EXPECT_TRUE(old->ssd->direct);  // Written before the field existed.
  HardwareProfile buffered = *old;
  buffered.ssd->direct = false;
  const std::string text = ProfileToJson(buffered);
  EXPECT_NE(text.find("\"direct\": false"), std::string::npos);
  absl::StatusOr<HardwareProfile> reread = ProfileFromJson(text, "buffered.json");
  ASSERT_TRUE(reread.ok()) << reread.status();
  EXPECT_FALSE(reread->ssd->direct);
  EXPECT_EQ(ProfileToJson(*reread), text);
}

TEST(PlannerProfile, SsdSustainedRateIsWhatThePlannerPricesAndRoundTrips) {
  absl::StatusOr<HardwareProfile> old =
      LoadProfile(std::string(RINGMOE_SOURCE_DIR) + "/bench/h200_profile.json");
  ASSERT_TRUE(old.ok()) << old.status();
  EXPECT_EQ(old->ssd->sustained_gbps, 0);  // Probed before it was measured: the sweep's best is used.
  EXPECT_DOUBLE_EQ(old->ssd->planning_gbps(), old->ssd->best_gbps());
  HardwareProfile sustained = *old;
  sustained.ssd->sustained_gbps = 1.93;
  EXPECT_DOUBLE_EQ(sustained.ssd->planning_gbps(), 1.93);
  absl::StatusOr<HardwareProfile> reread = ProfileFromJson(ProfileToJson(sustained), "sustained.json");
  ASSERT_TRUE(reread.ok()) << reread.status();
  EXPECT_DOUBLE_EQ(reread->ssd->sustained_gbps, 1.93);
}

TEST(PlannerProfile, SsdDrivesRoundTripAndOldProfilesHaveNone) {
  absl::StatusOr<HardwareProfile> old =
      LoadProfile(std::string(RINGMOE_SOURCE_DIR) + "/bench/h200_profile.json");
  ASSERT_TRUE(old.ok()) << old.status();
  EXPECT_TRUE(old->ssd->drives.empty());
  HardwareProfile drives = *old;
  drives.ssd->drives = {{"/nvme0/cache", 2049, 1.9, true}, {"/nvme1/cache", 2050, 2.1, false}};
  drives.ssd->striped_gbps = 9.9;  // Per run, never written.
  const std::string text = ProfileToJson(drives);
  EXPECT_EQ(text.find("striped"), std::string::npos);
  absl::StatusOr<HardwareProfile> reread = ProfileFromJson(text, "drives.json");
  ASSERT_TRUE(reread.ok()) << reread.status();
  ASSERT_EQ(reread->ssd->drives.size(), 2u);
  EXPECT_EQ(reread->ssd->drives[1].path, "/nvme1/cache");
  EXPECT_EQ(reread->ssd->drives[1].device, 2050u);
  EXPECT_DOUBLE_EQ(reread->ssd->drives[1].gbps, 2.1);
  EXPECT_FALSE(reread->ssd->drives[1].direct);
  EXPECT_EQ(reread->ssd->striped_gbps, 0);
  EXPECT_EQ(ProfileToJson(*reread), text);
}

// --ssd-dir: the planner prices the SSD tier at the sum of the drives' probed rates, each device once.
TEST(PlannerProfile, StripedSsdRateSumsTheDrivesAndCountsADeviceOnce) {
  const std::string base = std::string(RINGMOE_BINARY_DIR) + "/planner_profile_stripe";
  std::filesystem::remove_all(base);
  for (const char* name : {"a", "b", "c", "d"}) std::filesystem::create_directories(base + "/" + name);
  absl::StatusOr<HardwareProfile> loaded =
      LoadProfile(std::string(RINGMOE_SOURCE_DIR) + "/bench/h200_profile.json");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  HardwareProfile profile = *loaded;
  profile.ssd->path = "/nonexistent-model-dir";
  profile.ssd->sustained_gbps = 1.5;
  // Directories a and b as if on two drives (the probe recorded devices 1 and 2; matched by path).
  profile.ssd->drives = {{base + "/a", 1, 2.0}, {base + "/b", 2, 3.0}};
  std::vector<std::string> warnings;
  ASSERT_TRUE(StripeSsdOverDirs({base + "/a", base + "/b"}, &profile, &warnings).ok());
  // a and b are really on one device here (the build folder's): the second is counted once, with a warning.
  EXPECT_DOUBLE_EQ(profile.ssd->striped_gbps, 2.0);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("same device"), std::string::npos) << warnings[0];
  EXPECT_DOUBLE_EQ(profile.ssd->planning_gbps(), 2.0);

  // One directory: its own probed rate. An unprobed one: the slowest probed rate, with a warning.
  warnings.clear();
  ASSERT_TRUE(StripeSsdOverDirs({base + "/b"}, &profile, &warnings).ok());
  EXPECT_DOUBLE_EQ(profile.ssd->striped_gbps, 3.0);
  EXPECT_TRUE(warnings.empty());
  profile.ssd->drives.clear();
  ASSERT_TRUE(StripeSsdOverDirs({base + "/c"}, &profile, &warnings).ok());
  EXPECT_DOUBLE_EQ(profile.ssd->striped_gbps, 1.5);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("not probed"), std::string::npos) << warnings[0];

  // Drives matched by device when the path differs: the sum over distinct devices.
  struct stat info {};
  ASSERT_EQ(::stat(base.c_str(), &info), 0);
  profile.ssd->drives = {{"/elsewhere", static_cast<uint64_t>(info.st_dev), 2.5}};
  warnings.clear();
  ASSERT_TRUE(StripeSsdOverDirs({base + "/d"}, &profile, &warnings).ok());
  EXPECT_DOUBLE_EQ(profile.ssd->striped_gbps, 2.5);
  EXPECT_FALSE(StripeSsdOverDirs({base + "/missing"}, &profile, &warnings).ok());
  std::filesystem::remove_all(base);
}

// The sum itself, over drives the test cannot create: a pure check of the arithmetic through planning_gbps.
TEST(PlannerProfile, PlanningRatePrefersTheStripedSum) {
  SsdProfile ssd{"/ssd", {{32, 4 << 20, 2.0}}};
  ssd.sustained_gbps = 1.8;
  EXPECT_DOUBLE_EQ(ssd.planning_gbps(), 1.8);
  ssd.striped_gbps = 7.2;
  EXPECT_DOUBLE_EQ(ssd.planning_gbps(), 7.2);
}

TEST(PlannerProfile, ErrorsNameTheFileAndField) {
  std::string text = ReadSourceFile("bench/h200_profile.json");
  std::string broken = text;
  broken.replace(broken.find("\"dram_read_gbps\""), 16, "\"dram_read_gbpz\"");
  absl::StatusOr<HardwareProfile> profile = ProfileFromJson(broken, "mine.json");
  ASSERT_FALSE(profile.ok());
  EXPECT_NE(profile.status().message().find("mine.json"), std::string::npos) << profile.status();
  EXPECT_NE(profile.status().message().find("cpu.dram_read_gbps"), std::string::npos) << profile.status();

  EXPECT_FALSE(ProfileFromJson("[1, 2]", "x.json").ok());
  EXPECT_FALSE(ProfileFromJson("{\"format\": \"something else\", \"version\": 1}", "x.json").ok());
  absl::StatusOr<HardwareProfile> missing = LoadProfile("/nonexistent/profile.json");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("/nonexistent/profile.json"), std::string::npos);
}

TEST(PlannerProfile, QuickProbeOfThisMachine) {
  ProbeOptions options;
  options.quick = true;
  options.threads = 2;
  options.ssd_dir = RINGMOE_BINARY_DIR;
  absl::StatusOr<HardwareProfile> profile = ProbeMachine(options);
  ASSERT_TRUE(profile.ok()) << profile.status();
  EXPECT_GE(profile->topology.cores, 1);
  EXPECT_GT(profile->topology.memory_bytes, 0);
  EXPECT_FALSE(profile->topology.numa_nodes.empty());
  EXPECT_GT(profile->cpu.dram_read_gbps, 0.1);
  EXPECT_GT(profile->cpu.attention.kv_gbps, 0.01);
  EXPECT_GT(profile->cpu.attention.gflops, 0.01);
  ASSERT_FALSE(profile->cpu.matmul_f32.empty());
  EXPECT_GT(profile->cpu.matmul_f32.back().tflops, 0);
  // A GPU section, or the reason there is none; the same for the SSD.
  EXPECT_TRUE(profile->gpu.has_value() || !profile->gpu_absent_reason.empty());
  EXPECT_TRUE(profile->ssd.has_value() || !profile->ssd_absent_reason.empty());
  // No scratch file is left behind.
  for (const auto& entry : std::filesystem::directory_iterator(RINGMOE_BINARY_DIR)) {
    EXPECT_EQ(entry.path().filename().string().rfind(".ringmoe-probe-", 0), std::string::npos);
  }
  // What it measured is a valid profile.
  absl::StatusOr<HardwareProfile> reread = ProfileFromJson(ProfileToJson(*profile), "probe");
  EXPECT_TRUE(reread.ok()) << reread.status();
}

}  // namespace
}  // namespace ringmoe::planner
