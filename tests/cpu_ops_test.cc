// Each CPU kernel against a naive reference written the obvious way, in double precision, on random data.
#include "cpu/cpu_ops.h"

#include <gtest/gtest.h>
#include <strings.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "io/dtype.h"

namespace ringmoe::cpu {
namespace {

std::vector<float> Random(size_t count, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> values(count);
  for (float& v : values) v = normal(rng);
  return values;
}

double MaxRelativeError(const std::vector<float>& got, const std::vector<double>& want) {
  double max_abs = 0, max_err = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    max_abs = std::max(max_abs, std::abs(want[i]));
    max_err = std::max(max_err, std::abs(got[i] - want[i]));
  }
  return max_err / std::max(max_abs, 1e-30);
}

std::vector<double> NaiveLinear(const std::vector<float>& x, int m, const std::vector<float>& w, int out,
                                int in, const float* bias) {
  std::vector<double> y(static_cast<size_t>(m) * out);
  for (int r = 0; r < m; ++r) {
    for (int o = 0; o < out; ++o) {
      double sum = bias ? bias[o] : 0.0;
      for (int i = 0; i < in; ++i) sum += static_cast<double>(x[r * in + i]) * w[o * in + i];
      y[r * out + o] = sum;
    }
  }
  return y;
}

TEST(CpuOps, RmsNormMatchesDefinition) {
  std::mt19937 rng(1);
  const int rows = 5, width = 96;
  auto x = Random(rows * width, rng, 3.0f), weight = Random(width, rng);
  std::vector<float> out(x.size());
  RmsNorm(x.data(), weight.data(), rows, width, 1e-6f, out.data());
  std::vector<double> want(x.size());
  for (int r = 0; r < rows; ++r) {
    double mean_square = 0;
    for (int i = 0; i < width; ++i)
      mean_square += static_cast<double>(x[r * width + i]) * x[r * width + i] / width;
    for (int i = 0; i < width; ++i)
      want[r * width + i] = weight[i] * x[r * width + i] / std::sqrt(mean_square + 1e-6);
  }
  EXPECT_LT(MaxRelativeError(out, want), 1e-6);
}

TEST(CpuOps, RopeRotatesHalves) {
  std::mt19937 rng(2);
  const int tokens = 4, heads = 3, head_dim = 16;
  auto x = Random(tokens * heads * head_dim, rng);
  std::vector<int32_t> positions = {0, 1, 17, 200};
  std::vector<float> out = x;
  ApplyRope(out.data(), tokens, heads, head_dim, positions.data(), 10000.0);
  std::vector<double> want(x.size());
  for (int t = 0; t < tokens; ++t) {
    for (int h = 0; h < heads; ++h) {
      const int base = (t * heads + h) * head_dim;
      for (int i = 0; i < head_dim / 2; ++i) {
        double angle = positions[t] * std::pow(10000.0, -2.0 * i / head_dim);
        double a = x[base + i], b = x[base + i + head_dim / 2];
        want[base + i] = a * std::cos(angle) - b * std::sin(angle);
        want[base + i + head_dim / 2] = b * std::cos(angle) + a * std::sin(angle);
      }
    }
  }
  EXPECT_LT(MaxRelativeError(out, want), 1e-5);
  // Position 0 is the identity.
  for (int i = 0; i < heads * head_dim; ++i) EXPECT_EQ(out[i], x[i]);
}

TEST(CpuOps, RouterSoftmaxTopKWithAndWithoutRenormalisation) {
  std::mt19937 rng(3);
  const int tokens = 7, experts = 8, top_k = 3;
  auto logits = Random(tokens * experts, rng, 2.0f);
  std::vector<int32_t> ids(tokens * top_k);
  std::vector<float> weights(tokens * top_k), renormalised(tokens * top_k), mixtral(tokens * top_k);
  std::vector<int32_t> ids_renormalised(tokens * top_k), ids_mixtral(tokens * top_k);
  RouteTopK(logits.data(), tokens, experts, top_k, RouterScoring::kSoftmaxThenTopK, false, ids.data(),
            weights.data());
  RouteTopK(logits.data(), tokens, experts, top_k, RouterScoring::kSoftmaxThenTopK, true,
            ids_renormalised.data(), renormalised.data());
  RouteTopK(logits.data(), tokens, experts, top_k, RouterScoring::kTopKThenSoftmax, false, ids_mixtral.data(),
            mixtral.data());
  for (int t = 0; t < tokens; ++t) {
    std::vector<double> probs(experts);
    double sum = 0;
    for (int e = 0; e < experts; ++e)
      sum += probs[e] = std::exp(static_cast<double>(logits[t * experts + e]));
    for (double& p : probs) p /= sum;
    std::vector<int> order(experts);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int a, int b) { return probs[a] > probs[b]; });
    double kept = 0;
    for (int j = 0; j < top_k; ++j) kept += probs[order[j]];
    for (int j = 0; j < top_k; ++j) {
      EXPECT_EQ(ids[t * top_k + j], order[j]);
      EXPECT_EQ(ids_renormalised[t * top_k + j], order[j]);
      EXPECT_EQ(ids_mixtral[t * top_k + j], order[j]);
      EXPECT_NEAR(weights[t * top_k + j], probs[order[j]], 1e-6);
      EXPECT_NEAR(renormalised[t * top_k + j], probs[order[j]] / kept, 1e-6);
      // Softmax over the top-k logits equals renormalised top-k probabilities.
      EXPECT_NEAR(mixtral[t * top_k + j], probs[order[j]] / kept, 1e-6);
    }
  }
}

TEST(CpuOps, LogSoftmaxAndSwiGlu) {
  std::vector<float> row = {1.0f, 2.0f, 3.0f, -50.0f};
  LogSoftmaxInPlace(row.data(), 4);
  double total = 0;
  for (float v : row) total += std::exp(static_cast<double>(v));
  EXPECT_NEAR(total, 1.0, 1e-6);
  EXPECT_NEAR(row[2] - row[1], 1.0, 1e-6);
  std::vector<float> gate = {-2.0f, 0.0f, 3.0f}, up = {1.0f, 5.0f, -2.0f}, out(3);
  SwiGlu(gate.data(), up.data(), out.data(), 3);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(out[i], gate[i] / (1 + std::exp(-gate[i])) * up[i], 1e-6);
}

// Restores Linear's runtime choice of bf16 path when a test ends, whatever it forced.
struct RestoreBf16LinearPath {
  ~RestoreBf16LinearPath() { internal::SetBf16LinearPathForTesting(internal::Bf16LinearPath::kAuto); }
};

// Both ways Linear runs a BF16 matrix: whatever this CPU picks (oneDNN's bf16 matmul, or widening where
// oneDNN has none), and widening forced.
constexpr internal::Bf16LinearPath kBf16Paths[] = {internal::Bf16LinearPath::kAuto,
                                                   internal::Bf16LinearPath::kWidenToF32};

const char* Bf16PathName(internal::Bf16LinearPath path) {
  return path == internal::Bf16LinearPath::kAuto ? "auto" : "widened";
}

// The naive product of bf16-rounded x and w, accumulated exactly: what Linear with a BF16 matrix computes.
std::vector<double> NaiveBf16Linear(const std::vector<float>& x, int m, const std::vector<uint16_t>& w_bf16,
                                    int out, int in, const float* bias) {
  std::vector<float> w_rounded(w_bf16.size()), x_rounded(x.size());
  for (size_t i = 0; i < w_bf16.size(); ++i) w_rounded[i] = io::BF16ToF32(w_bf16[i]);
  for (size_t i = 0; i < x.size(); ++i) x_rounded[i] = io::BF16ToF32(io::F32ToBF16(x[i]));
  return NaiveLinear(x_rounded, m, w_rounded, out, in, bias);
}

TEST(CpuOps, LinearF32AndBf16AgainstNaive) {
  RestoreBf16LinearPath restore;
  std::mt19937 rng(4);
  const int m = 13, in = 64, out = 40;
  auto x = Random(m * in, rng), w = Random(out * in, rng, 0.2f), bias = Random(out, rng);
  std::vector<float> y(m * out);
  Linear(x.data(), m, Matrix{io::DType::kF32, w.data(), out, in}, bias.data(), y.data());
  EXPECT_LT(MaxRelativeError(y, NaiveLinear(x, m, w, out, in, bias.data())), 1e-5);

  // bf16: the same as the naive product of bf16-rounded operands, accumulated exactly.
  std::vector<uint16_t> w_bf16(w.size());
  io::ConvertF32ToBF16(w.data(), w_bf16.data(), w.size());
  for (internal::Bf16LinearPath path : kBf16Paths) {
    SCOPED_TRACE(Bf16PathName(path));
    internal::SetBf16LinearPathForTesting(path);
    std::fill(y.begin(), y.end(), NAN);
    Linear(x.data(), m, Matrix{io::DType::kBF16, w_bf16.data(), out, in}, nullptr, y.data());
    EXPECT_LT(MaxRelativeError(y, NaiveBf16Linear(x, m, w_bf16, out, in, nullptr)), 1e-4);
    EXPECT_GT(MaxRelativeError(y, NaiveLinear(x, m, w, out, in, nullptr)), 1e-5) << "bf16 rounding must show";
  }
}

// W given as W^T ([in, out], Matrix::in_major_stride), the leading `out` values of rows wider than that:
// the same products as W itself, f32 and bf16 (both paths), on the caller and split over the pool.
TEST(CpuOps, LinearTakesTransposedWeightsWithARowStride) {
  RestoreBf16LinearPath restore;
  std::mt19937 rng(11);
  const int in = 300, out = 520, stride = 576;
  auto w = Random(static_cast<size_t>(out) * in, rng, 0.05f), bias = Random(out, rng);
  std::vector<float> w_t(static_cast<size_t>(in) * stride, NAN);  // the values past `out` must not be read
  for (int o = 0; o < out; ++o) {
    for (int i = 0; i < in; ++i)
      w_t[static_cast<size_t>(i) * stride + o] = w[static_cast<size_t>(o) * in + i];
  }
  std::vector<uint16_t> w_bf16(w.size()), w_t_bf16(w_t.size());
  io::ConvertF32ToBF16(w.data(), w_bf16.data(), w.size());
  io::ConvertF32ToBF16(w_t.data(), w_t_bf16.data(), w_t.size());
  CpuWorkers workers(2);
  for (int m : {1, 37, 128}) {
    auto x = Random(static_cast<size_t>(m) * in, rng);
    for (CpuWorkers* pool : {static_cast<CpuWorkers*>(nullptr), &workers}) {
      SCOPED_TRACE("m=" + std::to_string(m) + (pool != nullptr ? " on the pool" : " on the caller"));
      std::vector<float> y(static_cast<size_t>(m) * out, NAN);
      Linear(x.data(), m, Matrix{io::DType::kF32, w_t.data(), out, in, stride}, bias.data(), y.data(), pool);
      EXPECT_LT(MaxRelativeError(y, NaiveLinear(x, m, w, out, in, bias.data())), 1e-5);
      const std::vector<double> want = NaiveBf16Linear(x, m, w_bf16, out, in, bias.data());
      for (internal::Bf16LinearPath path : kBf16Paths) {
        SCOPED_TRACE(Bf16PathName(path));
        internal::SetBf16LinearPathForTesting(path);
        std::fill(y.begin(), y.end(), NAN);
        Linear(x.data(), m, Matrix{io::DType::kBF16, w_t_bf16.data(), out, in, stride}, bias.data(), y.data(),
               pool);
        EXPECT_LT(MaxRelativeError(y, want), 1e-4);
      }
    }
  }
}

// Shapes that split into slices on the pool and, widened, into several blocks of rows with a short last one
// (1 MiB of f32 holds 256 rows of 1024), with a bias; decode (m = 1) and prefill-like (m = 37).
TEST(CpuOps, Bf16InSlicesAndBlocksWithBias) {
  RestoreBf16LinearPath restore;
  std::mt19937 rng(7);
  const int in = 1024, out = 700;
  auto w = Random(out * in, rng, 0.05f), bias = Random(out, rng);
  std::vector<uint16_t> w_bf16(w.size());
  io::ConvertF32ToBF16(w.data(), w_bf16.data(), w.size());
  CpuWorkers workers(2);
  for (int m : {1, 37}) {
    auto x = Random(static_cast<size_t>(m) * in, rng);
    const std::vector<double> want = NaiveBf16Linear(x, m, w_bf16, out, in, bias.data());
    for (internal::Bf16LinearPath path : kBf16Paths) {
      for (CpuWorkers* pool : {static_cast<CpuWorkers*>(nullptr), &workers}) {
        SCOPED_TRACE(std::string(Bf16PathName(path)) + " m=" + std::to_string(m) +
                     (pool != nullptr ? " on the pool" : " on the caller"));
        internal::SetBf16LinearPathForTesting(path);
        std::vector<float> y(static_cast<size_t>(m) * out, NAN);
        Linear(x.data(), m, Matrix{io::DType::kBF16, w_bf16.data(), out, in}, bias.data(), y.data(), pool);
        EXPECT_LT(MaxRelativeError(y, want), 1e-4);
      }
    }
  }
}

// The engine computes in bf16 only where oneDNN runs it natively, so native must mean oneDNN has the matmul;
// and a cap of ONEDNN_MAX_CPU_ISA below AVX512-BF16 must switch native off whatever cpuid says.
TEST(CpuOps, NativeBf16FollowsWhatOneDnnMayUse) {
  if (CpuHasNativeBf16()) EXPECT_TRUE(OneDnnHasBf16Matmul());
  const char* cap = std::getenv("ONEDNN_MAX_CPU_ISA");
  const std::string capped = cap != nullptr ? cap : "";
  for (const char* below : {"SSE41", "AVX", "AVX2", "AVX512_CORE", "AVX512_CORE_VNNI"}) {
    if (strcasecmp(capped.c_str(), below) == 0) {
      EXPECT_FALSE(CpuHasNativeBf16()) << "ONEDNN_MAX_CPU_ISA=" << capped;
    }
  }
  if (strcasecmp(capped.c_str(), "AVX2") == 0) EXPECT_FALSE(OneDnnHasBf16Matmul());
}

// RINGMOE_CPU_ISA caps our own kernels: avx2 keeps them off AVX-512 whatever the CPU has.
TEST(CpuOps, KernelIsaHonoursRingmoeCpuIsa) {
  EXPECT_EQ(*ParseCpuIsa("avx2"), CpuIsa::kAvx2);
  EXPECT_EQ(*ParseCpuIsa("avx512"), CpuIsa::kAvx512);
  EXPECT_EQ(ParseCpuIsa("AVX-512").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseCpuIsa("sse2").status().code(), absl::StatusCode::kInvalidArgument);
  const char* cap = std::getenv("RINGMOE_CPU_ISA");
  const absl::StatusOr<CpuIsa> parsed =
      cap != nullptr && *cap != '\0' ? ParseCpuIsa(cap) : absl::StatusOr<CpuIsa>(CpuIsa::kAvx512);
  EXPECT_EQ(CheckCpuIsaEnvironment().ok(), parsed.ok());
  if (parsed.ok() && *parsed == CpuIsa::kAvx2) EXPECT_EQ(KernelIsa(), CpuIsa::kAvx2);
  if (KernelIsa() == CpuIsa::kAvx512) EXPECT_TRUE(__builtin_cpu_supports("avx512f"));
}

TEST(CpuOps, MoeForwardMatchesPerTokenLoop) {
  std::mt19937 rng(5);
  const int tokens = 9, hidden = 32, inter = 24, experts = 4, top_k = 2;
  std::vector<std::vector<float>> storage;
  std::vector<ExpertWeights> weights(experts);
  for (int e = 0; e < experts; ++e) {
    storage.push_back(Random(inter * hidden, rng, 0.3f));
    storage.push_back(Random(inter * hidden, rng, 0.3f));
    storage.push_back(Random(hidden * inter, rng, 0.3f));
    weights[e] = {Matrix{io::DType::kF32, storage[3 * e].data(), inter, hidden},
                  Matrix{io::DType::kF32, storage[3 * e + 1].data(), inter, hidden},
                  Matrix{io::DType::kF32, storage[3 * e + 2].data(), hidden, inter}};
  }
  auto x = Random(tokens * hidden, rng);
  // Expert 3 gets no token at all: it must simply be skipped.
  std::vector<int32_t> ids = {0, 1, 1, 2, 2, 0, 0, 1, 1, 0, 2, 1, 0, 2, 1, 2, 0, 1};
  auto routing = Random(tokens * top_k, rng);
  std::vector<float> out(tokens * hidden, 0.5f);
  MoeForward(x.data(), tokens, hidden, ids.data(), routing.data(), top_k, weights, out.data());
  std::vector<double> want(tokens * hidden, 0.5);
  for (int t = 0; t < tokens; ++t) {
    std::vector<float> row(x.begin() + t * hidden, x.begin() + (t + 1) * hidden);
    for (int j = 0; j < top_k; ++j) {
      const int e = ids[t * top_k + j];
      auto gate = NaiveLinear(row, 1, storage[3 * e], inter, hidden, nullptr);
      auto up = NaiveLinear(row, 1, storage[3 * e + 1], inter, hidden, nullptr);
      std::vector<float> act(inter);
      for (int i = 0; i < inter; ++i) act[i] = static_cast<float>(gate[i] / (1 + std::exp(-gate[i])) * up[i]);
      auto down = NaiveLinear(act, 1, storage[3 * e + 2], hidden, inter, nullptr);
      for (int i = 0; i < hidden; ++i) want[t * hidden + i] += routing[t * top_k + j] * down[i];
    }
  }
  EXPECT_LT(MaxRelativeError(out, want), 1e-5);
}

// Paged attention against dense causal attention, with a scrambled block table, GQA, and a sliding window.
void CheckPagedAttention(io::DType dtype, int sliding_window, double tolerance) {
  std::mt19937 rng(6);
  const int heads = 4, kv_heads = 2, head_dim = 8, block_tokens = 4, total = 19, n_new = 5;
  const int kv_width = kv_heads * head_dim;
  auto q = Random(n_new * heads * head_dim, rng), k = Random(total * kv_width, rng),
       v = Random(total * kv_width, rng);
  std::vector<int32_t> table = {6, 2, 0, 5, 3};  // 5 blocks cover 19 tokens
  const int num_blocks = 8;
  const int64_t stride = block_tokens * kv_width;
  const size_t element = io::DTypeSize(dtype);
  std::vector<uint8_t> k_pool(num_blocks * stride * element), v_pool(k_pool.size());
  for (int p = 0; p < total; ++p) {
    const int64_t offset = table[p / block_tokens] * stride + (p % block_tokens) * kv_width;
    for (int i = 0; i < kv_width; ++i) {
      if (dtype == io::DType::kF32) {
        reinterpret_cast<float*>(k_pool.data())[offset + i] = k[p * kv_width + i];
        reinterpret_cast<float*>(v_pool.data())[offset + i] = v[p * kv_width + i];
      } else {
        reinterpret_cast<uint16_t*>(k_pool.data())[offset + i] = io::F32ToBF16(k[p * kv_width + i]);
        reinterpret_cast<uint16_t*>(v_pool.data())[offset + i] = io::F32ToBF16(v[p * kv_width + i]);
      }
    }
  }
  PagedKvView view{dtype,    k_pool.data(), v_pool.data(), stride, block_tokens,
                   kv_heads, head_dim,      table.data(),  total};
  std::vector<float> out(q.size());
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  PagedAttention(q.data(), n_new, heads, view, scale, sliding_window, out.data());

  std::vector<double> want(q.size(), 0.0);
  for (int i = 0; i < n_new; ++i) {
    const int position = total - n_new + i;
    for (int h = 0; h < heads; ++h) {
      const int g = h / (heads / kv_heads);
      std::vector<double> scores;
      std::vector<int> keys;
      for (int p = 0; p <= position; ++p) {
        if (sliding_window > 0 && position - p >= sliding_window) continue;
        double dot = 0;
        for (int d = 0; d < head_dim; ++d)
          dot += q[(i * heads + h) * head_dim + d] * k[p * kv_width + g * head_dim + d];
        scores.push_back(dot * scale);
        keys.push_back(p);
      }
      double max_score = *std::max_element(scores.begin(), scores.end()), sum = 0;
      for (double& s : scores) sum += s = std::exp(s - max_score);
      for (size_t j = 0; j < keys.size(); ++j) {
        for (int d = 0; d < head_dim; ++d) {
          want[(i * heads + h) * head_dim + d] += scores[j] / sum * v[keys[j] * kv_width + g * head_dim + d];
        }
      }
    }
  }
  EXPECT_LT(MaxRelativeError(out, want), tolerance);
}

TEST(CpuOps, PagedAttentionF32) { CheckPagedAttention(io::DType::kF32, 0, 1e-5); }
TEST(CpuOps, PagedAttentionSlidingWindow) { CheckPagedAttention(io::DType::kF32, 6, 1e-5); }
TEST(CpuOps, PagedAttentionBf16Cache) { CheckPagedAttention(io::DType::kBF16, 0, 2e-2); }

TEST(CpuOps, WorkersCoverEveryIndexOnce) {
  CpuWorkers workers(2);
  std::vector<int> hits(1000, 0);
  workers.ParallelFor(1000, 7, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) ++hits[i];
  });
  EXPECT_TRUE(std::all_of(hits.begin(), hits.end(), [](int h) { return h == 1; }));
  EXPECT_GE(PhysicalCoreCount(), 1);
}

}  // namespace
}  // namespace ringmoe::cpu
