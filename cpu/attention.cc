// PagedAttention's entry points: picks the AVX-512 kernel where KernelIsa() and head_dim allow, else the
// portable one. The choice is made at run time because the library is built for a baseline x86-64 target.
#include "cpu/attention.h"

#include <atomic>

#include "cpu/attention_internal.h"
#include "cpu/cpu_features.h"

namespace ringmoe::cpu {
namespace internal {
namespace {

std::atomic<AttentionKernel> forced_kernel{AttentionKernel::kAuto};

}  // namespace

void SetAttentionKernelForTesting(AttentionKernel kernel) { forced_kernel.store(kernel); }

AttentionKernel SelectedAttentionKernel(int head_dim, io::DType dtype) {
  const AttentionKernel forced = forced_kernel.load();
  const bool avx512 = KernelIsa() == CpuIsa::kAvx512 && head_dim % 16 == 0;
  if (forced == AttentionKernel::kPortable || !avx512) return AttentionKernel::kPortable;
  // The bf16-pair kernel rounds the queries and the probabilities to bf16. An e4m3 cache takes it by
  // default: its values carry 3 mantissa bits, so the rounding is lost in them. A bf16 cache takes it only
  // when forced: on the GPU path (whose decode attention runs here, over a bf16 cache) the rounding moved
  // the golden models' logprobs past the GPU rule (tiny-qwen3-moe left the reference at a top-2 margin of
  // 0.107, on the H100 box, 2026-12-08), and on that box's Xeon it was only 5% faster at decode (50.1 vs
  // 47.7 GB/s of KV, 16 threads) and slower at prefill (244 vs 331 GFLOP/s). On Zen 4 it is 1.4x.
  const bool allowed_dtype =
      dtype == io::DType::kF8E4M3 || (dtype == io::DType::kBF16 && forced == AttentionKernel::kAvx512Bf16);
  const bool bf16_pairs =
      forced != AttentionKernel::kAvx512 && head_dim % 32 == 0 && CpuHasAvx512Bf16() && allowed_dtype;
  return bf16_pairs ? AttentionKernel::kAvx512Bf16 : AttentionKernel::kAvx512;
}

}  // namespace internal

void PagedAttentionHeads(const float* q, int n_new, int heads, const PagedKvView& kv, float scale,
                         int sliding_window, float* out, int kv_head_begin, int kv_head_end) {
  const internal::AttentionKernel kernel = internal::SelectedAttentionKernel(kv.head_dim, kv.dtype);
  if (kernel == internal::AttentionKernel::kAvx512Bf16) {
    internal::PagedAttentionAvx512Bf16(q, n_new, heads, kv, scale, sliding_window, out, kv_head_begin,
                                       kv_head_end);
  } else if (kernel == internal::AttentionKernel::kAvx512) {
    internal::PagedAttentionAvx512(q, n_new, heads, kv, scale, sliding_window, out, kv_head_begin,
                                   kv_head_end);
  } else {
    internal::PagedAttentionPortable(q, n_new, heads, kv, scale, sliding_window, out, kv_head_begin,
                                     kv_head_end);
  }
}

void PagedAttention(const float* q, int n_new, int heads, const PagedKvView& kv, float scale,
                    int sliding_window, float* out) {
  PagedAttentionHeads(q, n_new, heads, kv, scale, sliding_window, out, 0, kv.kv_heads);
}

}  // namespace ringmoe::cpu
