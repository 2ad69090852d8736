// The forward pass over one scheduler step: a flat batch of token chunks from many sequences (prefill chunks
// and single decode tokens alike), through every layer, to the logits of the chunks that need them.
//
// CpuForward runs every stage on the CPU. Its per-stage structure (projections, attention over the paged
// KV cache, MoE) is what the GPU path (gpu_forward.h) replaces stage by stage. There, attention stays on the
// CPU for decodes and for prefill chunks that continue a cached prefix, over the host KV cache; fresh
// prompts' attention, and every chunk of the sequences whose KV lives in the GPU's share of the cache, run
// on the GPU.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "cpu/thread_pool.h"
#include "runtime/engine/gpu_stage_clock.h"
#include "runtime/engine/kv_cache.h"
#include "runtime/engine/mla_step.h"
#include "runtime/engine/model_weights.h"
#include "runtime/engine/sampler.h"

namespace ringmoe {

// One sequence's slice of a step: `count` tokens at positions start .. start + count - 1.
struct StepChunk {
  const int32_t* tokens = nullptr;
  int count = 0;
  int start = 0;
  const std::vector<int32_t>* block_table = nullptr;
  bool want_logits = false;  // logits of the chunk's last token
  bool greedy = false;       // its token is the argmax: the pass may pick it itself (StepOutput::picked)
  // Scoring (Request::echo with logprobs): the logits of the chunk's first `prompt_logits` tokens too, each
  // predicting the prompt token after it, into StepOutput::prompt_logits.
  int prompt_logits = 0;
};

// What a step gives back for each chunk with want_logits, in chunk order: the token the pass picked itself
// (greedy chunks only, where it can do so without shipping the logits), or else the next row of `logits`.
struct StepOutput {
  std::vector<float> logits;         // [chunks not picked, vocab]
  std::vector<SampledToken> picked;  // [chunks with want_logits]; token -1 where a logits row was given
  // [sum of the chunks' prompt_logits, vocab]: each chunk's first prompt_logits rows, in chunk order.
  std::vector<float> prompt_logits;
};

// Seconds spent per stage, accumulated over a run (for the measured-versus-predicted report).
struct StageTimes {
  double embed = 0, projections = 0, attention = 0, moe = 0, dense_mlp = 0, lm_head = 0;
};

// What a forward pass has measured since it was created. Counters only grow, so a run's share is the
// difference of two snapshots; the gauges at the end are values, not sums. Each pass fills what it can
// report and leaves the rest 0 (the CPU pass: its stage times and cpu_kv_read_bytes).
struct ForwardStats {
  StageTimes times;
  int64_t cpu_kv_read_bytes = 0;        // KV-cache bytes the CPU's attention read
  int64_t gpu_cache_kv_read_bytes = 0;  // KV bytes the GPU's attention read from its share of the cache
  int64_t streamed_bytes = 0;           // host-to-device expert bytes queued by the ring
  double copy_seconds = 0;              // copy-stream time of the completed ring fills
  int64_t ssd_read_bytes = 0;           // SSD tier: bytes read from the checkpoint's files
  double ssd_read_seconds = 0;          // SSD tier: the reader's time with reads in flight
  double ssd_wait_seconds = 0;          // SSD tier: the ring's driver waiting for a section's reads
  double cpu_wait_seconds = 0;          // the driving thread blocked on the GPU (q/k/v of a micro-batch)
  double feeder_busy_seconds = 0;       // the GPU feeder thread queueing GPU work, its waits included
  double feeder_wait_seconds = 0;       // of which waiting for MoE expert counts
  GpuStageSeconds gpu_stages;           // the compute stream's time by stage, when timed (EngineOptions)
  // Gauges.
  int64_t gpu_peak_bytes = 0;  // peak of the engine's device allocations
  int64_t gpu_cap_bytes = 0;
  int resident_moe_layers = 0;
  int streamed_moe_layers = 0;
  int ssd_moe_layers = 0;  // of which read from SSD
};

// A forward pass over one step. Threading: one Run at a time (the scheduler thread); owns its scratch.
class ForwardPass {
 public:
  virtual ~ForwardPass() = default;
  // Runs every layer over the step's chunks (K/V of their tokens land in the cache) and fills `out`.
  virtual absl::Status Run(const std::vector<StepChunk>& chunks, StepOutput* out) = 0;
  // A snapshot of the totals so far; call it between Runs (on the thread that calls Run).
  virtual ForwardStats stats() const = 0;
};

class CpuForward final : public ForwardPass {
 public:
  CpuForward(const ModelWeights& weights, KvCache& kv_cache, cpu::CpuWorkers& workers);

  // Picks no tokens itself: every chunk with want_logits gets its logits row.
  absl::Status Run(const std::vector<StepChunk>& chunks, StepOutput* out) override;
  ForwardStats stats() const override;

 private:
  // Fills out->prompt_logits (StepChunk::prompt_logits), after the step's own logits.
  absl::Status PromptLogits(const std::vector<StepChunk>& chunks, StepOutput* out);
  void Attention(int layer, const std::vector<StepChunk>& chunks, int tokens);
  void FeedForward(int layer, int tokens);

  const ModelWeights& weights_;
  const ModelSpec& spec_;
  KvCache& kv_cache_;
  cpu::CpuWorkers& workers_;
  StageTimes times_;
  int64_t kv_read_bytes_ = 0;
  // Scratch, grown to the largest step seen.
  std::vector<float> hidden_, normed_, q_, k_, v_, attention_out_, projected_, router_logits_,
      routing_weights_, shared_out_, shared_gate_;
  std::vector<int32_t> expert_ids_;
  // MLA models (DeepSeek).
  cpu::RotaryEmbedding mla_rotary_;
  MlaScratch mla_scratch_;
};

}  // namespace ringmoe
