#include "cpu/fp8_blocks.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace ringmoe::cpu {
namespace {

float ScaleAt(io::DType scale_dtype, const void* scale_inv, int64_t index) {
  const auto* bytes = static_cast<const uint8_t*>(scale_inv);
  if (scale_dtype == io::DType::kBF16) {
    uint16_t bits;
    std::memcpy(&bits, bytes + 2 * index, 2);
    return io::BF16ToF32(bits);
  }
  float value;
  std::memcpy(&value, bytes + 4 * index, 4);
  return value;
}

}  // namespace

void DequantizeFp8Blocks(const Fp8BlockShape& shape, io::DType weight_dtype, const uint8_t* weight,
                         io::DType scale_dtype, const void* scale_inv, float* out) {
  // A row at a time: widen through the exact table conversion, then scale each block's span of the row.
  std::vector<float> scales(static_cast<size_t>(shape.scale_cols()));
  for (int64_t r = 0; r < shape.rows; ++r) {
    float* row = out + r * shape.cols;
    // Cannot fail: the caller passes an FP8 dtype.
    (void)io::ConvertToF32(weight_dtype, weight + r * shape.cols, row, static_cast<size_t>(shape.cols));
    if (r % shape.block_rows == 0) {
      const int64_t scale_row = r / shape.block_rows;
      for (int64_t j = 0; j < shape.scale_cols(); ++j) {
        scales[j] = ScaleAt(scale_dtype, scale_inv, scale_row * shape.scale_cols() + j);
      }
    }
    for (int64_t j = 0; j < shape.scale_cols(); ++j) {
      const float scale = scales[j];
      const int64_t end = std::min(shape.cols, (j + 1) * shape.block_cols);
      for (int64_t c = j * shape.block_cols; c < end; ++c) row[c] *= scale;
    }
  }
}

void QuantizeFp8Blocks(const Fp8BlockShape& shape, const float* values, uint8_t* weight, float* scale_inv) {
  for (int64_t bi = 0; bi < shape.scale_rows(); ++bi) {
    const int64_t row_end = std::min(shape.rows, (bi + 1) * shape.block_rows);
    for (int64_t bj = 0; bj < shape.scale_cols(); ++bj) {
      const int64_t col_begin = bj * shape.block_cols;
      const int64_t col_end = std::min(shape.cols, col_begin + shape.block_cols);
      float amax = 0.0f;
      for (int64_t r = bi * shape.block_rows; r < row_end; ++r) {
        for (int64_t c = col_begin; c < col_end; ++c)
          amax = std::max(amax, std::fabs(values[r * shape.cols + c]));
      }
      // An all-zero block keeps scale 1 (any scale gives zeros); a non-finite amax is the caller's NaN/inf,
      // which then saturates or stays NaN.
      const float scale = amax > 0.0f && std::isfinite(amax) ? amax / io::kF8E4M3Max : 1.0f;
      scale_inv[bi * shape.scale_cols() + bj] = scale;
      for (int64_t r = bi * shape.block_rows; r < row_end; ++r) {
        for (int64_t c = col_begin; c < col_end; ++c) {
          weight[r * shape.cols + c] = io::F32ToF8E4M3(values[r * shape.cols + c] / scale);
        }
      }
    }
  }
}

float QuantizeFp8Row(const float* values, int count, uint8_t* out) {
  float amax = 0.0f;
  for (int i = 0; i < count; ++i) amax = std::max(amax, std::fabs(values[i]));
  const float scale = amax > 0.0f && std::isfinite(amax) ? amax / io::kF8E4M3Max : 1.0f;
  for (int i = 0; i < count; ++i) out[i] = io::F32ToF8E4M3(values[i] / scale);
  return scale;
}

void RoundTripFp8Blocks(const Fp8BlockShape& shape, float* values) {
  std::vector<uint8_t> weight(static_cast<size_t>(shape.rows * shape.cols));
  std::vector<float> scales(static_cast<size_t>(shape.num_scales()));
  QuantizeFp8Blocks(shape, values, weight.data(), scales.data());
  DequantizeFp8Blocks(shape, io::DType::kF8E4M3, weight.data(), io::DType::kF32, scales.data(), values);
}

}  // namespace ringmoe::cpu
