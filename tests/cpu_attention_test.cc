// cpu::PagedAttention and PagedAttentionHeads, both kernels (portable and AVX-512), against a naive
// double-precision attention over the same K/V values, on fresh random data: f32 and bf16 caches, decode and
// prefill continuation chunks, GQA groups 1/2/8, several head sizes and block sizes, sliding windows, and
// contexts that end mid-block.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cpu/attention.h"
#include "cpu/attention_internal.h"
#include "cpu/cpu_features.h"
#include "cpu/fp8_blocks.h"
#include "io/dtype.h"

namespace ringmoe::cpu {
namespace {

using internal::AttentionKernel;

struct Case {
  io::DType dtype = io::DType::kF32;
  int heads = 4;
  int kv_heads = 2;
  int head_dim = 32;
  int block_tokens = 16;
  int total = 40;  // tokens in the cache, the new ones included
  int n_new = 1;
  int sliding_window = 0;
  float q_scale = 1.0f;  // larger: peakier softmax, so the running maximum moves between chunks

  std::string Name() const {
    return std::string(io::DTypeName(dtype)) + " heads=" + std::to_string(heads) + "/" +
           std::to_string(kv_heads) + " head_dim=" + std::to_string(head_dim) +
           " block=" + std::to_string(block_tokens) + " total=" + std::to_string(total) +
           " n_new=" + std::to_string(n_new) + " window=" + std::to_string(sliding_window);
  }
};

// A sequence's paged cache with its blocks scattered over a larger pool, and the K/V values it holds (bf16
// rounded when the cache is bf16, so the reference reads what the kernel reads).
struct Cache {
  std::vector<float> k, v;  // [total, kv_heads, head_dim]
  std::vector<uint8_t> k_pool, v_pool;
  std::vector<float> k_scales, v_scales;  // F8_E4M3: [pool blocks, block_tokens, kv_heads]
  std::vector<int32_t> table;
  PagedKvView view;
};

Cache MakeCache(const Case& c, std::mt19937& rng) {
  Cache cache;
  const int kv_width = c.kv_heads * c.head_dim;
  std::normal_distribution<float> normal(0.0f, 1.0f);
  cache.k.resize(static_cast<size_t>(c.total) * kv_width);
  cache.v.resize(cache.k.size());
  for (float& x : cache.k) x = normal(rng);
  for (float& x : cache.v) x = normal(rng);
  const int blocks = (c.total + c.block_tokens - 1) / c.block_tokens;
  const int pool_blocks = 2 * blocks + 3;
  std::vector<int32_t> ids(pool_blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  cache.table.assign(ids.begin(), ids.begin() + blocks);
  const int64_t stride = static_cast<int64_t>(c.block_tokens) * kv_width;
  const size_t element = io::DTypeSize(c.dtype);
  // Fill the pool with garbage first: the kernel must only read the sequence's own rows.
  cache.k_pool.assign(pool_blocks * stride * element, 0x7f);
  cache.v_pool.assign(cache.k_pool.size(), 0x7f);
  cache.k_scales.assign(static_cast<size_t>(pool_blocks) * c.block_tokens * c.kv_heads, NAN);
  cache.v_scales.assign(cache.k_scales.size(), NAN);
  for (int p = 0; p < c.total; ++p) {
    if (c.dtype == io::DType::kF8E4M3) {
      // The cache's own quantiser, one scale per (token, kv head); the reference reads the dequantised
      // values.
      const int64_t offset =
          cache.table[p / c.block_tokens] * stride + static_cast<int64_t>(p % c.block_tokens) * kv_width;
      for (int h = 0; h < c.kv_heads; ++h) {
        const int64_t at = offset + h * c.head_dim;
        const size_t row = static_cast<size_t>(p) * kv_width + h * c.head_dim;
        const float ks = QuantizeFp8Row(&cache.k[row], c.head_dim, cache.k_pool.data() + at);
        const float vs = QuantizeFp8Row(&cache.v[row], c.head_dim, cache.v_pool.data() + at);
        cache.k_scales[at / c.head_dim] = ks;
        cache.v_scales[at / c.head_dim] = vs;
        for (int d = 0; d < c.head_dim; ++d) {
          cache.k[row + d] = io::F8E4M3ToF32(cache.k_pool[at + d]) * ks;
          cache.v[row + d] = io::F8E4M3ToF32(cache.v_pool[at + d]) * vs;
        }
      }
      continue;
    }
    const int64_t offset =
        cache.table[p / c.block_tokens] * stride + static_cast<int64_t>(p % c.block_tokens) * kv_width;
    for (int i = 0; i < kv_width; ++i) {
      float& k = cache.k[static_cast<size_t>(p) * kv_width + i];
      float& v = cache.v[static_cast<size_t>(p) * kv_width + i];
      if (c.dtype == io::DType::kF32) {
        reinterpret_cast<float*>(cache.k_pool.data())[offset + i] = k;
        reinterpret_cast<float*>(cache.v_pool.data())[offset + i] = v;
      } else {
        const uint16_t kb = io::F32ToBF16(k), vb = io::F32ToBF16(v);
        reinterpret_cast<uint16_t*>(cache.k_pool.data())[offset + i] = kb;
        reinterpret_cast<uint16_t*>(cache.v_pool.data())[offset + i] = vb;
        k = io::BF16ToF32(kb);
        v = io::BF16ToF32(vb);
      }
    }
  }
  cache.view = PagedKvView{c.dtype,    cache.k_pool.data(), cache.v_pool.data(), stride, c.block_tokens,
                           c.kv_heads, c.head_dim,          cache.table.data(),  c.total};
  if (c.dtype == io::DType::kF8E4M3) {
    cache.view.k_scales = cache.k_scales.data();
    cache.view.v_scales = cache.v_scales.data();
  }
  return cache;
}

// Softmax attention written the obvious way, in double precision.
std::vector<double> NaiveAttention(const Case& c, const std::vector<float>& q, const Cache& cache,
                                   float scale) {
  const int group = c.heads / c.kv_heads, kv_width = c.kv_heads * c.head_dim;
  std::vector<double> out(q.size(), 0.0);
  for (int i = 0; i < c.n_new; ++i) {
    const int position = c.total - c.n_new + i;
    const int first = c.sliding_window > 0 ? std::max(0, position - c.sliding_window + 1) : 0;
    for (int h = 0; h < c.heads; ++h) {
      const int g = h / group;
      const float* qh = q.data() + (static_cast<size_t>(i) * c.heads + h) * c.head_dim;
      std::vector<double> scores;
      for (int p = first; p <= position; ++p) {
        const float* k = cache.k.data() + static_cast<size_t>(p) * kv_width + g * c.head_dim;
        double dot = 0;
        for (int d = 0; d < c.head_dim; ++d) dot += static_cast<double>(qh[d]) * k[d];
        scores.push_back(dot * scale);
      }
      const double max_score = *std::max_element(scores.begin(), scores.end());
      double sum = 0;
      for (double& s : scores) sum += s = std::exp(s - max_score);
      double* o = out.data() + (static_cast<size_t>(i) * c.heads + h) * c.head_dim;
      for (int p = first; p <= position; ++p) {
        const float* v = cache.v.data() + static_cast<size_t>(p) * kv_width + g * c.head_dim;
        for (int d = 0; d < c.head_dim; ++d) o[d] += scores[p - first] / sum * v[d];
      }
    }
  }
  return out;
}

// max |got - want| over max |want|, over the heads of kv heads [begin, end).
double RelativeError(const Case& c, const std::vector<float>& got, const std::vector<double>& want, int begin,
                     int end) {
  const int group = c.heads / c.kv_heads;
  double max_abs = 0, max_err = 0;
  for (int i = 0; i < c.n_new; ++i) {
    for (int h = begin * group; h < end * group; ++h) {
      for (int d = 0; d < c.head_dim; ++d) {
        const size_t index = (static_cast<size_t>(i) * c.heads + h) * c.head_dim + d;
        max_abs = std::max(max_abs, std::abs(want[index]));
        max_err = std::max(max_err, std::abs(got[index] - want[index]));
      }
    }
  }
  return max_err / std::max(max_abs, 1e-30);
}

// The kernels this machine may run: the portable one always, the AVX-512 one where KernelIsa() allows it (the
// CPU has it and RINGMOE_CPU_ISA does not withhold it).
std::vector<AttentionKernel> Kernels() {
  std::vector<AttentionKernel> kernels = {AttentionKernel::kPortable};
  if (KernelIsa() == CpuIsa::kAvx512) kernels.push_back(AttentionKernel::kAvx512);
  return kernels;
}

const char* KernelName(AttentionKernel kernel) {
  return kernel == AttentionKernel::kAvx512 ? "avx512" : "portable";
}

// Restores runtime dispatch when a test ends, whatever it forced.
class CpuAttention : public ::testing::Test {
 protected:
  void TearDown() override { internal::SetAttentionKernelForTesting(AttentionKernel::kAuto); }
};

constexpr double kTolerance = 1e-5;

void CheckCase(const Case& c, uint32_t seed) {
  std::mt19937 rng(seed);
  const Cache cache = MakeCache(c, rng);
  std::normal_distribution<float> normal(0.0f, c.q_scale);
  std::vector<float> q(static_cast<size_t>(c.n_new) * c.heads * c.head_dim);
  for (float& x : q) x = normal(rng);
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  const std::vector<double> want = NaiveAttention(c, q, cache, scale);
  for (AttentionKernel kernel : Kernels()) {
    SCOPED_TRACE(std::string(KernelName(kernel)) + " " + c.Name());
    internal::SetAttentionKernelForTesting(kernel);
    std::vector<float> out(q.size(), NAN);
    PagedAttention(q.data(), c.n_new, c.heads, cache.view, scale, c.sliding_window, out.data());
    EXPECT_LT(RelativeError(c, out, want, 0, c.kv_heads), kTolerance);
  }
}

TEST_F(CpuAttention, DispatchPicksAvx512WhereItCanRun) {
  const bool avx512 = KernelIsa() == CpuIsa::kAvx512;
  EXPECT_EQ(internal::SelectedAttentionKernel(128),
            avx512 ? AttentionKernel::kAvx512 : AttentionKernel::kPortable);
  EXPECT_EQ(internal::SelectedAttentionKernel(16),
            avx512 ? AttentionKernel::kAvx512 : AttentionKernel::kPortable);
  EXPECT_EQ(internal::SelectedAttentionKernel(40), AttentionKernel::kPortable);
  internal::SetAttentionKernelForTesting(AttentionKernel::kPortable);
  EXPECT_EQ(internal::SelectedAttentionKernel(128), AttentionKernel::kPortable);
  // Forcing AVX-512 never runs it where KernelIsa() withholds it.
  internal::SetAttentionKernelForTesting(AttentionKernel::kAvx512);
  EXPECT_EQ(internal::SelectedAttentionKernel(128),
            avx512 ? AttentionKernel::kAvx512 : AttentionKernel::kPortable);
  // By default a bf16 cache keeps the f32 kernel (the GPU path's decode attention must stay within the GPU
  // golden rule); an e4m3 cache takes the bf16-pair one where the CPU has it.
  internal::SetAttentionKernelForTesting(AttentionKernel::kAuto);
  EXPECT_EQ(internal::SelectedAttentionKernel(128, io::DType::kBF16),
            avx512 ? AttentionKernel::kAvx512 : AttentionKernel::kPortable);
  AttentionKernel for_e4m3 = avx512 ? AttentionKernel::kAvx512 : AttentionKernel::kPortable;
  if (avx512 && internal::CpuHasAvx512Bf16()) for_e4m3 = AttentionKernel::kAvx512Bf16;
  EXPECT_EQ(internal::SelectedAttentionKernel(128, io::DType::kF8E4M3), for_e4m3);
}

TEST_F(CpuAttention, DecodeOverHeadSizesGroupsAndBlocks) {
  uint32_t seed = 1;
  for (io::DType dtype : {io::DType::kF32, io::DType::kBF16}) {
    for (int head_dim : {16, 32, 48, 64, 128}) {
      for (auto [heads, kv_heads] : {std::pair{4, 4}, {4, 2}, {32, 4}}) {
        for (int block_tokens : {16, 5, 32}) {
          for (int total : {1, 16, 37, 250}) {
            CheckCase({dtype, heads, kv_heads, head_dim, block_tokens, total, 1, 0}, seed++);
          }
        }
      }
    }
  }
}

TEST_F(CpuAttention, HeadDimsNotAMultipleOf16) {
  uint32_t seed = 100;
  for (io::DType dtype : {io::DType::kF32, io::DType::kBF16}) {
    for (int head_dim : {8, 40, 100}) {
      CheckCase({dtype, 4, 2, head_dim, 16, 53, 1, 0}, seed++);
      CheckCase({dtype, 4, 2, head_dim, 7, 53, 20, 0}, seed++);
    }
  }
}

// Larger heads than the supported models use: several 32-dimension slabs per K row, and f32 rows past 1 KB.
TEST_F(CpuAttention, HeadDim256) {
  uint32_t seed = 150;
  for (io::DType dtype : {io::DType::kF32, io::DType::kBF16}) {
    CheckCase({dtype, 8, 2, 256, 16, 70, 1, 0}, seed++);
    CheckCase({dtype, 8, 2, 256, 16, 70, 33, 0}, seed++);
  }
}

TEST_F(CpuAttention, PrefillChunksAfterACachedPrefix) {
  uint32_t seed = 200;
  for (io::DType dtype : {io::DType::kF32, io::DType::kBF16}) {
    for (auto [heads, kv_heads] : {std::pair{4, 4}, {4, 2}, {32, 4}}) {
      for (int head_dim : {16, 64, 128}) {
        // From position 0, continuing a prefix that ends mid-block, and several tiles of rows (a tile holds
        // about 64 query vectors per kv head).
        for (auto [total, n_new] : {std::pair{29, 29}, {150, 37}, {211, 140}, {90, 2}}) {
          CheckCase({dtype, heads, kv_heads, head_dim, 16, total, n_new, 0}, seed++);
        }
      }
    }
  }
  CheckCase({io::DType::kBF16, 8, 1, 32, 3, 77, 77, 0}, seed++);
  CheckCase({io::DType::kF32, 16, 2, 32, 64, 300, 300, 0}, seed++);
}

TEST_F(CpuAttention, SlidingWindow) {
  uint32_t seed = 300;
  for (io::DType dtype : {io::DType::kF32, io::DType::kBF16}) {
    for (int window : {1, 6, 16, 41}) {
      for (auto [total, n_new] : {std::pair{120, 1}, {120, 50}, {33, 33}}) {
        CheckCase({dtype, 8, 2, 32, 16, total, n_new, window}, seed++);
        CheckCase({dtype, 32, 4, 128, 7, total, n_new, window}, seed++);
      }
    }
  }
}

TEST_F(CpuAttention, PeakySoftmaxMovesTheRunningMaximum) {
  uint32_t seed = 400;
  for (io::DType dtype : {io::DType::kF32, io::DType::kBF16}) {
    CheckCase({dtype, 32, 4, 128, 16, 700, 1, 0, 6.0f}, seed++);
    CheckCase({dtype, 8, 8, 64, 16, 180, 70, 0, 6.0f}, seed++);
  }
}

TEST_F(CpuAttention, HeadsComputesOnlyItsRange) {
  uint32_t seed = 500;
  for (const Case& c :
       {Case{io::DType::kBF16, 32, 4, 128, 16, 300, 1, 0}, Case{io::DType::kF32, 32, 4, 64, 16, 200, 90, 0},
        Case{io::DType::kBF16, 8, 4, 32, 5, 50, 9, 7}}) {
    std::mt19937 rng(seed++);
    const Cache cache = MakeCache(c, rng);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> q(static_cast<size_t>(c.n_new) * c.heads * c.head_dim);
    for (float& x : q) x = normal(rng);
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
    const std::vector<double> want = NaiveAttention(c, q, cache, scale);
    const int group = c.heads / c.kv_heads;
    for (AttentionKernel kernel : Kernels()) {
      internal::SetAttentionKernelForTesting(kernel);
      for (auto [begin, end] : {std::pair{0, 1}, {1, 3}, {c.kv_heads - 1, c.kv_heads}}) {
        SCOPED_TRACE(std::string(KernelName(kernel)) + " " + c.Name() + " kv heads " + std::to_string(begin) +
                     ".." + std::to_string(end));
        const float untouched = 12345.0f;
        std::vector<float> out(q.size(), untouched);
        PagedAttentionHeads(q.data(), c.n_new, c.heads, cache.view, scale, c.sliding_window, out.data(),
                            begin, end);
        EXPECT_LT(RelativeError(c, out, want, begin, end), kTolerance);
        size_t outside = 0, changed = 0;
        for (int i = 0; i < c.n_new; ++i) {
          for (int h = 0; h < c.heads; ++h) {
            if (h >= begin * group && h < end * group) continue;
            for (int d = 0; d < c.head_dim; ++d) {
              ++outside;
              changed += out[(static_cast<size_t>(i) * c.heads + h) * c.head_dim + d] != untouched;
            }
          }
        }
        EXPECT_GT(outside, 0u);
        EXPECT_EQ(changed, 0u);
      }
    }
  }
}

// Disjoint kv-head ranges of one chunk on two threads fill the whole output (per-thread scratch).
TEST_F(CpuAttention, HeadRangesOnTwoThreadsMakeTheWhole) {
  const Case c{io::DType::kBF16, 32, 4, 128, 16, 400, 130, 0};
  std::mt19937 rng(600);
  const Cache cache = MakeCache(c, rng);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> q(static_cast<size_t>(c.n_new) * c.heads * c.head_dim);
  for (float& x : q) x = normal(rng);
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  const std::vector<double> want = NaiveAttention(c, q, cache, scale);
  std::vector<float> out(q.size(), NAN);
  std::thread first(
      [&] { PagedAttentionHeads(q.data(), c.n_new, c.heads, cache.view, scale, 0, out.data(), 0, 1); });
  std::thread second(
      [&] { PagedAttentionHeads(q.data(), c.n_new, c.heads, cache.view, scale, 0, out.data(), 1, 4); });
  first.join();
  second.join();
  // Each head's answer does not depend on the range it ran in: the same as one call over all heads, to the
  // bit, and within the tolerance of the kernel that runs here (the bf16-pair one for an e4m3 cache where
  // the CPU has it).
  std::vector<float> whole(q.size(), NAN);
  PagedAttention(q.data(), c.n_new, c.heads, cache.view, scale, 0, whole.data());
  EXPECT_EQ(out, whole);
  const bool bf16_pairs =
      internal::SelectedAttentionKernel(c.head_dim, c.dtype) == AttentionKernel::kAvx512Bf16;
  EXPECT_LT(RelativeError(c, out, want, 0, c.kv_heads), bf16_pairs ? 1.5e-2 : kTolerance);
}

// An e4m3 cache with per-(token, head) scales: against the reference on the same dequantised values (so
// within the usual f32 tolerance), over head sizes, GQA groups, prefill chunks and windows; and against the
// exact (unquantised) values within FP8's accuracy.
TEST_F(CpuAttention, Fp8CacheMatchesItsDequantisedValues) {
  uint32_t seed = 500;
  for (int head_dim : {16, 40, 64, 128}) {
    for (auto [heads, kv_heads] : {std::pair{4, 4}, {8, 2}}) {
      for (auto [total, n_new, window] : {std::tuple{1, 1, 0}, {70, 1, 0}, {70, 23, 0}, {90, 30, 20}}) {
        Case c;
        c.dtype = io::DType::kF8E4M3;
        c.heads = heads;
        c.kv_heads = kv_heads;
        c.head_dim = head_dim;
        c.total = total;
        c.n_new = n_new;
        c.sliding_window = window;
        CheckCase(c, seed++);
      }
    }
  }
}

TEST_F(CpuAttention, Fp8CacheStaysCloseToTheExactValues) {
  Case c;
  c.dtype = io::DType::kF8E4M3;
  c.heads = 8;
  c.kv_heads = 2;
  c.head_dim = 128;
  c.total = 200;
  c.n_new = 1;
  std::mt19937 rng(9), exact_rng(9);
  const Cache cache = MakeCache(c, rng);
  Case exact_case = c;
  exact_case.dtype = io::DType::kF32;
  const Cache exact = MakeCache(exact_case, exact_rng);  // the same random values, unquantised
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> q(static_cast<size_t>(c.heads) * c.head_dim);
  for (float& x : q) x = normal(rng);
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  std::vector<float> out(q.size());
  PagedAttention(q.data(), 1, c.heads, cache.view, scale, 0, out.data());
  const double error = RelativeError(c, out, NaiveAttention(exact_case, q, exact, scale), 0, c.kv_heads);
  EXPECT_LT(error, 0.05);  // e4m3 keeps ~2.5% RMS per element; averaging over 200 tokens shrinks it
  EXPECT_GT(error, 1e-5);  // and the cache really is FP8
}

// The bf16-pair kernel (AVX512-BF16) rounds the queries and the probabilities to bf16, so it is held to a
// bf16 tolerance against the reference on the cache's own values; it must still track the f32 kernel's
// answer closely, over decodes and prefill tiles, GQA groups, block sizes, windows and both cache types.
TEST_F(CpuAttention, Bf16PairKernelWithinBf16Tolerance) {
  if (KernelIsa() != CpuIsa::kAvx512 || !internal::CpuHasAvx512Bf16()) {
    GTEST_SKIP() << "no AVX512-BF16 on this CPU (or RINGMOE_CPU_ISA withholds AVX-512)";
  }
  constexpr double kBf16Tolerance = 1.5e-2;  // q and p rounded to 8 significant bits
  double worst = 0;
  uint32_t seed = 700;
  for (io::DType dtype : {io::DType::kBF16, io::DType::kF8E4M3}) {
    for (int head_dim : {32, 64, 128, 256}) {
      for (auto [heads, kv_heads] : {std::pair{4, 4}, {8, 2}, {32, 4}}) {
        for (auto [block_tokens, total, n_new, window] : {std::tuple{16, 1, 1, 0},
                                                          {16, 37, 1, 0},
                                                          {5, 250, 1, 0},
                                                          {16, 70, 23, 0},
                                                          {7, 90, 30, 20},
                                                          {32, 300, 1, 100}}) {
          Case c{dtype, heads, kv_heads, head_dim, block_tokens, total, n_new, window};
          SCOPED_TRACE(c.Name());
          std::mt19937 rng(seed++);
          const Cache cache = MakeCache(c, rng);
          std::normal_distribution<float> normal(0.0f, c.q_scale);
          std::vector<float> q(static_cast<size_t>(c.n_new) * c.heads * c.head_dim);
          for (float& x : q) x = normal(rng);
          const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
          internal::SetAttentionKernelForTesting(AttentionKernel::kAvx512Bf16);
          ASSERT_EQ(internal::SelectedAttentionKernel(head_dim, dtype), AttentionKernel::kAvx512Bf16);
          std::vector<float> out(q.size(), NAN);
          PagedAttention(q.data(), c.n_new, c.heads, cache.view, scale, c.sliding_window, out.data());
          const double error = RelativeError(c, out, NaiveAttention(c, q, cache, scale), 0, c.kv_heads);
          EXPECT_LT(error, kBf16Tolerance);
          worst = std::max(worst, error);
        }
      }
    }
  }
  // Not the f32 kernel in disguise: the rounding shows.
  EXPECT_GT(worst, 1e-5);
  std::printf("[ bf16 pairs ] worst relative error %.3g (tolerance %.3g)\n", worst, kBf16Tolerance);
  // Where it cannot run, forcing it falls back to the AVX-512 kernel.
  internal::SetAttentionKernelForTesting(AttentionKernel::kAvx512Bf16);
  EXPECT_EQ(internal::SelectedAttentionKernel(128, io::DType::kF32), AttentionKernel::kAvx512);
  EXPECT_EQ(internal::SelectedAttentionKernel(48, io::DType::kBF16), AttentionKernel::kAvx512);
}

}  // namespace
}  // namespace ringmoe::cpu
