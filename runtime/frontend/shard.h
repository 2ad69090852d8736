// Shards of a batch job: `ringmoe run --shard K/N` and ringmoe.dask's partitions run the lines whose index
// (0-based, among the input's non-blank lines, in file order) modulo N is K. The rule depends only on the
// input file, so N processes given the same file and K = 0..N-1 together run every line exactly once, and a
// rerun of one shard (with --resume) runs the same lines again. Index, not a hash of custom_id: shards come
// out even (sizes differ by at most one), and a line whose custom_id cannot be read still has a shard.
#pragma once

#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/frontend/batch_io.h"

namespace ringmoe {

struct Shard {
  int index = 0;  // K, in [0, count)
  int count = 1;  // N >= 1
};

// "K/N" with 0 <= K < N; InvalidArgument naming --shard otherwise.
absl::StatusOr<Shard> ParseShard(std::string_view text);

// The lines of `shard`, in their order. Line numbers (and so output ids) stay those of the whole file. (A job
// streams its input instead: job_lines.h applies the same rule line by line.)
std::vector<BatchLine> LinesOfShard(std::vector<BatchLine> lines, const Shard& shard);

}  // namespace ringmoe
