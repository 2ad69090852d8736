// Router top-k on the GPU: one warp per token, the token's scores in shared memory.
#include <cfloat>

#include "gpu/kernels.cuh"

namespace ringmoe::gpu::kernels {
namespace {

constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = 4;

// Higher score wins; equal scores go to the lower expert id (torch.topk on CPU does the same).
__device__ __forceinline__ bool Better(float a, int a_id, float b, int b_id) {
  return a > b || (a == b && a_id < b_id);
}

__global__ void RouteTopKKernel(const float* __restrict__ logits, int tokens, int num_experts, int top_k,
                                bool softmax_first, bool renormalize, int32_t* __restrict__ expert_ids,
                                float* __restrict__ weights) {
  extern __shared__ unsigned char shared[];
  const int warp = threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  const int token = blockIdx.x * kWarpsPerBlock + warp;
  float* scores = reinterpret_cast<float*>(shared) + warp * num_experts;
  unsigned char* taken =
      shared + sizeof(float) * kWarpsPerBlock * num_experts + static_cast<size_t>(warp) * num_experts;
  if (token >= tokens) return;  // Whole warps exit together: no barrier below spans warps.

  const float* row = logits + static_cast<size_t>(token) * num_experts;
  float max_value = -FLT_MAX;
  for (int e = lane; e < num_experts; e += kWarp) {
    scores[e] = row[e];
    taken[e] = 0;
    max_value = fmaxf(max_value, scores[e]);
  }
  for (int offset = kWarp / 2; offset > 0; offset /= 2)
    max_value = fmaxf(max_value, __shfl_xor_sync(0xffffffffu, max_value, offset));
  if (softmax_first) {
    float sum = 0;
    for (int e = lane; e < num_experts; e += kWarp) {
      scores[e] = expf(scores[e] - max_value);
      sum += scores[e];
    }
    for (int offset = kWarp / 2; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
    const float inverse = 1.0f / sum;
    for (int e = lane; e < num_experts; e += kWarp) scores[e] *= inverse;
  }
  __syncwarp();

  float chosen_sum = 0;  // Lane 0 keeps the running sums; it is also the one that writes.
  float first = 0;
  int32_t* ids_out = expert_ids + static_cast<size_t>(token) * top_k;
  float* weights_out = weights + static_cast<size_t>(token) * top_k;
  for (int j = 0; j < top_k; ++j) {
    float best = -FLT_MAX;
    int best_id = num_experts;
    for (int e = lane; e < num_experts; e += kWarp) {
      if (!taken[e] && (best_id == num_experts || Better(scores[e], e, best, best_id))) {
        best = scores[e];
        best_id = e;
      }
    }
    for (int offset = kWarp / 2; offset > 0; offset /= 2) {
      float other = __shfl_xor_sync(0xffffffffu, best, offset);
      int other_id = __shfl_xor_sync(0xffffffffu, best_id, offset);
      if (other_id != num_experts && (best_id == num_experts || Better(other, other_id, best, best_id))) {
        best = other;
        best_id = other_id;
      }
    }
    if (lane == 0) {
      taken[best_id] = 1;
      ids_out[j] = best_id;
      if (softmax_first) {
        weights_out[j] = best;
        chosen_sum += best;
      } else {
        if (j == 0) first = best;  // The largest chosen logit: the softmax's shift.
        weights_out[j] = expf(best - first);
        chosen_sum += weights_out[j];
      }
    }
    __syncwarp();
  }
  if (lane == 0 && (!softmax_first || renormalize)) {
    const float inverse = 1.0f / chosen_sum;
    for (int j = 0; j < top_k; ++j) weights_out[j] *= inverse;
  }
}

__global__ void NoopKernel() {}

}  // namespace

cudaError_t CheckKernelImage() {
  cudaFuncAttributes attributes;
  return cudaFuncGetAttributes(&attributes, NoopKernel);
}

cudaError_t LaunchRouteTopK(const float* logits, int tokens, int num_experts, int top_k, bool softmax_first,
                            bool renormalize, int32_t* expert_ids, float* weights, cudaStream_t stream) {
  if (tokens == 0) return cudaSuccess;
  const int blocks = (tokens + kWarpsPerBlock - 1) / kWarpsPerBlock;
  const size_t shared = static_cast<size_t>(kWarpsPerBlock) * num_experts * (sizeof(float) + 1);
  RouteTopKKernel<<<blocks, kWarpsPerBlock * kWarp, shared, stream>>>(
      logits, tokens, num_experts, top_k, softmax_first, renormalize, expert_ids, weights);
  return cudaGetLastError();
}

}  // namespace ringmoe::gpu::kernels
