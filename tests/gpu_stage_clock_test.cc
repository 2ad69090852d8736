// The GPU stage clock (runtime/engine/gpu_stage_clock.h): stage times and the stream's idle gaps measured
// with events, and the engine's step log carrying them (EngineOptions::gpu_stage_times). Skips without a GPU
// but for the disabled clock, which must cost nothing anywhere.
#include "runtime/engine/gpu_stage_clock.h"

#include <chrono>
#include <fstream>
#include <numeric>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "io/model_spec.h"
#include "nlohmann/json.hpp"
#include "ringmoe/engine.h"
#include "tests/testing/golden_requests.h"
#include "tests/testing/gpu_test_macros.h"
#include "tests/testing/scratch_dir.h"

namespace ringmoe {
namespace {

TEST(GpuStageClockTest, DisabledItRecordsNothing) {
  GpuStageClock clock;
  EXPECT_FALSE(clock.enabled());
  EXPECT_TRUE(clock.Begin(GpuStage::kExperts).ok());
  EXPECT_TRUE(clock.End().ok());
  EXPECT_TRUE(clock.Collect().ok());
  EXPECT_EQ(clock.totals().total(), 0.0);
}

TEST(GpuStageClockTest, TimesStagesAndTheStreamsIdleBetweenThem) {
  SKIP_WITHOUT_GPU();
  gpu::DeviceArena arena(0);
  auto stream = gpu::Stream::Create();
  ASSERT_TRUE(stream.ok()) << stream.status();
  constexpr int64_t kBytes = int64_t{256} << 20;
  auto buffer = arena.Allocate(kBytes, "stage clock test");
  ASSERT_TRUE(buffer.ok()) << buffer.status();
  GpuStageClock clock;
  clock.Enable(*stream);

  const auto start = std::chrono::steady_clock::now();
  ASSERT_OK(clock.Begin(GpuStage::kExperts));
  for (int i = 0; i < 8; ++i)
    ASSERT_OK(gpu::FillDeviceBytes(buffer->data(), static_cast<uint8_t>(i), kBytes, *stream));
  ASSERT_OK(clock.End());
  ASSERT_OK(stream->Synchronize());
  // The stream is empty now: the 40 ms before the next stage is queued are idle.
  std::this_thread::sleep_for(std::chrono::milliseconds(40));
  ASSERT_OK(clock.Begin(GpuStage::kSort));
  ASSERT_OK(gpu::FillDeviceBytes(buffer->data(), 1, kBytes, *stream));
  ASSERT_OK(clock.End());
  ASSERT_OK(clock.Begin(GpuStage::kRouter));  // left open, as by a step that failed midway: dropped
  ASSERT_OK(gpu::FillDeviceBytes(buffer->data(), 2, kBytes, *stream));
  ASSERT_OK(clock.Collect());
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  const GpuStageSeconds& totals = clock.totals();
  const double experts = totals.work[static_cast<int>(GpuStage::kExperts)];
  const double sort = totals.work[static_cast<int>(GpuStage::kSort)];
  EXPECT_GT(experts, 0.0);
  EXPECT_GT(sort, 0.0);
  EXPECT_GT(experts, 4 * sort);  // eight fills against one
  EXPECT_EQ(totals.work[static_cast<int>(GpuStage::kRouter)], 0.0);
  EXPECT_GE(totals.idle, 0.035);
  EXPECT_LE(totals.total(), wall);
  std::printf("8 fills of 256 MiB: %.3f ms, one: %.3f ms, idle %.1f ms\n", experts * 1e3, sort * 1e3,
              totals.idle * 1e3);

  // Collect starts over: nothing more is added until more is bracketed.
  const double before = totals.total();
  ASSERT_OK(clock.Collect());
  EXPECT_EQ(clock.totals().total(), before);
}

std::vector<std::vector<double>> ReadStepLog(const std::string& path) {
  std::vector<std::vector<double>> lines;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    std::vector<double>& values = lines.emplace_back();
    for (double value; fields >> value;) values.push_back(value);
  }
  return lines;
}

// The golden qwen3_moe on the GPU with every MoE layer streamed in two micro-batches: with the option each
// step-log line carries the ten GPU columns, the stages that must have run have time, and no step's GPU
// time exceeds the step's own; without it the lines keep their twelve columns.
TEST(GpuStageClockTest, StepLogCarriesTheGpusSecondsByStage) {
  SKIP_WITHOUT_GPU();
  const std::string dir = std::string(RINGMOE_SOURCE_DIR) + "/tests/data/golden/qwen3_moe";
  absl::StatusOr<ModelSpec> spec = LoadModelSpec(dir);
  ASSERT_TRUE(spec.ok()) << spec.status();
  const std::vector<Request> requests = testing::GoldenRequests(testing::ReadGolden(dir), 8);
  testing::ScratchDir scratch(RINGMOE_BINARY_DIR, "stage_clock_test");
  ASSERT_FALSE(scratch.path().empty());
  for (bool timed : {true, false}) {
    SCOPED_TRACE(timed ? "timed" : "not timed");
    EngineOptions options = testing::StreamedGpuOptions(*spec);
    options.step_log_path = scratch.path() + (timed ? "/timed.txt" : "/plain.txt");
    options.gpu_stage_times = timed;
    absl::StatusOr<Engine> engine = Engine::Open(dir, options);
    ASSERT_TRUE(engine.ok()) << engine.status();
    ASSERT_EQ(engine->info().device, "gpu");
    auto results = engine->Generate(requests);
    ASSERT_TRUE(results.ok()) << results.status();

    const std::vector<std::vector<double>> lines = ReadStepLog(options.step_log_path);
    ASSERT_FALSE(lines.empty());
    std::vector<double> sums(22, 0.0);
    for (const std::vector<double>& line : lines) {
      ASSERT_EQ(line.size(), timed ? 22u : 12u);
      if (!timed) continue;
      for (size_t i = 0; i < line.size(); ++i) sums[i] += line[i];
      const double gpu = std::accumulate(line.begin() + 12, line.end(), 0.0);
      EXPECT_LE(gpu, line[3] + 1e-3) << "step " << line[0];  // the GPU's seconds within the step's
    }
    if (!timed) continue;
    // Columns 12-21: upload, projections, attention, router, sort, experts, mlp, ring wait, logits, idle.
    EXPECT_GT(sums[12], 0.0);  // upload
    EXPECT_GT(sums[13], 0.0);  // projections
    EXPECT_GT(sums[14], 0.0);  // fresh prompts attend on the GPU
    EXPECT_GT(sums[15], 0.0);  // router
    EXPECT_GT(sums[16], 0.0);  // sort
    EXPECT_GT(sums[17], 0.0);  // expert GEMMs
    EXPECT_GT(sums[18], 0.0);  // decoder_sparse_step 2: every other layer is a dense MLP
    EXPECT_GE(sums[19], 0.0);  // ring waits
    EXPECT_GT(sums[20], 0.0);  // logits
    EXPECT_GT(sums[21], 0.0);  // the stream waits for the CPU's attention every layer
    std::printf(
        "%zu steps: GPU seconds upload %.4f proj %.4f attn %.4f router %.4f sort %.4f experts %.4f "
        "ring wait %.4f logits %.4f idle %.4f, of %.4f\n",
        lines.size(), sums[12], sums[13], sums[14], sums[15], sums[16], sums[17], sums[19], sums[20],
        sums[21], sums[3]);
  }
}

}  // namespace
}  // namespace ringmoe
