#include "gpu/group_routing_ops.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "gpu/device.h"
#include "io/status_macros.h"

#if RINGMOE_HAVE_CUDA
#include "gpu/cuda_status.cuh"
#include "gpu/kernels.cuh"
#endif

namespace ringmoe::gpu {

absl::Status RouteGroupLimited(const float* logits, int tokens, int num_experts, int top_k,
                               const cpu::GroupRouting& routing, int32_t* expert_ids, float* weights,
                               const Stream& stream) {
  const int groups = routing.n_group;
  const bool shape_ok = tokens >= 0 && num_experts >= 1 && num_experts <= kMaxGroupRouterExperts &&
                        groups >= 1 && groups <= kMaxRouterGroups && num_experts % groups == 0 &&
                        routing.topk_group >= 1 && routing.topk_group <= groups && top_k >= 1 &&
                        top_k <= std::min(32, routing.topk_group * (num_experts / groups));
  if (!shape_ok) {
    return absl::InvalidArgumentError(
        absl::StrCat("gpu::RouteGroupLimited: tokens ", tokens, ", experts ", num_experts, ", n_group ",
                     groups, ", topk_group ", routing.topk_group, ", top_k ", top_k,
                     " (experts <= ", kMaxGroupRouterExperts, ", n_group <= ", kMaxRouterGroups,
                     " dividing the experts, topk_group <= n_group, top_k <= 32 and <= "
                     "the experts of topk_group groups)"));
  }
  if (tokens > 0 && (logits == nullptr || expert_ids == nullptr || weights == nullptr)) {
    return absl::InvalidArgumentError("gpu::RouteGroupLimited: null pointer");
  }
#if RINGMOE_HAVE_CUDA
  RINGMOE_RETURN_IF_ERROR(RequireGpu());
  RINGMOE_CUDA_RETURN_IF_ERROR(
      kernels::LaunchRouteGroupLimited(
          logits, tokens, num_experts, top_k, groups, routing.topk_group,
          routing.scoring == cpu::GroupScoring::kSigmoidTopTwoSum, routing.correction_bias,
          routing.renormalize, routing.routed_scaling_factor, expert_ids, weights, internal::AsCuda(stream)),
      "group-limited router kernel");
  return absl::OkStatus();
#else
  (void)stream;
  return NotBuiltWithCuda();
#endif
}

}  // namespace ringmoe::gpu
