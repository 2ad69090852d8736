// --shard K/N (runtime/frontend/shard.h): parsing, and that N shards run every line exactly once.
#include "runtime/frontend/shard.h"

#include <gtest/gtest.h>

#include <set>
#include <sstream>
#include <string>

namespace ringmoe {
namespace {

TEST(ShardTest, ParsesKOverN) {
  absl::StatusOr<Shard> shard = ParseShard("2/5");
  ASSERT_TRUE(shard.ok()) << shard.status();
  EXPECT_EQ(shard->index, 2);
  EXPECT_EQ(shard->count, 5);
  for (const char* bad : {"5/5", "-1/3", "1/0", "1", "1/2/3", "a/b", "", "1/"}) {
    absl::StatusOr<Shard> rejected = ParseShard(bad);
    EXPECT_TRUE(absl::IsInvalidArgument(rejected.status())) << bad;
    if (!rejected.ok()) EXPECT_NE(rejected.status().message().find("--shard"), absl::string_view::npos);
  }
}

TEST(ShardTest, ShardsPartitionTheLinesByIndexAndKeepLineNumbers) {
  // Blank lines are not lines: they shift line numbers but not indexes.
  std::string text;
  for (int i = 0; i < 10; ++i) text += "{\"custom_id\": \"r" + std::to_string(i) + "\", \"prompt\": [1]}\n\n";
  std::istringstream in(text);
  absl::StatusOr<std::vector<BatchLine>> lines = ReadBatchFile(in, "test");
  ASSERT_TRUE(lines.ok()) << lines.status();
  std::multiset<std::string> seen;
  for (int k = 0; k < 3; ++k) {
    std::vector<BatchLine> shard = LinesOfShard(*lines, Shard{k, 3});
    EXPECT_EQ(shard.size(), k == 0 ? 4u : 3u);
    for (size_t j = 0; j < shard.size(); ++j) {
      const int index = k + 3 * static_cast<int>(j);
      EXPECT_EQ(shard[j].custom_id, "r" + std::to_string(index));
      EXPECT_EQ(shard[j].line_number, 2 * index + 1);
      seen.insert(shard[j].custom_id);
    }
  }
  EXPECT_EQ(seen.size(), 10u);
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()).size(), 10u);
  EXPECT_EQ(LinesOfShard(*lines, Shard{0, 1}).size(), 10u);
}

}  // namespace
}  // namespace ringmoe
