// CUDA-only helpers for the gpu/ .cc files: turning cudaError_t / cublasStatus_t into absl::Status, and
// unwrapping the opaque handles of the public headers. Include only under #if RINGMOE_HAVE_CUDA.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "gpu/stream.h"

namespace ringmoe::gpu::internal {

inline absl::Status CudaStatus(cudaError_t error, absl::string_view what) {
  if (error == cudaSuccess) return absl::OkStatus();
  std::string message =
      absl::StrCat(what, ": ", cudaGetErrorName(error), " (", cudaGetErrorString(error), ")");
  if (error == cudaErrorMemoryAllocation) return absl::ResourceExhaustedError(message);
  if (error == cudaErrorNoDevice || error == cudaErrorInsufficientDriver ||
      error == cudaErrorNoKernelImageForDevice)
    return absl::UnavailableError(message);
  return absl::InternalError(message);
}

inline const char* CublasStatusName(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS:
      return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED:
      return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH:
      return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR:
      return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED:
      return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR:
      return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return "CUBLAS_STATUS_NOT_SUPPORTED";
    default:
      return "CUBLAS_STATUS_UNKNOWN";
  }
}

inline absl::Status CublasStatus(cublasStatus_t status, absl::string_view what) {
  if (status == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  std::string message = absl::StrCat(what, ": ", CublasStatusName(status));
  if (status == CUBLAS_STATUS_ALLOC_FAILED) return absl::ResourceExhaustedError(message);
  if (status == CUBLAS_STATUS_NOT_SUPPORTED || status == CUBLAS_STATUS_ARCH_MISMATCH)
    return absl::UnimplementedError(message);
  return absl::InternalError(message);
}

inline cudaStream_t AsCuda(const Stream& stream) { return static_cast<cudaStream_t>(stream.handle()); }
inline cudaEvent_t AsCuda(const Event& event) { return static_cast<cudaEvent_t>(event.handle()); }

}  // namespace ringmoe::gpu::internal

// `what` is only evaluated on failure, so it may format (absl::StrCat) without slowing the success path.
#define RINGMOE_CUDA_RETURN_IF_ERROR(expr, what)                                \
  do {                                                                          \
    const cudaError_t ringmoe_cuda_error_ = (expr);                             \
    if (ringmoe_cuda_error_ != cudaSuccess)                                     \
      return ::ringmoe::gpu::internal::CudaStatus(ringmoe_cuda_error_, (what)); \
  } while (0)

#define RINGMOE_CUBLAS_RETURN_IF_ERROR(expr, what)                                   \
  do {                                                                               \
    const cublasStatus_t ringmoe_cublas_status_ = (expr);                            \
    if (ringmoe_cublas_status_ != CUBLAS_STATUS_SUCCESS)                             \
      return ::ringmoe::gpu::internal::CublasStatus(ringmoe_cublas_status_, (what)); \
  } while (0)
