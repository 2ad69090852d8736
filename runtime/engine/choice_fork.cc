#include "runtime/engine/choice_fork.h"

#include <cassert>

namespace ringmoe {

uint64_t ChoiceSeed(uint64_t seed, int choice) {
  if (choice == 0) return seed;
  SeededRandom mix(seed ^ (0xd1b54a32d192ed03ULL * static_cast<uint64_t>(choice)));
  return mix.Next();
}

int SharedPromptBlocks(int prompt_length, int block_tokens) { return (prompt_length - 1) / block_tokens; }

std::vector<std::unique_ptr<Sequence>> ForkChoices(const Sequence& parent, KvCache& kv_cache) {
  assert(parent.computed >= parent.prompt_length);
  std::vector<std::unique_ptr<Sequence>> children;
  const int shared_blocks = SharedPromptBlocks(parent.prompt_length, kv_cache.block_tokens());
  for (int choice = 1; choice <= parent.choices_to_fork; ++choice) {
    auto child = std::make_unique<Sequence>();
    child->request_index = parent.request_index;
    child->choice = choice;
    child->tokens.assign(parent.tokens.begin(), parent.tokens.begin() + parent.prompt_length);
    child->prompt_length = parent.prompt_length;
    child->computed = shared_blocks * kv_cache.block_tokens();
    child->max_new_tokens = parent.max_new_tokens;
    child->block_table = kv_cache.Share(parent.block_table, shared_blocks);
    child->seed = parent.seed;
    child->random = SeededRandom(ChoiceSeed(parent.seed, choice));
    children.push_back(std::move(child));
  }
  return children;
}

}  // namespace ringmoe
