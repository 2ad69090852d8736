// The MLA prefill pieces on the GPU (gpu/mla_ops.h) against their CPU twins on fresh random data:
// gpu::ApplyRotary against cpu::ApplyRotary (YaRN and default, interleaved and half pairs, strided heads as
// MLA lays q and the rope key out, positions up to DeepSeek-V3's 163840), and gpu::CopyBlocks against the
// strided loop. Skips without a GPU, except the argument checks, which come before any device work.
#include <cmath>
#include <vector>

#include "absl/status/status.h"
#include "cpu/rope.h"
#include "gpu/mla_ops.h"
#include "gtest/gtest.h"
#include "tests/testing/gpu_test_fixture.h"

namespace ringmoe::gpu {
namespace {

class GpuMlaOpsTest : public gpu_test::GpuTest {};

TEST_F(GpuMlaOpsTest, ApplyRotaryMatchesCpuTwin) {
  SCOPED_TRACE(seed_);
  struct Case {
    const char* name;
    cpu::RotaryEmbedding rope;
    int heads, head_stride, token_stride, offset;
  };
  // DeepSeek-V3's q (128 heads of 192, the rope part after 128 nope values) and its rope key (one row of
  // 576, the rope part after the 512 latent values); the golden checkpoint's shape; a default rope.
  const Case cases[] = {
      {"v3 q", cpu::YarnRotary(64, 10000, true, 40, 4096, 32, 1, true, 1.3), 128, 192, 128 * 192, 128},
      {"v3 rope key", cpu::YarnRotary(64, 10000, true, 40, 4096, 32, 1, true, 1.3), 1, 0, 576, 512},
      {"golden q", cpu::YarnRotary(8, 10000, true, 4, 64, 32, 1, true, 1.0), 4, 24, 96, 16},
      {"half pairs", cpu::DefaultRotary(64, 1e6, false), 8, 96, 8 * 96, 32},
  };
  const int tokens = 37;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    std::vector<int32_t> positions(tokens);
    for (int t = 0; t < tokens; ++t) positions[t] = t < 20 ? t : static_cast<int32_t>(random_() % 163840);
    std::vector<float> x = Uniform(static_cast<size_t>(tokens) * c.token_stride, 2.0f);
    std::vector<float> want = x;
    cpu::ApplyRotary(c.rope, want.data() + c.offset, tokens, c.heads, c.token_stride, c.head_stride,
                     positions.data());
    float* device = Upload(x);
    ASSERT_TRUE(ApplyRotary(c.rope, device + c.offset, tokens, c.heads, c.token_stride, c.head_stride,
                            Upload(positions), stream_)
                    .ok());
    const std::vector<float> got = Download(device, x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      ASSERT_NEAR(got[i], want[i], 1e-5 * std::max(1.0f, std::abs(want[i]))) << "element " << i;
    }
  }
}

TEST_F(GpuMlaOpsTest, CopyBlocksMatchesTheStridedLoop) {
  SCOPED_TRACE(seed_);
  // MLA's K assembly: each of 4 heads' 16 nope values out of [heads, nope + v] rows, and one 8-wide rope key
  // broadcast into every head (source group stride 0); then V's compaction out of padded heads.
  const BlockCopy copies[] = {
      {7, 4, 16, 4 * 28, 28, 4 * 24, 24},
      {7, 4, 8, 8, 0, 4 * 24, 24},
      {7, 4, 12, 4 * 24, 24, 4 * 12, 12},
      {5, 1, 32, 40, 0, 32, 0},
  };
  for (const BlockCopy& copy : copies) {
    SCOPED_TRACE(testing::Message() << copy.rows << " rows, " << copy.groups << " groups of " << copy.width);
    const std::vector<float> src = Uniform(static_cast<size_t>(copy.rows) * copy.src_row_stride + 64, 1.0f);
    const size_t dst_size = static_cast<size_t>(copy.rows) * copy.dst_row_stride + 64;
    std::vector<float> want(dst_size, -7.0f);
    for (int r = 0; r < copy.rows; ++r) {
      for (int g = 0; g < copy.groups; ++g) {
        for (int i = 0; i < copy.width; ++i) {
          want[r * copy.dst_row_stride + g * copy.dst_group_stride + i] =
              src[r * copy.src_row_stride + g * copy.src_group_stride + i];
        }
      }
    }
    float* dst = Upload(std::vector<float>(dst_size, -7.0f));
    ASSERT_TRUE(CopyBlocks(Upload(src), dst, copy, stream_).ok());
    EXPECT_EQ(Download(dst, dst_size), want);
  }
}

// The argument checks come before any device work: they run everywhere.
TEST(GpuMlaOpsArguments, BadShapesAreInvalidArguments) {
  const Stream stream;
  float x = 0;
  int32_t position = 0;
  cpu::RotaryEmbedding odd = cpu::DefaultRotary(8, 10000, true);
  odd.dim = 7;
  EXPECT_TRUE(absl::IsInvalidArgument(ApplyRotary(odd, &x, 1, 1, 8, 0, &position, stream)));
  EXPECT_TRUE(absl::IsInvalidArgument(
      ApplyRotary(cpu::DefaultRotary(1024, 10000, true), &x, 1, 1, 1024, 0, &position, stream)));
  EXPECT_TRUE(absl::IsInvalidArgument(
      ApplyRotary(cpu::DefaultRotary(8, 10000, true), nullptr, 1, 1, 8, 0, &position, stream)));
  EXPECT_TRUE(ApplyRotary(cpu::DefaultRotary(8, 10000, true), nullptr, 0, 1, 8, 0, nullptr, stream).ok());
  BlockCopy negative;
  negative.rows = -1;
  EXPECT_TRUE(absl::IsInvalidArgument(CopyBlocks(&x, &x, negative, stream)));
  EXPECT_TRUE(CopyBlocks(nullptr, nullptr, BlockCopy{}, stream).ok());
}

}  // namespace
}  // namespace ringmoe::gpu
