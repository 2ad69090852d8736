// The data movement of MLA's fresh-prompt attention on the GPU (GpuStepOps::EnqueueMlaPrefill), as plain
// descriptors, so that a CPU test can replay it (tests/mla_prefill_layout_test.cc) against the CPU's absorbed
// MLA. For `rows` fresh rows of an MLA model:
//   kv_a rows [rows, latent + rope]     -> latents [rows, latent], rope keys [rows, rope]
//   kv_b out [rows, heads, nope + v]    -> K [rows, heads, qk] = [k_nope ; rope key], V [rows, heads, qk] =
//                                          [v ; zeros] (V padded to qk: one head size for PrefillAttention)
//   attention out [rows, heads, qk]     -> attention rows [rows, heads * v]
#pragma once

#include "gpu/mla_ops.h"
#include "io/model_spec.h"

namespace ringmoe {

struct MlaPrefillCopies {
  gpu::BlockCopy latents, rope_keys, k_nope, k_rope, v, out;
};

inline MlaPrefillCopies MlaPrefillLayout(const ModelSpec& spec, int rows) {
  const MlaSpec& mla = spec.mla;
  const int heads = spec.num_heads, qk = mla.qk_head_dim(), nope = mla.qk_nope_head_dim, v = mla.v_head_dim;
  const int latent = mla.kv_lora_rank, rope = mla.qk_rope_head_dim, row = mla.cache_width();
  const int64_t kv_b_width = int64_t{heads} * (nope + v), padded = int64_t{heads} * qk,
                out_width = int64_t{heads} * v;
  MlaPrefillCopies copies;
  copies.latents = {rows, 1, latent, row, 0, latent, 0};  // from the kv_a rows
  copies.rope_keys = {rows, 1, rope, row, 0, rope, 0};    // from the kv_a rows + latent
  copies.k_nope = {rows, heads, nope, kv_b_width, nope + v, padded, qk};
  copies.k_rope = {rows, heads, rope, rope, 0, padded, qk};       // one rope key into every head, at K + nope
  copies.v = {rows, heads, v, kv_b_width, nope + v, padded, qk};  // from kv_b out + nope
  copies.out = {rows, heads, v, padded, qk, out_width, v};
  return copies;
}

}  // namespace ringmoe
