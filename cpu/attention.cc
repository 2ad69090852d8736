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

AttentionKernel SelectedAttentionKernel(int head_dim) {
  const bool avx512 = KernelIsa() == CpuIsa::kAvx512 && head_dim % 16 == 0;
  return forced_kernel.load() != AttentionKernel::kPortable && avx512 ? AttentionKernel::kAvx512
                                                                      : AttentionKernel::kPortable;
}

}  // namespace internal

void PagedAttentionHeads(const float* q, int n_new, int heads, const PagedKvView& kv, float scale,
                         int sliding_window, float* out, int kv_head_begin, int kv_head_end) {
  if (internal::SelectedAttentionKernel(kv.head_dim) == internal::AttentionKernel::kAvx512) {
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
