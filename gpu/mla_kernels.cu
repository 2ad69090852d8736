// MLA prefill helpers: the rotary embedding of any rope type over strided heads, and strided block copies.
#include "gpu/mla_kernels.cuh"

namespace ringmoe::gpu::kernels {
namespace {

constexpr int kThreads = 256;

int GridFor(int64_t items) {
  const int64_t blocks = (items + kThreads - 1) / kThreads;
  return static_cast<int>(blocks < 65535 ? blocks : 65535);
}

// One thread per (token, pair): the pair's angle once, then every head.
__global__ void ApplyRotaryKernel(float* __restrict__ x, int tokens, int heads, int64_t token_stride,
                                  int64_t head_stride, const int32_t* __restrict__ positions,
                                  RotaryTable table) {
  const int half = table.dim / 2;
  const int64_t pairs = static_cast<int64_t>(tokens) * half;
  const int step = table.interleaved ? 2 : 1;
  const int partner = table.interleaved ? 1 : half;
  for (int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; index < pairs;
       index += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int t = static_cast<int>(index / half);
    const int i = static_cast<int>(index % half);
    // As cpu::ApplyRotary: the f32 angle (no contraction), precise cosf/sinf, then the attention factor.
    const float angle = __fmul_rn(static_cast<float>(positions[t]), table.inv_freq[i]);
    const float c = __fmul_rn(cosf(angle), table.attention_factor);
    const float s = __fmul_rn(sinf(angle), table.attention_factor);
    float* head = x + t * token_stride + i * step;
    for (int h = 0; h < heads; ++h, head += head_stride) {
      const float a = head[0];
      const float b = head[partner];
      head[0] = __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s));
      head[partner] = __fadd_rn(__fmul_rn(b, c), __fmul_rn(a, s));
    }
  }
}

__global__ void CopyBlocksKernel(const float* __restrict__ src, float* __restrict__ dst, int rows, int groups,
                                 int width, int64_t src_row_stride, int64_t src_group_stride,
                                 int64_t dst_row_stride, int64_t dst_group_stride) {
  const int64_t count = static_cast<int64_t>(rows) * groups * width;
  for (int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; index < count;
       index += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = index % width;
    const int64_t g = index / width % groups;
    const int64_t r = index / width / groups;
    dst[r * dst_row_stride + g * dst_group_stride + i] = src[r * src_row_stride + g * src_group_stride + i];
  }
}

}  // namespace

cudaError_t LaunchApplyRotary(float* x, int tokens, int heads, int64_t token_stride, int64_t head_stride,
                              const int32_t* positions, const RotaryTable& table, cudaStream_t stream) {
  const int64_t pairs = static_cast<int64_t>(tokens) * (table.dim / 2);
  if (pairs == 0 || heads == 0) return cudaSuccess;
  ApplyRotaryKernel<<<GridFor(pairs), kThreads, 0, stream>>>(x, tokens, heads, token_stride, head_stride,
                                                             positions, table);
  return cudaGetLastError();
}

cudaError_t LaunchCopyBlocks(const float* src, float* dst, int rows, int groups, int width,
                             int64_t src_row_stride, int64_t src_group_stride, int64_t dst_row_stride,
                             int64_t dst_group_stride, cudaStream_t stream) {
  const int64_t count = static_cast<int64_t>(rows) * groups * width;
  if (count == 0) return cudaSuccess;
  CopyBlocksKernel<<<GridFor(count), kThreads, 0, stream>>>(
      src, dst, rows, groups, width, src_row_stride, src_group_stride, dst_row_stride, dst_group_stride);
  return cudaGetLastError();
}

}  // namespace ringmoe::gpu::kernels
