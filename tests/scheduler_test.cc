// The continuous-batching scheduler (runtime/engine/scheduler.h) over a small host KV cache of 4-token
// blocks: admission only when the blocks for prompt + max new tokens are free, first come first served,
// decodes first and then prefill chunks within the step's token budget, a prompt prefilled in chunks across
// steps, retirement returning the blocks, and idleness. Every chunk is checked field by field against values
// worked out by hand.
#include "runtime/engine/scheduler.h"

#include <memory>
#include <numeric>
#include <vector>

#include "gtest/gtest.h"
#include "io/dtype.h"
#include "io/model_spec.h"
#include "runtime/engine/kv_cache.h"

namespace ringmoe {
namespace {

constexpr int kBlockTokens = 4;

// One layer, one KV head of width 2: the pools are tiny, only the block accounting matters here.
ModelSpec TinySpec() {
  ModelSpec spec;
  spec.num_layers = 1;
  spec.num_kv_heads = 1;
  spec.head_dim = 2;
  return spec;
}

// A waiting sequence whose prompt is first, first + 1, ... (so a chunk's first token tells its position).
std::unique_ptr<Sequence> MakeSequence(size_t request_index, int prompt_length, int max_new_tokens,
                                       int32_t first = 0) {
  auto sequence = std::make_unique<Sequence>();
  sequence->request_index = request_index;
  sequence->tokens.resize(prompt_length);
  std::iota(sequence->tokens.begin(), sequence->tokens.end(), first);
  sequence->prompt_length = prompt_length;
  sequence->max_new_tokens = max_new_tokens;
  return sequence;
}

// What the engine does after a step: commit it, then give every chunk that asked for logits its next token.
void CommitAndSample(Scheduler& scheduler, const std::vector<StepChunk>& chunks,
                     const std::vector<Sequence*>& owners, int32_t token = 7) {
  scheduler.Commit(chunks, owners);
  for (size_t i = 0; i < chunks.size(); ++i) {
    if (chunks[i].want_logits) owners[i]->tokens.push_back(token);
  }
}

void ExpectChunk(const StepChunk& chunk, const Sequence* owner, const Sequence* want_owner, int start,
                 int count, bool want_logits) {
  EXPECT_EQ(owner, want_owner);
  EXPECT_EQ(chunk.start, start);
  EXPECT_EQ(chunk.count, count);
  EXPECT_EQ(chunk.want_logits, want_logits);
  EXPECT_EQ(chunk.block_table, &want_owner->block_table);
  EXPECT_EQ(chunk.tokens, want_owner->tokens.data() + start);
}

class SchedulerTest : public testing::Test {
 protected:
  explicit SchedulerTest(int num_blocks = 64)
      : kv_cache_(TinySpec(), io::DType::kF32, kBlockTokens, num_blocks) {}

  KvCache kv_cache_;
  std::vector<StepChunk> chunks_;
  std::vector<Sequence*> owners_;
};

// 4 blocks of 4 tokens: 16 token slots in all.
class SmallCacheTest : public SchedulerTest {
 protected:
  SmallCacheTest() : SchedulerTest(4) {}
};

TEST_F(SchedulerTest, IdleUntilSomethingIsEnqueuedAndAfterItRetires) {
  Scheduler scheduler(kv_cache_, /*max_batch=*/4, /*max_step_tokens=*/16);
  EXPECT_TRUE(scheduler.Idle());
  scheduler.NextStep(&chunks_, &owners_);
  EXPECT_TRUE(chunks_.empty());
  EXPECT_TRUE(owners_.empty());
  EXPECT_TRUE(scheduler.Retire().empty());

  auto owned = MakeSequence(0, 3, 1);
  Sequence* a = owned.get();
  scheduler.Enqueue(std::move(owned));
  EXPECT_FALSE(scheduler.Idle());
  EXPECT_EQ(scheduler.waiting(), 1);
  EXPECT_EQ(scheduler.running(), 0);

  scheduler.NextStep(&chunks_, &owners_);
  ASSERT_EQ(chunks_.size(), 1u);
  ExpectChunk(chunks_[0], owners_[0], a, 0, 3, true);
  CommitAndSample(scheduler, chunks_, owners_);
  EXPECT_TRUE(scheduler.Retire().empty());  // Not finished: still running.
  EXPECT_FALSE(scheduler.Idle());
  a->finished = true;
  EXPECT_EQ(scheduler.Retire().size(), 1u);
  EXPECT_TRUE(scheduler.Idle());
}

TEST_F(SmallCacheTest, AdmitsOnlyWhenBlocksForPromptPlusMaxNewTokensAreFree) {
  Scheduler scheduler(kv_cache_, /*max_batch=*/8, /*max_step_tokens=*/64);
  // a: 6 + 6 = 12 tokens = 3 blocks. b: 2 + 3 = 5 tokens = 2 blocks, although its prompt alone fits in 1.
  auto owned_a = MakeSequence(0, 6, 6), owned_b = MakeSequence(1, 2, 3, 100);
  Sequence *a = owned_a.get(), *b = owned_b.get();
  scheduler.Enqueue(std::move(owned_a));
  scheduler.Enqueue(std::move(owned_b));

  scheduler.NextStep(&chunks_, &owners_);
  EXPECT_EQ(scheduler.running(), 1);
  EXPECT_EQ(scheduler.waiting(), 1);
  EXPECT_EQ(a->block_table, (std::vector<int32_t>{0, 1, 2}));  // Low ids first.
  EXPECT_TRUE(b->block_table.empty());
  EXPECT_EQ(kv_cache_.free_blocks(), 1);
  ASSERT_EQ(chunks_.size(), 1u);
  ExpectChunk(chunks_[0], owners_[0], a, 0, 6, true);

  // Still one block free: b keeps waiting, step after step.
  CommitAndSample(scheduler, chunks_, owners_);
  scheduler.NextStep(&chunks_, &owners_);
  EXPECT_EQ(scheduler.waiting(), 1);
  ASSERT_EQ(chunks_.size(), 1u);
  ExpectChunk(chunks_[0], owners_[0], a, 6, 1, true);
}

TEST_F(SmallCacheTest, RetirementFreesTheBlocksAndTheNextStepAdmitsTheWaitingSequence) {
  Scheduler scheduler(kv_cache_, /*max_batch=*/8, /*max_step_tokens=*/64);
  auto owned_a = MakeSequence(0, 6, 6), owned_b = MakeSequence(1, 5, 3, 100);  // 3 blocks, then 2.
  Sequence *a = owned_a.get(), *b = owned_b.get();
  scheduler.Enqueue(std::move(owned_a));
  scheduler.Enqueue(std::move(owned_b));
  scheduler.NextStep(&chunks_, &owners_);
  CommitAndSample(scheduler, chunks_, owners_);
  ASSERT_EQ(scheduler.waiting(), 1);

  a->finished = true;
  std::vector<std::unique_ptr<Sequence>> retired = scheduler.Retire();
  ASSERT_EQ(retired.size(), 1u);
  EXPECT_EQ(retired[0].get(), a);
  EXPECT_TRUE(a->block_table.empty());
  EXPECT_EQ(kv_cache_.free_blocks(), 4);
  EXPECT_EQ(scheduler.running(), 0);

  scheduler.NextStep(&chunks_, &owners_);
  EXPECT_EQ(scheduler.running(), 1);
  EXPECT_EQ(scheduler.waiting(), 0);
  EXPECT_EQ(b->block_table, (std::vector<int32_t>{0, 1}));  // a's blocks, handed out again lowest first.
  EXPECT_EQ(kv_cache_.free_blocks(), 2);
  ASSERT_EQ(chunks_.size(), 1u);
  ExpectChunk(chunks_[0], owners_[0], b, 0, 5, true);
  EXPECT_EQ(chunks_[0].tokens[0], 100);
}

TEST_F(SmallCacheTest, FirstComeFirstServedEvenWhenALaterSequenceWouldFit) {
  Scheduler scheduler(kv_cache_, /*max_batch=*/8, /*max_step_tokens=*/64);
  // a takes 3 blocks; b needs 2 and waits; c needs 1, which is free, but must not pass b.
  auto owned_a = MakeSequence(0, 6, 6), owned_b = MakeSequence(1, 5, 3), owned_c = MakeSequence(2, 2, 2);
  Sequence *a = owned_a.get(), *b = owned_b.get(), *c = owned_c.get();
  scheduler.Enqueue(std::move(owned_a));
  scheduler.Enqueue(std::move(owned_b));
  scheduler.Enqueue(std::move(owned_c));

  scheduler.NextStep(&chunks_, &owners_);
  EXPECT_EQ(scheduler.running(), 1);
  EXPECT_EQ(scheduler.waiting(), 2);
  EXPECT_EQ(kv_cache_.free_blocks(), 1);
  EXPECT_TRUE(c->block_table.empty());
  ASSERT_EQ(owners_.size(), 1u);
  EXPECT_EQ(owners_[0], a);

  // Once a retires, b and c both fit (2 + 1 of 4 blocks) and are admitted in their order.
  CommitAndSample(scheduler, chunks_, owners_);
  a->finished = true;
  scheduler.Retire();
  scheduler.NextStep(&chunks_, &owners_);
  EXPECT_EQ(scheduler.running(), 2);
  EXPECT_EQ(b->block_table, (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(c->block_table, (std::vector<int32_t>{2}));
  ASSERT_EQ(owners_.size(), 2u);
  EXPECT_EQ(owners_[0], b);
  EXPECT_EQ(owners_[1], c);
}

TEST_F(SchedulerTest, AdmitsNoMoreThanMaxBatchSequences) {
  Scheduler scheduler(kv_cache_, /*max_batch=*/2, /*max_step_tokens=*/64);
  std::vector<Sequence*> sequences;
  for (size_t i = 0; i < 3; ++i) {
    auto owned = MakeSequence(i, 2, 1);
    sequences.push_back(owned.get());
    scheduler.Enqueue(std::move(owned));
  }
  scheduler.NextStep(&chunks_, &owners_);
  EXPECT_EQ(scheduler.running(), 2);
  EXPECT_EQ(scheduler.waiting(), 1);
  ASSERT_EQ(owners_.size(), 2u);
  EXPECT_EQ(owners_[0], sequences[0]);
  EXPECT_EQ(owners_[1], sequences[1]);
  EXPECT_TRUE(sequences[2]->block_table.empty());
}

TEST_F(SchedulerTest, DecodesFirstThenPrefillChunksWithinTheTokenBudget) {
  Scheduler scheduler(kv_cache_, /*max_batch=*/4, /*max_step_tokens=*/8);
  auto owned_a = MakeSequence(0, 5, 4, 0), owned_b = MakeSequence(1, 10, 4, 100);
  Sequence *a = owned_a.get(), *b = owned_b.get();
  scheduler.Enqueue(std::move(owned_a));
  scheduler.Enqueue(std::move(owned_b));

  // Step 1: no decodes yet. a's whole prompt (5 tokens, wants logits), then b's first 3 of 10 (8 in all).
  scheduler.NextStep(&chunks_, &owners_);
  ASSERT_EQ(chunks_.size(), 2u);
  ExpectChunk(chunks_[0], owners_[0], a, 0, 5, true);
  ExpectChunk(chunks_[1], owners_[1], b, 0, 3, false);
  EXPECT_EQ(chunks_[1].tokens[0], 100);
  CommitAndSample(scheduler, chunks_, owners_, 55);
  EXPECT_EQ(a->computed, 5);
  EXPECT_EQ(b->computed, 3);

  // Step 2: a decodes its sampled token (position 5), then b gets the 7 tokens left of the budget, which
  // finish its prompt.
  scheduler.NextStep(&chunks_, &owners_);
  ASSERT_EQ(chunks_.size(), 2u);
  ExpectChunk(chunks_[0], owners_[0], a, 5, 1, true);
  EXPECT_EQ(chunks_[0].tokens[0], 55);
  ExpectChunk(chunks_[1], owners_[1], b, 3, 7, true);
  EXPECT_EQ(chunks_[1].tokens[0], 103);
  CommitAndSample(scheduler, chunks_, owners_, 56);

  // Step 3: both decode, in admission order; the budget is not the limit.
  scheduler.NextStep(&chunks_, &owners_);
  ASSERT_EQ(chunks_.size(), 2u);
  ExpectChunk(chunks_[0], owners_[0], a, 6, 1, true);
  ExpectChunk(chunks_[1], owners_[1], b, 10, 1, true);
  EXPECT_EQ(chunks_[1].tokens[0], 56);
}

TEST_F(SchedulerTest, LongPromptIsPrefilledInChunksAcrossStepsBesideDecodes) {
  Scheduler scheduler(kv_cache_, /*max_batch=*/4, /*max_step_tokens=*/4);
  auto owned_a = MakeSequence(0, 2, 8, 0), owned_b = MakeSequence(1, 9, 2, 100);
  Sequence *a = owned_a.get(), *b = owned_b.get();
  scheduler.Enqueue(std::move(owned_a));
  scheduler.Enqueue(std::move(owned_b));

  // Step 1: a's prompt (2), then b's first 2. Afterwards a decodes every step and b gets 3 a step.
  scheduler.NextStep(&chunks_, &owners_);
  ASSERT_EQ(chunks_.size(), 2u);
  ExpectChunk(chunks_[0], owners_[0], a, 0, 2, true);
  ExpectChunk(chunks_[1], owners_[1], b, 0, 2, false);
  CommitAndSample(scheduler, chunks_, owners_);

  const int b_starts[] = {2, 5, 8};
  const int b_counts[] = {3, 3, 1};
  for (int step = 0; step < 3; ++step) {
    SCOPED_TRACE(step + 2);
    scheduler.NextStep(&chunks_, &owners_);
    ASSERT_EQ(chunks_.size(), 2u);
    ExpectChunk(chunks_[0], owners_[0], a, 2 + step, 1, true);
    ExpectChunk(chunks_[1], owners_[1], b, b_starts[step], b_counts[step], /*want_logits=*/step == 2);
    EXPECT_EQ(chunks_[1].tokens[0], 100 + b_starts[step]);
    CommitAndSample(scheduler, chunks_, owners_);
  }
  EXPECT_EQ(b->computed, 9);
  EXPECT_EQ(b->generated(), 1);
}

}  // namespace
}  // namespace ringmoe
