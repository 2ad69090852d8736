// Element-wise and row-reduction kernels of the dense part of a layer: RMSNorm, residual add, bias,
// f32 <-> bf16 conversion, greedy argmax with its log-softmax value, and a random fill for tests/benchmarks.
#include <cuda_bf16.h>

#include <cfloat>

#include "gpu/kernels.cuh"

namespace ringmoe::gpu::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int kWarp = 32;

int GridFor(int64_t work) {
  int64_t blocks = (work + kThreads - 1) / kThreads;
  return static_cast<int>(blocks < 8192 ? (blocks > 0 ? blocks : 1) : 8192);
}

// Sum over the block; every thread gets the result. `scratch` holds one float per warp.
__device__ float BlockSum(float value, float* scratch) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) value += __shfl_xor_sync(0xffffffffu, value, offset);
  const int warp = threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  const int warps = (blockDim.x + kWarp - 1) / kWarp;
  __syncthreads();  // scratch may still be read by a previous call.
  if (lane == 0) scratch[warp] = value;
  __syncthreads();
  float total = 0;
  for (int w = 0; w < warps; ++w) total += scratch[w];
  return total;
}

__global__ void RmsNormKernel(const float* x, const float* __restrict__ weight, int width, float eps,
                              float* out) {
  __shared__ float scratch[32];
  const float* row = x + static_cast<size_t>(blockIdx.x) * width;
  float* out_row = out + static_cast<size_t>(blockIdx.x) * width;
  float sum = 0;
  for (int i = threadIdx.x; i < width; i += blockDim.x) sum += row[i] * row[i];
  const float scale = rsqrtf(BlockSum(sum, scratch) / width + eps);
  // out may alias x: each element is read and written by the same thread, after the reduction.
  for (int i = threadIdx.x; i < width; i += blockDim.x) out_row[i] = row[i] * scale * weight[i];
}

__global__ void ResidualAddKernel(float* __restrict__ x, const float* __restrict__ y, int64_t count) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    x[i] += y[i];
}

__global__ void AddRowBiasKernel(float* __restrict__ y, const float* __restrict__ bias, int rows, int cols) {
  const int64_t count = static_cast<int64_t>(rows) * cols;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    y[i] += bias[i % cols];
}

__global__ void F32ToBf16Kernel(const float* __restrict__ in, int64_t count,
                                __nv_bfloat16* __restrict__ out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[i] = __float2bfloat16_rn(in[i]);
}

__global__ void Bf16ToF32Kernel(const __nv_bfloat16* __restrict__ in, int64_t count,
                                float* __restrict__ out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[i] = __bfloat162float(in[i]);
}

__device__ __forceinline__ bool Better(float a, int a_id, float b, int b_id) {
  return a > b || (a == b && a_id < b_id);
}

constexpr int kArgmaxThreads = 1024;

__global__ void ArgmaxLogSoftmaxKernel(const float* __restrict__ logits, int vocab,
                                       int32_t* __restrict__ token_ids, float* __restrict__ logprobs) {
  __shared__ float best_values[kArgmaxThreads / kWarp];
  __shared__ int best_ids[kArgmaxThreads / kWarp];
  __shared__ float scratch[32];
  const float* row = logits + static_cast<size_t>(blockIdx.x) * vocab;
  float best = -FLT_MAX;
  int best_id = vocab;
  for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
    if (best_id == vocab || Better(row[i], i, best, best_id)) {
      best = row[i];
      best_id = i;
    }
  }
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    float other = __shfl_xor_sync(0xffffffffu, best, offset);
    int other_id = __shfl_xor_sync(0xffffffffu, best_id, offset);
    if (other_id != vocab && (best_id == vocab || Better(other, other_id, best, best_id))) {
      best = other;
      best_id = other_id;
    }
  }
  const int warp = threadIdx.x / kWarp;
  const int warps = blockDim.x / kWarp;
  if (threadIdx.x % kWarp == 0) {
    best_values[warp] = best;
    best_ids[warp] = best_id;
  }
  __syncthreads();
  best = best_values[0];
  best_id = best_ids[0];
  for (int w = 1; w < warps; ++w) {
    if (best_ids[w] != vocab && (best_id == vocab || Better(best_values[w], best_ids[w], best, best_id))) {
      best = best_values[w];
      best_id = best_ids[w];
    }
  }
  float sum = 0;
  for (int i = threadIdx.x; i < vocab; i += blockDim.x) sum += expf(row[i] - best);
  sum = BlockSum(sum, scratch);
  if (threadIdx.x == 0) {
    token_ids[blockIdx.x] = best_id;
    logprobs[blockIdx.x] = -logf(sum);
  }
}

__device__ __forceinline__ uint64_t SplitMix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

__global__ void FillRandomBf16Kernel(__nv_bfloat16* __restrict__ out, int64_t count, uint64_t seed,
                                     float scale) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const uint64_t bits = SplitMix64(seed * 0x632be59bd9b4e019ull + static_cast<uint64_t>(i));
    const float unit = static_cast<float>(bits >> 40) * (1.0f / 16777216.0f);  // [0, 1)
    out[i] = __float2bfloat16_rn((2.0f * unit - 1.0f) * scale);
  }
}

}  // namespace

cudaError_t LaunchRmsNorm(const float* x, const float* weight, int rows, int width, float eps, float* out,
                          cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  RmsNormKernel<<<rows, kThreads, 0, stream>>>(x, weight, width, eps, out);
  return cudaGetLastError();
}

cudaError_t LaunchResidualAdd(float* x, const float* y, int64_t count, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  ResidualAddKernel<<<GridFor(count), kThreads, 0, stream>>>(x, y, count);
  return cudaGetLastError();
}

cudaError_t LaunchAddRowBias(float* y, const float* bias, int rows, int cols, cudaStream_t stream) {
  if (rows == 0 || cols == 0) return cudaSuccess;
  AddRowBiasKernel<<<GridFor(static_cast<int64_t>(rows) * cols), kThreads, 0, stream>>>(y, bias, rows, cols);
  return cudaGetLastError();
}

cudaError_t LaunchF32ToBf16(const float* in, int64_t count, uint16_t* out, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  F32ToBf16Kernel<<<GridFor(count), kThreads, 0, stream>>>(in, count, reinterpret_cast<__nv_bfloat16*>(out));
  return cudaGetLastError();
}

cudaError_t LaunchBf16ToF32(const uint16_t* in, int64_t count, float* out, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  Bf16ToF32Kernel<<<GridFor(count), kThreads, 0, stream>>>(reinterpret_cast<const __nv_bfloat16*>(in), count,
                                                           out);
  return cudaGetLastError();
}

cudaError_t LaunchArgmaxLogSoftmax(const float* logits, int rows, int vocab, int32_t* token_ids,
                                   float* logprobs, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  ArgmaxLogSoftmaxKernel<<<rows, kArgmaxThreads, 0, stream>>>(logits, vocab, token_ids, logprobs);
  return cudaGetLastError();
}

cudaError_t LaunchFillRandomBf16(uint16_t* out, int64_t count, uint64_t seed, float scale,
                                 cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  FillRandomBf16Kernel<<<GridFor(count), kThreads, 0, stream>>>(reinterpret_cast<__nv_bfloat16*>(out), count,
                                                                seed, scale);
  return cudaGetLastError();
}

}  // namespace ringmoe::gpu::kernels
