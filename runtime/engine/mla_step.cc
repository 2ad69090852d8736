#include "runtime/engine/mla_step.h"

#include <algorithm>
#include <cstring>

#include "cpu/cpu_ops.h"
#include "runtime/engine/forward.h"

namespace ringmoe {
namespace {

// Chunks of at least this many rows are cut into blocks of rows and heads, so that every core takes part.
constexpr int kSplitRows = 32;
constexpr int kHeadsPerItem = 8;

template <typename T>
T* Grow(std::vector<T>& buffer, size_t count) {
  if (buffer.size() < count) buffer.resize(count);
  return buffer.data();
}

}  // namespace

cpu::GroupRouting DeepseekRouting(const ModelSpec& spec, const float* correction_bias) {
  cpu::GroupRouting routing;
  routing.scoring = spec.router == RouterKind::kSigmoidGroupTopK ? cpu::GroupScoring::kSigmoidTopTwoSum
                                                                 : cpu::GroupScoring::kSoftmaxMax;
  routing.n_group = spec.n_group;
  routing.topk_group = spec.topk_group;
  routing.renormalize = spec.norm_topk_prob;
  routing.routed_scaling_factor = static_cast<float>(spec.routed_scaling_factor);
  routing.correction_bias = correction_bias;
  return routing;
}

cpu::RotaryEmbedding MlaRotary(const ModelSpec& spec) {
  const RopeScaling& yarn = spec.rope_scaling;
  if (!yarn.yarn) return cpu::DefaultRotary(spec.mla.qk_rope_head_dim, spec.rope_theta, spec.rope_interleave);
  return cpu::YarnRotary(spec.mla.qk_rope_head_dim, spec.rope_theta, spec.rope_interleave, yarn.factor,
                         yarn.original_max_position_embeddings, yarn.beta_fast, yarn.beta_slow, yarn.truncate,
                         yarn.attention_factor);
}

void MlaAttentionOnCpu(const ModelSpec& spec, const AttentionWeights& w, const cpu::RotaryEmbedding& rope,
                       int layer, std::span<const StepChunk> chunks, const float* normed, int tokens,
                       float* out, KvCache& kv_cache, cpu::CpuWorkers& workers, MlaScratch& scratch) {
  const MlaSpec& mla = spec.mla;
  const int heads = spec.num_heads, qk = mla.qk_head_dim(), row_width = mla.cache_width();
  const int64_t t_count = tokens;

  // Projections.
  float* q = Grow(scratch.q, t_count * heads * qk);
  if (mla.q_lora_rank > 0) {
    float* q_lora = Grow(scratch.q_lora, t_count * mla.q_lora_rank);
    cpu::Linear(normed, tokens, w.q_a, nullptr, q_lora, &workers);
    cpu::RmsNorm(q_lora, w.q_a_norm.data(), tokens, mla.q_lora_rank, kMlaLatentNormEps, q_lora);
    cpu::Linear(q_lora, tokens, w.q_b, nullptr, q, &workers);
  } else {
    cpu::Linear(normed, tokens, w.q, nullptr, q, &workers);
  }
  float* kv = Grow(scratch.kv, t_count * row_width);
  cpu::Linear(normed, tokens, w.kv_a, nullptr, kv, &workers);
  MlaAttendProjected(spec, w, rope, layer, chunks, q, kv, tokens, out, kv_cache, workers, scratch);
}

void MlaAttendProjected(const ModelSpec& spec, const AttentionWeights& w, const cpu::RotaryEmbedding& rope,
                        int layer, std::span<const StepChunk> chunks, float* q, float* kv, int tokens,
                        float* out, KvCache& kv_cache, cpu::CpuWorkers& workers, MlaScratch& scratch,
                        int attend_chunks) {
  const MlaSpec& mla = spec.mla;
  const int heads = spec.num_heads, qk = mla.qk_head_dim(), nope = mla.qk_nope_head_dim;
  const int latent = mla.kv_lora_rank, row_width = mla.cache_width(), v_dim = mla.v_head_dim;
  if (attend_chunks < 0) attend_chunks = static_cast<int>(chunks.size());
  int attend_rows = 0;
  for (int c = 0; c < attend_chunks; ++c) attend_rows += chunks[c].count;
  // Rows of every chunk for the cache; the absorbed attention only over the attending chunks' rows.
  const int64_t all_rows = tokens, t_count = attend_rows;
  for (int64_t t = 0; t < all_rows; ++t) {
    cpu::RmsNorm(kv + t * row_width, w.kv_a_norm.data(), 1, latent, kMlaLatentNormEps, kv + t * row_width);
  }

  // RoPE at each token's position, then the rows into the cache.
  std::vector<int> first_row(chunks.size() + 1, 0);
  for (size_t c = 0; c < chunks.size(); ++c) first_row[c + 1] = first_row[c] + chunks[c].count;
  workers.ParallelFor(static_cast<int64_t>(chunks.size()), 1, [&](int64_t begin, int64_t end) {
    std::vector<int32_t> positions;
    for (int64_t c = begin; c < end; ++c) {
      const StepChunk& chunk = chunks[c];
      const int64_t row = first_row[c];
      positions.resize(chunk.count);
      for (int i = 0; i < chunk.count; ++i) positions[i] = chunk.start + i;
      if (c < attend_chunks) {
        cpu::ApplyRotary(rope, q + row * heads * qk + nope, chunk.count, heads, int64_t{heads} * qk, qk,
                         positions.data());
      }
      cpu::ApplyRotary(rope, kv + row * row_width + latent, chunk.count, 1, row_width, 0, positions.data());
      kv_cache.Write(layer, *chunk.block_table, chunk.start, chunk.count, kv + row * row_width, nullptr,
                     row_width);
    }
  });

  if (attend_rows == 0) return;
  // The absorbed queries: [W_UK_h^T q_nope_h ; q_rope_h] per token and head.
  float* query = Grow(scratch.query, t_count * heads * row_width);
  workers.ParallelFor(heads, 1, [&](int64_t head_begin, int64_t head_end) {
    std::vector<float> nope_rows(t_count * nope), latent_rows(t_count * latent);
    for (int64_t h = head_begin; h < head_end; ++h) {
      for (int64_t t = 0; t < t_count; ++t) {
        std::memcpy(nope_rows.data() + t * nope, q + (t * heads + h) * qk, nope * sizeof(float));
      }
      cpu::Linear(nope_rows.data(), attend_rows, w.absorb_q[h], nullptr, latent_rows.data());
      for (int64_t t = 0; t < t_count; ++t) {
        float* dst = query + (t * heads + h) * row_width;
        std::memcpy(dst, latent_rows.data() + t * latent, latent * sizeof(float));
        std::memcpy(dst + latent, q + (t * heads + h) * qk + nope, mla.qk_rope_head_dim * sizeof(float));
      }
    }
  });

  // Attention over the cached rows: items of (chunk, rows, heads).
  struct Item {
    int chunk, row_begin, row_end, head_begin, head_end;
  };
  std::vector<Item> items;
  for (int c = 0; c < attend_chunks; ++c) {
    const int rows = chunks[c].count;
    if (rows < kSplitRows) {
      items.push_back({c, 0, rows, 0, heads});
      continue;
    }
    for (int r = 0; r < rows; r += kSplitRows) {
      for (int h = 0; h < heads; h += kHeadsPerItem) {
        items.push_back({c, r, std::min(rows, r + kSplitRows), h, std::min(heads, h + kHeadsPerItem)});
      }
    }
  }
  float* latent_out = Grow(scratch.latent_out, t_count * heads * latent);
  const float scale = spec.softmax_scale();
  workers.ParallelFor(static_cast<int64_t>(items.size()), 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const Item& item = items[i];
      const StepChunk& chunk = chunks[item.chunk];
      const int64_t row = first_row[item.chunk] + item.row_begin;
      // The view ends at the last of these rows (causal): later rows of the chunk are not looked at.
      const cpu::PagedKvView view = kv_cache.View(layer, *chunk.block_table, chunk.start + item.row_end);
      cpu::PagedMlaAttention(query + row * heads * row_width, item.row_end - item.row_begin, heads,
                             item.head_begin, item.head_end, view, latent, scale,
                             latent_out + row * heads * latent);
    }
  });

  // Each head's latent output through W_UV_h into its v_head_dim slice of out.
  workers.ParallelFor(heads, 1, [&](int64_t head_begin, int64_t head_end) {
    std::vector<float> latent_rows(t_count * latent), value_rows(t_count * v_dim);
    for (int64_t h = head_begin; h < head_end; ++h) {
      for (int64_t t = 0; t < t_count; ++t) {
        std::memcpy(latent_rows.data() + t * latent, latent_out + (t * heads + h) * latent,
                    latent * sizeof(float));
      }
      cpu::Linear(latent_rows.data(), attend_rows, w.absorb_out[h], nullptr, value_rows.data());
      for (int64_t t = 0; t < t_count; ++t) {
        std::memcpy(out + (t * heads + h) * v_dim, value_rows.data() + t * v_dim, v_dim * sizeof(float));
      }
    }
  });
}

}  // namespace ringmoe
