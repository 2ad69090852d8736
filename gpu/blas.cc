#include "gpu/blas.h"

#include <utility>

#include "gpu/device.h"
#include "io/status_macros.h"

#if RINGMOE_HAVE_CUDA
#include <cublas_v2.h>

#include "gpu/cuda_status.cuh"
#endif

namespace ringmoe::gpu {

BlasHandle::BlasHandle(BlasHandle&& other) noexcept
    : handle_(std::exchange(other.handle_, nullptr)),
      workspace_(std::move(other.workspace_)),
      bound_stream_(std::exchange(other.bound_stream_, nullptr)) {}

BlasHandle& BlasHandle::operator=(BlasHandle&& other) noexcept {
  if (this != &other) {
    BlasHandle dying(std::move(*this));
    handle_ = std::exchange(other.handle_, nullptr);
    workspace_ = std::move(other.workspace_);
    bound_stream_ = std::exchange(other.bound_stream_, nullptr);
  }
  return *this;
}

#if RINGMOE_HAVE_CUDA

absl::StatusOr<BlasHandle> BlasHandle::Create(DeviceArena& arena, int64_t workspace_bytes) {
  RINGMOE_RETURN_IF_ERROR(RequireGpu());
  BlasHandle blas;
  RINGMOE_ASSIGN_OR_RETURN(blas.workspace_, arena.Allocate(workspace_bytes, "cuBLAS workspace"));
  cublasHandle_t handle = nullptr;
  RINGMOE_CUBLAS_RETURN_IF_ERROR(cublasCreate(&handle), "cublasCreate");
  blas.handle_ = handle;
  RINGMOE_CUBLAS_RETURN_IF_ERROR(cublasSetMathMode(handle, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
  RINGMOE_CUBLAS_RETURN_IF_ERROR(
      cublasSetWorkspace(handle, blas.workspace_.data(), static_cast<size_t>(blas.workspace_.size())),
      "cublasSetWorkspace");
  return blas;
}

BlasHandle::~BlasHandle() {
  if (handle_ != nullptr) cublasDestroy(static_cast<cublasHandle_t>(handle_));
}

absl::Status BlasHandle::Bind(const Stream& stream) {
  if (handle_ == nullptr) return absl::FailedPreconditionError("BlasHandle used before Create");
  if (bound_stream_ == stream.handle()) return absl::OkStatus();
  auto handle = static_cast<cublasHandle_t>(handle_);
  RINGMOE_CUBLAS_RETURN_IF_ERROR(cublasSetStream(handle, internal::AsCuda(stream)), "cublasSetStream");
  RINGMOE_CUBLAS_RETURN_IF_ERROR(
      cublasSetWorkspace(handle, workspace_.data(), static_cast<size_t>(workspace_.size())),
      "cublasSetWorkspace");
  bound_stream_ = stream.handle();
  return absl::OkStatus();
}

#else  // !RINGMOE_HAVE_CUDA

absl::StatusOr<BlasHandle> BlasHandle::Create(DeviceArena&, int64_t) { return NotBuiltWithCuda(); }
BlasHandle::~BlasHandle() = default;
absl::Status BlasHandle::Bind(const Stream&) { return NotBuiltWithCuda(); }

#endif

}  // namespace ringmoe::gpu
