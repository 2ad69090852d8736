// The routed-expert runner on layers in the FP8 block layout (gpu/expert_packing.h): dequantised on the GPU a
// few experts at a time, it must give what the same runner gives on the bf16 layer of the CPU twin's
// dequantised values (cpu::DequantizeFp8Blocks, then f32 -> bf16), for every scratch size (one expert at a
// time, a few, all), both GEMM strategies, and shapes whose sides and blocks are not multiples of 16 (the
// kernel's scalar path).
#include <cmath>
#include <cstring>
#include <vector>

#include "cpu/fp8_blocks.h"
#include "cpu/moe.h"
#include "cpu/routing.h"
#include "gpu/gpu.h"
#include "gtest/gtest.h"
#include "io/dtype.h"
#include "tests/testing/gpu_test_fixture.h"

namespace ringmoe::gpu {
namespace {

double RelativeError(const std::vector<float>& got, const std::vector<float>& want) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    diff += (static_cast<double>(got[i]) - want[i]) * (static_cast<double>(got[i]) - want[i]);
    norm += static_cast<double>(want[i]) * want[i];
  }
  return std::sqrt(diff) / std::max(std::sqrt(norm), 1e-30);
}

// One expert's matrices as FP8 blocks, and the bf16 of their dequantised values.
struct QuantisedMatrix {
  std::vector<uint8_t> weight;
  std::vector<float> scales;
  std::vector<uint16_t> dequantised_bf16;
};

QuantisedMatrix Quantise(const std::vector<float>& values, const cpu::Fp8BlockShape& shape) {
  QuantisedMatrix q;
  q.weight.resize(values.size());
  q.scales.resize(static_cast<size_t>(shape.num_scales()));
  cpu::QuantizeFp8Blocks(shape, values.data(), q.weight.data(), q.scales.data());
  std::vector<float> dequantised(values.size());
  cpu::DequantizeFp8Blocks(shape, io::DType::kF8E4M3, q.weight.data(), io::DType::kF32, q.scales.data(),
                           dequantised.data());
  q.dequantised_bf16.resize(values.size());
  io::ConvertF32ToBF16(dequantised.data(), q.dequantised_bf16.data(), values.size());
  return q;
}

struct Fp8RunnerCase {
  int experts, hidden, intermediate, top_k, tokens, block_rows, block_cols;
};

class GpuFp8RunnerTest : public gpu_test::GpuTest {
 protected:
  void SetUp() override {
    GpuTestBase::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    auto blas = BlasHandle::Create(arena_);
    ASSERT_TRUE(blas.ok()) << blas.status();
    blas_ = std::move(*blas);
  }
  BlasHandle blas_;
};

TEST_F(GpuFp8RunnerTest, MatchesTheBf16LayerOfItsDequantisedValues) {
  SCOPED_TRACE(seed_);
  for (const Fp8RunnerCase c : {Fp8RunnerCase{8, 256, 128, 2, 37, 128, 128},
                                Fp8RunnerCase{6, 200, 72, 3, 50, 24, 40},  // scalar path, partial blocks
                                Fp8RunnerCase{16, 512, 256, 4, 300, 128, 128}}) {
    const size_t matrix = static_cast<size_t>(c.hidden) * c.intermediate;
    const PackedLayerIndex fp8_index =
        MakeFp8PackedLayerIndex(c.experts, c.hidden, c.intermediate, c.block_rows, c.block_cols);
    const PackedLayerIndex bf16_index = MakePackedLayerIndex(c.experts, c.hidden, c.intermediate);
    std::vector<uint8_t> fp8_layer(static_cast<size_t>(fp8_index.total_bytes()));
    std::vector<uint8_t> bf16_layer(static_cast<size_t>(bf16_index.total_bytes()));
    std::vector<QuantisedMatrix> kept;
    std::vector<ExpertMatricesBf16> views;
    std::vector<cpu::ExpertWeights> cpu_experts;
    for (int e = 0; e < c.experts; ++e) {
      const cpu::Fp8BlockShape gate_shape{c.intermediate, c.hidden, c.block_rows, c.block_cols};
      const cpu::Fp8BlockShape down_shape{c.hidden, c.intermediate, c.block_rows, c.block_cols};
      QuantisedMatrix gate = Quantise(Uniform(matrix, std::sqrt(3.0f / c.hidden)), gate_shape);
      QuantisedMatrix up = Quantise(Uniform(matrix, std::sqrt(3.0f / c.hidden)), gate_shape);
      QuantisedMatrix down = Quantise(Uniform(matrix, std::sqrt(3.0f / c.intermediate)), down_shape);
      ASSERT_TRUE(PackExpertFp8({{gate.weight.data(), gate.scales.data()},
                                 {up.weight.data(), up.scales.data()},
                                 {down.weight.data(), down.scales.data()}},
                                fp8_index, e, fp8_layer.data())
                      .ok());
      kept.push_back(std::move(gate));
      kept.push_back(std::move(up));
      kept.push_back(std::move(down));
    }
    for (int e = 0; e < c.experts; ++e) {
      const uint16_t* g = kept[3 * e].dequantised_bf16.data();
      const uint16_t* u = kept[3 * e + 1].dequantised_bf16.data();
      const uint16_t* d = kept[3 * e + 2].dequantised_bf16.data();
      views.push_back({g, u, d});
      cpu_experts.push_back({{io::DType::kBF16, g, c.intermediate, c.hidden},
                             {io::DType::kBF16, u, c.intermediate, c.hidden},
                             {io::DType::kBF16, d, c.hidden, c.intermediate}});
    }
    ASSERT_TRUE(PackLayerExperts(views, bf16_index, bf16_layer.data(), bf16_index.total_bytes()).ok());

    std::vector<float> x = Uniform(static_cast<size_t>(c.tokens) * c.hidden, 1.0f);
    std::vector<float> logits = Normal(static_cast<size_t>(c.tokens) * c.experts, 1.0f);
    std::vector<int32_t> ids(c.tokens * c.top_k);
    std::vector<float> weights(c.tokens * c.top_k);
    cpu::RouteTopK(logits.data(), c.tokens, c.experts, c.top_k, cpu::RouterScoring::kSoftmaxThenTopK, true,
                   ids.data(), weights.data());
    std::vector<float> cpu_out(x.size(), 0.0f);
    cpu::MoeForward(x.data(), c.tokens, c.hidden, ids.data(), weights.data(), c.top_k, cpu_experts,
                    cpu_out.data());
    int32_t* device_ids = Upload(ids);
    float* device_weights = Upload(weights);
    uint16_t* x_bf16 = Allocate<uint16_t>(x.size());
    ASSERT_TRUE(ConvertF32ToBf16(Upload(x), static_cast<int64_t>(x.size()), x_bf16, stream_).ok());
    uint8_t* device_fp8 = Upload(fp8_layer);
    uint8_t* device_bf16 = Upload(bf16_layer);
    for (GemmStrategy strategy : {GemmStrategy::kLoopGemmEx, GemmStrategy::kGroupedBatched}) {
      const MoeShape shape{c.hidden, c.intermediate, c.experts, c.top_k};
      auto reference = MoeRunner::Create(arena_, shape, c.tokens, strategy);
      ASSERT_TRUE(reference.ok()) << reference.status();
      float* want_device = Upload(std::vector<float>(x.size(), 0.0f));
      ASSERT_TRUE(reference->SortByExpert(device_ids, c.tokens, stream_).ok());
      ASSERT_TRUE(
          reference->RunExperts(blas_, x_bf16, device_weights, device_bf16, bf16_index, want_device, stream_)
              .ok());
      const std::vector<float> want = Download(want_device, x.size());
      for (int scratch : {1, 3, c.experts}) {
        auto runner = MoeRunner::Create(arena_, shape, c.tokens, strategy, scratch);
        ASSERT_TRUE(runner.ok()) << runner.status();
        float* out = Upload(std::vector<float>(x.size(), 0.0f));
        ASSERT_TRUE(runner->SortByExpert(device_ids, c.tokens, stream_).ok());
        ASSERT_TRUE(runner->RunExperts(blas_, x_bf16, device_weights, device_fp8, fp8_index, out, stream_).ok());
        const std::vector<float> got = Download(out, x.size());
        const double error = RelativeError(got, want), cpu_error = RelativeError(got, cpu_out);
        std::printf("FP8 MoE %d experts %dx%d (blocks %dx%d), %d tokens, %s, scratch %d: %.2e from bf16, "
                    "%.2e from the CPU twin\n",
                    c.experts, c.hidden, c.intermediate, c.block_rows, c.block_cols, c.tokens,
                    runner->last_used_grouped() ? "grouped" : "loop", scratch, error, cpu_error);
        // The same bf16 weights and inputs: equal up to cuBLAS's per-call algorithm choice (bf16 outputs in
        // the grouped call).
        EXPECT_LT(error, runner->last_used_grouped() ? 2e-3 : 1e-5);
        EXPECT_LT(cpu_error, 1e-2);
      }
    }
  }
}

TEST_F(GpuFp8RunnerTest, ARunnerWithoutScratchRefusesAnFp8Layer) {
  auto runner = MoeRunner::Create(arena_, MoeShape{64, 32, 4, 2}, 4);
  ASSERT_TRUE(runner.ok());
  ASSERT_TRUE(runner->SortByExpert(Upload(std::vector<int32_t>{0, 1, 2, 3}), 2, stream_).ok());
  const absl::Status status = runner->RunExperts(blas_, Allocate<uint16_t>(128), Allocate<float>(4),
                                                 Allocate<uint8_t>(1 << 20),
                                                 MakeFp8PackedLayerIndex(4, 64, 32, 128, 128),
                                                 Allocate<float>(128), stream_);
  EXPECT_TRUE(absl::IsFailedPrecondition(status)) << status;
}

}  // namespace
}  // namespace ringmoe::gpu
