// FP8 block (de)quantisation (cpu/fp8_blocks.h) against a naive reference, on random data and on matrices
// whose sides are not multiples of the block.
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "cpu/fp8_blocks.h"
#include "gtest/gtest.h"
#include "io/dtype.h"

namespace ringmoe::cpu {
namespace {

struct Case {
  int64_t rows, cols;
  int block_rows, block_cols;
};

const Case kCases[] = {{128, 128, 128, 128}, {200, 130, 128, 128}, {1, 300, 128, 128},
                       {257, 1, 128, 128},   {37, 53, 16, 8},      {64, 96, 128, 32}};

std::vector<float> RandomValues(int64_t count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> magnitude(-6.0f, 3.0f);
  std::vector<float> values(static_cast<size_t>(count));
  // Magnitudes over several decades, so that small blocks and e4m3 subnormals occur.
  for (float& value : values) value = normal(rng) * std::exp2(magnitude(rng));
  return values;
}

TEST(Fp8BlocksTest, DequantisationMatchesANaiveReference) {
  uint32_t seed = 1;
  for (const Case& c : kCases) {
    const Fp8BlockShape shape{c.rows, c.cols, c.block_rows, c.block_cols};
    std::mt19937 rng(seed++);
    std::vector<uint8_t> weight(static_cast<size_t>(c.rows * c.cols));
    for (uint8_t& w : weight) w = static_cast<uint8_t>(rng() & 0xff);
    for (uint8_t& w : weight) {
      if ((w & 0x7f) == 0x7f) w = 0x3c;  // e4m3 NaN codes are rare in real weights: keep a few numbers
    }
    weight[0] = 0x7f;  // but one NaN, which must come out NaN
    std::vector<float> scales_f32(static_cast<size_t>(shape.num_scales()));
    std::uniform_real_distribution<float> scale(1e-4f, 2.0f);
    for (float& s : scales_f32) s = scale(rng);
    std::vector<uint16_t> scales_bf16(scales_f32.size());
    io::ConvertF32ToBF16(scales_f32.data(), scales_bf16.data(), scales_f32.size());

    for (io::DType weight_dtype : {io::DType::kF8E4M3, io::DType::kF8E5M2}) {
      for (io::DType scale_dtype : {io::DType::kF32, io::DType::kBF16}) {
        std::vector<float> out(weight.size());
        const void* scales = scale_dtype == io::DType::kF32 ? static_cast<const void*>(scales_f32.data())
                                                            : static_cast<const void*>(scales_bf16.data());
        DequantizeFp8Blocks(shape, weight_dtype, weight.data(), scale_dtype, scales, out.data());
        for (int64_t r = 0; r < c.rows; ++r) {
          for (int64_t col = 0; col < c.cols; ++col) {
            const int64_t block = (r / c.block_rows) * shape.scale_cols() + col / c.block_cols;
            const float s =
                scale_dtype == io::DType::kF32 ? scales_f32[block] : io::BF16ToF32(scales_bf16[block]);
            const uint8_t w = weight[r * c.cols + col];
            const float value = weight_dtype == io::DType::kF8E4M3 ? io::F8E4M3ToF32(w) : io::F8E5M2ToF32(w);
            // One f32 rounding of the same product: equal, not merely close (NaN codes of e5m2 stay NaN).
            if (std::isnan(value)) {
              ASSERT_TRUE(std::isnan(out[r * c.cols + col]));
              continue;
            }
            ASSERT_EQ(out[r * c.cols + col], value * s)
                << c.rows << "x" << c.cols << " at " << r << "," << col << " " << io::DTypeName(weight_dtype)
                << " scales " << io::DTypeName(scale_dtype);
          }
        }
        // The bf16 copy the GPU path (and the CPU's bf16 compute) receives: within bf16's half step.
        std::vector<uint16_t> bf16(out.size());
        io::ConvertF32ToBF16(out.data(), bf16.data(), out.size());
        for (size_t i = 0; i < out.size(); ++i) {
          if (!std::isfinite(out[i])) continue;  // e5m2 infinities and NaNs
          ASSERT_LE(std::fabs(io::BF16ToF32(bf16[i]) - out[i]), std::fabs(out[i]) * 0x1p-8f) << i;
        }
      }
    }
  }
}

TEST(Fp8BlocksTest, QuantisationRoundTripsWithinHalfAnE4M3Step) {
  uint32_t seed = 100;
  for (const Case& c : kCases) {
    const Fp8BlockShape shape{c.rows, c.cols, c.block_rows, c.block_cols};
    const std::vector<float> values = RandomValues(c.rows * c.cols, seed++);
    std::vector<uint8_t> weight(values.size());
    std::vector<float> scales(static_cast<size_t>(shape.num_scales()));
    QuantizeFp8Blocks(shape, values.data(), weight.data(), scales.data());
    std::vector<float> back(values.size());
    DequantizeFp8Blocks(shape, io::DType::kF8E4M3, weight.data(), io::DType::kF32, scales.data(),
                        back.data());
    std::vector<float> round_trip = values;
    RoundTripFp8Blocks(shape, round_trip.data());
    EXPECT_EQ(round_trip, back);

    std::vector<float> amax(scales.size(), 0.0f);
    for (int64_t r = 0; r < c.rows; ++r) {
      for (int64_t col = 0; col < c.cols; ++col) {
        const int64_t block = (r / c.block_rows) * shape.scale_cols() + col / c.block_cols;
        amax[block] = std::max(amax[block], std::fabs(values[r * c.cols + col]));
      }
    }
    for (size_t b = 0; b < scales.size(); ++b) EXPECT_EQ(scales[b], amax[b] / 448.0f) << b;
    double worst_relative = 0;
    for (int64_t r = 0; r < c.rows; ++r) {
      for (int64_t col = 0; col < c.cols; ++col) {
        const int64_t i = r * c.cols + col;
        const float s = scales[(r / c.block_rows) * shape.scale_cols() + col / c.block_cols];
        const double error = std::fabs(static_cast<double>(back[i]) - values[i]);
        // Half a step: 2^-4 relative for normals, 2^-10 * scale below 2^-6 * scale; plus f32 roundings.
        const double bound = std::max(std::fabs(values[i]) * 0x1p-4, 0x1p-10 * s) * (1 + 1e-6) + 1e-30;
        ASSERT_LE(error, bound) << "value " << values[i] << " came back " << back[i] << " (scale " << s
                                << ")";
        if (std::fabs(values[i]) > 0x1p-6 * s)
          worst_relative = std::max(worst_relative, error / std::fabs(values[i]));
        // The block's largest magnitude lands on +-448 exactly.
        if (std::fabs(values[i]) == amax[(r / c.block_rows) * shape.scale_cols() + col / c.block_cols]) {
          EXPECT_EQ(weight[i] & 0x7f, 0x7e);
        }
      }
    }
    EXPECT_GT(worst_relative, 0.01);  // the test sees real FP8 rounding, not a lossless copy
  }
}

TEST(Fp8BlocksTest, ZeroBlocksKeepScaleOneAndStayZero) {
  const Fp8BlockShape shape{4, 260, 128, 128};
  std::vector<float> values(4 * 260, 0.0f);
  values[259] = -3.0f;  // only the last (partial) block is non-zero
  std::vector<uint8_t> weight(values.size());
  std::vector<float> scales(3);
  QuantizeFp8Blocks(shape, values.data(), weight.data(), scales.data());
  EXPECT_EQ(scales[0], 1.0f);
  EXPECT_EQ(scales[1], 1.0f);
  EXPECT_EQ(scales[2], 3.0f / 448.0f);
  EXPECT_EQ(weight[259], 0xfe);
  RoundTripFp8Blocks(shape, values.data());
  EXPECT_NEAR(values[259], -3.0f, 1e-6);
  EXPECT_EQ(values[0], 0.0f);
}

}  // namespace
}  // namespace ringmoe::cpu
