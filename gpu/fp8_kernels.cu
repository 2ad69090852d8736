// Dequantisation of FP8-block routed experts (gpu/expert_packing.h's FP8 layout) into bf16 experts, next to
// the expert GEMMs: the FP8 bytes are what crosses PCIe; on the GPU, reading 1 byte and writing 2 per weight
// at HBM speed costs a few percent of the copy it saves. Twin of cpu::DequantizeFp8Blocks followed by the
// f32 -> bf16 conversion the CPU path's loader applies (same product, same rounding).
#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include "gpu/kernels.cuh"

namespace ringmoe::gpu::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int kVector = 16;  // e4m3 values per thread and iteration on the vector path

__device__ __forceinline__ float E4m3ToFloat(uint8_t bits) {
  __nv_fp8_e4m3 value;
  value.__x = bits;
  return static_cast<float>(value);
}

// The region of an expert that element `index` (of 3 * I * H, in the order gate | up | down) falls in: its
// matrix's column count and scale array.
struct Region {
  int64_t local;  // index within the matrix
  int cols;
  const float* scales;
};

__device__ __forceinline__ Region Locate(const uint8_t* expert, const Fp8ExpertLayout& layout, int64_t index) {
  const int64_t matrix = static_cast<int64_t>(layout.intermediate) * layout.hidden;
  if (index < matrix) {
    return {index, layout.hidden, reinterpret_cast<const float*>(expert + layout.gate_scales_offset)};
  }
  if (index < 2 * matrix) {
    return {index - matrix, layout.hidden, reinterpret_cast<const float*>(expert + layout.up_scales_offset)};
  }
  return {index - 2 * matrix, layout.intermediate,
          reinterpret_cast<const float*>(expert + layout.down_scales_offset)};
}

__device__ __forceinline__ float ScaleOf(const Region& region, const Fp8ExpertLayout& layout) {
  const int64_t row = region.local / region.cols;
  const int64_t col = region.local % region.cols;
  const int64_t scale_cols = (region.cols + layout.block_cols - 1) / layout.block_cols;
  return region.scales[(row / layout.block_rows) * scale_cols + col / layout.block_cols];
}

// blockIdx.y: the expert. Vector path: kVector consecutive values share a row and a block (the launcher
// checks that both widths and block_cols are multiples of kVector).
__global__ void DequantizeFp8ExpertsKernel(const uint8_t* const* __restrict__ sources, Fp8ExpertLayout layout,
                                           __nv_bfloat16* __restrict__ dst, int64_t dst_stride_elements,
                                           bool vectors) {
  const uint8_t* expert = sources[blockIdx.y];
  __nv_bfloat16* out = dst + blockIdx.y * dst_stride_elements;
  const int64_t total = 3LL * layout.intermediate * layout.hidden;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  if (vectors) {
    for (int64_t v = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; v < total / kVector;
         v += stride) {
      const int64_t index = v * kVector;
      const float scale = ScaleOf(Locate(expert, layout, index), layout);
      const uint4 packed = reinterpret_cast<const uint4*>(expert)[v];
      const uint8_t* bytes = reinterpret_cast<const uint8_t*>(&packed);
      __align__(16) __nv_bfloat16 values[kVector];
#pragma unroll
      for (int k = 0; k < kVector; ++k) values[k] = __float2bfloat16_rn(E4m3ToFloat(bytes[k]) * scale);
      uint4* target = reinterpret_cast<uint4*>(out + index);
      target[0] = reinterpret_cast<const uint4*>(values)[0];
      target[1] = reinterpret_cast<const uint4*>(values)[1];
    }
    return;
  }
  for (int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; index < total;
       index += stride) {
    const float scale = ScaleOf(Locate(expert, layout, index), layout);
    out[index] = __float2bfloat16_rn(E4m3ToFloat(expert[index]) * scale);
  }
}

}  // namespace

cudaError_t LaunchDequantizeFp8Experts(const uint8_t* const* sources, int experts, const Fp8ExpertLayout& layout,
                                       uint16_t* dst, int64_t dst_stride_bytes, cudaStream_t stream) {
  if (experts <= 0) return cudaSuccess;
  if (layout.hidden <= 0 || layout.intermediate <= 0 || layout.block_rows <= 0 || layout.block_cols <= 0 ||
      dst_stride_bytes % 16 != 0 || experts > 65535) {
    return cudaErrorInvalidValue;
  }
  // The source's matrices start 16-byte aligned when I * H is a multiple of 16 (the expert starts at a
  // kPackAlignment boundary); its rows stay inside one block per 16 values when the widths and block_cols are
  // multiples of 16.
  const bool vectors = layout.hidden % kVector == 0 && layout.intermediate % kVector == 0 &&
                       layout.block_cols % kVector == 0;
  const int64_t work = 3LL * layout.intermediate * layout.hidden / (vectors ? kVector : 1);
  const int64_t blocks = (work + kThreads - 1) / kThreads;
  const dim3 grid(static_cast<unsigned>(blocks < 1024 ? (blocks > 0 ? blocks : 1) : 1024), experts);
  DequantizeFp8ExpertsKernel<<<grid, kThreads, 0, stream>>>(sources, layout,
                                                           reinterpret_cast<__nv_bfloat16*>(dst),
                                                           dst_stride_bytes / 2, vectors);
  return cudaGetLastError();
}

}  // namespace ringmoe::gpu::kernels
