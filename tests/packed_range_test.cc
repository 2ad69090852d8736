// gpu::CopyPackedRange (host-only): any byte range of a packed layer, as the SSD tier's section files are
// written a stripe at a time, equals the same bytes of PackLayerExperts' whole layer.
#include <cstdint>
#include <random>
#include <vector>

#include "gpu/expert_packing.h"
#include "gtest/gtest.h"

namespace ringmoe::gpu {
namespace {

TEST(PackedRangeTest, EveryRangeEqualsTheWholePackedLayer) {
  // 100 x 36 experts: 3 * 3600 * 2 = 21600 bytes, padded to a stride of 24576 (padding zeroed).
  const int experts = 5, hidden = 100, intermediate = 36;
  const PackedLayerIndex index = MakePackedLayerIndex(experts, hidden, intermediate);
  ASSERT_GT(index.expert_stride_bytes, index.expert_bytes());
  std::mt19937 random(7);
  std::vector<std::vector<uint16_t>> matrices(3 * experts, std::vector<uint16_t>(hidden * intermediate));
  for (auto& matrix : matrices) {
    for (uint16_t& value : matrix) value = static_cast<uint16_t>(random());
  }
  std::vector<ExpertMatricesBf16> views;
  for (int e = 0; e < experts; ++e) {
    views.push_back({matrices[3 * e].data(), matrices[3 * e + 1].data(), matrices[3 * e + 2].data()});
  }
  std::vector<uint8_t> whole(index.total_bytes(), 0xEE);
  ASSERT_TRUE(PackLayerExperts(views, index, whole.data(), index.total_bytes()).ok());
  for (int trial = 0; trial < 300; ++trial) {
    const int64_t offset = random() % index.total_bytes();
    const int64_t bytes =
        trial == 0 ? index.total_bytes() - offset : random() % (index.total_bytes() - offset);
    std::vector<uint8_t> part(bytes + 1, 0xCD);
    ASSERT_TRUE(CopyPackedRange(views, index, offset, part.data(), bytes).ok());
    EXPECT_TRUE(std::equal(part.begin(), part.begin() + bytes, whole.begin() + offset))
        << "bytes [" << offset << ", " << offset + bytes << ")";
    EXPECT_EQ(part[bytes], 0xCD) << "wrote past the range";
  }
  std::vector<uint8_t> all(index.total_bytes());
  ASSERT_TRUE(CopyPackedRange(views, index, 0, all.data(), index.total_bytes()).ok());
  EXPECT_EQ(all, whole);
  EXPECT_FALSE(CopyPackedRange(views, index, 1, all.data(), index.total_bytes()).ok());  // Past the end.
  EXPECT_FALSE(CopyPackedRange(std::span(views).first(4), index, 0, all.data(), 10).ok());
}

}  // namespace
}  // namespace ringmoe::gpu
