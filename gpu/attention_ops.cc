#include "gpu/attention_ops.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "gpu/device.h"
#include "io/status_macros.h"

#if RINGMOE_HAVE_CUDA
#include "gpu/attention_kernels.cuh"
#include "gpu/cuda_status.cuh"
#endif

namespace ringmoe::gpu {

#if RINGMOE_HAVE_CUDA
using internal::AsCuda;

absl::Status ApplyRope(float* x, int tokens, int heads, int head_dim, const int32_t* positions, double theta,
                       const Stream& stream) {
  if (tokens < 0 || heads <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("gpu::ApplyRope: tokens ", tokens, ", heads ", heads));
  }
  if (head_dim <= 0 || head_dim % 2 != 0 || head_dim > kernels::kMaxRopeHeadDim) {
    return absl::InvalidArgumentError(absl::StrCat("gpu::ApplyRope: head_dim ", head_dim,
                                                   " must be even and at most ", kernels::kMaxRopeHeadDim));
  }
  if (!(theta > 0) || !std::isfinite(theta)) {
    return absl::InvalidArgumentError(absl::StrCat("gpu::ApplyRope: theta ", theta, " must be positive"));
  }
  if (tokens == 0) return absl::OkStatus();
  if (x == nullptr || positions == nullptr) return absl::InvalidArgumentError("gpu::ApplyRope: null pointer");
  RINGMOE_RETURN_IF_ERROR(RequireGpu());
  // Exactly cpu::ApplyRope's expression (same compiler, same libm powf), so the tables are bit-identical: at
  // position 32k one ulp of inv_freq would already move the angle by ~2e-3 radians.
  kernels::RopeInvFreq inv_freq{};
  for (int i = 0; i < head_dim / 2; ++i) {
    float exponent = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    inv_freq.values[i] = 1.0f / std::pow(static_cast<float>(theta), exponent);
  }
  RINGMOE_CUDA_RETURN_IF_ERROR(
      kernels::LaunchApplyRope(x, tokens, heads, head_dim, positions, inv_freq, AsCuda(stream)),
      "RoPE kernel");
  return absl::OkStatus();
}

absl::Status ClampInPlace(float* x, int64_t count, float limit, const Stream& stream) {
  if (count < 0) return absl::InvalidArgumentError("gpu::ClampInPlace: negative count");
  if (!(limit >= 0)) {
    return absl::InvalidArgumentError(absl::StrCat("gpu::ClampInPlace: limit ", limit, " must be >= 0"));
  }
  if (count == 0) return absl::OkStatus();
  if (x == nullptr) return absl::InvalidArgumentError("gpu::ClampInPlace: null pointer");
  RINGMOE_RETURN_IF_ERROR(RequireGpu());
  RINGMOE_CUDA_RETURN_IF_ERROR(kernels::LaunchClamp(x, count, limit, AsCuda(stream)), "clamp kernel");
  return absl::OkStatus();
}

absl::Status PrefillAttention(const float* q, const float* k, const float* v, const int32_t* chunk_rows,
                              int chunks, int max_chunk_rows, int heads, int kv_heads, int head_dim,
                              float scale, int sliding_window, float* out, const Stream& stream) {
  // The grid's y dimension is the chunk.
  if (chunks < 0 || chunks > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("gpu::PrefillAttention: chunks ", chunks, " must be in [0, 65535]"));
  }
  if (max_chunk_rows < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("gpu::PrefillAttention: negative max_chunk_rows ", max_chunk_rows));
  }
  if (heads <= 0 || kv_heads <= 0 || heads % kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat("gpu::PrefillAttention: heads ", heads, ", kv_heads ",
                                                   kv_heads, " (heads must be a multiple of kv_heads)"));
  }
  if (head_dim <= 0 || head_dim > kernels::kMaxAttentionHeadDim) {
    return absl::InvalidArgumentError(absl::StrCat("gpu::PrefillAttention: head_dim ", head_dim,
                                                   " must be in [1, ", kernels::kMaxAttentionHeadDim, "]"));
  }
  if (!std::isfinite(scale)) {
    return absl::InvalidArgumentError(absl::StrCat("gpu::PrefillAttention: scale ", scale, " is not finite"));
  }
  if (chunks == 0 || max_chunk_rows == 0) return absl::OkStatus();
  if (q == nullptr || k == nullptr || v == nullptr || chunk_rows == nullptr || out == nullptr) {
    return absl::InvalidArgumentError("gpu::PrefillAttention: null pointer");
  }
  RINGMOE_RETURN_IF_ERROR(RequireGpu());
  RINGMOE_CUDA_RETURN_IF_ERROR(
      kernels::LaunchPrefillAttention(q, k, v, chunk_rows, chunks, max_chunk_rows, heads, kv_heads, head_dim,
                                      scale, sliding_window, out, AsCuda(stream)),
      absl::StrCat("prefill attention kernel (", chunks, " chunks, heads ", heads, "/", kv_heads,
                   ", head_dim ", head_dim, ")"));
  return absl::OkStatus();
}

#else  // !RINGMOE_HAVE_CUDA

absl::Status ApplyRope(float*, int, int, int, const int32_t*, double, const Stream&) {
  return NotBuiltWithCuda();
}
absl::Status ClampInPlace(float*, int64_t, float, const Stream&) { return NotBuiltWithCuda(); }
absl::Status PrefillAttention(const float*, const float*, const float*, const int32_t*, int, int, int, int,
                              int, float, int, float*, const Stream&) {
  return NotBuiltWithCuda();
}

#endif

}  // namespace ringmoe::gpu
