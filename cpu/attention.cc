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
  // bf16 and e4m3 caches take the bf16-pair kernel unless the f32 one is forced: their values are bf16
  // precision already, and it does the same work in about 60% of the time (bench/attention_bench).
  const bool bf16_pairs = forced != AttentionKernel::kAvx512 && head_dim % 32 == 0 && CpuHasAvx512Bf16() &&
                          (dtype == io::DType::kBF16 || dtype == io::DType::kF8E4M3);
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
