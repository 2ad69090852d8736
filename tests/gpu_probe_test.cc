// gpu::ProbeGpu: without a GPU it is Unavailable; with one it measures plausible figures, which it prints
// (copy bandwidths; expert-GEMM TFLOP/s per tokens-per-expert for both GEMM strategies) for the planner's
// engineers. No speed is asserted here beyond "the measurement measured something": targets live in bench/.
#include <cstdio>
#include <string>

#include "gpu/gpu.h"
#include "gtest/gtest.h"

namespace ringmoe::gpu {
namespace {

TEST(GpuProbeTest, UnavailableWithoutAGpu) {
  std::string why_not;
  if (GpuAvailable(&why_not)) GTEST_SKIP() << "a GPU is present";
  auto result = ProbeGpu(GpuProbeOptions{});
  EXPECT_TRUE(absl::IsUnavailable(result.status())) << result.status();
  EXPECT_EQ(result.status().message(), why_not);
}

TEST(GpuProbeTest, MeasuresCopiesAndExpertGemms) {
  std::string why_not;
  if (!GpuAvailable(&why_not)) GTEST_SKIP() << "no usable GPU: " << why_not;
  GpuProbeOptions options;
  auto result = ProbeGpu(options);
  ASSERT_TRUE(result.ok()) << result.status();
  std::printf("probe: %s, %d SMs, %.1f GiB; H2D %.1f GB/s, D2H %.1f GB/s, both %.1f GB/s\n",
              result->name.c_str(), result->sm_count, result->memory_bytes / double(int64_t{1} << 30),
              result->h2d_gbps, result->d2h_gbps, result->bidirectional_gbps);
  EXPECT_FALSE(result->name.empty());
  EXPECT_GT(result->sm_count, 0);
  EXPECT_GT(result->memory_bytes, 0);
  // Any PCIe link moves more than 1 GB/s from pinned memory; more than 1000 would mean a broken timer.
  EXPECT_GT(result->h2d_gbps, 1.0);
  EXPECT_LT(result->h2d_gbps, 1000.0);
  EXPECT_GT(result->d2h_gbps, 1.0);
  EXPECT_GT(result->bidirectional_gbps, 1.0);
  ASSERT_EQ(result->grouped_gemm_bf16.size(), options.tokens_per_expert.size());
  auto loop = MeasureExpertGemm(options, GemmStrategy::kLoopGemmEx);
  auto grouped = MeasureExpertGemm(options, GemmStrategy::kGroupedBatched);
  ASSERT_TRUE(loop.ok()) << loop.status();
  if (!grouped.ok()) {
    // cuBLAS may refuse the grouped call (the runner then falls back to the loop): report, do not fail.
    EXPECT_TRUE(absl::IsUnimplemented(grouped.status())) << grouped.status();
    std::printf("grouped GEMM: %s\n", std::string(grouped.status().message()).c_str());
    grouped = *loop;
  }
  std::printf("expert pass %dx%d, %d experts: tokens/expert  best  loop  grouped (TFLOP/s)\n", options.hidden,
              options.intermediate, options.experts);
  for (size_t i = 0; i < options.tokens_per_expert.size(); ++i) {
    const GemmRate& rate = result->grouped_gemm_bf16[i];
    EXPECT_EQ(rate.tokens_per_expert, options.tokens_per_expert[i]);
    EXPECT_GT(rate.tflops, 0.0);
    EXPECT_LT(rate.tflops, 5000.0);
    std::printf("  %5d  %7.2f  %7.2f  %7.2f\n", rate.tokens_per_expert, rate.tflops, (*loop)[i].tflops,
                (*grouped)[i].tflops);
  }
  // Rates grow with tokens per expert: 1 token per expert is bandwidth-bound, 1024 is compute-bound.
  EXPECT_GT(result->grouped_gemm_bf16.back().tflops, result->grouped_gemm_bf16.front().tflops);
  // Real shapes for the report: Mixtral-8x7B's experts and Qwen3-30B-A3B's.
  for (GpuProbeOptions shape : {GpuProbeOptions{4096, 14336, 8, {1, 16, 64, 256, 1024}},
                                GpuProbeOptions{2048, 768, 128, {1, 4, 16, 64, 256}}}) {
    auto rates = MeasureExpertGemm(shape, GemmStrategy::kLoopGemmEx);
    auto rates_grouped = MeasureExpertGemm(shape, GemmStrategy::kGroupedBatched);
    ASSERT_TRUE(rates.ok()) << rates.status();
    if (!rates_grouped.ok()) rates_grouped = std::vector<GemmRate>(rates->size(), GemmRate{0, 0.0});
    std::printf("expert pass %dx%d, %d experts: tokens/expert  loop  grouped (TFLOP/s; 0 = refused)\n",
                shape.hidden, shape.intermediate, shape.experts);
    for (size_t i = 0; i < rates->size(); ++i)
      std::printf("  %5d  %7.2f  %7.2f\n", (*rates)[i].tokens_per_expert, (*rates)[i].tflops,
                  (*rates_grouped)[i].tflops);
  }
}

}  // namespace
}  // namespace ringmoe::gpu
