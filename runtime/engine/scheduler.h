// Scheduler: continuous batching over the paged KV cache.
//
// Each step mixes single-token decodes of running sequences with prefill chunks of new ones, within a token
// budget. A sequence is admitted only when the KV blocks for its whole life (prompt + max new tokens, capped at
// the context) are free, so no running sequence is ever preempted; its blocks return the moment it finishes and
// waiting sequences take them in the next step. Owns sequences, never weights.
// Threading: used by the engine's scheduler thread only.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "runtime/engine/forward.h"
#include "runtime/engine/kv_cache.h"
#include "runtime/engine/sampler.h"

namespace ringmoe {

struct Sequence {
  size_t request_index = 0;
  std::vector<int32_t> tokens;  // prompt, then generated tokens
  int prompt_length = 0;
  int computed = 0;             // tokens whose K/V are in the cache
  int max_new_tokens = 0;       // already capped so that the sequence fits the context
  std::vector<int32_t> block_table;
  SeededRandom random{0};
  bool finished = false;
  int choice = 0;           // which of its request's n choices (choice_fork.h)
  int choices_to_fork = 0;  // choice 0 of an n > 1 request: the other choices, started once the prompt is in
  uint64_t seed = 0;        // the request's sampling seed, from which each choice's is derived
  // Scoring (Request::echo with logprobs): its prefill chunks ask for the logits of every prompt position,
  // at most kPromptLogitsStepRows of them per step (all scoring sequences together).
  bool prompt_logits = false;

  int generated() const { return static_cast<int>(tokens.size()) - prompt_length; }
  int lifetime_tokens() const { return prompt_length + max_new_tokens; }
};

// Most prompt positions a step scores, over all its scoring chunks: their logits rows are held for the step
// (at 150k vocabulary entries, 512 rows are 300 MB of f32).
inline constexpr int kPromptLogitsStepRows = 512;

class Scheduler {
 public:
  Scheduler(KvCache& kv_cache, int max_batch, int max_step_tokens);

  void Enqueue(std::unique_ptr<Sequence> sequence);
  bool Idle() const { return waiting_.empty() && running_.empty(); }
  int running() const { return static_cast<int>(running_.size()); }
  int waiting() const { return static_cast<int>(waiting_.size()); }

  // Fills the next step. owners[i] is the sequence of chunks[i]. Empty only when Idle().
  void NextStep(std::vector<StepChunk>* chunks, std::vector<Sequence*>* owners);
  // Marks a step's chunks as computed (their K/V are now cached). A sequence whose prompt is now in and that
  // has choices to fork gets them, at the front of the waiting queue (choice_fork.h).
  void Commit(const std::vector<StepChunk>& chunks, const std::vector<Sequence*>& owners);
  // Frees the blocks of finished sequences and drops them; returns them to the caller.
  std::vector<std::unique_ptr<Sequence>> Retire();
  // For a cancelled run: hands back every sequence not admitted yet (freeing the prompt blocks that forked
  // choices share).
  std::vector<std::unique_ptr<Sequence>> TakeWaiting();
  // For a cancelled run: frees the blocks of every running sequence and hands them back.
  std::vector<std::unique_ptr<Sequence>> TakeRunning();

 private:
  void Admit();

  KvCache& kv_cache_;
  int max_batch_;
  int max_step_tokens_;
  std::deque<std::unique_ptr<Sequence>> waiting_;
  std::vector<std::unique_ptr<Sequence>> running_;
};

}  // namespace ringmoe
