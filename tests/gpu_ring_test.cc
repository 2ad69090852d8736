// gpu/ expert packing (host-only, always runs) and the section ring: fills, wrap-around, releases to the
// producer, routed-expert copies. The copy/compute overlap check is gpu_overlap_test.
#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gpu/gpu.h"
#include "gtest/gtest.h"
#include "tests/testing/gpu_test_macros.h"

namespace ringmoe::gpu {
namespace {

constexpr int64_t kMiB = int64_t{1} << 20;

// Experts whose every bf16 element encodes (expert, matrix, index) so that misplacements show.
struct TestExperts {
  std::vector<std::vector<uint16_t>> gate, up, down;
  std::vector<ExpertMatricesBf16> views;
  TestExperts(int experts, int hidden, int intermediate) {
    const size_t size = static_cast<size_t>(hidden) * intermediate;
    for (int e = 0; e < experts; ++e) {
      gate.emplace_back(size), up.emplace_back(size), down.emplace_back(size);
      for (size_t i = 0; i < size; ++i) {
        gate[e][i] = static_cast<uint16_t>(e * 1000 + 1 + i % 97);
        up[e][i] = static_cast<uint16_t>(e * 1000 + 300 + i % 89);
        down[e][i] = static_cast<uint16_t>(e * 1000 + 600 + i % 83);
      }
    }
    for (int e = 0; e < experts; ++e) views.push_back({gate[e].data(), up[e].data(), down[e].data()});
  }
};

TEST(ExpertPackingTest, LaysOutGateUpThenDownPerExpert) {
  const int experts = 3, hidden = 40, intermediate = 24;
  const PackedLayerIndex index = MakePackedLayerIndex(experts, hidden, intermediate);
  EXPECT_EQ(index.expert_bytes(), 3 * hidden * intermediate * 2);
  EXPECT_EQ(index.expert_stride_bytes % kPackAlignment, 0);
  EXPECT_GE(index.expert_stride_bytes, index.expert_bytes());
  TestExperts data(experts, hidden, intermediate);
  std::vector<uint8_t> packed(index.total_bytes(), 0xee);
  ASSERT_OK(PackLayerExperts(data.views, index, packed.data(), static_cast<int64_t>(packed.size())));
  const size_t matrix = static_cast<size_t>(hidden) * intermediate;
  for (int e = 0; e < experts; ++e) {
    const auto* gate_up = reinterpret_cast<const uint16_t*>(packed.data() + index.gate_up_offset(e));
    const auto* down = reinterpret_cast<const uint16_t*>(packed.data() + index.down_offset(e));
    EXPECT_EQ(std::memcmp(gate_up, data.gate[e].data(), matrix * 2), 0) << "expert " << e;
    EXPECT_EQ(std::memcmp(gate_up + matrix, data.up[e].data(), matrix * 2), 0) << "expert " << e;
    EXPECT_EQ(std::memcmp(down, data.down[e].data(), matrix * 2), 0) << "expert " << e;
    for (int64_t p = index.expert_bytes(); p < index.expert_stride_bytes; ++p)
      ASSERT_EQ(packed[index.gate_up_offset(e) + p], 0) << "padding of expert " << e;
  }
}

TEST(ExpertPackingTest, RejectsMismatchedInput) {
  const PackedLayerIndex index = MakePackedLayerIndex(2, 16, 8);
  TestExperts data(3, 16, 8);
  std::vector<uint8_t> packed(index.total_bytes());
  EXPECT_TRUE(absl::IsInvalidArgument(PackLayerExperts(data.views, index, packed.data(), packed.size())));
  std::span<const ExpertMatricesBf16> two(data.views.data(), 2);
  EXPECT_TRUE(absl::IsInvalidArgument(PackLayerExperts(two, index, packed.data(), packed.size() - 1)));
  std::vector<ExpertMatricesBf16> missing(two.begin(), two.end());
  missing[1].down = nullptr;
  EXPECT_TRUE(absl::IsInvalidArgument(PackLayerExperts(missing, index, packed.data(), packed.size())));
}

TEST(ExpertPackingTest, SectionLayoutAlignsLayers) {
  std::vector<PackedLayerIndex> layers = {MakePackedLayerIndex(4, 100, 60), MakePackedLayerIndex(2, 64, 32)};
  SectionLayout layout = MakeSectionLayout(6, layers);
  EXPECT_EQ(layout.first_layer, 6);
  ASSERT_EQ(layout.layer_offsets.size(), 2u);
  EXPECT_EQ(layout.layer_offsets[0], 0);
  EXPECT_GE(layout.layer_offsets[1], layers[0].total_bytes());
  EXPECT_EQ(layout.layer_offsets[1] % kPackAlignment, 0);
  EXPECT_GE(layout.total_bytes, layout.layer_offsets[1] + layers[1].total_bytes());
}

TEST(ExpertPackingTest, RoutedRangesMergeNeighboursAndSkipPadding) {
  const PackedLayerIndex index = MakePackedLayerIndex(6, 40, 24);
  const int64_t stride = index.expert_stride_bytes, bytes = index.expert_bytes();
  std::vector<int32_t> counts = {0, 3, 1, 0, 0, 2};
  std::vector<ByteRange> ranges = RoutedExpertRanges(index, counts);
  ASSERT_EQ(ranges.size(), 2u);
  EXPECT_EQ(ranges[0].offset, stride);
  EXPECT_EQ(ranges[0].bytes, stride + bytes);
  EXPECT_EQ(ranges[1].offset, 5 * stride);
  EXPECT_EQ(ranges[1].bytes, bytes);
  EXPECT_TRUE(RoutedExpertRanges(index, std::vector<int32_t>(6, 0)).empty());
  std::vector<ByteRange> all = RoutedExpertRanges(index, std::vector<int32_t>(6, 1));
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].bytes, 5 * stride + bytes);
  EXPECT_TRUE(PreferRoutedCopy(index, counts));  // 3 of 6 experts.
  EXPECT_FALSE(PreferRoutedCopy(index, std::vector<int32_t>(6, 1)));
}

// A slot holding experts 2..5 of a 6-expert layer: each micro-batch brings in only what it routes to and the
// slot lacks; once most of the part is routed, the whole part comes in one copy.
TEST(ExpertPackingTest, MissingRoutedRangesTopUpAPartSlot) {
  const PackedLayerIndex index = MakePackedLayerIndex(6, 40, 24);
  const int64_t stride = index.expert_stride_bytes, bytes = index.expert_bytes();
  std::vector<char> held(4, 0);
  // Experts 0 and 3 routed: only 3 is in this part, at offset 1 within it.
  std::vector<ByteRange> first = MissingRoutedRanges(index, 2, std::vector<int32_t>{5, 0, 0, 1, 0, 0}, held);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].offset, stride);
  EXPECT_EQ(first[0].bytes, bytes);
  EXPECT_EQ(held, (std::vector<char>{0, 1, 0, 0}));
  // The next micro-batch routes to 3 again and to 5: only 5 travels.
  std::vector<ByteRange> second = MissingRoutedRanges(index, 2, std::vector<int32_t>{0, 0, 0, 2, 0, 1}, held);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].offset, 3 * stride);
  EXPECT_EQ(held, (std::vector<char>{0, 1, 0, 1}));
  // Nothing new: no copy.
  EXPECT_TRUE(MissingRoutedRanges(index, 2, std::vector<int32_t>{1, 1, 0, 1, 0, 1}, held).empty());
  // All four of the part routed: the whole part, in one copy.
  std::vector<ByteRange> whole = MissingRoutedRanges(index, 2, std::vector<int32_t>(6, 1), held);
  ASSERT_EQ(whole.size(), 1u);
  EXPECT_EQ(whole[0].offset, 0);
  EXPECT_EQ(whole[0].bytes, 4 * stride);
  EXPECT_EQ(held, (std::vector<char>(4, 1)));
}

TEST(PinnedSectionSourceTest, ReportsSizesAndRejectsBadChunks) {
  std::vector<uint8_t> memory(1000);
  PinnedSectionSource source;
  auto first = source.AddSection({{memory.data(), 400, 0}, {memory.data() + 400, 100, 512}});
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(*first, 0);
  EXPECT_EQ(source.section_bytes(0), 612);
  EXPECT_TRUE(absl::IsInvalidArgument(source.AddSection({{nullptr, 10, 0}}).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(source.AddSection({{memory.data(), -1, 0}}).status()));
  EXPECT_TRUE(absl::IsOutOfRange(source.Acquire(3).status()));
  EXPECT_EQ(source.num_sections(), 1);
}

// A producer that records Acquire/Release, to check that the ring gives every section back.
class CountingSource : public HostSectionSource {
 public:
  explicit CountingSource(PinnedSectionSource* inner) : inner_(inner) {}
  int num_sections() const override { return inner_->num_sections(); }
  int64_t section_bytes(int section) const override { return inner_->section_bytes(section); }
  absl::StatusOr<std::vector<HostChunk>> Acquire(int section) override {
    ++outstanding;
    return inner_->Acquire(section);
  }
  void Release(int section) override {
    --outstanding;
    released.push_back(section);
  }
  int outstanding = 0;
  std::vector<int> released;

 private:
  PinnedSectionSource* inner_;
};

TEST(SectionRingTest, FillsWrapsAroundAndReleases) {
  SKIP_WITHOUT_GPU();
  DeviceArena arena(0);
  auto copy = Stream::Create();
  auto compute = Stream::Create(/*high_priority=*/true);
  ASSERT_TRUE(copy.ok() && compute.ok());
  const int sections = 5;
  const int64_t section_bytes = 3 * kMiB + 4096;
  auto host = PinnedHostBuffer::Allocate(sections * section_bytes, "ring test sections");
  ASSERT_TRUE(host.ok()) << host.status();
  std::mt19937 random(std::random_device{}());
  for (int64_t i = 0; i < host->size(); ++i) host->as<uint8_t>()[i] = static_cast<uint8_t>(random());
  PinnedSectionSource pinned;
  for (int s = 0; s < sections; ++s) {
    // Two chunks per section, stored in the opposite order to where they land in the slot.
    const uint8_t* base = host->as<uint8_t>() + s * section_bytes;
    const int64_t half = section_bytes / 2;
    ASSERT_TRUE(pinned.AddSection({{base + half, section_bytes - half, half}, {base, half, 0}}).ok());
  }
  CountingSource source(&pinned);
  auto ring = SectionRing::Create(arena, 2, section_bytes);
  ASSERT_TRUE(ring.ok()) << ring.status();
  SectionRing& r = **ring;
  auto readback = PinnedHostBuffer::Allocate(sections * section_bytes, "ring readback");
  ASSERT_TRUE(readback.ok());
  // The engine's loop: prefetch section s+1 while "computing" on s (here: copying the slot back out).
  ASSERT_OK(r.Fill(0, source, 0, *copy));
  for (int s = 0; s < sections; ++s) {
    const int slot = s % 2;
    if (s + 1 < sections) ASSERT_OK(r.Fill((s + 1) % 2, source, s + 1, *copy));
    auto data = r.BeginCompute(slot, *compute);
    ASSERT_TRUE(data.ok()) << data.status();
    EXPECT_EQ(r.section_in(slot), s);
    ASSERT_OK(CopyDeviceToHost(readback->as<uint8_t>() + s * section_bytes, *data, section_bytes, *compute));
    ASSERT_OK(r.EndCompute(slot, *compute));
    ASSERT_OK(r.ReleaseFinishedCopies());
  }
  ASSERT_OK(compute->Synchronize());
  ASSERT_OK(r.Drain());
  EXPECT_EQ(std::memcmp(readback->data(), host->data(), host->size()), 0);
  EXPECT_EQ(source.outstanding, 0);
  std::vector<int> released = source.released;
  std::sort(released.begin(), released.end());
  EXPECT_EQ(released, (std::vector<int>{0, 1, 2, 3, 4}));
  EXPECT_EQ(r.bytes_copied(), sections * section_bytes);
}

TEST(SectionRingTest, RejectsMisuse) {
  SKIP_WITHOUT_GPU();
  DeviceArena arena(0);
  EXPECT_TRUE(absl::IsInvalidArgument(SectionRing::Create(arena, 1, kMiB).status()));
  auto copy = Stream::Create();
  ASSERT_TRUE(copy.ok());
  auto ring = SectionRing::Create(arena, 2, kMiB);
  ASSERT_TRUE(ring.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition((*ring)->BeginCompute(0, *copy).status()));
  EXPECT_TRUE(absl::IsOutOfRange((*ring)->BeginCompute(2, *copy).status()));
  std::vector<uint8_t> big(2 * kMiB);
  PinnedSectionSource source;
  ASSERT_TRUE(source.AddSection({{big.data(), 2 * kMiB, 0}}).ok());
  absl::Status too_big = (*ring)->Fill(0, source, 0, *copy);
  EXPECT_TRUE(absl::IsInvalidArgument(too_big)) << too_big;
  EXPECT_NE(too_big.message().find("larger than a ring slot"), std::string::npos) << too_big;
  EXPECT_TRUE(absl::IsOutOfRange((*ring)->Fill(0, source, 5, *copy)));
}

// A small batch's layer: only the routed experts travel; the rest of the slot keeps its old bytes.
TEST(SectionRingTest, RoutedExpertCopiesTouchOnlyRoutedExperts) {
  SKIP_WITHOUT_GPU();
  const int experts = 8, hidden = 256, intermediate = 128;
  const PackedLayerIndex index = MakePackedLayerIndex(experts, hidden, intermediate);
  TestExperts data(experts, hidden, intermediate);
  auto host = PinnedHostBuffer::Allocate(index.total_bytes(), "packed layer");
  ASSERT_TRUE(host.ok());
  ASSERT_OK(PackLayerExperts(data.views, index, host->data(), host->size()));
  DeviceArena arena(0);
  auto copy = Stream::Create();
  ASSERT_TRUE(copy.ok());
  auto ring = SectionRing::Create(arena, 2, index.total_bytes());
  ASSERT_TRUE(ring.ok());
  PinnedSectionSource source;
  ASSERT_TRUE(source.AddSection({{host->data(), index.total_bytes(), 0}}).ok());
  const std::vector<int32_t> counts = {0, 2, 0, 0, 1, 1, 0, 0};
  std::vector<uint8_t> back(index.total_bytes());
  auto check = [&](const char* how) {
    for (int e = 0; e < experts; ++e) {
      const uint8_t* device_copy = back.data() + index.gate_up_offset(e);
      if (counts[e] > 0) {
        EXPECT_EQ(
            std::memcmp(device_copy, host->as<uint8_t>() + index.gate_up_offset(e), index.expert_bytes()), 0)
            << how << ": routed expert " << e;
      } else {
        EXPECT_TRUE(
            std::all_of(device_copy, device_copy + index.expert_bytes(), [](uint8_t b) { return b == 0xab; }))
            << how << ": expert " << e << " was copied though no token routes to it";
      }
    }
  };
  // Through the ring...
  ASSERT_OK(FillDeviceBytes((*ring)->slot_data(1), 0xab, index.total_bytes(), *copy));
  std::vector<ByteRange> ranges = RoutedExpertRanges(index, counts);
  ASSERT_OK((*ring)->FillRanges(1, source, 0, ranges, *copy));
  auto slot = (*ring)->BeginCompute(1, *copy);
  ASSERT_TRUE(slot.ok());
  ASSERT_OK(CopyDeviceToHost(back.data(), *slot, index.total_bytes(), *copy));
  ASSERT_OK(copy->Synchronize());
  check("FillRanges");
  EXPECT_EQ((*ring)->bytes_copied(), index.expert_stride_bytes + 2 * index.expert_bytes());  // {1}, {4, 5}
  // ...and directly.
  ASSERT_OK(FillDeviceBytes((*ring)->slot_data(0), 0xab, index.total_bytes(), *copy));
  auto copied = CopyRoutedExperts(host->data(), index, counts, (*ring)->slot_data(0), *copy);
  ASSERT_TRUE(copied.ok()) << copied.status();
  EXPECT_LT(*copied, index.total_bytes() / 2);
  ASSERT_OK(CopyDeviceToHost(back.data(), (*ring)->slot_data(0), index.total_bytes(), *copy));
  ASSERT_OK(copy->Synchronize());
  check("CopyRoutedExperts");
  ASSERT_OK((*ring)->Drain());
}

}  // namespace
}  // namespace ringmoe::gpu
