// Expert shards: how a MoE layer's routed experts are split for expert parallelism (issue 24), and how a
// streamed layer's ring parts line up with that split. Plain arithmetic shared by the planner (which prices
// the ring slots and the shards' partial outputs) and the engine (which cuts the layers and runs the shards),
// so that the two cannot disagree.
//
// The split is even: shard g of G over E experts owns a contiguous range, the first E mod G shards one expert
// more than the others, so the largest share is ceil(E / G), the share the planner prices per GPU
// (planner/DESIGN.md, "Several GPUs"). A streamed layer cut into P ring parts is cut shard-major: each
// shard's range into P / G parts by the same even rule, so every part belongs to exactly one shard (what a
// GPU that streams only its own shard needs). With one shard this is the engine's cut of a layer into P parts
// as it always was.
//
// Threading: pure functions.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace ringmoe::planner {

// Experts [first, first + count) of a layer.
struct ExpertRange {
  int first = 0;
  int count = 0;
  int end() const { return first + count; }
  bool Contains(int expert) const { return expert >= first && expert < end(); }
  friend bool operator==(const ExpertRange& a, const ExpertRange& b) {
    return a.first == b.first && a.count == b.count;
  }
};

// Piece `index` of `pieces` of the range [first, first + count), cut evenly (sizes differ by at most one, the
// larger first). pieces >= 1, 0 <= index < pieces.
ExpertRange EvenPiece(int first, int count, int pieces, int index);

// Shard `shard` of `shards` over a layer of `num_experts` routed experts.
ExpertRange ShardExperts(int num_experts, int shards, int shard);
// The shard that owns `expert`.
int ShardOfExpert(int num_experts, int shards, int expert);
// Every shard's range, in shard order.
std::vector<ExpertRange> ShardRanges(int num_experts, int shards);

// The ring parts of a streamed layer cut into `parts` sections over `shards` shards, shard-major, in expert
// order. Needs parts % shards == 0 (CheckExpertShards).
std::vector<ExpertRange> LayerPartRanges(int num_experts, int shards, int parts);
// Experts in the largest of those parts (what one ring slot must hold): ceil(ceil(E / shards) / (parts /
// shards)); ceil(E / parts) with one shard.
int MaxPartExperts(int num_experts, int shards, int parts);

// Whether a layer of `num_experts` experts can be split into `shards` shards (1 <= shards <= num_experts:
// no shard is empty) and, when `streamed`, cut into `parts` ring parts that each belong to one shard (parts a
// multiple of shards, and no more parts a shard than the smallest shard has experts). The error names the
// plan fields.
absl::Status CheckExpertShards(int num_experts, int shards, int parts, bool streamed);

}  // namespace ringmoe::planner
