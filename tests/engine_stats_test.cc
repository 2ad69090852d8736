// RunStats on the CPU path, read through ForwardPass::stats() (runtime/engine/forward.h): the KV bytes the
// attention read, all of them on the CPU, counted per Generate (not since the engine opened); the GPU
// counters stay 0.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "ringmoe/engine.h"

namespace ringmoe {
namespace {

const std::string kTinyModel = std::string(RINGMOE_SOURCE_DIR) + "/tests/data/models/tiny-qwen3-moe";

TEST(EngineStats, CpuPassCountsEachRunsKvReadsOnTheCpu) {
  EngineOptions options;
  options.cpu_compute = ComputeType::kF32;
  options.plan.batch = 1;
  options.plan.prefill_chunk = 3;  // steps of 4 tokens: the prompt is prefilled in chunks of at most 4
  options.threads = 2;
  absl::StatusOr<Engine> engine = Engine::Open(kTinyModel, options);
  ASSERT_TRUE(engine.ok()) << engine.status();

  Request request;
  request.id = "r";
  for (int32_t t = 0; t < 10; ++t) request.prompt_ids.push_back(3 + t);
  request.max_tokens = 5;
  request.ignore_eos = true;
  const std::vector<Request> requests = {request};
  // 10 prompt tokens and the first 4 generated ones go through the model (the 5th is only sampled): the
  // token at position p reads the K/V of positions 0 .. p, so 1 + 2 + ... + 14 = 105 tokens' K/V, however the
  // prompt was chunked. tiny-qwen3-moe's K/V per token in f32: 2 (K, V) * 4 layers * 2 heads * 32 * 4 bytes.
  const int64_t expected = 105 * 2048;
  for (int run = 0; run < 2; ++run) {
    absl::StatusOr<std::vector<Result>> results = engine->Generate(requests);
    ASSERT_TRUE(results.ok()) << results.status();
    ASSERT_EQ((*results)[0].token_ids.size(), 5u);
    const RunStats& stats = engine->last_run_stats();
    EXPECT_EQ(stats.kv_read_bytes, expected) << run;
    EXPECT_EQ(stats.cpu_attention_kv_bytes, expected) << run;  // this run's, not the total so far
    EXPECT_EQ(stats.gpu_cache_kv_bytes, 0) << run;
    EXPECT_EQ(stats.streamed_bytes, 0) << run;
    EXPECT_EQ(stats.h2d_copy_seconds, 0.0) << run;
    EXPECT_EQ(stats.gpu_wait_seconds, 0.0) << run;
    EXPECT_EQ(stats.gpu_feeder_busy_seconds, 0.0) << run;
    EXPECT_EQ(stats.gpu_feeder_wait_seconds, 0.0) << run;
    EXPECT_EQ(stats.gpu_peak_bytes, 0) << run;
    EXPECT_EQ(stats.gpu_cap_bytes, 0) << run;
    EXPECT_EQ(stats.resident_moe_layers, 0) << run;
    EXPECT_EQ(stats.streamed_moe_layers, 0) << run;
    EXPECT_GT(stats.attention_seconds, 0.0) << run;
    EXPECT_GT(stats.moe_seconds, 0.0) << run;
    EXPECT_GT(stats.lm_head_seconds, 0.0) << run;
    EXPECT_LT(stats.attention_seconds, stats.wall_seconds) << run;  // a difference, not the total
  }
}

}  // namespace
}  // namespace ringmoe
