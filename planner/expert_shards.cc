#include "planner/expert_shards.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace ringmoe::planner {

ExpertRange EvenPiece(int first, int count, int pieces, int index) {
  pieces = std::max(pieces, 1);
  const int base = count / pieces, extra = count % pieces;
  return {first + index * base + std::min(index, extra), base + (index < extra ? 1 : 0)};
}

ExpertRange ShardExperts(int num_experts, int shards, int shard) {
  return EvenPiece(0, num_experts, shards, shard);
}

int ShardOfExpert(int num_experts, int shards, int expert) {
  shards = std::max(shards, 1);
  // The first `extra` shards hold base + 1 experts, the rest base.
  const int base = num_experts / shards, extra = num_experts % shards;
  const int in_larger = extra * (base + 1);
  if (expert < in_larger) return expert / (base + 1);
  return base > 0 ? extra + (expert - in_larger) / base : shards - 1;
}

std::vector<ExpertRange> ShardRanges(int num_experts, int shards) {
  std::vector<ExpertRange> ranges;
  for (int g = 0; g < std::max(shards, 1); ++g) ranges.push_back(ShardExperts(num_experts, shards, g));
  return ranges;
}

std::vector<ExpertRange> LayerPartRanges(int num_experts, int shards, int parts) {
  shards = std::max(shards, 1);
  const int per_shard = std::max(parts / shards, 1);
  std::vector<ExpertRange> ranges;
  for (const ExpertRange& shard : ShardRanges(num_experts, shards)) {
    for (int p = 0; p < per_shard; ++p) ranges.push_back(EvenPiece(shard.first, shard.count, per_shard, p));
  }
  return ranges;
}

int MaxPartExperts(int num_experts, int shards, int parts) {
  shards = std::max(shards, 1);
  const int per_shard = std::max(parts / shards, 1);
  const int largest_shard = (num_experts + shards - 1) / shards;
  return (largest_shard + per_shard - 1) / per_shard;
}

absl::Status CheckExpertShards(int num_experts, int shards, int parts, bool streamed) {
  if (shards < 1 || (num_experts > 0 && shards > num_experts)) {
    return absl::InvalidArgumentError(absl::StrCat("plan: expert_shards = ", shards, ": a layer of ",
                                                   num_experts, " routed experts splits into 1 to ",
                                                   num_experts, " shards"));
  }
  if (streamed && parts % shards != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "plan: layer_parts = ", parts, ": with ", shards,
        " expert shards a streamed layer's ring parts must each belong to one shard (layer_parts a "
        "multiple of ",
        shards, ")"));
  }
  if (streamed && num_experts > 0 && parts / shards > num_experts / shards) {
    return absl::InvalidArgumentError(absl::StrCat("plan: layer_parts = ", parts, ": ", parts / shards,
                                                   " parts a shard, but the smallest of ", shards,
                                                   " shards of ", num_experts, " routed experts holds ",
                                                   num_experts / shards, " (no part may be empty)"));
  }
  return absl::OkStatus();
}

}  // namespace ringmoe::planner
