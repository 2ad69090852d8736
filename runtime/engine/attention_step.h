// The CPU half of attention for one layer of a step, shared by the CPU and GPU forward passes: from the
// projected q, k, v rows to the attention output rows.
//
// PrepareQueryKey applies clip_qkv, QK-norm and RoPE (the GPU path does this on the GPU instead);
// CacheAndAttend stores K and V in the paged KV cache and runs causal attention per chunk on the worker pool.
#pragma once

#include <span>
#include <vector>

#include "cpu/thread_pool.h"
#include "runtime/engine/kv_cache.h"
#include "runtime/engine/model_weights.h"

namespace ringmoe {

struct StepChunk;

// q [rows, q_width], k and v [rows, kv_width] for the tokens of `chunks` (in order, rows = their total),
// modified in place: clip_qkv, QK-norm and RoPE at each row's position.
void PrepareQueryKey(const ModelSpec& spec, const AttentionWeights& weights,
                     const std::vector<StepChunk>& chunks, float* q, float* k, float* v,
                     cpu::CpuWorkers& workers);

// Writes the K/V rows of every chunk into `layer`'s cache, then runs attention for the first `attend_chunks`
// chunks, whose q rows come first in `q` and whose output rows go to `out` [rows of those chunks, q_width].
// The other chunks' attention runs elsewhere (the GPU path's prefill attention of fresh prompts).
void CacheAndAttend(const ModelSpec& spec, int layer, std::span<const StepChunk> chunks, int attend_chunks,
                    const float* q, const float* k, const float* v, float* out, KvCache& kv_cache,
                    cpu::CpuWorkers& workers);

// Both, for every chunk: the CPU forward pass.
void AttentionOnCpu(const ModelSpec& spec, const AttentionWeights& weights, int layer,
                    const std::vector<StepChunk>& chunks, float* q, float* k, float* v, float* out,
                    KvCache& kv_cache, cpu::CpuWorkers& workers);

}  // namespace ringmoe
