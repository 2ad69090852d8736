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

// Issue 17, item 3: a job of thousands of requests reaches the batch the plan allows (every request is
// admitted as soon as a sequence slot and its KV blocks are free), and a KV cache too small for that batch
// caps it at the sequences whose blocks fit, without stalling the job.
std::vector<Request> ShortRequests(int count) {
  std::vector<Request> requests(count);
  for (int i = 0; i < count; ++i) {
    requests[i].id = std::to_string(i);
    requests[i].prompt_ids = {3 + i % 50, 7, 11 + i % 13, 5};
    requests[i].max_tokens = 2;
    requests[i].ignore_eos = true;
  }
  return requests;
}

TEST(EngineStats, ThousandsOfRequestsReachThePlansBatch) {
  EngineOptions options;
  options.cpu_compute = ComputeType::kF32;
  options.plan.kv.dtype = io::DType::kF32;
  options.plan.batch = 2048;
  options.plan.prefill_chunk = 8192;  // a step holds every sequence's prompt: all 2048 decode together
  options.threads = 2;
  absl::StatusOr<Engine> engine = Engine::Open(kTinyModel, options);
  ASSERT_TRUE(engine.ok()) << engine.status();
  absl::StatusOr<std::vector<Result>> results = engine->Generate(ShortRequests(4096));
  ASSERT_TRUE(results.ok()) << results.status();
  for (const Result& result : *results) ASSERT_EQ(result.token_ids.size(), 2u) << result.id;
  const RunStats& stats = engine->last_run_stats();
  EXPECT_EQ(stats.peak_sequences_in_flight, 2048);
  EXPECT_EQ(stats.generated_tokens, 2 * 4096);
  EXPECT_GT(stats.host_step_seconds, 0.0);
  EXPECT_LT(stats.host_step_seconds, stats.wall_seconds);
}

TEST(EngineStats, AKvCacheTooSmallForTheBatchCapsTheSequencesInFlight) {
  EngineOptions options;
  options.cpu_compute = ComputeType::kF32;
  options.plan.kv.dtype = io::DType::kF32;
  options.plan.batch = 512;
  options.plan.prefill_chunk = 4096;
  // 100 blocks of 16 tokens at 2048 bytes a token (f32 K and V, tiny-qwen3-moe): each request's 4 + 2
  // tokens take one block, so 100 sequences fit at once.
  options.plan.kv.host_bytes = int64_t{100} * 16 * 2048;
  options.threads = 2;
  absl::StatusOr<Engine> engine = Engine::Open(kTinyModel, options);
  ASSERT_TRUE(engine.ok()) << engine.status();
  absl::StatusOr<std::vector<Result>> results = engine->Generate(ShortRequests(1000));
  ASSERT_TRUE(results.ok()) << results.status();
  for (const Result& result : *results) {
    ASSERT_TRUE(result.status.ok()) << result.id << ": " << result.status;
    ASSERT_EQ(result.token_ids.size(), 2u) << result.id;
  }
  EXPECT_EQ(engine->last_run_stats().peak_sequences_in_flight, 100);
}

}  // namespace
}  // namespace ringmoe
