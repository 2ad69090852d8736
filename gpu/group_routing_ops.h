// DeepSeek's group-limited router on the GPU; twin of cpu::RouteGroupLimited (cpu/group_routing.h): the same
// scores, group choice, top-k, tie-breaking (lower group and expert ids first), renormalisation and scaling.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "cpu/group_routing.h"
#include "gpu/stream.h"

namespace ringmoe::gpu {

// The largest n_group the kernel takes (a token's group scores live in registers), and the most experts.
inline constexpr int kMaxRouterGroups = 64;
inline constexpr int kMaxGroupRouterExperts = 1024;

// Device pointers: logits f32 [tokens, num_experts]; routing.correction_bias, when not null, a device array
// of num_experts f32. Writes expert_ids int32 and weights f32, each [tokens, top_k], in descending choice
// score. Queued on `stream`. InvalidArgument unless 1 <= num_experts <= 1024, n_group in [1,
// kMaxRouterGroups] divides num_experts, 1 <= topk_group <= n_group and 1 <= top_k <= min(32, topk_group *
// num_experts / n_group).
absl::Status RouteGroupLimited(const float* logits, int tokens, int num_experts, int top_k,
                               const cpu::GroupRouting& routing, int32_t* expert_ids, float* weights,
                               const Stream& stream);

}  // namespace ringmoe::gpu
