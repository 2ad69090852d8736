// The forward pass over one scheduler step: a flat batch of token chunks from many sequences (prefill chunks
// and single decode tokens alike), through every layer, to the logits of the chunks that need them.
//
// CpuForward runs every stage on the CPU. Its per-stage structure (projections, attention over the paged
// KV cache, MoE) is what the GPU path replaces stage by stage; attention always stays on the CPU.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "cpu/thread_pool.h"
#include "runtime/kv_cache.h"
#include "runtime/model_weights.h"

namespace ringmoe {

// One sequence's slice of a step: `count` tokens at positions start .. start + count - 1.
struct StepChunk {
  const int32_t* tokens = nullptr;
  int count = 0;
  int start = 0;
  const std::vector<int32_t>* block_table = nullptr;
  bool want_logits = false;  // logits of the chunk's last token
};

// Seconds spent per stage, accumulated over a run (for the measured-versus-predicted report).
struct StageTimes {
  double embed = 0, projections = 0, attention = 0, moe = 0, dense_mlp = 0, lm_head = 0;
};

// A forward pass over one step. Threading: one Run at a time (the scheduler thread); owns its scratch.
class ForwardPass {
 public:
  virtual ~ForwardPass() = default;
  // Writes logits [number of chunks with want_logits, vocab] in chunk order.
  virtual absl::Status Run(const std::vector<StepChunk>& chunks, std::vector<float>* logits) = 0;
  virtual const StageTimes& stage_times() const = 0;
};

class CpuForward final : public ForwardPass {
 public:
  CpuForward(const ModelWeights& weights, KvCache& kv_cache, cpu::CpuWorkers& workers);

  absl::Status Run(const std::vector<StepChunk>& chunks, std::vector<float>* logits) override;
  const StageTimes& stage_times() const override { return times_; }

 private:
  void Attention(int layer, const std::vector<StepChunk>& chunks, int tokens);
  void FeedForward(int layer, int tokens);

  const ModelWeights& weights_;
  const ModelSpec& spec_;
  KvCache& kv_cache_;
  cpu::CpuWorkers& workers_;
  StageTimes times_;
  // Scratch, grown to the largest step seen.
  std::vector<float> hidden_, normed_, q_, k_, v_, attention_out_, projected_, router_logits_, routing_weights_,
      shared_out_, shared_gate_;
  std::vector<int32_t> expert_ids_;
};

}  // namespace ringmoe
