// The CPU's multi-head latent attention (DeepSeek-V2/V3) for one layer of a step: from the normed hidden rows
// to the attention output rows before o_proj, with the KV cache holding only each token's compressed row.
//
//   q        = q_proj(x), or q_b(RMSNorm(q_a(x)))             [heads, nope + rope]
//   [c ; kr] = kv_a(x); c = RMSNorm(c)                         one latent and one rope key per token
//   RoPE (interleaved or half, YaRN frequencies) on q's rope part and kr; [c ; kr] goes into the cache
//   query_h  = [W_UK_h^T q_nope_h ; q_rope_h]                  the absorbed query, in the cache row's space
//   o_h      = W_UV_h . softmax(query_h . rows * scale) . c    attention reads only the cached rows
// Prefill chunks and decodes use the same absorbed form.
#pragma once

#include <span>
#include <vector>

#include "cpu/group_routing.h"
#include "cpu/rope.h"
#include "cpu/thread_pool.h"
#include "runtime/engine/kv_cache.h"
#include "runtime/engine/model_weights.h"

namespace ringmoe {

struct StepChunk;

// transformers builds q_a_layernorm and kv_a_layernorm with RMSNorm's default eps, not rms_norm_eps.
inline constexpr float kMlaLatentNormEps = 1e-6f;

// The rotary embedding of an MLA model's rope part (qk_rope_head_dim; YaRN when configured).
cpu::RotaryEmbedding MlaRotary(const ModelSpec& spec);

// DeepSeek's group-limited routing from its config, for the CPU router and its GPU twin alike;
// correction_bias: the layer's e_score_correction_bias (where the caller keeps it), or null.
cpu::GroupRouting DeepseekRouting(const ModelSpec& spec, const float* correction_bias);

// Scratch of MlaAttentionOnCpu, grown to the largest step seen. Threading: one call at a time per scratch.
struct MlaScratch {
  std::vector<float> q_lora, q, kv, query, latent_out;
};

// normed: [tokens, hidden] for the tokens of `chunks` in order; out: [tokens, heads * v_head_dim]. Writes
// each token's [latent ; rope key] row into `layer`'s cache. The projections, then MlaAttendProjected.
void MlaAttentionOnCpu(const ModelSpec& spec, const AttentionWeights& weights,
                       const cpu::RotaryEmbedding& rope, int layer, std::span<const StepChunk> chunks,
                       const float* normed, int tokens, float* out, KvCache& kv_cache,
                       cpu::CpuWorkers& workers, MlaScratch& scratch);

// Everything after the projections, the CPU's part of MLA on the GPU path too: kv [tokens, cache_width]
// (kv_a's rows, before its norm) is normed and rotated in place and every chunk's rows written into the
// cache; the first attend_chunks chunks (all when negative) also attend: their q rows [heads * qk_head_dim]
// (q_proj's or q_b's, first in q) are rotated in place and their out rows [heads * v_head_dim] (first in out)
// filled through the absorbed attention and W_UV. The other chunks' q and out rows are not touched (the GPU
// path attends fresh prompts itself).
void MlaAttendProjected(const ModelSpec& spec, const AttentionWeights& weights,
                        const cpu::RotaryEmbedding& rope, int layer, std::span<const StepChunk> chunks,
                        float* q, float* kv, int tokens, float* out, KvCache& kv_cache,
                        cpu::CpuWorkers& workers, MlaScratch& scratch, int attend_chunks = -1);

}  // namespace ringmoe
