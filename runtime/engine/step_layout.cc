#include "runtime/engine/step_layout.h"

#include <algorithm>

namespace ringmoe {
namespace {

// Cuts `indices` (chunks in step order) into `parts` contiguous runs of about equal rows.
std::vector<std::vector<int>> SplitByRows(const std::vector<StepChunk>& chunks,
                                          const std::vector<int>& indices, int parts) {
  std::vector<std::vector<int>> runs(parts);
  int64_t total = 0;
  for (int i : indices) total += chunks[i].count;
  int64_t done = 0;
  int part = 0;
  for (int i : indices) {
    // Move on once this part holds its share: part p ends where the running total passes (p + 1) / parts.
    while (part + 1 < parts && done * parts >= (part + 1) * total) ++part;
    runs[part].push_back(i);
    done += chunks[i].count;
  }
  return runs;
}

}  // namespace

StepLayout LayOutStep(const std::vector<StepChunk>& chunks, int micro_batches, bool fresh_on_gpu,
                      const KvCache* kv_cache) {
  enum Kind { kCpu, kFreshHost, kFreshDevice, kPaged, kKinds };
  std::vector<int> of_kind[kKinds];
  for (int i = 0; i < static_cast<int>(chunks.size()); ++i) {
    const bool device = kv_cache != nullptr && kv_cache->OnDevice(*chunks[i].block_table);
    const bool fresh = fresh_on_gpu && chunks[i].start == 0;
    of_kind[device ? (fresh ? kFreshDevice : kPaged) : (fresh ? kFreshHost : kCpu)].push_back(i);
  }
  const int parts = std::max(1, micro_batches);
  std::vector<std::vector<int>> runs[kKinds];
  for (int kind = 0; kind < kKinds; ++kind) runs[kind] = SplitByRows(chunks, of_kind[kind], parts);
  StepLayout layout;
  std::vector<int> last_row(chunks.size(), -1);
  for (int p = 0; p < parts; ++p) {
    MicroBatch batch;
    batch.first_row = layout.rows;
    batch.fresh_offsets = static_cast<int>(layout.fresh_offsets.size());
    for (int kind = 0; kind < kKinds; ++kind) {
      const bool is_fresh = kind == kFreshHost || kind == kFreshDevice;
      const bool device = kind == kFreshDevice || kind == kPaged;
      if (is_fresh && !runs[kind][p].empty() && batch.fresh_chunks == 0) layout.fresh_offsets.push_back(0);
      for (int i : runs[kind][p]) {
        const StepChunk& chunk = chunks[i];
        batch.chunks.push_back(chunk);
        int32_t table = -1;
        if (device) {
          table = static_cast<int32_t>(layout.device_tables.size());
          for (int32_t id : *chunk.block_table) layout.device_tables.push_back(id - kv_cache->num_blocks());
        }
        for (int t = 0; t < chunk.count; ++t) {
          layout.positions.push_back(chunk.start + t);
          layout.row_tables.push_back(table);
        }
        batch.rows += chunk.count;
        layout.rows += chunk.count;
        last_row[i] = layout.rows - 1;
        if (kind == kCpu) {
          ++batch.cpu_chunks;
          batch.cpu_rows += chunk.count;
        }
        if (!device) {
          ++batch.host_chunks;
          batch.host_rows += chunk.count;
        } else {
          batch.device_rows += chunk.count;
        }
        if (kind == kPaged) batch.paged_rows += chunk.count;
        if (is_fresh) {
          ++batch.fresh_chunks;
          batch.max_fresh_rows = std::max(batch.max_fresh_rows, chunk.count);
          layout.fresh_offsets.push_back(batch.rows - batch.cpu_rows);
        }
      }
    }
    if (batch.rows > 0) layout.batches.push_back(std::move(batch));
  }
  for (size_t i = 0; i < chunks.size(); ++i) {
    for (int t = 0; t < chunks[i].prompt_logits; ++t)
      layout.prompt_logit_rows.push_back(last_row[i] - chunks[i].count + 1 + t);
  }
  for (size_t i = 0; i < chunks.size(); ++i) {
    if (!chunks[i].want_logits) continue;
    layout.logits_rows.push_back(last_row[i]);
    layout.greedy.push_back(chunks[i].greedy);
  }
  return layout;
}

}  // namespace ringmoe
