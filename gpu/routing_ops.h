// Router top-k on the GPU; twin of cpu::RouteTopK (cpu/routing.h), same scoring rules and tie-breaking.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "cpu/routing.h"
#include "gpu/stream.h"

namespace ringmoe::gpu {

// Device pointers: logits f32 [tokens, num_experts]; writes expert_ids int32 and weights f32, each
// [tokens, top_k], in descending weight order, ties to the lower expert id. Queued on `stream`.
// InvalidArgument for num_experts outside [1, 1024] or top_k outside [1, min(num_experts, 32)].
absl::Status RouteTopK(const float* logits, int tokens, int num_experts, int top_k,
                       cpu::RouterScoring scoring, bool renormalize, int32_t* expert_ids, float* weights,
                       const Stream& stream);

}  // namespace ringmoe::gpu
