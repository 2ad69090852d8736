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
};

// y[m, w.rows] = x[m, w.cols] * w^T (+ bias[w.rows] when non-null). With a BF16 matrix, x is rounded to
// bf16 and accumulated in f32 (AMX / AVX512-BF16 where the CPU has them).
// Threads: with `workers`, large products are split into slices of w's rows (contiguous in memory), one
// single-threaded oneDNN matmul per slice on the TBB pool; oneDNN's own OpenMP pool stays at one thread so
// the two never oversubscribe the cores. Without workers it runs on the calling thread.
void Linear(const float* x, int m, const Matrix& w, const float* bias, float* y, CpuWorkers* workers = nullptr);

}  // namespace ringmoe::cpu
