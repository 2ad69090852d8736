// DeepSeek's group-limited router: one thread per token, following cpu::RouteGroupLimited step by step so
// that the two agree on every choice. Scores are recomputed from the logits where needed instead of being
// kept per expert: a token touches a few thousand of them, and the kernel needs no scratch at all.
#include <cfloat>
#include <cmath>

#include "gpu/kernels.cuh"

namespace ringmoe::gpu::kernels {
namespace {

constexpr int kThreads = 128;
constexpr int kMaxGroups = 64;  // gpu::kMaxRouterGroups

// Higher value wins; equal values go to the lower id (as the CPU twin's comparators).
__device__ __forceinline__ bool Better(float a, int a_id, float b, int b_id) {
  return a > b || (a == b && a_id < b_id);
}

__global__ void RouteGroupLimitedKernel(const float* __restrict__ logits, int tokens, int num_experts,
                                        int top_k, int n_group, int topk_group, bool sigmoid,
                                        const float* __restrict__ bias, bool renormalize, float scaling,
                                        int32_t* __restrict__ expert_ids, float* __restrict__ weights) {
  const int token = blockIdx.x * blockDim.x + threadIdx.x;
  if (token >= tokens) return;
  const float* row = logits + static_cast<size_t>(token) * num_experts;
  // Softmax as the CPU twin computes it: the max, the sum of exp(l - max) in expert order, then each exp
  // divided by that sum.
  float max_logit = 0.0f, exp_sum = 1.0f;
  if (!sigmoid) {
    max_logit = -FLT_MAX;
    for (int e = 0; e < num_experts; ++e) max_logit = fmaxf(max_logit, row[e]);
    exp_sum = 0.0f;
    for (int e = 0; e < num_experts; ++e) exp_sum += expf(row[e] - max_logit);
  }
  // An expert's unbiased score (its weight) and the score it is chosen by.
  auto score = [&](int e) {
    return sigmoid ? 1.0f / (1.0f + expf(-row[e])) : expf(row[e] - max_logit) / exp_sum;
  };
  auto choice = [&](int e) { return sigmoid && bias != nullptr ? score(e) + bias[e] : score(e); };

  // Group scores: the sum of a group's two best choice scores (sigmoid) or its best (softmax).
  const int per_group = num_experts / n_group;
  float group_scores[kMaxGroups];
  for (int g = 0; g < n_group; ++g) {
    float best = -INFINITY, second = -INFINITY;
    for (int i = 0; i < per_group; ++i) {
      const float c = choice(g * per_group + i);
      if (c > best) {
        second = best;
        best = c;
      } else if (c > second) {
        second = c;
      }
    }
    group_scores[g] = sigmoid ? best + second : best;
  }
  // The best topk_group groups, picked one at a time: each the best of those ranked below the last pick.
  uint64_t eligible = 0;
  float last = INFINITY;
  int last_id = -1;
  for (int j = 0; j < topk_group; ++j) {
    float best = -INFINITY;
    int best_id = -1;
    for (int g = 0; g < n_group; ++g) {
      const bool below_last = last_id < 0 || Better(last, last_id, group_scores[g], g);
      if (below_last && (best_id < 0 || Better(group_scores[g], g, best, best_id))) {
        best = group_scores[g];
        best_id = g;
      }
    }
    eligible |= uint64_t{1} << best_id;
    last = best;
    last_id = best_id;
  }
  // Top-k of the eligible experts in descending (choice, lower id) order, the same way.
  int32_t* ids = expert_ids + static_cast<size_t>(token) * top_k;
  float* w = weights + static_cast<size_t>(token) * top_k;
  last = INFINITY;
  last_id = -1;
  float sum = 0.0f;
  for (int j = 0; j < top_k; ++j) {
    float best = -INFINITY;
    int best_id = -1;
    for (int e = 0; e < num_experts; ++e) {
      if (!((eligible >> (e / per_group)) & 1)) continue;
      const float c = choice(e);
      const bool below_last = last_id < 0 || Better(last, last_id, c, e);
      if (below_last && (best_id < 0 || Better(c, e, best, best_id))) {
        best = c;
        best_id = e;
      }
    }
    ids[j] = best_id;
    sum += w[j] = score(best_id);
    last = best;
    last_id = best_id;
  }
  for (int j = 0; j < top_k; ++j) {
    if (renormalize) w[j] /= sum + 1e-20f;
    w[j] *= scaling;
  }
}

}  // namespace

cudaError_t LaunchRouteGroupLimited(const float* logits, int tokens, int num_experts, int top_k, int n_group,
                                    int topk_group, bool sigmoid, const float* correction_bias,
                                    bool renormalize, float routed_scaling_factor, int32_t* expert_ids,
                                    float* weights, cudaStream_t stream) {
  if (tokens == 0) return cudaSuccess;
  const int blocks = (tokens + kThreads - 1) / kThreads;
  RouteGroupLimitedKernel<<<blocks, kThreads, 0, stream>>>(logits, tokens, num_experts, top_k, n_group,
                                                           topk_group, sigmoid, correction_bias, renormalize,
                                                           routed_scaling_factor, expert_ids, weights);
  return cudaGetLastError();
}

}  // namespace ringmoe::gpu::kernels
