// Row gathers and the sigmoid gate, for the engine's step on the GPU; twins are the obvious host loops
// (tests/gpu_row_ops_test.cc). All pointers are device pointers; queued on `stream`.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "gpu/stream.h"

namespace ringmoe::gpu {

// dst[i, :] = src[rows[i], :] for i < count; rows of `width` f32.
absl::Status GatherRowsF32(const float* src, const int32_t* rows, int count, int width, float* dst,
                           const Stream& stream);
// x[i] = 1 / (1 + exp(-x[i])): Qwen2-MoE's shared-expert gate.
absl::Status SigmoidInPlace(float* x, int64_t count, const Stream& stream);

}  // namespace ringmoe::gpu
