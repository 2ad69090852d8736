// Linear layers on the CPU through oneDNN matmul: y = x W^T (+ b), W in PyTorch's [out, in] layout.
#pragma once

#include <cstdint>

#include "io/dtype.h"

namespace ringmoe::cpu {
class CpuWorkers;
}

namespace ringmoe::cpu {

// A weight matrix in row-major [rows = out features, cols = in features]. F32 or BF16.
struct Matrix {
  io::DType dtype = io::DType::kF32;
  const void* data = nullptr;
  int rows = 0;
  int cols = 0;
  // 0: data is W as above. > 0: data is W^T, one row per in feature holding the `rows` out features' values
  // first, rows this many elements apart (so the leading values of wider rows serve, without a copy).
  int64_t in_major_stride = 0;
};

// y[m, w.rows] = x[m, w.cols] * w^T (+ bias[w.rows] when non-null). With a BF16 matrix, x is rounded to
// bf16 and the products are accumulated in f32, on every x86-64: oneDNN's bf16 matmul where it has one (AMX /
// AVX512-BF16, emulated on other AVX-512), else (AVX2, or ONEDNN_MAX_CPU_ISA below AVX-512) oneDNN's f32
// matmul over w widened to f32 a cache-sized block of rows at a time. Both give the same products: a product
// of two bf16 values is exact in f32. The widened path costs a conversion per weight per call, so where the
// CPU lacks native bf16 the engine prefers f32 weights (cpu::CpuHasNativeBf16).
// Threads: with `workers`, large products are split into slices of w's rows (contiguous in memory), one
// single-threaded oneDNN matmul per slice on the TBB pool; oneDNN's own OpenMP pool stays at one thread so
// the two never oversubscribe the cores. Without workers it runs on the calling thread.
void Linear(const float* x, int m, const Matrix& w, const float* bias, float* y,
            CpuWorkers* workers = nullptr);

namespace internal {

enum class Bf16LinearPath { kAuto, kWidenToF32 };
// Forces how later Linear calls run BF16 matrices, so tests cover the widened path on any CPU (kAuto:
// oneDNN's bf16 matmul where OneDnnHasBf16Matmul(), else widened).
void SetBf16LinearPathForTesting(Bf16LinearPath path);

}  // namespace internal

}  // namespace ringmoe::cpu
