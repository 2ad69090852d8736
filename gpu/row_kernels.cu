#include "gpu/row_kernels.cuh"

namespace ringmoe::gpu::kernels {
namespace {

constexpr int kThreads = 256;

__global__ void GatherRowsF32Kernel(const float* __restrict__ src, const int32_t* __restrict__ rows,
                                    int width, float* __restrict__ dst) {
  const float* from = src + static_cast<int64_t>(rows[blockIdx.x]) * width;
  float* to = dst + static_cast<int64_t>(blockIdx.x) * width;
  for (int i = threadIdx.x; i < width; i += blockDim.x) to[i] = from[i];
}

// 16-byte words where both ends allow, bytes for the rest.
__global__ void CopyBytesKernel(const unsigned char* __restrict__ src, int64_t bytes,
                                unsigned char* __restrict__ dst) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  int64_t words = 0;
  if (reinterpret_cast<uintptr_t>(src) % 16 == 0 && reinterpret_cast<uintptr_t>(dst) % 16 == 0) {
    words = bytes / 16;
    for (int64_t i = first; i < words; i += stride)
      reinterpret_cast<uint4*>(dst)[i] = reinterpret_cast<const uint4*>(src)[i];
  }
  for (int64_t i = words * 16 + first; i < bytes; i += stride) dst[i] = src[i];
}

__global__ void SigmoidKernel(float* __restrict__ x, int64_t count) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    x[i] = 1.0f / (1.0f + expf(-x[i]));
}

}  // namespace

cudaError_t LaunchGatherRowsF32(const float* src, const int32_t* rows, int count, int width, float* dst,
                                cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  GatherRowsF32Kernel<<<count, kThreads, 0, stream>>>(src, rows, width, dst);
  return cudaGetLastError();
}

cudaError_t LaunchCopyBytes(const void* src, int64_t bytes, void* dst, cudaStream_t stream) {
  if (bytes == 0) return cudaSuccess;
  const int64_t blocks = (bytes / 16 + kThreads) / kThreads;
  CopyBytesKernel<<<static_cast<int>(blocks < 1024 ? blocks : 1024), kThreads, 0, stream>>>(
      static_cast<const unsigned char*>(src), bytes, static_cast<unsigned char*>(dst));
  return cudaGetLastError();
}

cudaError_t LaunchSigmoid(float* x, int64_t count, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  const int64_t blocks = (count + kThreads - 1) / kThreads;
  SigmoidKernel<<<static_cast<int>(blocks < 65535 ? blocks : 65535), kThreads, 0, stream>>>(x, count);
  return cudaGetLastError();
}

}  // namespace ringmoe::gpu::kernels
