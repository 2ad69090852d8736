#include "gpu/kv_cache_ops.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "gpu/device.h"
#include "io/status_macros.h"

#if RINGMOE_HAVE_CUDA
#include "gpu/cuda_status.cuh"
#include "gpu/kv_cache_kernels.cuh"
#endif

namespace ringmoe::gpu {

#if RINGMOE_HAVE_CUDA
using internal::AsCuda;

namespace {

absl::Status CheckView(const char* op, const DevicePagedKv& kv) {
  if (kv.block_tokens <= 0 || kv.kv_heads <= 0 || kv.head_dim <= 0 ||
      kv.block_stride < int64_t{kv.block_tokens} * kv.kv_heads * kv.head_dim) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": block_tokens ", kv.block_tokens, ", kv_heads ",
                                                   kv.kv_heads, ", head_dim ", kv.head_dim, ", block_stride ",
                                                   kv.block_stride));
  }
  if (kv.k_pool == nullptr || kv.v_pool == nullptr || kv.tables == nullptr || kv.row_tables == nullptr ||
      kv.positions == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": null pointer"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteKvRows(const float* k, const float* v, int rows, int64_t row_stride,
                         const DevicePagedKv& kv, const Stream& stream) {
  if (rows < 0) return absl::InvalidArgumentError("gpu::WriteKvRows: negative rows");
  if (rows == 0) return absl::OkStatus();
  RINGMOE_RETURN_IF_ERROR(CheckView("gpu::WriteKvRows", kv));
  if (k == nullptr || v == nullptr) return absl::InvalidArgumentError("gpu::WriteKvRows: null k or v");
  if (row_stride < int64_t{kv.kv_heads} * kv.head_dim) {
    return absl::InvalidArgumentError(
        absl::StrCat("gpu::WriteKvRows: row_stride ", row_stride, " < kv width"));
  }
  RINGMOE_RETURN_IF_ERROR(RequireGpu());
  RINGMOE_CUDA_RETURN_IF_ERROR(kernels::LaunchWriteKvRows(k, v, rows, row_stride, kv, AsCuda(stream)),
                               absl::StrCat("KV write kernel (", rows, " rows)"));
  return absl::OkStatus();
}

absl::Status PagedAttentionRows(const float* q, int rows, int heads, const DevicePagedKv& kv, float scale,
                                int sliding_window, float* out, const Stream& stream) {
  if (rows < 0 || rows > 0x7fffffff) return absl::InvalidArgumentError("gpu::PagedAttentionRows: bad rows");
  if (rows == 0) return absl::OkStatus();
  RINGMOE_RETURN_IF_ERROR(CheckView("gpu::PagedAttentionRows", kv));
  if (heads <= 0 || heads % kv.kv_heads != 0 || heads / kv.kv_heads > kernels::kMaxPagedGroup) {
    return absl::InvalidArgumentError(absl::StrCat("gpu::PagedAttentionRows: heads ", heads, ", kv_heads ",
                                                   kv.kv_heads, " (a multiple, at most ",
                                                   kernels::kMaxPagedGroup, " per kv head)"));
  }
  if (kv.head_dim > kernels::kMaxPagedHeadDim) {
    return absl::InvalidArgumentError(absl::StrCat("gpu::PagedAttentionRows: head_dim ", kv.head_dim,
                                                   " above ", kernels::kMaxPagedHeadDim));
  }
  if (kv.kv_heads > 65535) return absl::InvalidArgumentError("gpu::PagedAttentionRows: too many kv heads");
  if (!std::isfinite(scale)) return absl::InvalidArgumentError("gpu::PagedAttentionRows: scale not finite");
  if (q == nullptr || out == nullptr)
    return absl::InvalidArgumentError("gpu::PagedAttentionRows: null pointer");
  RINGMOE_RETURN_IF_ERROR(RequireGpu());
  RINGMOE_CUDA_RETURN_IF_ERROR(
      kernels::LaunchPagedAttentionRows(q, rows, heads, kv, scale, sliding_window, out, AsCuda(stream)),
      absl::StrCat("paged attention kernel (", rows, " rows, heads ", heads, "/", kv.kv_heads, ", head_dim ",
                   kv.head_dim, ")"));
  return absl::OkStatus();
}

#else  // !RINGMOE_HAVE_CUDA

absl::Status WriteKvRows(const float*, const float*, int, int64_t, const DevicePagedKv&, const Stream&) {
  return NotBuiltWithCuda();
}
absl::Status PagedAttentionRows(const float*, int, int, const DevicePagedKv&, float, int, float*,
                                const Stream&) {
  return NotBuiltWithCuda();
}

#endif

}  // namespace ringmoe::gpu
