// FP8 block quantisation, the layout of Hugging Face's fine-grained FP8 checkpoints: an F8_E4M3 matrix with
// one f32 factor (`scale_inv`) per block of block_rows x block_cols, value = fp8 * scale_inv. Edge blocks of
// a matrix whose sides are not multiples of the block are partial. Dequantisation lets the CPU path (and,
// until the GPU's FP8 GEMM exists, the GPU path) load FP8 checkpoints; the quantiser is --expert-dtype fp8.
// Threading: pure functions over caller-owned buffers.
#pragma once

#include <cstdint>

#include "io/dtype.h"

namespace ringmoe::cpu {

struct Fp8BlockShape {
  int64_t rows = 0, cols = 0;
  int block_rows = 128, block_cols = 128;
  int64_t scale_rows() const { return (rows + block_rows - 1) / block_rows; }
  int64_t scale_cols() const { return (cols + block_cols - 1) / block_cols; }
  int64_t num_scales() const { return scale_rows() * scale_cols(); }
};

// out[r * cols + c] = fp8(weight[r * cols + c]) * scale_inv[r / block_rows][c / block_cols], in f32 (the
// product rounded once, as torch's `weight.float() * scale_inv` does). weight_dtype: kF8E4M3 or kF8E5M2;
// scale_dtype: kF32 or BF16 (the caller validated both). Neither input need be aligned.
void DequantizeFp8Blocks(const Fp8BlockShape& shape, io::DType weight_dtype, const uint8_t* weight,
                         io::DType scale_dtype, const void* scale_inv, float* out);

// The quantiser: per block scale_inv = amax / 448 (1 for an all-zero block), and each weight the e4m3 value
// nearest (ties to even) to value / scale_inv, saturating at +-448. A value then differs from its
// dequantisation by at most half an e4m3 step: 2^-4 of its magnitude, or 2^-10 * scale_inv near zero.
// weight[rows * cols] e4m3, scale_inv[num_scales()] row-major.
void QuantizeFp8Blocks(const Fp8BlockShape& shape, const float* values, uint8_t* weight, float* scale_inv);

// One row (a KV-cache head's K or V of one token) as e4m3 with a single scale: returns scale_inv = amax / 448
// (1 for an all-zero row) and writes out[count]. The same rounding and bound as QuantizeFp8Blocks.
float QuantizeFp8Row(const float* values, int count, uint8_t* out);

// QuantizeFp8Blocks then DequantizeFp8Blocks, in place: the values an FP8 copy of the matrix holds.
void RoundTripFp8Blocks(const Fp8BlockShape& shape, float* values);

}  // namespace ringmoe::cpu
