// The FP8 block layout of packed routed experts (gpu/expert_packing.h): e4m3 bytes of gate, up and down,
// then their f32 block scales, each expert padded to kPackAlignment. Host-only.
#include <cstring>
#include <vector>

#include "gpu/expert_packing.h"
#include "gtest/gtest.h"

namespace ringmoe::gpu {
namespace {

TEST(Fp8PackingTest, LayoutHoldsBytesThenAlignedScales) {
  const PackedLayerIndex index = MakeFp8PackedLayerIndex(3, 200, 72, 128, 128);
  ASSERT_TRUE(index.fp8());
  EXPECT_EQ(index.matrix_bytes(), 200 * 72);
  EXPECT_EQ(index.down_offset(1) - index.gate_up_offset(1), 2 * 200 * 72);
  EXPECT_EQ(index.gate_scale_count(), 1 * 2);  // ceil(72/128) x ceil(200/128)
  EXPECT_EQ(index.down_scale_count(), 2 * 1);
  EXPECT_EQ(index.gate_scales_offset(0) % kScaleAlignment, 0);
  EXPECT_GE(index.gate_scales_offset(0), 3 * 200 * 72);
  EXPECT_EQ(index.expert_stride_bytes % kPackAlignment, 0);
  EXPECT_GE(index.expert_stride_bytes, index.expert_bytes());
  // Half the bf16 layer's bytes, plus the scales.
  const PackedLayerIndex bf16 = MakePackedLayerIndex(3, 200, 72);
  EXPECT_LT(index.expert_bytes(), bf16.expert_bytes() / 2 + 3 * kScaleAlignment + 1);

  std::vector<uint8_t> gate(200 * 72, 1), up(200 * 72, 2), down(200 * 72, 3);
  std::vector<float> gate_scales(2, 0.5f), up_scales(2, 0.25f), down_scales(2, 2.0f);
  std::vector<uint8_t> layer(static_cast<size_t>(index.total_bytes()), 0xAB);
  ASSERT_TRUE(PackExpertFp8({{gate.data(), gate_scales.data()}, {up.data(), up_scales.data()},
                             {down.data(), down_scales.data()}},
                            index, 1, layer.data())
                  .ok());
  EXPECT_EQ(layer[index.gate_up_offset(1)], 1);
  EXPECT_EQ(layer[index.gate_up_offset(1) + 200 * 72], 2);
  EXPECT_EQ(layer[index.down_offset(1)], 3);
  float scale = 0;
  std::memcpy(&scale, &layer[index.up_scales_offset(1)], 4);
  EXPECT_EQ(scale, 0.25f);
  std::memcpy(&scale, &layer[index.down_scales_offset(1) + 4], 4);
  EXPECT_EQ(scale, 2.0f);
  EXPECT_EQ(layer[index.gate_up_offset(1) + index.expert_bytes()], 0);  // padding zeroed
  EXPECT_EQ(layer[index.gate_up_offset(2)], 0xAB);                      // the next expert untouched
  EXPECT_FALSE(PackExpertFp8({}, index, 1, layer.data()).ok());
  EXPECT_FALSE(PackExpertFp8({}, bf16, 0, layer.data()).ok());
  // Routed copies of an FP8 layer move each routed expert's bytes and scales, not its padding.
  const std::vector<int32_t> counts = {1, 0, 4};
  const std::vector<ByteRange> ranges = RoutedExpertRanges(index, counts);
  ASSERT_EQ(ranges.size(), 2u);
  EXPECT_EQ(ranges[1].offset, index.gate_up_offset(2));
  EXPECT_EQ(ranges[1].bytes, index.expert_bytes());
}

}  // namespace
}  // namespace ringmoe::gpu
