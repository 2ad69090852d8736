#include "runtime/frontend/shard.h"

#include <string>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace ringmoe {

absl::StatusOr<Shard> ParseShard(std::string_view text) {
  const std::vector<std::string> parts = absl::StrSplit(std::string(text), '/');
  Shard shard;
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &shard.index) ||
      !absl::SimpleAtoi(parts[1], &shard.count) || shard.count < 1 || shard.index < 0 ||
      shard.index >= shard.count) {
    return absl::InvalidArgumentError(
        absl::StrCat("--shard '", std::string(text), "': expected K/N with 0 <= K < N (for example 0/4)"));
  }
  return shard;
}

std::vector<BatchLine> LinesOfShard(std::vector<BatchLine> lines, const Shard& shard) {
  if (shard.count == 1) return lines;
  std::vector<BatchLine> kept;
  kept.reserve(lines.size() / shard.count + 1);
  for (size_t i = static_cast<size_t>(shard.index); i < lines.size(); i += static_cast<size_t>(shard.count)) {
    kept.push_back(std::move(lines[i]));
  }
  return kept;
}

}  // namespace ringmoe
