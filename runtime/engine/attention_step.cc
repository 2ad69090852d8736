#include "runtime/engine/attention_step.h"

#include <algorithm>
#include <cmath>

#include "cpu/cpu_ops.h"
#include "runtime/engine/forward.h"

namespace ringmoe {
namespace {

std::vector<int> FirstRows(std::span<const StepChunk> chunks) {
  std::vector<int> first_row(chunks.size() + 1, 0);
  for (size_t c = 0; c < chunks.size(); ++c) first_row[c + 1] = first_row[c] + chunks[c].count;
  return first_row;
}

// Chunks of at least this many rows are cut into blocks of this many rows (see CacheAndAttend).
constexpr int kSplitRows = 32;

}  // namespace

void PrepareQueryKey(const ModelSpec& spec, const AttentionWeights& weights,
                     const std::vector<StepChunk>& chunks, float* q, float* k, float* v,
                     cpu::CpuWorkers& workers) {
  const int q_width = spec.q_width(), kv_width = spec.kv_width();
  const float eps = static_cast<float>(spec.rms_norm_eps);
  const std::vector<int> first_row = FirstRows(chunks);
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
        for (auto [buffer, count] :
             {std::pair{cq, rows * q_width}, {ck, rows * kv_width}, {cv, rows * kv_width}}) {
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
    }
  });
}

void CacheAndAttend(const ModelSpec& spec, int layer, std::span<const StepChunk> chunks, int attend_chunks,
                    const float* q, const float* k, const float* v, float* out, KvCache& kv_cache,
                    cpu::CpuWorkers& workers) {
  const int q_width = spec.q_width(), kv_width = spec.kv_width();
  const std::vector<int> first_row = FirstRows(chunks);
  const float scale = 1.0f / std::sqrt(static_cast<float>(spec.head_dim));
  // Work items: rows [row_begin, row_end) of a chunk, kv heads [kv_begin, kv_end) of their attention
  // (none: only their cache write). Decodes are one item, cache write and attention together. Long chunks
  // (a prefill continuation has one step's CPU attention to itself; fresh prompts only write) are cut into
  // blocks of rows, and their attention also per kv head, so that every core takes part.
  struct Item {
    int chunk, row_begin, row_end, kv_begin, kv_end;
    bool write;
  };
  std::vector<Item> first_pass, second_pass;
  for (int c = 0; c < static_cast<int>(chunks.size()); ++c) {
    const int rows = chunks[c].count;
    const bool attend = c < attend_chunks;
    if (rows < kSplitRows) {
      first_pass.push_back({c, 0, rows, 0, attend ? spec.num_kv_heads : 0, true});
      continue;
    }
    for (int r = 0; r < rows; r += kSplitRows) {
      const int end = std::min(rows, r + kSplitRows);
      first_pass.push_back({c, r, end, 0, 0, true});
      if (!attend) continue;
      for (int g = 0; g < spec.num_kv_heads; ++g) second_pass.push_back({c, r, end, g, g + 1, false});
    }
  }
  auto run = [&](const std::vector<Item>& items) {
    workers.ParallelFor(static_cast<int64_t>(items.size()), 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const Item& item = items[i];
        const StepChunk& chunk = chunks[item.chunk];
        const int64_t row = first_row[item.chunk] + item.row_begin;
        const int rows = item.row_end - item.row_begin;
        if (item.write) {
          kv_cache.Write(layer, *chunk.block_table, chunk.start + item.row_begin, rows, k + row * kv_width,
                         v + row * kv_width, kv_width);
        }
        if (item.kv_end <= item.kv_begin) continue;
        // These rows are the last of a view that ends at the last of them (causal): earlier rows of the
        // chunk are already in the cache, later ones are not looked at.
        const cpu::PagedKvView view = kv_cache.View(layer, *chunk.block_table, chunk.start + item.row_end);
        cpu::PagedAttentionHeads(q + row * q_width, rows, spec.num_heads, view, scale, spec.sliding_window,
                                 out + row * q_width, item.kv_begin, item.kv_end);
      }
    });
  };
  run(first_pass);
  if (!second_pass.empty()) run(second_pass);
}

void AttentionOnCpu(const ModelSpec& spec, const AttentionWeights& weights, int layer,
                    const std::vector<StepChunk>& chunks, float* q, float* k, float* v, float* out,
                    KvCache& kv_cache, cpu::CpuWorkers& workers) {
  PrepareQueryKey(spec, weights, chunks, q, k, v, workers);
  CacheAndAttend(spec, layer, chunks, static_cast<int>(chunks.size()), q, k, v, out, kv_cache, workers);
}

}  // namespace ringmoe
