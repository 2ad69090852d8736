// StepLayout: how the GPU offload path lays out one scheduler step's rows, and LayOutStep, which builds it.
//
// Plain C++ (no GPU types), so that it can be tested without a GPU. GpuForward computes the layout on the
// driving thread before it posts any GPU work; both threads then only read it until the step has drained.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/engine/forward.h"
#include "runtime/engine/kv_cache.h"

namespace ringmoe {

// A micro-batch: a slice of the step's rows, in four runs: chunks whose attention runs on the CPU over the
// host cache (decodes, prefill chunks that continue a cached prefix), then fresh prompts (prefill from
// position 0, nothing cached) of host-cache sequences, then fresh prompts of device-cache sequences (both
// attended by the GPU's prefill kernel), then the other chunks of device-cache sequences (the GPU's paged
// attention). Rows are numbered in this order across the step.
struct MicroBatch {
  std::vector<StepChunk> chunks;
  int cpu_chunks = 0;
  int first_row = 0;
  int cpu_rows = 0;
  int rows = 0;
  int fresh_chunks = 0;  // host and device fresh prompts together
  int max_fresh_rows = 0;
  // Index of its first entry in the step's fresh-row offsets (fresh_chunks + 1 entries).
  int fresh_offsets = 0;
  int host_chunks = 0;  // chunks whose K/V go to the host cache (the first ones)
  int host_rows = 0;
  int device_rows = 0;  // rows of device-cache sequences (the last ones): fresh, then paged
  int paged_rows = 0;   // of which attended by the paged kernel (the very last ones)
};

// The step as the GPU path runs it.
struct StepLayout {
  std::vector<MicroBatch> batches;
  int rows = 0;
  // Per chunk with want_logits, in the caller's order: its last row, and whether its token is picked here.
  std::vector<int> logits_rows;
  std::vector<bool> greedy;
  // Scoring: the rows of every chunk's first StepChunk::prompt_logits tokens, in the caller's chunk order.
  std::vector<int32_t> prompt_logit_rows;
  std::vector<int32_t> positions;      // Per row.
  std::vector<int32_t> fresh_offsets;  // Per micro-batch: 0, rows of its first fresh chunk, ... (relative).
  // Device-cache rows: per row, the offset of its sequence's table in device_tables, or -1 (host rows);
  // device_tables: those tables, device-local block ids (id - KvCache::num_blocks()).
  std::vector<int32_t> row_tables;
  std::vector<int32_t> device_tables;
};

// Splits `chunks` into at most `micro_batches` micro-batches of about equal rows (each of the four kinds
// spread evenly). fresh_on_gpu false keeps host-cache sequences' attention on the CPU. kv_cache (may be null:
// no device blocks) tells device-cache sequences apart.
StepLayout LayOutStep(const std::vector<StepChunk>& chunks, int micro_batches, bool fresh_on_gpu,
                      const KvCache* kv_cache = nullptr);

}  // namespace ringmoe
