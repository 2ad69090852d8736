// The GPU share of the KV cache (gpu/kv_cache_ops.h) against its CPU twins on fresh random data: the bf16
// write bit for bit against io::ConvertF32ToBF16 at the host cache's layout, and the paged attention against
// cpu::PagedAttention over the same bf16 blocks by relative error (1e-4: both f32 with online softmax), for
// decode rows, causal continuation rows, GQA groups of 1 to 8, head_dim 16 to 128, with and without a
// sliding window, and scattered block ids. Skips without a GPU.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "cpu/attention.h"
#include "gpu/device.h"
#include "gpu/device_arena.h"
#include "gpu/kv_cache_ops.h"
#include "gpu/stream.h"
#include "gtest/gtest.h"
#include "io/dtype.h"
#include "tests/testing/gpu_test_fixture.h"

namespace ringmoe::gpu {
namespace {

constexpr double kAttentionTolerance = 1e-4;
constexpr int kBlockTokens = 16;

double RelativeError(const float* got, const float* want, size_t count) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < count; ++i) {
    diff += (static_cast<double>(got[i]) - want[i]) * (static_cast<double>(got[i]) - want[i]);
    norm += static_cast<double>(want[i]) * want[i];
  }
  return std::sqrt(diff) / std::max(std::sqrt(norm), 1e-30);
}

struct Shape {
  int kv_heads, group, head_dim, window;
};

// The shared GPU fixture (tests/testing/gpu_test_fixture.h), its arena capped at 1 GiB.
class GpuKvCacheTest : public gpu_test::GpuTestBase<testing::TestWithParam<Shape>> {
 protected:
  GpuKvCacheTest() : GpuTestBase(int64_t{1} << 30) {}
};

TEST_P(GpuKvCacheTest, WriteAndAttendMatchTheCpu) {
  const Shape shape = GetParam();
  const int heads = shape.kv_heads * shape.group, hd = shape.head_dim;
  const int kv_width = shape.kv_heads * hd, q_width = heads * hd;
  const std::vector<int> lengths = {1, 2, 15, 16, 17, 33, 70, 129};
  // Scattered block ids: every sequence's table draws from one shuffled pool.
  int total_blocks = 0;
  for (int len : lengths) total_blocks += (len + kBlockTokens - 1) / kBlockTokens;
  std::vector<int32_t> pool_ids(total_blocks + 3);
  std::iota(pool_ids.begin(), pool_ids.end(), 0);
  std::shuffle(pool_ids.begin(), pool_ids.end(), random_);
  std::vector<int32_t> tables, table_of;
  for (int len : lengths) {
    table_of.push_back(static_cast<int32_t>(tables.size()));
    for (int b = 0; b < (len + kBlockTokens - 1) / kBlockTokens; ++b) {
      tables.push_back(pool_ids.back());
      pool_ids.pop_back();
    }
  }
  const int pool_blocks = total_blocks + 3;
  const int64_t block_stride = int64_t{kBlockTokens} * kv_width;

  // Write: one row per cached position of every sequence, plus a skipped row (table -1).
  std::vector<int32_t> write_tables, write_positions;
  for (size_t s = 0; s < lengths.size(); ++s) {
    for (int p = 0; p < lengths[s]; ++p) {
      write_tables.push_back(table_of[s]);
      write_positions.push_back(p);
    }
  }
  write_tables.push_back(-1);
  write_positions.push_back(0);
  const int write_rows = static_cast<int>(write_tables.size());
  const int64_t row_stride = kv_width + 8;  // rows of a wider buffer, as the engine's k/v are
  const std::vector<float> k = Normal(static_cast<size_t>(write_rows) * row_stride, 1.0f);
  const std::vector<float> v = Normal(static_cast<size_t>(write_rows) * row_stride, 1.0f);
  const size_t pool_elements = static_cast<size_t>(pool_blocks) * block_stride;
  std::vector<uint16_t> poison(pool_elements, 0x7fc1);  // a NaN bit pattern: an unwritten slot shows
  DevicePagedKv kv;
  kv.k_pool = Upload(poison);
  kv.v_pool = Upload(poison);
  kv.block_stride = block_stride;
  kv.block_tokens = kBlockTokens;
  kv.kv_heads = shape.kv_heads;
  kv.head_dim = hd;
  kv.tables = Upload(tables);
  kv.row_tables = Upload(write_tables);
  kv.positions = Upload(write_positions);
  ASSERT_TRUE(WriteKvRows(Upload(k), Upload(v), write_rows, row_stride, kv, stream_).ok());
  const std::vector<uint16_t> k_pool = Download(kv.k_pool, pool_elements);
  const std::vector<uint16_t> v_pool = Download(kv.v_pool, pool_elements);
  std::vector<uint16_t> want(kv_width);
  for (int r = 0; r + 1 < write_rows; ++r) {
    const int64_t block = tables[write_tables[r] + write_positions[r] / kBlockTokens];
    const int64_t offset = block * block_stride + int64_t{write_positions[r] % kBlockTokens} * kv_width;
    for (auto [source, pool] : {std::pair{&k, &k_pool}, {&v, &v_pool}}) {
      io::ConvertF32ToBF16(source->data() + r * row_stride, want.data(), kv_width);
      ASSERT_TRUE(std::equal(want.begin(), want.end(), pool->begin() + offset))
          << "row " << r << " seed " << seed_;
    }
  }

  // Attend: each sequence's last position (a decode), and for the longer ones a causal run of earlier rows
  // (a prefill continuation), in one launch with a skipped row among them.
  std::vector<int32_t> rows_table, rows_position;
  for (size_t s = 0; s < lengths.size(); ++s) {
    rows_table.push_back(table_of[s]);
    rows_position.push_back(lengths[s] - 1);
    if (lengths[s] > 20) {
      for (int p = lengths[s] - 12; p < lengths[s] - 1; ++p) {
        rows_table.push_back(table_of[s]);
        rows_position.push_back(p);
      }
    }
  }
  rows_table.push_back(-1);
  rows_position.push_back(3);
  const int rows = static_cast<int>(rows_table.size());
  const std::vector<float> q = Normal(static_cast<size_t>(rows) * q_width, 1.5f);
  kv.row_tables = Upload(rows_table);
  kv.positions = Upload(rows_position);
  std::vector<float> sentinel(static_cast<size_t>(rows) * q_width, 1234.5f);
  float* out = Upload(sentinel);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  ASSERT_TRUE(PagedAttentionRows(Upload(q), rows, heads, kv, scale, shape.window, out, stream_).ok());
  const std::vector<float> got = Download(out, sentinel.size());

  std::vector<float> twin(q_width);
  double worst = 0;
  for (int r = 0; r + 1 < rows; ++r) {
    cpu::PagedKvView view;
    view.dtype = io::DType::kBF16;
    view.k_pool = k_pool.data();
    view.v_pool = v_pool.data();
    view.block_stride = block_stride;
    view.block_tokens = kBlockTokens;
    view.kv_heads = shape.kv_heads;
    view.head_dim = hd;
    view.block_ids = tables.data() + rows_table[r];
    view.num_tokens = rows_position[r] + 1;
    cpu::PagedAttention(q.data() + static_cast<size_t>(r) * q_width, 1, heads, view, scale, shape.window,
                        twin.data());
    const double error = RelativeError(got.data() + static_cast<size_t>(r) * q_width, twin.data(), q_width);
    worst = std::max(worst, error);
    EXPECT_LT(error, kAttentionTolerance)
        << "row " << r << " at position " << rows_position[r] << ", seed " << seed_;
  }
  for (int i = 0; i < q_width; ++i) {
    ASSERT_EQ(got[static_cast<size_t>(rows - 1) * q_width + i], 1234.5f) << "the skipped row was written";
  }
  std::printf("paged attention kv_heads %d group %d head_dim %d window %d: worst relative error %.2e\n",
              shape.kv_heads, shape.group, hd, shape.window, worst);
}

INSTANTIATE_TEST_SUITE_P(Shapes, GpuKvCacheTest,
                         testing::Values(Shape{2, 2, 16, 0}, Shape{8, 4, 128, 0}, Shape{4, 8, 128, 0},
                                         Shape{2, 1, 64, 24}, Shape{2, 4, 32, 0}),
                         [](const testing::TestParamInfo<Shape>& info) {
                           const Shape& s = info.param;
                           return "kv" + std::to_string(s.kv_heads) + "_group" + std::to_string(s.group) +
                                  "_hd" + std::to_string(s.head_dim) + "_window" + std::to_string(s.window);
                         });

TEST(GpuKvCacheArguments, BadShapesAreErrorsNotCrashes) {
  DevicePagedKv kv;  // all zero: rejected before any GPU work
  Stream stream;
  float dummy = 0;
  EXPECT_FALSE(WriteKvRows(&dummy, &dummy, 1, 4, kv, stream).ok());
  EXPECT_FALSE(PagedAttentionRows(&dummy, 1, 4, kv, 1.0f, 0, &dummy, stream).ok());
#if RINGMOE_HAVE_CUDA
  EXPECT_TRUE(WriteKvRows(nullptr, nullptr, 0, 0, kv, stream).ok());  // nothing to do
#else
  // A build without CUDA has no GPU path at all: every entry point says so.
  EXPECT_TRUE(absl::IsUnavailable(WriteKvRows(nullptr, nullptr, 0, 0, kv, stream)));
#endif
}

}  // namespace
}  // namespace ringmoe::gpu
