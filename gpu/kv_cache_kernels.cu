// The GPU share of the paged KV cache (gpu/kv_cache_ops.h): the K/V write and the row-wise paged attention.
//
// Attention: one block per (row, kv head), one warp per query head of the GQA group, so the group's warps
// read the same K/V rows (from L1/L2) and each warp keeps its own online softmax. A lane holds head_dim / 32
// (rounded up) elements of q and of the accumulator at d = lane + 32 i: K and V rows are read coalesced, and
// each key's score is one warp reduction. Decode attention is a read of the cache, so this favours simplicity
// over tiling; the probe measures what it reads per second (planner: gpu.attention_kv_gbps).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "gpu/kv_cache_kernels.cuh"

namespace ringmoe::gpu::kernels {
namespace {

constexpr int kLanes = 32;
constexpr int kMaxPerLane = kMaxPagedHeadDim / kLanes;

__global__ void WriteKvRowsKernel(const float* __restrict__ k, const float* __restrict__ v, int rows,
                                  int64_t row_stride, DevicePagedKv kv) {
  const int width = kv.kv_heads * kv.head_dim;
  const int row = blockIdx.x;
  if (row >= rows) return;
  const int table = kv.row_tables[row];
  if (table < 0) return;
  const int position = kv.positions[row];
  const int64_t block = kv.tables[table + position / kv.block_tokens];
  const int64_t offset = block * kv.block_stride + static_cast<int64_t>(position % kv.block_tokens) * width;
  for (int i = threadIdx.x; i < width; i += blockDim.x) {
    kv.k_pool[offset + i] = __bfloat16_as_ushort(__float2bfloat16_rn(k[row * row_stride + i]));
    kv.v_pool[offset + i] = __bfloat16_as_ushort(__float2bfloat16_rn(v[row * row_stride + i]));
  }
}

__device__ __forceinline__ float Bf16ToFloat(uint16_t bits) { return __uint_as_float(uint32_t{bits} << 16); }

__global__ void PagedAttentionRowsKernel(const float* __restrict__ q, int heads, DevicePagedKv kv,
                                         float scale, int sliding_window, float* __restrict__ out) {
  const int row = blockIdx.x;
  const int kv_head = blockIdx.y;
  const int table = kv.row_tables[row];
  if (table < 0) return;
  const int group = heads / kv.kv_heads;
  const int warp = threadIdx.x / kLanes, lane = threadIdx.x % kLanes;
  if (warp >= group) return;
  const int head = kv_head * group + warp;
  const int hd = kv.head_dim;
  const int width = kv.kv_heads * hd;
  const float* q_row = q + (static_cast<int64_t>(row) * heads + head) * hd;
  float qv[kMaxPerLane], acc[kMaxPerLane];
#pragma unroll
  for (int i = 0; i < kMaxPerLane; ++i) {
    const int d = lane + kLanes * i;
    qv[i] = d < hd ? q_row[d] : 0.0f;
    acc[i] = 0.0f;
  }
  const int last = kv.positions[row];
  const int first = sliding_window > 0 && last + 1 > sliding_window ? last + 1 - sliding_window : 0;
  float running_max = -INFINITY, running_sum = 0.0f;
  for (int position = first; position <= last; ++position) {
    const int64_t block = kv.tables[table + position / kv.block_tokens];
    const int64_t offset =
        block * kv.block_stride + static_cast<int64_t>(position % kv.block_tokens) * width + kv_head * hd;
    float dot = 0.0f;
#pragma unroll
    for (int i = 0; i < kMaxPerLane; ++i) {
      const int d = lane + kLanes * i;
      if (d < hd) dot += qv[i] * Bf16ToFloat(kv.k_pool[offset + d]);
    }
#pragma unroll
    for (int shift = kLanes / 2; shift > 0; shift /= 2) dot += __shfl_xor_sync(0xffffffffu, dot, shift);
    const float score = dot * scale;
    const float new_max = fmaxf(running_max, score);
    const float correction = expf(running_max - new_max);  // 0 on the first key (exp(-inf))
    const float weight = expf(score - new_max);
    running_sum = running_sum * correction + weight;
#pragma unroll
    for (int i = 0; i < kMaxPerLane; ++i) {
      const int d = lane + kLanes * i;
      const float value = d < hd ? Bf16ToFloat(kv.v_pool[offset + d]) : 0.0f;
      acc[i] = acc[i] * correction + weight * value;
    }
    running_max = new_max;
  }
  float* out_row = out + (static_cast<int64_t>(row) * heads + head) * hd;
  const float inverse = running_sum > 0 ? 1.0f / running_sum : 0.0f;
#pragma unroll
  for (int i = 0; i < kMaxPerLane; ++i) {
    const int d = lane + kLanes * i;
    if (d < hd) out_row[d] = acc[i] * inverse;
  }
}

}  // namespace

cudaError_t LaunchWriteKvRows(const float* k, const float* v, int rows, int64_t row_stride,
                              const DevicePagedKv& kv, cudaStream_t stream) {
  WriteKvRowsKernel<<<rows, 128, 0, stream>>>(k, v, rows, row_stride, kv);
  return cudaGetLastError();
}

cudaError_t LaunchPagedAttentionRows(const float* q, int rows, int heads, const DevicePagedKv& kv,
                                     float scale, int sliding_window, float* out, cudaStream_t stream) {
  const int group = heads / kv.kv_heads;
  PagedAttentionRowsKernel<<<dim3(rows, kv.kv_heads), group * kLanes, 0, stream>>>(q, heads, kv, scale,
                                                                                   sliding_window, out);
  return cudaGetLastError();
}

}  // namespace ringmoe::gpu::kernels
