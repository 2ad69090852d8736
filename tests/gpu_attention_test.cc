// The GPU's pre-attention ops and prefill attention (gpu/attention_ops.h) against their CPU twins on fresh
// random data, by relative error: RoPE 1e-5 (positions up to 32k), clamp exact, attention 1e-4 (f32 online
// softmax against cpu::PagedAttention, and against a naive double reference). Skips without a GPU.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "cpu/attention.h"
#include "cpu/rope.h"
#include "gpu/attention_ops.h"
#include "gpu/gpu.h"
#include "gtest/gtest.h"
#include "tests/testing/gpu_test_fixture.h"

namespace ringmoe::gpu {
namespace {

constexpr double kRopeTolerance = 1e-5;
constexpr double kAttentionTolerance = 1e-4;

double RelativeError(const float* got, const float* want, size_t count) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < count; ++i) {
    diff += (static_cast<double>(got[i]) - want[i]) * (static_cast<double>(got[i]) - want[i]);
    norm += static_cast<double>(want[i]) * want[i];
  }
  return std::sqrt(diff) / std::max(std::sqrt(norm), 1e-30);
}

size_t CountNonFinite(const std::vector<float>& values) {
  return static_cast<size_t>(
      std::count_if(values.begin(), values.end(), [](float x) { return !std::isfinite(x); }));
}

// The attention problem of one launch: chunk lengths, shapes and the host data.
struct AttentionProblem {
  std::vector<int> lengths;
  int heads = 0, kv_heads = 0, head_dim = 0, window = 0;
  std::vector<int32_t> chunk_rows;  // [chunks + 1]
  std::vector<float> q, k, v;
  int rows() const { return chunk_rows.back(); }
  int q_width() const { return heads * head_dim; }
  int kv_width() const { return kv_heads * head_dim; }
  float scale() const { return 1.0f / std::sqrt(static_cast<float>(head_dim)); }
};

// cpu::PagedAttention of chunk c, each chunk its own sequence whose whole prompt is new; its K/V sit in
// blocks of 16 tokens of the same arrays (an identity block table).
void CpuTwinChunk(const AttentionProblem& p, int c, float* out) {
  const int row0 = p.chunk_rows[c], len = p.lengths[c];
  if (len == 0) return;
  constexpr int kBlockTokens = 16;
  std::vector<int32_t> block_ids((len + kBlockTokens - 1) / kBlockTokens);
  std::iota(block_ids.begin(), block_ids.end(), 0);
  cpu::PagedKvView view;
  view.dtype = io::DType::kF32;
  view.k_pool = p.k.data() + static_cast<size_t>(row0) * p.kv_width();
  view.v_pool = p.v.data() + static_cast<size_t>(row0) * p.kv_width();
  view.block_stride = static_cast<int64_t>(kBlockTokens) * p.kv_width();
  view.block_tokens = kBlockTokens;
  view.kv_heads = p.kv_heads;
  view.head_dim = p.head_dim;
  view.block_ids = block_ids.data();
  view.num_tokens = len;
  cpu::PagedAttention(p.q.data() + static_cast<size_t>(row0) * p.q_width(), len, p.heads, view, p.scale(),
                      p.window, out + static_cast<size_t>(row0) * p.q_width());
}

// The textbook formula in double: softmax(q k^T * scale) v over the allowed keys.
void NaiveReference(const AttentionProblem& p, std::vector<float>& out) {
  const int group = p.heads / p.kv_heads;
  std::vector<double> scores;
  for (size_t c = 0; c < p.lengths.size(); ++c) {
    const int row0 = p.chunk_rows[c];
    for (int i = 0; i < p.lengths[c]; ++i) {
      const int first = p.window > 0 ? std::max(0, i - p.window + 1) : 0;
      for (int h = 0; h < p.heads; ++h) {
        const float* q = p.q.data() + (static_cast<size_t>(row0 + i) * p.heads + h) * p.head_dim;
        const int kv_head = h / group;
        scores.assign(i - first + 1, 0.0);
        double max_score = -INFINITY;
        for (int j = first; j <= i; ++j) {
          const float* k = p.k.data() + (static_cast<size_t>(row0 + j) * p.kv_heads + kv_head) * p.head_dim;
          double dot = 0;
          for (int d = 0; d < p.head_dim; ++d) dot += static_cast<double>(q[d]) * k[d];
          scores[j - first] = dot * p.scale();
          max_score = std::max(max_score, scores[j - first]);
        }
        double sum = 0;
        for (double& s : scores) sum += (s = std::exp(s - max_score));
        float* o = out.data() + (static_cast<size_t>(row0 + i) * p.heads + h) * p.head_dim;
        for (int d = 0; d < p.head_dim; ++d) {
          double acc = 0;
          for (int j = first; j <= i; ++j)
            acc += scores[j - first] *
                   p.v[(static_cast<size_t>(row0 + j) * p.kv_heads + kv_head) * p.head_dim + d];
          o[d] = static_cast<float>(acc / sum);
        }
      }
    }
  }
}

// Device scratch and a stream per test (tests/testing/gpu_test_fixture.h); skips without a GPU. Data is fresh
// each run: the seed is printed on failure.
class GpuAttentionTest : public gpu_test::GpuTest {
 protected:
  AttentionProblem MakeProblem(std::vector<int> lengths, int kv_heads, int group, int head_dim, int window) {
    AttentionProblem p;
    p.lengths = std::move(lengths);
    p.heads = kv_heads * group;
    p.kv_heads = kv_heads;
    p.head_dim = head_dim;
    p.window = window;
    p.chunk_rows.assign(1, 0);
    for (int len : p.lengths) p.chunk_rows.push_back(p.chunk_rows.back() + len);
    // q wider than k so that some rows' softmax is peaked and others flat.
    p.q = Normal(static_cast<size_t>(p.rows()) * p.q_width(), 1.5f);
    p.k = Normal(static_cast<size_t>(p.rows()) * p.kv_width(), 1.0f);
    p.v = Normal(static_cast<size_t>(p.rows()) * p.kv_width(), 1.0f);
    return p;
  }

  // The GPU's output for p, from an output buffer poisoned with NaN (0xff bytes) so that an unwritten
  // element shows. max_chunk_rows < 0: the true longest chunk. misalign: tensors one float off 16 bytes.
  std::vector<float> RunGpu(const AttentionProblem& p, int max_chunk_rows = -1, bool misalign = false) {
    if (max_chunk_rows < 0) max_chunk_rows = *std::max_element(p.lengths.begin(), p.lengths.end());
    const size_t offset = misalign ? 1 : 0;
    const size_t out_count = static_cast<size_t>(p.rows()) * p.q_width();
    float* q = Upload(p.q, offset);
    float* k = Upload(p.k, offset);
    float* v = Upload(p.v, offset);
    int32_t* chunk_rows = Upload(p.chunk_rows);
    float* out = Allocate<float>(out_count + offset) + offset;
    EXPECT_TRUE(FillDeviceBytes(out, 0xff, static_cast<int64_t>(out_count * sizeof(float)), stream_).ok());
    const absl::Status status =
        PrefillAttention(q, k, v, chunk_rows, static_cast<int>(p.lengths.size()), max_chunk_rows, p.heads,
                         p.kv_heads, p.head_dim, p.scale(), p.window, out, stream_);
    EXPECT_TRUE(status.ok()) << status;
    return Download(out, out_count);
  }

  // Worst per-chunk relative error of got against want (so that a bug confined to a short chunk shows).
  static double WorstChunkError(const AttentionProblem& p, const std::vector<float>& got,
                                const std::vector<float>& want) {
    double worst = 0;
    for (size_t c = 0; c < p.lengths.size(); ++c) {
      const size_t begin = static_cast<size_t>(p.chunk_rows[c]) * p.q_width();
      const size_t count = static_cast<size_t>(p.lengths[c]) * p.q_width();
      if (count > 0) worst = std::max(worst, RelativeError(got.data() + begin, want.data() + begin, count));
    }
    return worst;
  }
};

TEST_F(GpuAttentionTest, RopeMatchesCpuTwin) {
  SCOPED_TRACE(seed_);
  const int tokens = 67, heads = 3;
  std::uniform_int_distribution<int32_t> position(0, 32767);
  std::vector<int32_t> positions(tokens);
  for (int32_t& p : positions) p = position(random_);
  positions[0] = 0, positions[1] = 1, positions[2] = 32767, positions[3] = 32768;
  int32_t* device_positions = Upload(positions);
  double worst = 0;
  for (int head_dim : {16, 32, 64, 80, 128, 256}) {
    for (double theta : {10000.0, 500000.0, 1000000.0}) {
      SCOPED_TRACE(testing::Message() << "head_dim " << head_dim << ", theta " << theta);
      std::vector<float> want = Normal(static_cast<size_t>(tokens) * heads * head_dim, 1.0f);
      float* x = Upload(want);
      cpu::ApplyRope(want.data(), tokens, heads, head_dim, positions.data(), theta);
      ASSERT_OK(ApplyRope(x, tokens, heads, head_dim, device_positions, theta, stream_));
      const std::vector<float> got = Download(x, want.size());
      const double error = RelativeError(got.data(), want.data(), want.size());
      EXPECT_LT(error, kRopeTolerance);
      worst = std::max(worst, error);
    }
  }
  std::printf("RoPE: worst relative error %.2e over head_dim 16..256, positions up to 32768\n", worst);
}

TEST_F(GpuAttentionTest, RopeRejectsBadArguments) {
  float* x = Allocate<float>(64);
  int32_t* positions = Allocate<int32_t>(4);
  EXPECT_TRUE(absl::IsInvalidArgument(ApplyRope(x, 1, 1, 15, positions, 1e4, stream_)));
  EXPECT_TRUE(absl::IsInvalidArgument(ApplyRope(x, 1, 1, 514, positions, 1e4, stream_)));
  EXPECT_TRUE(absl::IsInvalidArgument(ApplyRope(x, 1, 1, 0, positions, 1e4, stream_)));
  EXPECT_TRUE(absl::IsInvalidArgument(ApplyRope(x, -1, 1, 16, positions, 1e4, stream_)));
  EXPECT_TRUE(absl::IsInvalidArgument(ApplyRope(x, 1, 0, 16, positions, 1e4, stream_)));
  EXPECT_TRUE(absl::IsInvalidArgument(ApplyRope(x, 1, 1, 16, positions, 0.0, stream_)));
  EXPECT_TRUE(absl::IsInvalidArgument(ApplyRope(x, 1, 1, 16, positions, NAN, stream_)));
  EXPECT_TRUE(absl::IsInvalidArgument(ApplyRope(nullptr, 1, 1, 16, positions, 1e4, stream_)));
  ASSERT_OK(ApplyRope(x, 0, 1, 16, positions, 1e4, stream_));
}

TEST_F(GpuAttentionTest, ClampIsExact) {
  SCOPED_TRACE(seed_);
  for (float limit : {2.5f, 0.0f, 8.0f}) {
    SCOPED_TRACE(limit);
    std::vector<float> want = Normal(10007, 3.0f);
    const float specials[] = {INFINITY, -INFINITY, NAN, limit, -limit, 0.0f, -0.0f, 1e30f, -1e-30f};
    std::copy(std::begin(specials), std::end(specials), want.begin());
    float* x = Upload(want);
    for (float& value : want) value = std::clamp(value, -limit, limit);
    ASSERT_OK(ClampInPlace(x, static_cast<int64_t>(want.size()), limit, stream_));
    const std::vector<float> got = Download(x, want.size());
    EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size() * sizeof(float)), 0);  // bits, NaN included
  }
}

TEST_F(GpuAttentionTest, ClampRejectsBadArguments) {
  float* x = Allocate<float>(4);
  EXPECT_TRUE(absl::IsInvalidArgument(ClampInPlace(x, -1, 1.0f, stream_)));
  EXPECT_TRUE(absl::IsInvalidArgument(ClampInPlace(x, 4, -1.0f, stream_)));
  EXPECT_TRUE(absl::IsInvalidArgument(ClampInPlace(x, 4, NAN, stream_)));
  EXPECT_TRUE(absl::IsInvalidArgument(ClampInPlace(nullptr, 4, 1.0f, stream_)));
  ASSERT_OK(ClampInPlace(x, 0, 1.0f, stream_));
}

struct AttentionCase {
  int kv_heads, group, head_dim, window;
};

TEST_F(GpuAttentionTest, PrefillAttentionMatchesCpuTwin) {
  SCOPED_TRACE(seed_);
  // Mixed chunk lengths in one launch: partial tiles, one row, chunks that start mid-tile.
  const std::vector<int> lengths = {77, 1, 300, 16, 7};
  std::vector<AttentionCase> cases;
  for (int head_dim : {16, 32, 128})
    for (int group : {1, 2, 8})
      for (int window : {0, 5, 100}) cases.push_back({2, group, head_dim, window});
  // The generic paths: head_dim padded up (20, 80, 200), not a multiple of 4 (17), 64, 256, window 1.
  for (AttentionCase c : {AttentionCase{2, 2, 20, 0}, AttentionCase{1, 4, 80, 0}, AttentionCase{2, 2, 17, 70},
                          AttentionCase{4, 2, 64, 0}, AttentionCase{1, 2, 256, 0},
                          AttentionCase{1, 2, 200, 65}, AttentionCase{2, 1, 128, 1}})
    cases.push_back(c);
  double worst = 0;
  for (const AttentionCase& c : cases) {
    SCOPED_TRACE(testing::Message() << "kv_heads " << c.kv_heads << ", group " << c.group << ", head_dim "
                                    << c.head_dim << ", window " << c.window);
    const AttentionProblem p = MakeProblem(lengths, c.kv_heads, c.group, c.head_dim, c.window);
    std::vector<float> want(static_cast<size_t>(p.rows()) * p.q_width());
    for (size_t i = 0; i < lengths.size(); ++i) CpuTwinChunk(p, static_cast<int>(i), want.data());
    const std::vector<float> got = RunGpu(p);
    ASSERT_EQ(CountNonFinite(got), 0u) << "unwritten (NaN-poisoned) or non-finite outputs";
    const double error = WorstChunkError(p, got, want);
    EXPECT_LT(error, kAttentionTolerance);
    worst = std::max(worst, error);
  }
  std::printf("prefill attention vs cpu::PagedAttention: worst per-chunk relative error %.2e (%zu cases)\n",
              worst, cases.size());
}

TEST_F(GpuAttentionTest, PrefillAttentionMatchesNaiveReference) {
  SCOPED_TRACE(seed_);
  for (int window : {0, 37}) {
    SCOPED_TRACE(window);
    const AttentionProblem p = MakeProblem({130, 3, 64}, 2, 4, 128, window);
    std::vector<float> want(static_cast<size_t>(p.rows()) * p.q_width());
    NaiveReference(p, want);
    const std::vector<float> got = RunGpu(p);
    ASSERT_EQ(CountNonFinite(got), 0u);
    const double error = WorstChunkError(p, got, want);
    std::printf("prefill attention vs double reference, window %d: relative error %.2e\n", window, error);
    EXPECT_LT(error, kAttentionTolerance);
  }
}

// The paths that do not come from the shape: misaligned tensors (plain loads instead of cp.async), a grid
// sized for shorter chunks than the longest (blocks loop over tiles), empty chunks.
TEST_F(GpuAttentionTest, PrefillAttentionSurvivesOddLaunches) {
  SCOPED_TRACE(seed_);
  const AttentionProblem p = MakeProblem({200, 0, 129, 64, 0, 5}, 2, 2, 128, 0);
  std::vector<float> want(static_cast<size_t>(p.rows()) * p.q_width());
  for (size_t i = 0; i < p.lengths.size(); ++i) CpuTwinChunk(p, static_cast<int>(i), want.data());
  for (int max_chunk_rows : {200, 64, 1}) {
    for (bool misalign : {false, true}) {
      SCOPED_TRACE(testing::Message() << "max_chunk_rows " << max_chunk_rows << ", misaligned " << misalign);
      const std::vector<float> got = RunGpu(p, max_chunk_rows, misalign);
      ASSERT_EQ(CountNonFinite(got), 0u);
      EXPECT_LT(WorstChunkError(p, got, want), kAttentionTolerance);
    }
  }
}

TEST_F(GpuAttentionTest, PrefillAttentionRejectsBadArguments) {
  float* x = Allocate<float>(1024);
  int32_t* rows = Upload(std::vector<int32_t>{0, 2});
  auto attend = [&](int chunks, int max_rows, int heads, int kv_heads, int head_dim, float scale) {
    return PrefillAttention(x, x, x, rows, chunks, max_rows, heads, kv_heads, head_dim, scale, 0, x + 512,
                            stream_);
  };
  EXPECT_TRUE(absl::IsInvalidArgument(attend(-1, 2, 2, 1, 16, 0.25f)));
  EXPECT_TRUE(absl::IsInvalidArgument(attend(70000, 2, 2, 1, 16, 0.25f)));
  EXPECT_TRUE(absl::IsInvalidArgument(attend(1, -1, 2, 1, 16, 0.25f)));
  EXPECT_TRUE(absl::IsInvalidArgument(attend(1, 2, 3, 2, 16, 0.25f)));  // heads % kv_heads
  EXPECT_TRUE(absl::IsInvalidArgument(attend(1, 2, 2, 0, 16, 0.25f)));
  EXPECT_TRUE(absl::IsInvalidArgument(attend(1, 2, 2, 1, 0, 0.25f)));
  EXPECT_TRUE(absl::IsInvalidArgument(attend(1, 2, 2, 1, 257, 0.25f)));
  EXPECT_TRUE(absl::IsInvalidArgument(attend(1, 2, 2, 1, 16, NAN)));
  EXPECT_TRUE(absl::IsInvalidArgument(
      PrefillAttention(x, x, x, nullptr, 1, 2, 2, 1, 16, 0.25f, 0, x + 512, stream_)));
  ASSERT_OK(attend(0, 2, 2, 1, 16, 0.25f));
}

// 16 prompts of 512 tokens, 32 heads over 4 kv heads of 128 (a Qwen3-30B-A3B layer): prints the rate (the
// target is >= 10 TFLOP/s on an H200) and checks two chunks against the CPU twin.
TEST_F(GpuAttentionTest, PrefillAttentionTiming) {
  SCOPED_TRACE(seed_);
  const AttentionProblem p = MakeProblem(std::vector<int>(16, 512), 4, 8, 128, 0);
  const size_t out_count = static_cast<size_t>(p.rows()) * p.q_width();
  const std::vector<float> got = RunGpu(p);  // also the warm-up
  ASSERT_EQ(CountNonFinite(got), 0u);
  std::vector<float> want(out_count);
  for (int c : {0, 15}) {
    CpuTwinChunk(p, c, want.data());
    const size_t begin = static_cast<size_t>(p.chunk_rows[c]) * p.q_width();
    const size_t count = static_cast<size_t>(p.lengths[c]) * p.q_width();
    EXPECT_LT(RelativeError(got.data() + begin, want.data() + begin, count), kAttentionTolerance)
        << "chunk " << c;
  }

  float* q = Upload(p.q);
  float* k = Upload(p.k);
  float* v = Upload(p.v);
  int32_t* chunk_rows = Upload(p.chunk_rows);
  float* out = Allocate<float>(out_count);
  auto start = Event::Create(/*timing=*/true);
  auto end = Event::Create(/*timing=*/true);
  ASSERT_TRUE(start.ok() && end.ok());
  auto launch = [&] {
    return PrefillAttention(q, k, v, chunk_rows, 16, 512, p.heads, p.kv_heads, p.head_dim, p.scale(), 0, out,
                            stream_);
  };
  ASSERT_OK(launch());
  constexpr int kRuns = 10;
  ASSERT_OK(start->Record(stream_));
  for (int i = 0; i < kRuns; ++i) ASSERT_OK(launch());
  ASSERT_OK(end->Record(stream_));
  ASSERT_OK(end->Synchronize());
  auto ms = ElapsedMilliseconds(*start, *end);
  ASSERT_TRUE(ms.ok()) << ms.status();
  // 2 FLOP per multiply-add, Q K^T and P V, over the causal triangle only.
  double flops = 0;
  for (int len : p.lengths) flops += 4.0 * p.heads * p.head_dim * (static_cast<double>(len) * (len + 1) / 2);
  const double per_run_ms = *ms / kRuns;
  std::printf(
      "prefill attention 16 x 512 rows, 32/4 heads, head_dim 128: %.3f ms, %.1f GFLOP, %.1f TFLOP/s\n",
      per_run_ms, flops / 1e9, flops / (per_run_ms * 1e-3) / 1e12);
}

}  // namespace
}  // namespace ringmoe::gpu
