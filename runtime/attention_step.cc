#include "runtime/attention_step.h"

#include <algorithm>
#include <cmath>

#include "cpu/cpu_ops.h"
#include "runtime/forward.h"

namespace ringmoe {

void AttentionOnCpu(const ModelSpec& spec, const AttentionWeights& weights, int layer,
                    const std::vector<StepChunk>& chunks, float* q, float* k, float* v, float* out,
                    KvCache& kv_cache, cpu::CpuWorkers& workers) {
  const int q_width = spec.q_width(), kv_width = spec.kv_width();
  const float eps = static_cast<float>(spec.rms_norm_eps);
  std::vector<int> first_row(chunks.size() + 1, 0);
  for (size_t c = 0; c < chunks.size(); ++c) first_row[c + 1] = first_row[c] + chunks[c].count;
  const float scale = 1.0f / std::sqrt(static_cast<float>(spec.head_dim));
  // One task per chunk: its rows' norms and rotations, its cache writes and its attention are independent.
  workers.ParallelFor(static_cast<int64_t>(chunks.size()), 1, [&](int64_t begin, int64_t end) {
    std::vector<int32_t> positions;
    for (int64_t c = begin; c < end; ++c) {
      const StepChunk& chunk = chunks[c];
      const int row = first_row[c], rows = chunk.count;
      float* cq = q + static_cast<int64_t>(row) * q_width;
      float* ck = k + static_cast<int64_t>(row) * kv_width;
      float* cv = v + static_cast<int64_t>(row) * kv_width;
      if (spec.clip_qkv > 0) {
        const float clip = spec.clip_qkv;
        for (auto [buffer, count] : {std::pair{cq, rows * q_width}, {ck, rows * kv_width}, {cv, rows * kv_width}}) {
          for (int i = 0; i < count; ++i) buffer[i] = std::clamp(buffer[i], -clip, clip);
        }
      }
      if (spec.qk_norm == QkNorm::kPerHead) {
        cpu::RmsNorm(cq, weights.q_norm.data(), rows * spec.num_heads, spec.head_dim, eps, cq);
        cpu::RmsNorm(ck, weights.k_norm.data(), rows * spec.num_kv_heads, spec.head_dim, eps, ck);
      } else if (spec.qk_norm == QkNorm::kFullWidth) {
        cpu::RmsNorm(cq, weights.q_norm.data(), rows, q_width, eps, cq);
        cpu::RmsNorm(ck, weights.k_norm.data(), rows, kv_width, eps, ck);
      }
      positions.resize(rows);
      for (int i = 0; i < rows; ++i) positions[i] = chunk.start + i;
      cpu::ApplyRope(cq, rows, spec.num_heads, spec.head_dim, positions.data(), spec.rope_theta);
      cpu::ApplyRope(ck, rows, spec.num_kv_heads, spec.head_dim, positions.data(), spec.rope_theta);
      kv_cache.Write(layer, *chunk.block_table, chunk.start, rows, ck, cv, kv_width);
      cpu::PagedKvView view = kv_cache.View(layer, *chunk.block_table, chunk.start + rows);
      cpu::PagedAttention(cq, rows, spec.num_heads, view, scale, spec.sliding_window,
                          out + static_cast<int64_t>(row) * q_width);
    }
  });
}

}  // namespace ringmoe
