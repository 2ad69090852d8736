#include "gpu/routing_ops.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "gpu/device.h"
#include "io/status_macros.h"

#if RINGMOE_HAVE_CUDA
#include "gpu/cuda_status.cuh"
#include "gpu/kernels.cuh"
#endif

namespace ringmoe::gpu {

absl::Status RouteTopK(const float* logits, int tokens, int num_experts, int top_k,
                       cpu::RouterScoring scoring, bool renormalize, int32_t* expert_ids, float* weights,
                       const Stream& stream) {
#if RINGMOE_HAVE_CUDA
  RINGMOE_RETURN_IF_ERROR(RequireGpu());
  if (tokens < 0 || num_experts < 1 || num_experts > kernels::kMaxRouterExperts || top_k < 1 ||
      top_k > std::min(num_experts, 32)) {
    return absl::InvalidArgumentError(
        absl::StrCat("gpu::RouteTopK: tokens ", tokens, ", experts ", num_experts, ", top_k ", top_k,
                     " (experts <= ", kernels::kMaxRouterExperts, ", top_k <= min(experts, 32))"));
  }
  if (tokens > 0 && (logits == nullptr || expert_ids == nullptr || weights == nullptr)) {
    return absl::InvalidArgumentError("gpu::RouteTopK: null pointer");
  }
  RINGMOE_CUDA_RETURN_IF_ERROR(
      kernels::LaunchRouteTopK(logits, tokens, num_experts, top_k,
                               scoring == cpu::RouterScoring::kSoftmaxThenTopK, renormalize, expert_ids,
                               weights, internal::AsCuda(stream)),
      "router top-k kernel");
  return absl::OkStatus();
#else
  (void)logits, (void)tokens, (void)num_experts, (void)top_k, (void)scoring, (void)renormalize;
  (void)expert_ids, (void)weights, (void)stream;
  return NotBuiltWithCuda();
#endif
}

}  // namespace ringmoe::gpu
