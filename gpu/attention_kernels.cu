// RoPE, clamp and the causal prefill attention of fresh chunks (gpu/attention_ops.h).
//
// Prefill attention is a flash-style f32 SIMT kernel. One block of 256 threads per (head, chunk, tile of 64
// query rows); it walks the tile's 64-key K/V tiles from the sliding window's first to the diagonal, with an
// online softmax, so scores never leave the block. Thread (ty, tx) = (threadIdx / 16, threadIdx % 16) owns
// query rows 4ty..4ty+3 in both phases: S = Q K^T (keys tx + 16j, j < 4) and O += P V (columns tx*vec + ...),
// which keeps each row's running max, sum and accumulator in that thread's registers. The 16 threads of a row
// group are one half-warp, so row maxima and sums reduce with shuffles. Q, K, V and P live in shared memory
// (112 KiB at head_dim 128: two blocks per SM); K/V tiles are fetched with cp.async one phase ahead (K of
// the next tile during softmax and P V, V of the next tile during Q K^T). Shared tiles are XOR-swizzled
// per 16-byte granule instead of padded, which keeps the reads conflict-free and two blocks per SM.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "gpu/attention_kernels.cuh"

namespace ringmoe::gpu::kernels {
namespace {

constexpr int kThreads = 256;

int GridFor(int64_t work) {
  int64_t blocks = (work + kThreads - 1) / kThreads;
  return static_cast<int>(blocks < 8192 ? (blocks > 0 ? blocks : 1) : 8192);
}

__global__ void ApplyRopeKernel(float* __restrict__ x, int tokens, int heads, int head_dim,
                                const int32_t* __restrict__ positions, RopeInvFreq inv_freq) {
  const int half = head_dim / 2;
  const int64_t pairs = static_cast<int64_t>(tokens) * half;
  for (int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; index < pairs;
       index += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int t = static_cast<int>(index / half);
    const int i = static_cast<int>(index % half);
    // As cpu::ApplyRope: f32 angle (no contraction), then precise cosf/sinf (angles reach 32k radians).
    const float angle = __fmul_rn(static_cast<float>(positions[t]), inv_freq.values[i]);
    const float c = cosf(angle);
    const float s = sinf(angle);
    float* pair = x + static_cast<int64_t>(t) * heads * head_dim + i;
    for (int h = 0; h < heads; ++h, pair += head_dim) {
      const float a = pair[0];
      const float b = pair[half];
      pair[0] = a * c - b * s;
      pair[half] = b * c + a * s;
    }
  }
}

__global__ void ClampKernel(float* __restrict__ x, int64_t count, float limit) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float value = x[i];
    x[i] = value < -limit ? -limit : (limit < value ? limit : value);  // std::clamp's order: NaN stays.
  }
}

// ---- Prefill attention ----

constexpr int kTile = 64;  // query rows per block tile, and keys per K/V tile
constexpr int kAttentionThreads = 256;
constexpr float kLog2e = 1.4426950408889634f;

template <int kD>  // head_dim rounded up to 16, 32, 64, 128 or 256
struct TileShape {
  static constexpr int kGranules = kD / 4;  // float4 granules per row
  // XOR keys of the swizzles (see Swizzle): each must be < kGranules.
  static constexpr int kRowGroupKey = kGranules / 2 < 4 ? kGranules / 2 : 4;
  static constexpr int kKeyRowMask = kGranules - 1 < 7 ? kGranules - 1 : 7;
  static constexpr int kVec = kD / 16 < 4 ? kD / 16 : 4;  // width of a thread's column vectors in P V
  static constexpr int kCols = kD / 16;                   // output columns per thread
  static constexpr int kSharedBytes = static_cast<int>(sizeof(float)) * (3 * kTile * kD + kTile * kTile);
};

// Which XOR swizzle a tile uses. Q and P are read by the two row groups of a warp (rows 4 apart) at once:
// flipping a granule bit for odd row groups puts them in different banks. K rows tx + 16j are read by
// 16 lanes at once: XOR with the row's low bits spreads 8 consecutive rows over all banks. V rows are read
// whole by each half-warp and need nothing.
enum class Swizzle { kNone, kRowGroup, kKeyRow };

template <int kD, Swizzle kSwizzle>
__device__ __forceinline__ int XorKey(int row) {
  if constexpr (kSwizzle == Swizzle::kRowGroup) return ((row >> 2) & 1) * TileShape<kD>::kRowGroupKey;
  if constexpr (kSwizzle == Swizzle::kKeyRow) return row & TileShape<kD>::kKeyRowMask;
  return 0;
}

// 16 bytes global -> shared without registers; src_bytes 0 writes zeros (rows past the chunk's end).
__device__ __forceinline__ void CopyAsync16(float* shared_dst, const float* global_src, bool valid) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(shared_dst));
  const int src_bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(global_src), "r"(src_bytes)
               : "memory");
}
__device__ __forceinline__ void CommitAsync() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int kPending>  // waits until at most kPending of this thread's committed groups are in flight
__device__ __forceinline__ void WaitAsync() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}

// Stages chunk positions first .. first + 63 of one head into a [kTile][kD] swizzled tile. src: the head's
// slice of the chunk's position 0; row_stride: floats between positions. Positions >= len and columns
// >= head_dim become zeros, so padded rows/columns add nothing (and never NaN garbage) to the products.
// kAsync: 16-byte cp.async (head_dim % 4 == 0, 16-byte aligned tensors); else plain loads and stores.
template <int kD, Swizzle kSwizzle, bool kAsync>
__device__ __forceinline__ void StageTile(float* tile, const float* src, int64_t row_stride, int first,
                                          int len, int head_dim) {
  if constexpr (kAsync) {
    constexpr int kGranules = TileShape<kD>::kGranules;
    static_assert((kTile * kGranules) % kAttentionThreads == 0, "granules split evenly");
#pragma unroll
    for (int n = 0; n < kTile * kGranules / kAttentionThreads; ++n) {
      const int index = n * kAttentionThreads + static_cast<int>(threadIdx.x);
      const int row = index / kGranules;
      const int granule = index % kGranules;
      const bool valid = first + row < len && granule * 4 < head_dim;
      const float* from = valid ? src + static_cast<int64_t>(first + row) * row_stride + granule * 4 : src;
      CopyAsync16(tile + row * kD + ((granule ^ XorKey<kD, kSwizzle>(row)) << 2), from, valid);
    }
  } else {
    static_assert((kTile * kD) % kAttentionThreads == 0, "elements split evenly");
#pragma unroll 4
    for (int n = 0; n < kTile * kD / kAttentionThreads; ++n) {
      const int index = n * kAttentionThreads + static_cast<int>(threadIdx.x);
      const int row = index / kD;
      const int d = index % kD;
      const bool valid = first + row < len && d < head_dim;
      tile[row * kD + (((d >> 2) ^ XorKey<kD, kSwizzle>(row)) << 2) + (d & 3)] =
          valid ? src[static_cast<int64_t>(first + row) * row_stride + d] : 0.0f;
    }
  }
}

__device__ __forceinline__ float Component(const float4& v, int e) {
  return e == 0 ? v.x : (e == 1 ? v.y : (e == 2 ? v.z : v.w));
}

template <int kVec>
__device__ __forceinline__ void LoadVec(const float* from, float* to) {
  if constexpr (kVec == 4) {
    const float4 value = *reinterpret_cast<const float4*>(from);
    to[0] = value.x, to[1] = value.y, to[2] = value.z, to[3] = value.w;
  } else if constexpr (kVec == 2) {
    const float2 value = *reinterpret_cast<const float2*>(from);
    to[0] = value.x, to[1] = value.y;
  } else {
    to[0] = from[0];
  }
}

__device__ __forceinline__ float HalfWarpMax(float value) {
  for (int offset = 8; offset > 0; offset /= 2)
    value = fmaxf(value, __shfl_xor_sync(0xffffffffu, value, offset));
  return value;
}
__device__ __forceinline__ float HalfWarpSum(float value) {
  for (int offset = 8; offset > 0; offset /= 2) value += __shfl_xor_sync(0xffffffffu, value, offset);
  return value;
}

// Grid: (heads, chunks, query tiles). Tiles run heaviest (last) first; a block also takes tiles
// gridDim.z apart, so a chunk longer than max_chunk_rows is still computed completely.
template <int kD, bool kAsync>
__global__ void __launch_bounds__(kAttentionThreads, kD >= 256 ? 1 : 2)
    PrefillAttentionKernel(const float* __restrict__ q, const float* __restrict__ k,
                           const float* __restrict__ v, const int32_t* __restrict__ chunk_rows, int heads,
                           int kv_heads, int head_dim, float scale_log2, int window,
                           float* __restrict__ out) {
  using Shape = TileShape<kD>;
  constexpr int kVec = Shape::kVec;
  constexpr int kCols = Shape::kCols;
  extern __shared__ float4 shared_granules[];
  float* q_tile = reinterpret_cast<float*>(shared_granules);
  float* k_tile = q_tile + kTile * kD;
  float* v_tile = k_tile + kTile * kD;
  float* p_tile = v_tile + kTile * kD;  // [kTile rows][kTile keys], row-group swizzle with key 4

  const int head = blockIdx.x;
  const int kv_head = head / (heads / kv_heads);
  const int row0 = chunk_rows[blockIdx.y];
  const int len = chunk_rows[blockIdx.y + 1] - row0;
  const int ty = threadIdx.x >> 4;
  const int tx = threadIdx.x & 15;
  const int64_t q_stride = static_cast<int64_t>(heads) * head_dim;
  const int64_t kv_stride = static_cast<int64_t>(kv_heads) * head_dim;
  const float* q_src = q + row0 * q_stride + static_cast<int64_t>(head) * head_dim;
  const float* k_src = k + row0 * kv_stride + static_cast<int64_t>(kv_head) * head_dim;
  const float* v_src = v + row0 * kv_stride + static_cast<int64_t>(kv_head) * head_dim;

  // This thread's read positions, fixed for the whole kernel (the swizzle key is the same for its 4 rows,
  // and for its 4 keys tx + 16j).
  const float* q_rows = q_tile + 4 * ty * kD;  // row 4ty + i at + i * kD
  const int q_key = XorKey<kD, Swizzle::kRowGroup>(4 * ty);
  const float* k_rows = k_tile + tx * kD;  // key tx + 16j at + 16j * kD
  const int k_key = XorKey<kD, Swizzle::kKeyRow>(tx);
  float* p_rows = p_tile + 4 * ty * kTile;
  const int p_key = (ty & 1) * 4;

  for (int tile = static_cast<int>(gridDim.z) - 1 - static_cast<int>(blockIdx.z); tile * kTile < len;
       tile += static_cast<int>(gridDim.z)) {
    const int q0 = tile * kTile;
    const int first_key_tile = window > 0 ? max(0, q0 - window + 1) / kTile : 0;
    const int last_key_tile = tile;  // the diagonal
    // Groups in flight: {Q, K of the first key tile}, {V of it}.
    StageTile<kD, Swizzle::kRowGroup, kAsync>(q_tile, q_src, q_stride, q0, len, head_dim);
    StageTile<kD, Swizzle::kKeyRow, kAsync>(k_tile, k_src, kv_stride, first_key_tile * kTile, len, head_dim);
    if constexpr (kAsync) CommitAsync();
    StageTile<kD, Swizzle::kNone, kAsync>(v_tile, v_src, kv_stride, first_key_tile * kTile, len, head_dim);
    if constexpr (kAsync) CommitAsync();

    float o[4][kCols];
    float row_max[4], row_sum[4];  // row_sum: this thread's share (its keys), reduced at the end
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      row_max[i] = -INFINITY;
      row_sum[i] = 0.0f;
#pragma unroll
      for (int c = 0; c < kCols; ++c) o[i][c] = 0.0f;
    }

    for (int key_tile = first_key_tile; key_tile <= last_key_tile; ++key_tile) {
      const bool more = key_tile < last_key_tile;
      if constexpr (kAsync) WaitAsync<1>();  // Q and this tile's K have landed (V may be in flight)
      __syncthreads();

      // S = Q K^T for rows 4ty + i, keys tx + 16j.
      float s[4][4];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) s[i][j] = 0.0f;
#pragma unroll 8
      for (int g = 0; g < Shape::kGranules; ++g) {
        float4 qv[4], kv[4];
#pragma unroll
        for (int i = 0; i < 4; ++i)
          qv[i] = *reinterpret_cast<const float4*>(q_rows + i * kD + ((g ^ q_key) << 2));
#pragma unroll
        for (int j = 0; j < 4; ++j)
          kv[j] = *reinterpret_cast<const float4*>(k_rows + 16 * j * kD + ((g ^ k_key) << 2));
#pragma unroll
        for (int i = 0; i < 4; ++i) {
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            s[i][j] = fmaf(qv[i].x, kv[j].x, s[i][j]);
            s[i][j] = fmaf(qv[i].y, kv[j].y, s[i][j]);
            s[i][j] = fmaf(qv[i].z, kv[j].z, s[i][j]);
            s[i][j] = fmaf(qv[i].w, kv[j].w, s[i][j]);
          }
        }
      }
      __syncthreads();  // every thread is done with k_tile
      if (more) {
        StageTile<kD, Swizzle::kKeyRow, kAsync>(k_tile, k_src, kv_stride, (key_tile + 1) * kTile, len,
                                                head_dim);
        if constexpr (kAsync) CommitAsync();
      }

      // Online softmax in base 2: causal and sliding-window mask, new row maxima, P to shared memory.
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int query = q0 + 4 * ty + i;
        float tile_max = -INFINITY;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const int key = key_tile * kTile + tx + 16 * j;
          const bool allowed = key <= query && (window <= 0 || key > query - window);
          s[i][j] = allowed ? s[i][j] * scale_log2 : -INFINITY;
          tile_max = fmaxf(tile_max, s[i][j]);
        }
        const float new_max = fmaxf(row_max[i], HalfWarpMax(tile_max));
        // A row with no allowed key yet keeps p = 0 and alpha = 0 instead of computing -inf - -inf.
        const float base = new_max == -INFINITY ? 0.0f : new_max;
        const float alpha = exp2f(row_max[i] - base);
        row_max[i] = new_max;
        float sum = 0.0f;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const float p = exp2f(s[i][j] - base);
          sum += p;
          const int key = tx + 16 * j;
          p_rows[i * kTile + ((((key >> 2) ^ p_key)) << 2) + (key & 3)] = p;
        }
        row_sum[i] = row_sum[i] * alpha + sum;
#pragma unroll
        for (int c = 0; c < kCols; ++c) o[i][c] *= alpha;
      }

      if constexpr (kAsync) {
        if (more) {
          WaitAsync<1>();  // this tile's V has landed (the next K may be in flight)
        } else {
          WaitAsync<0>();
        }
      }
      __syncthreads();  // P and V visible to all

      // O += P V for rows 4ty + i, columns g * 16 * kVec + tx * kVec + e.
#pragma unroll 2
      for (int key_group = 0; key_group < kTile / 4; ++key_group) {
        float4 p4[4];
#pragma unroll
        for (int i = 0; i < 4; ++i)
          p4[i] = *reinterpret_cast<const float4*>(p_rows + i * kTile + ((key_group ^ p_key) << 2));
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float* v_row = v_tile + (4 * key_group + e) * kD + tx * kVec;
          float vv[kCols];
#pragma unroll
          for (int g = 0; g < kCols / kVec; ++g) LoadVec<kVec>(v_row + g * 16 * kVec, vv + g * kVec);
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            const float p = Component(p4[i], e);
#pragma unroll
            for (int c = 0; c < kCols; ++c) o[i][c] = fmaf(p, vv[c], o[i][c]);
          }
        }
      }
      __syncthreads();  // every thread is done with v_tile and p_tile
      if (more) {
        StageTile<kD, Swizzle::kNone, kAsync>(v_tile, v_src, kv_stride, (key_tile + 1) * kTile, len,
                                              head_dim);
        if constexpr (kAsync) CommitAsync();
      }
    }

    // out = O / sum, rows inside the chunk and columns inside head_dim only.
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float total = HalfWarpSum(row_sum[i]);  // all lanes take part before any leaves
      const int query = q0 + 4 * ty + i;
      if (query >= len) continue;
      const float inverse = 1.0f / total;
      float* out_row = out + (static_cast<int64_t>(row0 + query) * heads + head) * head_dim;
#pragma unroll
      for (int g = 0; g < kCols / kVec; ++g) {
        const int col = g * 16 * kVec + tx * kVec;
        if constexpr (kAsync && kVec == 4) {
          if (col < head_dim) {  // head_dim % 4 == 0 here: the whole vector is inside
            *reinterpret_cast<float4*>(out_row + col) =
                make_float4(o[i][g * 4] * inverse, o[i][g * 4 + 1] * inverse, o[i][g * 4 + 2] * inverse,
                            o[i][g * 4 + 3] * inverse);
          }
        } else {
#pragma unroll
          for (int e = 0; e < kVec; ++e) {
            if (col + e < head_dim) out_row[col + e] = o[i][g * kVec + e] * inverse;
          }
        }
      }
    }
  }
}

template <typename Kernel>
cudaError_t AllowSharedBytes(Kernel* kernel, int bytes) {
  cudaError_t error = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  // The largest carveout, so that two 112 KiB blocks fit on an SM.
  if (error == cudaSuccess) {
    error = cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                                 cudaSharedmemCarveoutMaxShared);
  }
  return error;
}

template <int kD, bool kAsync>
cudaError_t LaunchPrefillFor(const float* q, const float* k, const float* v, const int32_t* chunk_rows,
                             int chunks, int max_chunk_rows, int heads, int kv_heads, int head_dim,
                             float scale_log2, int sliding_window, float* out, cudaStream_t stream) {
  constexpr int kBytes = TileShape<kD>::kSharedBytes;
  // Once per instantiation (thread-safe static initialisation); a failure is returned on every call.
  static const cudaError_t configured = AllowSharedBytes(PrefillAttentionKernel<kD, kAsync>, kBytes);
  if (configured != cudaSuccess) return configured;
  const int tiles = (max_chunk_rows + kTile - 1) / kTile;
  const dim3 grid(static_cast<unsigned>(heads), static_cast<unsigned>(chunks),
                  static_cast<unsigned>(tiles < 65535 ? tiles : 65535));
  PrefillAttentionKernel<kD, kAsync><<<grid, kAttentionThreads, kBytes, stream>>>(
      q, k, v, chunk_rows, heads, kv_heads, head_dim, scale_log2, sliding_window, out);
  return cudaGetLastError();
}

template <int kD>
cudaError_t DispatchPrefill(bool vectorised, const float* q, const float* k, const float* v,
                            const int32_t* chunk_rows, int chunks, int max_chunk_rows, int heads,
                            int kv_heads, int head_dim, float scale_log2, int sliding_window, float* out,
                            cudaStream_t stream) {
  return vectorised
             ? LaunchPrefillFor<kD, true>(q, k, v, chunk_rows, chunks, max_chunk_rows, heads, kv_heads,
                                          head_dim, scale_log2, sliding_window, out, stream)
             : LaunchPrefillFor<kD, false>(q, k, v, chunk_rows, chunks, max_chunk_rows, heads, kv_heads,
                                           head_dim, scale_log2, sliding_window, out, stream);
}

bool Aligned16(const void* pointer) { return reinterpret_cast<uintptr_t>(pointer) % 16 == 0; }

}  // namespace

cudaError_t LaunchApplyRope(float* x, int tokens, int heads, int head_dim, const int32_t* positions,
                            const RopeInvFreq& inv_freq, cudaStream_t stream) {
  const int64_t pairs = static_cast<int64_t>(tokens) * (head_dim / 2);
  if (pairs == 0 || heads == 0) return cudaSuccess;
  ApplyRopeKernel<<<GridFor(pairs), kThreads, 0, stream>>>(x, tokens, heads, head_dim, positions, inv_freq);
  return cudaGetLastError();
}

cudaError_t LaunchClamp(float* x, int64_t count, float limit, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  ClampKernel<<<GridFor(count), kThreads, 0, stream>>>(x, count, limit);
  return cudaGetLastError();
}

cudaError_t LaunchPrefillAttention(const float* q, const float* k, const float* v, const int32_t* chunk_rows,
                                   int chunks, int max_chunk_rows, int heads, int kv_heads, int head_dim,
                                   float scale, int sliding_window, float* out, cudaStream_t stream) {
  if (chunks == 0 || max_chunk_rows == 0) return cudaSuccess;
  const bool vectorised = head_dim % 4 == 0 && Aligned16(q) && Aligned16(k) && Aligned16(v) && Aligned16(out);
  const float scale_log2 = scale * kLog2e;
  if (head_dim <= 16)
    return DispatchPrefill<16>(vectorised, q, k, v, chunk_rows, chunks, max_chunk_rows, heads, kv_heads,
                               head_dim, scale_log2, sliding_window, out, stream);
  if (head_dim <= 32)
    return DispatchPrefill<32>(vectorised, q, k, v, chunk_rows, chunks, max_chunk_rows, heads, kv_heads,
                               head_dim, scale_log2, sliding_window, out, stream);
  if (head_dim <= 64)
    return DispatchPrefill<64>(vectorised, q, k, v, chunk_rows, chunks, max_chunk_rows, heads, kv_heads,
                               head_dim, scale_log2, sliding_window, out, stream);
  if (head_dim <= 128)
    return DispatchPrefill<128>(vectorised, q, k, v, chunk_rows, chunks, max_chunk_rows, heads, kv_heads,
                                head_dim, scale_log2, sliding_window, out, stream);
  return DispatchPrefill<256>(vectorised, q, k, v, chunk_rows, chunks, max_chunk_rows, heads, kv_heads,
                              head_dim, scale_log2, sliding_window, out, stream);
}

}  // namespace ringmoe::gpu::kernels
