#include "gpu/dense_ops.h"

#include "absl/strings/str_cat.h"
#include "gpu/device.h"
#include "io/status_macros.h"

#if RINGMOE_HAVE_CUDA
#include <cublas_v2.h>

#include "gpu/cuda_status.cuh"
#include "gpu/kernels.cuh"
#endif

namespace ringmoe::gpu {

#if RINGMOE_HAVE_CUDA
using internal::AsCuda;

absl::Status LinearBf16(BlasHandle& blas, const void* x_bf16, int m, const void* w_bf16, int out_features,
                        int in_features, const float* bias, float* y, const Stream& stream) {
  RINGMOE_RETURN_IF_ERROR(RequireGpu());
  if (m < 0 || out_features <= 0 || in_features <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("gpu::LinearBf16: m ", m, ", out ", out_features, ", in ", in_features));
  }
  if (m == 0) return absl::OkStatus();
  RINGMOE_RETURN_IF_ERROR(blas.Bind(stream));
  const float alpha = 1.0f, beta = 0.0f;
  // Row-major y = x w^T is column-major y^T = w x^T: A = w seen as [in, out] column-major, transposed.
  RINGMOE_CUBLAS_RETURN_IF_ERROR(
      cublasGemmEx(static_cast<cublasHandle_t>(blas.handle()), CUBLAS_OP_T, CUBLAS_OP_N, out_features, m,
                   in_features, &alpha, w_bf16, CUDA_R_16BF, in_features, x_bf16, CUDA_R_16BF, in_features,
                   &beta, y, CUDA_R_32F, out_features, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
      absl::StrCat("cublasGemmEx (linear ", m, "x", in_features, " -> ", out_features, ")"));
  if (bias != nullptr) {
    RINGMOE_CUDA_RETURN_IF_ERROR(kernels::LaunchAddRowBias(y, bias, m, out_features, AsCuda(stream)),
                                 "bias add");
  }
  return absl::OkStatus();
}

absl::Status LinearF32(BlasHandle& blas, const float* x, int m, const float* w, int out_features,
                       int in_features, float* y, const Stream& stream) {
  if (m < 0 || out_features <= 0 || in_features <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("gpu::LinearF32: m ", m, ", out ", out_features, ", in ", in_features));
  }
  if (m == 0) return absl::OkStatus();
  RINGMOE_RETURN_IF_ERROR(blas.Bind(stream));
  const float alpha = 1.0f, beta = 0.0f;
  RINGMOE_CUBLAS_RETURN_IF_ERROR(
      cublasGemmEx(static_cast<cublasHandle_t>(blas.handle()), CUBLAS_OP_T, CUBLAS_OP_N, out_features, m,
                   in_features, &alpha, w, CUDA_R_32F, in_features, x, CUDA_R_32F, in_features, &beta, y,
                   CUDA_R_32F, out_features, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
      absl::StrCat("cublasGemmEx (f32 linear ", m, "x", in_features, " -> ", out_features, ")"));
  return absl::OkStatus();
}

absl::Status RmsNorm(const float* x, const float* weight, int rows, int width, float eps, float* out,
                     const Stream& stream) {
  RINGMOE_RETURN_IF_ERROR(RequireGpu());
  if (rows < 0 || width <= 0)
    return absl::InvalidArgumentError(absl::StrCat("gpu::RmsNorm: ", rows, "x", width));
  RINGMOE_CUDA_RETURN_IF_ERROR(kernels::LaunchRmsNorm(x, weight, rows, width, eps, out, AsCuda(stream)),
                               "RMSNorm kernel");
  return absl::OkStatus();
}

absl::Status ResidualAdd(float* x, const float* y, int64_t count, const Stream& stream) {
  RINGMOE_RETURN_IF_ERROR(RequireGpu());
  if (count < 0) return absl::InvalidArgumentError("gpu::ResidualAdd: negative count");
  RINGMOE_CUDA_RETURN_IF_ERROR(kernels::LaunchResidualAdd(x, y, count, AsCuda(stream)),
                               "residual add kernel");
  return absl::OkStatus();
}

absl::Status ConvertF32ToBf16(const float* in, int64_t count, void* out_bf16, const Stream& stream) {
  RINGMOE_RETURN_IF_ERROR(RequireGpu());
  if (count < 0) return absl::InvalidArgumentError("gpu::ConvertF32ToBf16: negative count");
  RINGMOE_CUDA_RETURN_IF_ERROR(
      kernels::LaunchF32ToBf16(in, count, static_cast<uint16_t*>(out_bf16), AsCuda(stream)),
      "f32->bf16 kernel");
  return absl::OkStatus();
}

absl::Status ConvertBf16ToF32(const void* in_bf16, int64_t count, float* out, const Stream& stream) {
  RINGMOE_RETURN_IF_ERROR(RequireGpu());
  if (count < 0) return absl::InvalidArgumentError("gpu::ConvertBf16ToF32: negative count");
  RINGMOE_CUDA_RETURN_IF_ERROR(
      kernels::LaunchBf16ToF32(static_cast<const uint16_t*>(in_bf16), count, out, AsCuda(stream)),
      "bf16->f32 kernel");
  return absl::OkStatus();
}

absl::Status GreedyArgmaxLogSoftmax(const float* logits, int rows, int vocab, int32_t* token_ids,
                                    float* logprobs, const Stream& stream) {
  RINGMOE_RETURN_IF_ERROR(RequireGpu());
  if (rows < 0 || vocab <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("gpu::GreedyArgmaxLogSoftmax: ", rows, "x", vocab));
  }
  RINGMOE_CUDA_RETURN_IF_ERROR(
      kernels::LaunchArgmaxLogSoftmax(logits, rows, vocab, token_ids, logprobs, AsCuda(stream)),
      "argmax kernel");
  return absl::OkStatus();
}

absl::Status FillRandomBf16(void* out_bf16, int64_t count, uint64_t seed, float scale, const Stream& stream) {
  RINGMOE_RETURN_IF_ERROR(RequireGpu());
  if (count < 0) return absl::InvalidArgumentError("gpu::FillRandomBf16: negative count");
  RINGMOE_CUDA_RETURN_IF_ERROR(
      kernels::LaunchFillRandomBf16(static_cast<uint16_t*>(out_bf16), count, seed, scale, AsCuda(stream)),
      "random fill kernel");
  return absl::OkStatus();
}

#else  // !RINGMOE_HAVE_CUDA

absl::Status LinearBf16(BlasHandle&, const void*, int, const void*, int, int, const float*, float*,
                        const Stream&) {
  return NotBuiltWithCuda();
}
absl::Status LinearF32(BlasHandle&, const float*, int, const float*, int, int, float*, const Stream&) {
  return NotBuiltWithCuda();
}
absl::Status RmsNorm(const float*, const float*, int, int, float, float*, const Stream&) {
  return NotBuiltWithCuda();
}
absl::Status ResidualAdd(float*, const float*, int64_t, const Stream&) { return NotBuiltWithCuda(); }
absl::Status ConvertF32ToBf16(const float*, int64_t, void*, const Stream&) { return NotBuiltWithCuda(); }
absl::Status ConvertBf16ToF32(const void*, int64_t, float*, const Stream&) { return NotBuiltWithCuda(); }
absl::Status GreedyArgmaxLogSoftmax(const float*, int, int, int32_t*, float*, const Stream&) {
  return NotBuiltWithCuda();
}
absl::Status FillRandomBf16(void*, int64_t, uint64_t, float, const Stream&) { return NotBuiltWithCuda(); }

#endif

}  // namespace ringmoe::gpu
