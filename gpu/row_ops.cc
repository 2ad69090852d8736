#include "gpu/row_ops.h"

#include "gpu/device.h"

#if RINGMOE_HAVE_CUDA
#include "gpu/cuda_status.cuh"
#include "gpu/row_kernels.cuh"
#endif

namespace ringmoe::gpu {

#if RINGMOE_HAVE_CUDA
using internal::AsCuda;

absl::Status GatherRowsF32(const float* src, const int32_t* rows, int count, int width, float* dst,
                           const Stream& stream) {
  if (count < 0 || width <= 0) return absl::InvalidArgumentError("gpu::GatherRowsF32: bad shape");
  RINGMOE_CUDA_RETURN_IF_ERROR(kernels::LaunchGatherRowsF32(src, rows, count, width, dst, AsCuda(stream)),
                               "row gather kernel");
  return absl::OkStatus();
}

absl::Status CopyHostToDeviceByKernel(void* device_dst, const void* host_src, int64_t bytes,
                                      const Stream& stream) {
  if (bytes < 0) return absl::InvalidArgumentError("gpu::CopyHostToDeviceByKernel: negative size");
  RINGMOE_CUDA_RETURN_IF_ERROR(kernels::LaunchCopyBytes(host_src, bytes, device_dst, AsCuda(stream)),
                               "host-read copy kernel");
  return absl::OkStatus();
}

absl::Status SigmoidInPlace(float* x, int64_t count, const Stream& stream) {
  if (count < 0) return absl::InvalidArgumentError("gpu::SigmoidInPlace: negative count");
  RINGMOE_CUDA_RETURN_IF_ERROR(kernels::LaunchSigmoid(x, count, AsCuda(stream)), "sigmoid kernel");
  return absl::OkStatus();
}

#else  // !RINGMOE_HAVE_CUDA

absl::Status GatherRowsF32(const float*, const int32_t*, int, int, float*, const Stream&) {
  return NotBuiltWithCuda();
}
absl::Status CopyHostToDeviceByKernel(void*, const void*, int64_t, const Stream&) {
  return NotBuiltWithCuda();
}
absl::Status SigmoidInPlace(float*, int64_t, const Stream&) { return NotBuiltWithCuda(); }

#endif

}  // namespace ringmoe::gpu
