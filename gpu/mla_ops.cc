#include "gpu/mla_ops.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "gpu/device.h"
#include "io/status_macros.h"

#if RINGMOE_HAVE_CUDA
#include "gpu/cuda_status.cuh"
#include "gpu/mla_kernels.cuh"
#endif

namespace ringmoe::gpu {

namespace {
constexpr int kMaxRotaryDim = 512;  // kernels::kMaxRotaryDim
}  // namespace

absl::Status ApplyRotary(const cpu::RotaryEmbedding& rope, float* x, int tokens, int heads,
                         int64_t token_stride, int64_t head_stride, const int32_t* positions,
                         const Stream& stream) {
  if (tokens < 0 || heads < 0 || rope.dim <= 0 || rope.dim % 2 != 0 || rope.dim > kMaxRotaryDim ||
      static_cast<int>(rope.inv_freq.size()) != rope.dim / 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "gpu::ApplyRotary: tokens ", tokens, ", heads ", heads, ", dim ", rope.dim, " (even, at most ",
        kMaxRotaryDim, ", with dim / 2 frequencies: ", rope.inv_freq.size(), ")"));
  }
  if (tokens == 0 || heads == 0) return absl::OkStatus();
  if (x == nullptr || positions == nullptr)
    return absl::InvalidArgumentError("gpu::ApplyRotary: null pointer");
#if RINGMOE_HAVE_CUDA
  RINGMOE_RETURN_IF_ERROR(RequireGpu());
  kernels::RotaryTable table{};
  std::copy(rope.inv_freq.begin(), rope.inv_freq.end(), table.inv_freq);
  table.dim = rope.dim;
  table.attention_factor = rope.attention_factor;
  table.interleaved = rope.interleaved;
  RINGMOE_CUDA_RETURN_IF_ERROR(kernels::LaunchApplyRotary(x, tokens, heads, token_stride, head_stride,
                                                          positions, table, internal::AsCuda(stream)),
                               "rotary kernel");
  return absl::OkStatus();
#else
  (void)token_stride, (void)head_stride, (void)stream;
  return NotBuiltWithCuda();
#endif
}

absl::Status CopyBlocks(const float* src, float* dst, const BlockCopy& copy, const Stream& stream) {
  if (copy.rows < 0 || copy.groups < 0 || copy.width < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("gpu::CopyBlocks: rows ", copy.rows, ", groups ", copy.groups, ", width ", copy.width));
  }
  if (int64_t{copy.rows} * copy.groups * copy.width == 0) return absl::OkStatus();
  if (src == nullptr || dst == nullptr) return absl::InvalidArgumentError("gpu::CopyBlocks: null pointer");
#if RINGMOE_HAVE_CUDA
  RINGMOE_RETURN_IF_ERROR(RequireGpu());
  RINGMOE_CUDA_RETURN_IF_ERROR(
      kernels::LaunchCopyBlocks(src, dst, copy.rows, copy.groups, copy.width, copy.src_row_stride,
                                copy.src_group_stride, copy.dst_row_stride, copy.dst_group_stride,
                                internal::AsCuda(stream)),
      "block copy kernel");
  return absl::OkStatus();
#else
  (void)stream;
  return NotBuiltWithCuda();
#endif
}

}  // namespace ringmoe::gpu
