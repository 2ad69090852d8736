// Each GPU kernel against its CPU twin (cpu/) on fresh random data, by relative error with per-dtype
// tolerances: bf16 GEMM paths ~1e-2, f32 element-wise and reductions ~1e-5.
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cpu/activation.h"
#include "cpu/linear.h"
#include "cpu/moe.h"
#include "cpu/norm.h"
#include "cpu/routing.h"
#include "gpu/gpu.h"
#include "gtest/gtest.h"
#include "io/dtype.h"
#include "tests/testing/gpu_test_fixture.h"

namespace ringmoe::gpu {
namespace {

constexpr double kBf16Tolerance = 1e-2;
constexpr double kF32Tolerance = 1e-5;

double RelativeError(const std::vector<float>& got, const std::vector<float>& want) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    diff += (static_cast<double>(got[i]) - want[i]) * (static_cast<double>(got[i]) - want[i]);
    norm += static_cast<double>(want[i]) * want[i];
  }
  return std::sqrt(diff) / std::max(std::sqrt(norm), 1e-30);
}

// Device scratch and a stream per test (tests/testing/gpu_test_fixture.h), and a cuBLAS handle; skips
// without a GPU. Data is fresh each run: the seed is printed on failure.
class GpuKernelTest : public gpu_test::GpuTest {
 protected:
  void SetUp() override {
    GpuTestBase::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    auto blas = BlasHandle::Create(arena_);
    ASSERT_TRUE(blas.ok()) << blas.status();
    blas_ = std::move(*blas);
  }

  // bf16 weights with std 1/sqrt(fan_in), so that activations stay O(1).
  std::vector<uint16_t> Bf16Weights(size_t count, int fan_in) {
    std::vector<float> values = Uniform(count, std::sqrt(3.0f / fan_in));
    std::vector<uint16_t> bits(count);
    for (size_t i = 0; i < count; ++i) bits[i] = io::F32ToBF16(values[i]);
    return bits;
  }

  BlasHandle blas_;
};

struct RouterCase {
  int experts;
  int top_k;
  cpu::RouterScoring scoring;
  bool renormalize;
};

TEST_F(GpuKernelTest, RouterMatchesCpuTwin) {
  SCOPED_TRACE(seed_);
  const RouterCase cases[] = {
      {128, 8, cpu::RouterScoring::kSoftmaxThenTopK, true},    // Qwen3-30B-A3B
      {60, 4, cpu::RouterScoring::kSoftmaxThenTopK, false},    // Qwen1.5/2-MoE
      {64, 8, cpu::RouterScoring::kSoftmaxThenTopK, false},    // OLMoE
      {8, 2, cpu::RouterScoring::kTopKThenSoftmax, false},     // Mixtral
      {1024, 32, cpu::RouterScoring::kSoftmaxThenTopK, true},  // The limits.
  };
  const int tokens = 257;
  for (const RouterCase& c : cases) {
    SCOPED_TRACE(testing::Message() << c.experts << " experts, top " << c.top_k);
    std::vector<float> logits = Normal(static_cast<size_t>(tokens) * c.experts, 2.0f);
    std::vector<int32_t> want_ids(tokens * c.top_k);
    std::vector<float> want_weights(tokens * c.top_k);
    cpu::RouteTopK(logits.data(), tokens, c.experts, c.top_k, c.scoring, c.renormalize, want_ids.data(),
                   want_weights.data());
    float* device_logits = Upload(logits);
    int32_t* ids = Allocate<int32_t>(want_ids.size());
    float* weights = Allocate<float>(want_weights.size());
    ASSERT_OK(RouteTopK(device_logits, tokens, c.experts, c.top_k, c.scoring, c.renormalize, ids, weights,
                        stream_));
    EXPECT_EQ(Download(ids, want_ids.size()), want_ids);
    EXPECT_LT(RelativeError(Download(weights, want_weights.size()), want_weights), kF32Tolerance);
  }
}

TEST_F(GpuKernelTest, RouterBreaksTiesToTheLowerExpert) {
  std::vector<float> logits = {1, 3, 3, 0, 3, 2, 2, 2};  // One token, 8 experts, three-way tie at the top.
  std::vector<int32_t> want_ids(4);
  std::vector<float> want_weights(4);
  cpu::RouteTopK(logits.data(), 1, 8, 4, cpu::RouterScoring::kSoftmaxThenTopK, true, want_ids.data(),
                 want_weights.data());
  int32_t* ids = Allocate<int32_t>(4);
  float* weights = Allocate<float>(4);
  ASSERT_OK(
      RouteTopK(Upload(logits), 1, 8, 4, cpu::RouterScoring::kSoftmaxThenTopK, true, ids, weights, stream_));
  EXPECT_EQ(Download(ids, 4), (std::vector<int32_t>{1, 2, 4, 5}));
  EXPECT_EQ(Download(ids, 4), want_ids);
}

TEST_F(GpuKernelTest, RouterRejectsBadShapes) {
  float* logits = Allocate<float>(16);
  int32_t* ids = Allocate<int32_t>(16);
  float* weights = Allocate<float>(16);
  auto scoring = cpu::RouterScoring::kSoftmaxThenTopK;
  EXPECT_TRUE(absl::IsInvalidArgument(RouteTopK(logits, 1, 4, 5, scoring, true, ids, weights, stream_)));
  EXPECT_TRUE(absl::IsInvalidArgument(RouteTopK(logits, 1, 2000, 2, scoring, true, ids, weights, stream_)));
  EXPECT_TRUE(absl::IsInvalidArgument(RouteTopK(logits, 1, 64, 33, scoring, true, ids, weights, stream_)));
}

TEST_F(GpuKernelTest, SortByExpertIsAStableCountingSort) {
  SCOPED_TRACE(seed_);
  const int tokens = 300, experts = 128, top_k = 8;
  std::vector<float> logits = Normal(static_cast<size_t>(tokens) * experts, 1.0f);
  std::vector<int32_t> ids(tokens * top_k);
  std::vector<float> weights(tokens * top_k);
  cpu::RouteTopK(logits.data(), tokens, experts, top_k, cpu::RouterScoring::kSoftmaxThenTopK, true,
                 ids.data(), weights.data());
  auto runner = MoeRunner::Create(arena_, MoeShape{64, 32, experts, top_k}, 512);
  ASSERT_TRUE(runner.ok()) << runner.status();
  ASSERT_OK(runner->SortByExpert(Upload(ids), tokens, stream_));
  std::vector<int32_t> want_counts(experts, 0);
  for (int32_t e : ids) ++want_counts[e];
  std::span<const int32_t> counts = runner->expert_counts();
  EXPECT_EQ(std::vector<int32_t>(counts.begin(), counts.end()), want_counts);
  const size_t assignments = ids.size();
  std::vector<int32_t> offsets = Download(runner->device_offsets(), experts + 1);
  std::vector<int32_t> permutation = Download(runner->device_permutation(), assignments);
  std::vector<int32_t> inverse = Download(runner->device_inverse(), assignments);
  EXPECT_EQ(std::vector<int32_t>(runner->expert_offsets().begin(), runner->expert_offsets().end()), offsets);
  EXPECT_EQ(offsets[experts], static_cast<int32_t>(assignments));
  for (int e = 0; e < experts; ++e) {
    for (int s = offsets[e]; s < offsets[e + 1]; ++s) {
      ASSERT_EQ(ids[permutation[s]], e) << "sorted position " << s;
      if (s > offsets[e]) ASSERT_LT(permutation[s - 1], permutation[s]) << "not stable at " << s;
    }
  }
  for (size_t a = 0; a < assignments; ++a) ASSERT_EQ(permutation[inverse[a]], static_cast<int32_t>(a));
}

TEST_F(GpuKernelTest, SortRejectsBadIdsAndTooManyTokens) {
  auto runner = MoeRunner::Create(arena_, MoeShape{64, 32, 8, 2}, 4);
  ASSERT_TRUE(runner.ok());
  std::vector<int32_t> ids = {0, 1, 2, 9, 3, 4, 5, -1};
  absl::Status bad = runner->SortByExpert(Upload(ids), 4, stream_);
  EXPECT_TRUE(absl::IsInvalidArgument(bad)) << bad;
  EXPECT_NE(bad.message().find("2 routed expert ids outside [0, 8)"), std::string::npos) << bad;
  EXPECT_TRUE(absl::IsInvalidArgument(runner->SortByExpert(Upload(ids), 5, stream_)));
  EXPECT_TRUE(absl::IsFailedPrecondition(runner->RunExperts(
      blas_, nullptr, nullptr, nullptr, MakePackedLayerIndex(8, 64, 32), nullptr, stream_)));
}

// SortByExpert in halves (QueueSort, then WaitForCounts after more work was queued) gives the same counts;
// a wait with nothing queued, or a second wait, is refused; a bad id shows at the wait.
TEST_F(GpuKernelTest, QueuedSortAndItsWaitEqualTheWholeSort) {
  SCOPED_TRACE(seed_);
  const int tokens = 200, experts = 16, top_k = 2;
  std::vector<int32_t> ids(tokens * top_k);
  std::mt19937 random(seed_);
  for (int32_t& id : ids) id = static_cast<int32_t>(random() % experts);
  auto runner = MoeRunner::Create(arena_, MoeShape{64, 32, experts, top_k}, 256);
  ASSERT_TRUE(runner.ok()) << runner.status();
  EXPECT_TRUE(absl::IsFailedPrecondition(runner->WaitForCounts()));
  ASSERT_OK(runner->QueueSort(Upload(ids), tokens, stream_));
  float* scratch = Allocate<float>(1 << 20);
  ASSERT_OK(FillDeviceBytes(scratch, 0, 4 << 20, stream_));  // other work between the halves
  ASSERT_OK(runner->WaitForCounts());
  EXPECT_EQ(runner->sorted_tokens(), tokens);
  std::vector<int32_t> want_counts(experts, 0);
  for (int32_t e : ids) ++want_counts[e];
  std::span<const int32_t> counts = runner->expert_counts();
  EXPECT_EQ(std::vector<int32_t>(counts.begin(), counts.end()), want_counts);
  EXPECT_TRUE(absl::IsFailedPrecondition(runner->WaitForCounts()));
  ids[7] = experts;
  ASSERT_OK(runner->QueueSort(Upload(ids), tokens, stream_));
  EXPECT_TRUE(absl::IsInvalidArgument(runner->WaitForCounts()));
}

struct MoeCase {
  int experts, top_k, hidden, intermediate, tokens;
  GemmStrategy strategy;
  cpu::RouterScoring scoring;
  bool gpu_routing;  // Route on the GPU from logits (end to end), else use the CPU's routing for both.
};

TEST_F(GpuKernelTest, MoeMatchesCpuTwin) {
  SCOPED_TRACE(seed_);
  const MoeCase cases[] = {
      {8, 2, 512, 384, 48, GemmStrategy::kLoopGemmEx, cpu::RouterScoring::kTopKThenSoftmax, false},
      {8, 2, 512, 384, 48, GemmStrategy::kGroupedBatched, cpu::RouterScoring::kTopKThenSoftmax, false},
      {32, 4, 256, 128, 100, GemmStrategy::kLoopGemmEx, cpu::RouterScoring::kSoftmaxThenTopK, true},
      {32, 4, 256, 128, 100, GemmStrategy::kGroupedBatched, cpu::RouterScoring::kSoftmaxThenTopK, true},
      {16, 4, 136, 72, 1, GemmStrategy::kLoopGemmEx, cpu::RouterScoring::kSoftmaxThenTopK, false},  // Decode.
      {16, 4, 136, 72, 1, GemmStrategy::kGroupedBatched, cpu::RouterScoring::kSoftmaxThenTopK, false},
      {32, 4, 256, 128, 100, GemmStrategy::kAuto, cpu::RouterScoring::kSoftmaxThenTopK, true},  // Grouped.
      {4, 2, 256, 128, 600, GemmStrategy::kAuto, cpu::RouterScoring::kTopKThenSoftmax, false},  // Loop.
      // Many rows per expert, but 64 experts: grouped (the loop would be launch-bound).
      {64, 8, 256, 128, 2400, GemmStrategy::kAuto, cpu::RouterScoring::kSoftmaxThenTopK, true},
  };
  for (const MoeCase& c : cases) {
    SCOPED_TRACE(testing::Message() << c.experts << " experts top " << c.top_k << ", " << c.tokens
                                    << " tokens, "
                                    << (c.strategy == GemmStrategy::kLoopGemmEx ? "loop" : "grouped"));
    const size_t matrix = static_cast<size_t>(c.hidden) * c.intermediate;
    std::vector<std::vector<uint16_t>> gate, up, down;
    std::vector<cpu::ExpertWeights> cpu_experts;
    std::vector<ExpertMatricesBf16> views;
    for (int e = 0; e < c.experts; ++e) {
      gate.push_back(Bf16Weights(matrix, c.hidden));
      up.push_back(Bf16Weights(matrix, c.hidden));
      down.push_back(Bf16Weights(matrix, c.intermediate));
    }
    for (int e = 0; e < c.experts; ++e) {
      cpu_experts.push_back({{io::DType::kBF16, gate[e].data(), c.intermediate, c.hidden},
                             {io::DType::kBF16, up[e].data(), c.intermediate, c.hidden},
                             {io::DType::kBF16, down[e].data(), c.hidden, c.intermediate}});
      views.push_back({gate[e].data(), up[e].data(), down[e].data()});
    }
    const PackedLayerIndex index = MakePackedLayerIndex(c.experts, c.hidden, c.intermediate);
    std::vector<uint8_t> packed(index.total_bytes());
    ASSERT_OK(PackLayerExperts(views, index, packed.data(), static_cast<int64_t>(packed.size())));

    std::vector<float> x = Uniform(static_cast<size_t>(c.tokens) * c.hidden, 1.0f);
    std::vector<float> logits = Normal(static_cast<size_t>(c.tokens) * c.experts, 1.0f);
    std::vector<int32_t> ids(c.tokens * c.top_k);
    std::vector<float> weights(c.tokens * c.top_k);
    cpu::RouteTopK(logits.data(), c.tokens, c.experts, c.top_k, c.scoring, true, ids.data(), weights.data());
    std::vector<float> want = Uniform(x.size(), 0.5f);  // out accumulates: start from non-zero.
    std::vector<float> initial = want;
    cpu::MoeForward(x.data(), c.tokens, c.hidden, ids.data(), weights.data(), c.top_k, cpu_experts,
                    want.data());

    int32_t* device_ids = Allocate<int32_t>(ids.size());
    float* device_weights = Allocate<float>(weights.size());
    if (c.gpu_routing) {
      ASSERT_OK(RouteTopK(Upload(logits), c.tokens, c.experts, c.top_k, c.scoring, true, device_ids,
                          device_weights, stream_));
    } else {
      ASSERT_OK(CopyHostToDevice(device_ids, ids.data(), ids.size() * 4, stream_));
      ASSERT_OK(CopyHostToDevice(device_weights, weights.data(), weights.size() * 4, stream_));
    }
    uint16_t* x_bf16 = Allocate<uint16_t>(x.size());
    ASSERT_OK(ConvertF32ToBf16(Upload(x), static_cast<int64_t>(x.size()), x_bf16, stream_));
    float* out = Upload(initial);
    uint8_t* layer = Upload(packed);
    auto runner = MoeRunner::Create(arena_, MoeShape{c.hidden, c.intermediate, c.experts, c.top_k},
                                    std::max(128, c.tokens), c.strategy);
    ASSERT_TRUE(runner.ok()) << runner.status();
    ASSERT_OK(runner->SortByExpert(device_ids, c.tokens, stream_));
    ASSERT_OK(runner->RunExperts(blas_, x_bf16, device_weights, layer, index, out, stream_));
    std::vector<float> got = Download(out, want.size());
    // Compare the MoE contribution itself (out - initial), not the easy sum with the initial values.
    for (size_t i = 0; i < got.size(); ++i) got[i] -= initial[i], want[i] -= initial[i];
    const double error = RelativeError(got, want);
    std::printf(
        "MoE %d experts top %d, %d tokens, %s: relative error %.2e%s%s\n", c.experts, c.top_k, c.tokens,
        runner->strategy() == GemmStrategy::kLoopGemmEx ? "loop of cublasGemmEx" : "grouped batched", error,
        runner->fallback_reason().empty() ? "" : "; grouped refused: ", runner->fallback_reason().c_str());
    EXPECT_LT(error, kBf16Tolerance);
    if (c.strategy == GemmStrategy::kAuto) {  // Few rows per expert or many experts: grouped; else the loop.
      int routed = 0;
      for (int32_t count : runner->expert_counts()) routed += count > 0;
      EXPECT_EQ(runner->last_used_grouped(),
                MoeRunner::AutoPrefersGrouped(int64_t{c.tokens} * c.top_k, routed) &&
                    runner->fallback_reason().empty());
    }
  }
}

TEST_F(GpuKernelTest, MoeRejectsAMismatchedLayer) {
  auto runner = MoeRunner::Create(arena_, MoeShape{64, 32, 8, 2}, 4);
  ASSERT_TRUE(runner.ok());
  ASSERT_OK(runner->SortByExpert(Upload(std::vector<int32_t>{0, 1, 2, 3}), 2, stream_));
  EXPECT_TRUE(absl::IsInvalidArgument(runner->RunExperts(blas_, nullptr, nullptr, nullptr,
                                                         MakePackedLayerIndex(8, 64, 48), nullptr, stream_)));
}

TEST_F(GpuKernelTest, LinearMatchesCpuTwin) {
  SCOPED_TRACE(seed_);
  for (bool with_bias : {false, true}) {
    const int m = 37, in = 512, out = 300;
    std::vector<uint16_t> w = Bf16Weights(static_cast<size_t>(out) * in, in);
    std::vector<float> x = Uniform(static_cast<size_t>(m) * in, 1.0f);
    std::vector<float> bias = Uniform(out, 1.0f);
    std::vector<float> want(static_cast<size_t>(m) * out);
    cpu::Linear(x.data(), m, cpu::Matrix{io::DType::kBF16, w.data(), out, in},
                with_bias ? bias.data() : nullptr, want.data());
    uint16_t* x_bf16 = Allocate<uint16_t>(x.size());
    ASSERT_OK(ConvertF32ToBf16(Upload(x), static_cast<int64_t>(x.size()), x_bf16, stream_));
    float* y = Allocate<float>(want.size());
    ASSERT_OK(
        LinearBf16(blas_, x_bf16, m, Upload(w), out, in, with_bias ? Upload(bias) : nullptr, y, stream_));
    EXPECT_LT(RelativeError(Download(y, want.size()), want), kBf16Tolerance) << "bias " << with_bias;
  }
}

TEST_F(GpuKernelTest, RmsNormMatchesCpuTwin) {
  SCOPED_TRACE(seed_);
  const int rows = 17, width = 2048;
  const float eps = 1e-6f;
  std::vector<float> x = Normal(static_cast<size_t>(rows) * width, 3.0f);
  std::vector<float> weight = Uniform(width, 2.0f);
  std::vector<float> want(x.size());
  cpu::RmsNorm(x.data(), weight.data(), rows, width, eps, want.data());
  float* device_x = Upload(x);
  float* out = Allocate<float>(x.size());
  float* device_weight = Upload(weight);
  ASSERT_OK(RmsNorm(device_x, device_weight, rows, width, eps, out, stream_));
  EXPECT_LT(RelativeError(Download(out, x.size()), want), kF32Tolerance);
  ASSERT_OK(RmsNorm(device_x, device_weight, rows, width, eps, device_x, stream_));  // In place.
  EXPECT_LT(RelativeError(Download(device_x, x.size()), want), kF32Tolerance);
}

TEST_F(GpuKernelTest, ResidualAddAndConversions) {
  SCOPED_TRACE(seed_);
  const size_t count = 100003;
  std::vector<float> x = Normal(count, 1.0f), y = Normal(count, 1.0f);
  std::vector<float> want(count);
  for (size_t i = 0; i < count; ++i) want[i] = x[i] + y[i];
  float* device_x = Upload(x);
  ASSERT_OK(ResidualAdd(device_x, Upload(y), static_cast<int64_t>(count), stream_));
  EXPECT_LT(RelativeError(Download(device_x, count), want), kF32Tolerance);

  uint16_t* bf16 = Allocate<uint16_t>(count);
  ASSERT_OK(ConvertF32ToBf16(Upload(x), static_cast<int64_t>(count), bf16, stream_));
  std::vector<uint16_t> bits = Download(bf16, count);
  size_t mismatches = 0;
  for (size_t i = 0; i < count; ++i) mismatches += bits[i] != io::F32ToBF16(x[i]);
  EXPECT_EQ(mismatches, 0u);  // Same rounding (to nearest even) as io::F32ToBF16.
  float* back = Allocate<float>(count);
  ASSERT_OK(ConvertBf16ToF32(bf16, static_cast<int64_t>(count), back, stream_));
  std::vector<float> widened = Download(back, count);
  for (size_t i = 0; i < count; ++i) ASSERT_EQ(widened[i], io::BF16ToF32(bits[i]));
}

TEST_F(GpuKernelTest, GreedyArgmaxAndLogSoftmaxMatchCpu) {
  SCOPED_TRACE(seed_);
  const int rows = 6, vocab = 151936;
  std::vector<float> logits = Normal(static_cast<size_t>(rows) * vocab, 4.0f);
  logits[3 * vocab + 1000] = logits[3 * vocab + 5000] = 100.0f;  // A tie: the lower index wins.
  std::vector<int32_t> want_ids(rows);
  std::vector<float> want_logprobs(rows);
  for (int r = 0; r < rows; ++r) {
    std::vector<float> row(logits.begin() + static_cast<size_t>(r) * vocab,
                           logits.begin() + static_cast<size_t>(r + 1) * vocab);
    want_ids[r] = static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
    cpu::LogSoftmaxInPlace(row.data(), vocab);
    want_logprobs[r] = row[want_ids[r]];
  }
  EXPECT_EQ(want_ids[3], 1000);
  int32_t* ids = Allocate<int32_t>(rows);
  float* logprobs = Allocate<float>(rows);
  ASSERT_OK(GreedyArgmaxLogSoftmax(Upload(logits), rows, vocab, ids, logprobs, stream_));
  EXPECT_EQ(Download(ids, rows), want_ids);
  std::vector<float> got = Download(logprobs, rows);
  for (int r = 0; r < rows; ++r)
    EXPECT_NEAR(got[r], want_logprobs[r], 1e-4 + 1e-5 * std::abs(want_logprobs[r]));
}

}  // namespace
}  // namespace ringmoe::gpu
