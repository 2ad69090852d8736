// The CPU half of attention for one layer of a step, shared by the CPU and GPU forward passes: from the
// projected q, k, v rows to the attention output rows. Applies clip_qkv, QK-norm and RoPE, stores K and V in
// the paged KV cache, and runs causal attention per chunk on the worker pool.
#pragma once

#include <vector>

#include "cpu/thread_pool.h"
#include "runtime/kv_cache.h"
#include "runtime/model_weights.h"

namespace ringmoe {

struct StepChunk;

// q [rows, q_width], k and v [rows, kv_width] for the tokens of `chunks` (in order, rows = their total);
// q and k are modified in place. Writes out [rows, q_width].
void AttentionOnCpu(const ModelSpec& spec, const AttentionWeights& weights, int layer,
                    const std::vector<StepChunk>& chunks, float* q, float* k, float* v, float* out,
                    KvCache& kv_cache, cpu::CpuWorkers& workers);

}  // namespace ringmoe
