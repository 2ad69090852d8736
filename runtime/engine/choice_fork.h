// Request::n > 1: the request's other choices start from its first choice's prompt instead of prefilling it
// again. Once choice 0 has the prompt's K/V in the cache, each other choice gets a sequence that shares the
// prompt's full blocks (KvCache::Share, no copy) and recomputes only the prompt's last, partly filled block
// (at least one token, so that it gets its own logits for its first token): the tail is never shared, since
// each choice writes its own generated tokens after it. Seeds differ per choice (ChoiceSeed).
// Stateless; used by the scheduler thread.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "runtime/engine/kv_cache.h"
#include "runtime/engine/scheduler.h"

namespace ringmoe {

// The seed of choice `choice` of a request seeded `seed`: choice 0 keeps `seed` (n = 1 samples as before),
// the others get well-mixed, distinct seeds.
uint64_t ChoiceSeed(uint64_t seed, int choice);

// How many of a prompt's blocks the other choices share: the full ones before the block of its last token.
int SharedPromptBlocks(int prompt_length, int block_tokens);

// The sequences of choices 1 .. parent.choices_to_fork of `parent`'s request. `parent` must have its whole
// prompt computed; the new sequences hold the shared blocks (they must be freed like any table) and wait to
// be admitted for the rest.
std::vector<std::unique_ptr<Sequence>> ForkChoices(const Sequence& parent, KvCache& kv_cache);

}  // namespace ringmoe
