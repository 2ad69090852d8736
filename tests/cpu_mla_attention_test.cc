// cpu::PagedMlaAttention (cpu/mla_attention.h) against a direct softmax in double: contexts spanning several
// tiles, causal rows whose visible span ends inside a tile, head subranges, f32 and bf16 caches, scattered
// blocks.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "cpu/mla_attention.h"
#include "io/dtype.h"

namespace ringmoe::cpu {
namespace {

constexpr int kHeads = 6, kLatent = 24, kRope = 8, kWidth = kLatent + kRope, kBlockTokens = 16;

struct Case {
  int context;  // tokens in the cache, the new ones included
  int n_new;
  int head_begin, head_end;
  io::DType dtype;
};

void Check(const Case& c, double tolerance = 2e-5) {
  std::mt19937 random(c.context * 31 + c.n_new);
  std::normal_distribution<float> normal;
  const int blocks = (c.context + kBlockTokens - 1) / kBlockTokens;
  std::vector<float> values(static_cast<size_t>(blocks) * kBlockTokens * kWidth);
  for (float& v : values) v = normal(random);
  if (c.dtype == io::DType::kBF16) {
    for (float& v : values) v = io::BF16ToF32(io::F32ToBF16(v));  // the values a bf16 cache holds
  }
  std::vector<uint16_t> bf16(values.size());
  for (size_t i = 0; i < values.size(); ++i) bf16[i] = io::F32ToBF16(values[i]);
  std::vector<int32_t> table(blocks);
  std::iota(table.begin(), table.end(), 0);
  std::shuffle(table.begin(), table.end(), random);
  // Token t lives in block table[t / 16]: the reference reads it back the same way.
  auto row = [&](int token) {
    return values.data() +
           (static_cast<int64_t>(table[token / kBlockTokens]) * kBlockTokens + token % kBlockTokens) * kWidth;
  };
  PagedKvView view;
  view.dtype = c.dtype;
  view.k_pool = c.dtype == io::DType::kF32 ? static_cast<const void*>(values.data()) : bf16.data();
  view.block_stride = int64_t{kBlockTokens} * kWidth;
  view.block_tokens = kBlockTokens;
  view.kv_heads = 1;
  view.head_dim = kWidth;
  view.block_ids = table.data();
  view.num_tokens = c.context;
  std::vector<float> q(static_cast<size_t>(c.n_new) * kHeads * kWidth);
  for (float& v : q) v = 0.3f * normal(random);
  const float scale = 0.2f;
  std::vector<float> out(static_cast<size_t>(c.n_new) * kHeads * kLatent, -7.0f);
  PagedMlaAttention(q.data(), c.n_new, kHeads, c.head_begin, c.head_end, view, kLatent, scale, out.data());
  for (int r = 0; r < c.n_new; ++r) {
    const int visible = c.context - c.n_new + r + 1;
    for (int h = 0; h < kHeads; ++h) {
      const float* got = out.data() + (static_cast<int64_t>(r) * kHeads + h) * kLatent;
      if (h < c.head_begin || h >= c.head_end) {
        for (int i = 0; i < kLatent; ++i)
          ASSERT_EQ(got[i], -7.0f) << "head " << h << " outside the range was written";
        continue;
      }
      const float* query = q.data() + (static_cast<int64_t>(r) * kHeads + h) * kWidth;
      std::vector<double> p(visible);
      double top = -1e300, sum = 0;
      for (int t = 0; t < visible; ++t) {
        double dot = 0;
        for (int i = 0; i < kWidth; ++i) dot += double(query[i]) * row(t)[i];
        top = std::max(top, p[t] = dot * scale);
      }
      for (double& v : p) sum += v = std::exp(v - top);
      for (int i = 0; i < kLatent; ++i) {
        double want = 0;
        for (int t = 0; t < visible; ++t) want += p[t] / sum * row(t)[i];
        ASSERT_NEAR(got[i], want, tolerance)
            << "context " << c.context << " row " << r << " head " << h << " value " << i;
      }
    }
  }
}

TEST(CpuMlaAttention, MatchesADirectSoftmax) {
  for (io::DType dtype : {io::DType::kF32, io::DType::kBF16}) {
    Check({1, 1, 0, kHeads, dtype});      // a first token
    Check({37, 1, 0, kHeads, dtype});     // one decode
    Check({1300, 1, 0, kHeads, dtype});   // three tiles
    Check({1030, 9, 2, 5, dtype});        // rows ending on both sides of a tile edge (1024)
    Check({700, 700, 0, kHeads, dtype});  // a whole prompt: row 0 sees one token, row 699 all
    Check({513, 2, 5, 6, dtype});         // the second tile holds one token for row 1 only
  }
}

// A bf16 cache both ways, whichever this CPU picks by itself: widened to f32 for f32 matmuls, and kept bf16
// with each f32 operand split into two bf16 terms (the AMX path), which keeps the f32 products to about 2^-16
// of each operand.
TEST(CpuMlaAttention, BothMatmulPathsOverABf16CacheMatchADirectSoftmax) {
  for (internal::MlaMatmuls matmuls : {internal::MlaMatmuls::kF32, internal::MlaMatmuls::kSplitBf16}) {
    SCOPED_TRACE(matmuls == internal::MlaMatmuls::kF32 ? "f32" : "split bf16");
    internal::SetMlaMatmulsForTesting(matmuls);
    Check({37, 1, 0, kHeads, io::DType::kBF16});
    Check({1300, 1, 0, kHeads, io::DType::kBF16});
    Check({1030, 9, 2, 5, io::DType::kBF16});
    Check({700, 700, 0, kHeads, io::DType::kBF16});
  }
  internal::SetMlaMatmulsForTesting(internal::MlaMatmuls::kAuto);
}

}  // namespace
}  // namespace ringmoe::cpu
