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

cudaError_t LaunchSigmoid(float* x, int64_t count, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  const int64_t blocks = (count + kThreads - 1) / kThreads;
  SigmoidKernel<<<static_cast<int>(blocks < 65535 ? blocks : 65535), kThreads, 0, stream>>>(x, count);
  return cudaGetLastError();
}

}  // namespace ringmoe::gpu::kernels
