// The non-GEMM kernels of the routed-expert pass: sort assignments by expert, gather rows, SwiGLU on the
// fused gate/up output, and the weighted combine back into token order.
#include <cuda_bf16.h>

#include <cub/device/device_radix_sort.cuh>

#include "gpu/kernels.cuh"

namespace ringmoe::gpu::kernels {
namespace {

constexpr int kThreads = 256;

size_t Align(size_t value) { return (value + 255) / 256 * 256; }

int BitsFor(int num_experts) {
  int bits = 1;
  while ((1 << bits) < num_experts) ++bits;
  return bits;
}

__global__ void CountKernel(const int32_t* __restrict__ expert_ids, int assignments, int num_experts,
                            int32_t* __restrict__ counts, int32_t* __restrict__ iota) {
  for (int a = blockIdx.x * blockDim.x + threadIdx.x; a < assignments; a += gridDim.x * blockDim.x) {
    int32_t e = expert_ids[a];
    atomicAdd(&counts[(e >= 0 && e < num_experts) ? e : num_experts], 1);
    iota[a] = a;
  }
}

// One thread: num_experts is small (<= a few hundred). host_counts (pinned, mapped; may be null) gets the
// counts and the out-of-range slot, written from here rather than copied back by a copy engine.
__global__ void OffsetsKernel(const int32_t* __restrict__ counts, int num_experts,
                              int32_t* __restrict__ offsets, int32_t* __restrict__ host_counts) {
  int32_t running = 0;
  for (int e = 0; e < num_experts; ++e) {
    offsets[e] = running;
    running += counts[e];
    if (host_counts != nullptr) host_counts[e] = counts[e];
  }
  offsets[num_experts] = running;
  if (host_counts != nullptr) host_counts[num_experts] = counts[num_experts];
}

__global__ void InverseKernel(const int32_t* __restrict__ permutation, int assignments,
                              int32_t* __restrict__ inverse) {
  for (int s = blockIdx.x * blockDim.x + threadIdx.x; s < assignments; s += gridDim.x * blockDim.x)
    inverse[permutation[s]] = s;
}

__global__ void GatherRowsKernel(const uint16_t* __restrict__ x, int hidden,
                                 const int32_t* __restrict__ permutation, int top_k,
                                 uint16_t* __restrict__ sorted_x) {
  const int s = blockIdx.x;
  const int token = permutation[s] / top_k;
  const uint16_t* src = x + static_cast<size_t>(token) * hidden;
  uint16_t* dst = sorted_x + static_cast<size_t>(s) * hidden;
  const bool vectors = hidden % 8 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
                       reinterpret_cast<uintptr_t>(sorted_x) % 16 == 0;
  if (vectors) {  // 16-byte vectors; rows stay 16-byte aligned as hidden * 2 is a multiple of 16.
    const uint4* src4 = reinterpret_cast<const uint4*>(src);
    uint4* dst4 = reinterpret_cast<uint4*>(dst);
    for (int i = threadIdx.x; i < hidden / 8; i += blockDim.x) dst4[i] = src4[i];
  } else {
    for (int i = threadIdx.x; i < hidden; i += blockDim.x) dst[i] = src[i];
  }
}

__device__ __forceinline__ float Load(const float* p) { return *p; }
__device__ __forceinline__ float Load(const __nv_bfloat16* p) { return __bfloat162float(*p); }

// T: float (the loop of cublasGemmEx writes f32) or __nv_bfloat16 (the grouped GEMM writes its input type).
template <typename T>
__global__ void SwiGluKernel(const T* __restrict__ gate_up, int rows, int intermediate,
                             __nv_bfloat16* __restrict__ h) {
  const int64_t total = static_cast<int64_t>(rows) * intermediate;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = i / intermediate;
    const int64_t col = i % intermediate;
    const float gate = Load(gate_up + row * 2 * intermediate + col);
    const float up = Load(gate_up + row * 2 * intermediate + intermediate + col);
    h[i] = __float2bfloat16_rn(gate / (1.0f + expf(-gate)) * up);
  }
}

template <typename T>
__global__ void CombineKernel(const T* __restrict__ expert_out, int hidden,
                              const int32_t* __restrict__ inverse, const float* __restrict__ weights,
                              int top_k, int sorted_begin, int sorted_end, float* __restrict__ out) {
  const int token = blockIdx.x;
  float* row = out + static_cast<size_t>(token) * hidden;
  for (int c = threadIdx.x; c < hidden; c += blockDim.x) {
    float value = row[c];
    for (int j = 0; j < top_k; ++j) {
      const int a = token * top_k + j;
      const int s = inverse[a];
      if (s < sorted_begin || s >= sorted_end) continue;  // another expert range's (shard's) assignment
      value += weights[a] * Load(expert_out + static_cast<size_t>(s) * hidden + c);
    }
    row[c] = value;
  }
}

int GridFor(int64_t work) {
  int64_t blocks = (work + kThreads - 1) / kThreads;
  return static_cast<int>(blocks < 4096 ? (blocks > 0 ? blocks : 1) : 4096);
}

}  // namespace

size_t SortScratchBytes(int max_assignments, int num_experts) {
  size_t cub_bytes = 0;
  cub::DeviceRadixSort::SortPairs(nullptr, cub_bytes, static_cast<const uint32_t*>(nullptr),
                                  static_cast<uint32_t*>(nullptr), static_cast<const int32_t*>(nullptr),
                                  static_cast<int32_t*>(nullptr), max_assignments, 0, BitsFor(num_experts));
  // keys out, values in (iota), CUB's temporary storage.
  return 2 * Align(sizeof(int32_t) * static_cast<size_t>(max_assignments)) + Align(cub_bytes);
}

cudaError_t LaunchSortByExpert(const int32_t* expert_ids, int assignments, int num_experts, int32_t* counts,
                               int32_t* offsets, int32_t* permutation, int32_t* inverse, void* scratch,
                               size_t scratch_bytes, int32_t* host_counts, cudaStream_t stream) {
  cudaError_t error = cudaMemsetAsync(counts, 0, sizeof(int32_t) * (num_experts + 1), stream);
  if (error != cudaSuccess) return error;
  if (assignments > 0) {
    auto* base = static_cast<unsigned char*>(scratch);
    const size_t array_bytes = Align(sizeof(int32_t) * static_cast<size_t>(assignments));
    auto* keys_out = reinterpret_cast<uint32_t*>(base);
    auto* iota = reinterpret_cast<int32_t*>(base + array_bytes);
    void* cub_storage = base + 2 * array_bytes;
    size_t cub_bytes = scratch_bytes - 2 * array_bytes;
    CountKernel<<<GridFor(assignments), kThreads, 0, stream>>>(expert_ids, assignments, num_experts, counts,
                                                               iota);
    // Radix sort is stable, so each expert's assignments stay in token order. Ids outside the range are
    // counted above and make the caller fail before anything reads the sorted order's GEMM ranges.
    error = cub::DeviceRadixSort::SortPairs(cub_storage, cub_bytes,
                                            reinterpret_cast<const uint32_t*>(expert_ids), keys_out, iota,
                                            permutation, assignments, 0, BitsFor(num_experts), stream);
    if (error != cudaSuccess) return error;
    InverseKernel<<<GridFor(assignments), kThreads, 0, stream>>>(permutation, assignments, inverse);
  }
  OffsetsKernel<<<1, 1, 0, stream>>>(counts, num_experts, offsets, host_counts);
  return cudaGetLastError();
}

cudaError_t LaunchGatherRows(const uint16_t* x, int hidden, const int32_t* permutation, int assignments,
                             int top_k, uint16_t* sorted_x, cudaStream_t stream) {
  if (assignments == 0) return cudaSuccess;
  GatherRowsKernel<<<assignments, 128, 0, stream>>>(x, hidden, permutation, top_k, sorted_x);
  return cudaGetLastError();
}

cudaError_t LaunchSwiGlu(const void* gate_up, bool gate_up_bf16, int rows, int intermediate, uint16_t* h,
                         cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  const int grid = GridFor(static_cast<int64_t>(rows) * intermediate);
  auto* out = reinterpret_cast<__nv_bfloat16*>(h);
  if (gate_up_bf16) {
    SwiGluKernel<<<grid, kThreads, 0, stream>>>(static_cast<const __nv_bfloat16*>(gate_up), rows,
                                                intermediate, out);
  } else {
    SwiGluKernel<<<grid, kThreads, 0, stream>>>(static_cast<const float*>(gate_up), rows, intermediate, out);
  }
  return cudaGetLastError();
}

cudaError_t LaunchCombine(const void* expert_out, bool expert_out_bf16, int hidden, const int32_t* inverse,
                          const float* weights, int tokens, int top_k, int sorted_begin, int sorted_end,
                          float* out, cudaStream_t stream) {
  if (tokens == 0) return cudaSuccess;
  if (expert_out_bf16) {
    CombineKernel<<<tokens, kThreads, 0, stream>>>(static_cast<const __nv_bfloat16*>(expert_out), hidden,
                                                   inverse, weights, top_k, sorted_begin, sorted_end, out);
  } else {
    CombineKernel<<<tokens, kThreads, 0, stream>>>(static_cast<const float*>(expert_out), hidden, inverse,
                                                   weights, top_k, sorted_begin, sorted_end, out);
  }
  return cudaGetLastError();
}

}  // namespace ringmoe::gpu::kernels
