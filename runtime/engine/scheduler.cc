#include "runtime/engine/scheduler.h"

#include <algorithm>
#include <iterator>

#include "runtime/engine/choice_fork.h"

namespace ringmoe {

Scheduler::Scheduler(KvCache& kv_cache, int max_batch, int max_step_tokens)
    : kv_cache_(kv_cache), max_batch_(std::max(1, max_batch)), max_step_tokens_(std::max(1, max_step_tokens)) {}

void Scheduler::Enqueue(std::unique_ptr<Sequence> sequence) { waiting_.push_back(std::move(sequence)); }

void Scheduler::Admit() {
  // First come, first served: a request that does not fit yet waits, and so do those behind it, so that a
  // long request is not starved by a stream of short ones.
  while (!waiting_.empty() && static_cast<int>(running_.size()) < max_batch_) {
    Sequence& next = *waiting_.front();
    if (!kv_cache_.Reserve(next.lifetime_tokens(), &next.block_table)) break;
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
  }
}

void Scheduler::NextStep(std::vector<StepChunk>* chunks, std::vector<Sequence*>* owners) {
  chunks->clear();
  owners->clear();
  Admit();
  // Decodes first: one token each for every sequence whose prompt is done. They always fit: max_step_tokens
  // is at least max_batch (the engine enforces it).
  int budget = max_step_tokens_;
  for (auto& sequence : running_) {
    Sequence& s = *sequence;
    // (Nothing to compute: a scoring sequence that generates nothing, done with its prompt.)
    if (s.computed < s.prompt_length || s.computed == static_cast<int>(s.tokens.size())) continue;
    StepChunk chunk;
    chunk.tokens = s.tokens.data() + s.computed;
    chunk.count = static_cast<int>(s.tokens.size()) - s.computed;  // 1
    chunk.start = s.computed;
    chunk.block_table = &s.block_table;
    chunk.want_logits = true;
    budget -= chunk.count;
    chunks->push_back(chunk);
    owners->push_back(&s);
  }
  // Then prefill chunks, oldest first, in what is left of the budget (and of the scored rows').
  int scoring_rows = kPromptLogitsStepRows;
  for (auto& sequence : running_) {
    Sequence& s = *sequence;
    if (s.computed >= s.prompt_length || budget <= 0) continue;
    StepChunk chunk;
    chunk.count = std::min(s.prompt_length - s.computed, budget);
    if (s.prompt_logits) {
      chunk.count = std::min(chunk.count, scoring_rows);
      if (chunk.count == 0) continue;
      scoring_rows -= chunk.count;
    }
    chunk.tokens = s.tokens.data() + s.computed;
    chunk.start = s.computed;
    chunk.block_table = &s.block_table;
    const bool last = s.computed + chunk.count == s.prompt_length;
    // A sequence that generates nothing (scoring with max_tokens 0) needs no logits past its prompt.
    chunk.want_logits = last && s.max_new_tokens > 0;
    if (s.prompt_logits) chunk.prompt_logits = last ? chunk.count - 1 : chunk.count;
    budget -= chunk.count;
    chunks->push_back(chunk);
    owners->push_back(&s);
  }
}

void Scheduler::Commit(const std::vector<StepChunk>& chunks, const std::vector<Sequence*>& owners) {
  std::vector<std::unique_ptr<Sequence>> forked;
  for (size_t i = 0; i < chunks.size(); ++i) {
    Sequence& sequence = *owners[i];
    sequence.computed += chunks[i].count;
    if (sequence.choices_to_fork > 0 && sequence.computed >= sequence.prompt_length) {
      for (std::unique_ptr<Sequence>& child : ForkChoices(sequence, kv_cache_))
        forked.push_back(std::move(child));
      sequence.choices_to_fork = 0;
    }
  }
  waiting_.insert(waiting_.begin(), std::make_move_iterator(forked.begin()),
                  std::make_move_iterator(forked.end()));
}

std::vector<std::unique_ptr<Sequence>> Scheduler::Retire() {
  std::vector<std::unique_ptr<Sequence>> finished;
  auto keep = std::stable_partition(running_.begin(), running_.end(), [](const auto& s) { return !s->finished; });
  for (auto it = keep; it != running_.end(); ++it) {
    kv_cache_.Free(&(*it)->block_table);
    finished.push_back(std::move(*it));
  }
  running_.erase(keep, running_.end());
  return finished;
}

std::vector<std::unique_ptr<Sequence>> Scheduler::TakeWaiting() {
  std::vector<std::unique_ptr<Sequence>> taken;
  for (auto& sequence : waiting_) {
    kv_cache_.Free(&sequence->block_table);
    taken.push_back(std::move(sequence));
  }
  waiting_.clear();
  return taken;
}

std::vector<std::unique_ptr<Sequence>> Scheduler::TakeRunning() {
  std::vector<std::unique_ptr<Sequence>> taken;
  for (auto& sequence : running_) {
    kv_cache_.Free(&sequence->block_table);
    taken.push_back(std::move(sequence));
  }
  running_.clear();
  return taken;
}

}  // namespace ringmoe
