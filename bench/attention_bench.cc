// CPU paged attention speed on one layer of a Qwen3-30B-A3B-shaped bf16 KV cache (32 query heads, 4 kv heads,
// head_dim 128, blocks of 16 tokens scattered over a pool): decode for B sequences of context C, one task per
// sequence on the engine's thread pool as the engine runs it, and a prefill case (8 sequences of 512 new
// tokens from position 0). Prints KV GB/s (K and V bytes read over seconds), GFLOP/s and per-core figures for
// the AVX-512 kernel, the portable one and the kernel this replaced ("baseline"); the decode target is >= 4
// GB/s of KV per core. --kv-dtype fp8 measures the e4m3 cache (a scale per token and head) instead; its KV
// GB/s count the bytes the fp8 cache holds (1 per element plus the scales), so compare GFLOP/s (the same
// work) or seconds with a bf16 run.
//   build/bench/attention_bench [--batch 256] [--context 640] [--seconds 1] [--threads N] [--kernel NAME]
//                               [--kv-dtype bf16|fp8] [--json FILE]
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "cpu/activation.h"
#include "cpu/attention.h"
#include "cpu/attention_internal.h"
#include "cpu/cpu_features.h"
#include "cpu/fp8_blocks.h"
#include "cpu/thread_pool.h"
#include "io/dtype.h"

namespace {

using ringmoe::cpu::PagedKvView;
using Clock = std::chrono::steady_clock;

constexpr int kHeads = 32, kKvHeads = 4, kHeadDim = 128, kBlockTokens = 16;

// The kernel cpu/attention.cc had before the flash-decoding rewrite: a scores vector of the whole context per
// head, softmax over it, then the weighted V sum with the output rows in memory. Kept only to compare
// against.
void BaselineAttention(const float* q, int n_new, int heads, const PagedKvView& kv, float scale, float* out) {
  const int head_dim = kv.head_dim, group = heads / kv.kv_heads;
  const uint16_t* k_pool = static_cast<const uint16_t*>(kv.k_pool);
  const uint16_t* v_pool = static_cast<const uint16_t*>(kv.v_pool);
  const auto widen = [](uint16_t bf16) { return ringmoe::io::BF16ToF32(bf16); };
  const auto row = [&](const uint16_t* pool, int position, int kv_head) {
    const int64_t block = kv.block_ids[position / kv.block_tokens];
    return pool + block * kv.block_stride +
           (static_cast<int64_t>(position % kv.block_tokens) * kv.kv_heads + kv_head) * head_dim;
  };
  std::vector<float> scores(static_cast<size_t>(group) * kv.num_tokens);
  for (int i = 0; i < n_new; ++i) {
    const int span = kv.num_tokens - n_new + i + 1;
    for (int g = 0; g < kv.kv_heads; ++g) {
      const float* q_group = q + (static_cast<int64_t>(i) * heads + g * group) * head_dim;
      for (int j = 0; j < span; ++j) {
        const uint16_t* k_row = row(k_pool, j, g);
        for (int h = 0; h < group; ++h) {
          const float* q_row = q_group + static_cast<int64_t>(h) * head_dim;
          float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
          for (int d = 0; d < head_dim; ++d) dot += q_row[d] * widen(k_row[d]);
          scores[static_cast<size_t>(h) * span + j] = dot * scale;
        }
      }
      float* out_group = out + (static_cast<int64_t>(i) * heads + g * group) * head_dim;
      for (int h = 0; h < group; ++h) {
        float* s = scores.data() + static_cast<size_t>(h) * span;
        const float max_score = *std::max_element(s, s + span);
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < span; ++j) {
          s[j] = ringmoe::cpu::ExpNonPositive(s[j] - max_score);
          sum += s[j];
        }
        for (int j = 0; j < span; ++j) s[j] /= sum;
        std::fill_n(out_group + static_cast<int64_t>(h) * head_dim, head_dim, 0.0f);
      }
      for (int j = 0; j < span; ++j) {
        const uint16_t* v_row = row(v_pool, j, g);
        for (int h = 0; h < group; ++h) {
          const float p = scores[static_cast<size_t>(h) * span + j];
          float* o = out_group + static_cast<int64_t>(h) * head_dim;
#pragma omp simd
          for (int d = 0; d < head_dim; ++d) o[d] += p * widen(v_row[d]);
        }
      }
    }
  }
}

// One layer's KV pool holding `sequences` sequences of `tokens` tokens, their blocks shuffled over the pool.
struct Workload {
  int sequences = 0;
  int tokens = 0;  // cached tokens per sequence, the new ones included
  int n_new = 0;
  bool fp8 = false;
  std::vector<uint16_t> k_pool, v_pool;
  std::vector<uint8_t> k_fp8, v_fp8;      // --kv-dtype fp8: the same values as e4m3 rows
  std::vector<float> k_scales, v_scales;  // one per (token, kv head) row
  std::vector<std::vector<int32_t>> tables;
  std::vector<float> q, out;

  Workload(int sequences_, int tokens_, int n_new_, uint32_t seed, bool fp8_ = false)
      : sequences(sequences_), tokens(tokens_), n_new(n_new_), fp8(fp8_) {
    const int blocks_per_sequence = (tokens + kBlockTokens - 1) / kBlockTokens;
    const int64_t blocks = static_cast<int64_t>(sequences) * blocks_per_sequence;
    std::vector<int32_t> ids(blocks);
    std::iota(ids.begin(), ids.end(), 0);
    std::mt19937 rng(seed);
    std::shuffle(ids.begin(), ids.end(), rng);
    tables.resize(sequences);
    for (int s = 0; s < sequences; ++s) {
      tables[s].assign(ids.begin() + static_cast<int64_t>(s) * blocks_per_sequence,
                       ids.begin() + static_cast<int64_t>(s + 1) * blocks_per_sequence);
    }
    // Random values in [-1, 1) in bf16, from a cheap generator (hundreds of MB to fill).
    const int64_t elements = blocks * block_stride();
    k_pool.resize(elements);
    v_pool.resize(elements);
    uint64_t state = seed * 0x9E3779B97F4A7C15ULL + 1;
    const auto next = [&state] {
      state ^= state << 13, state ^= state >> 7, state ^= state << 17;
      return static_cast<float>(static_cast<int64_t>(state >> 40) - (1 << 23)) / (1 << 23);
    };
    for (int64_t i = 0; i < elements; ++i) k_pool[i] = ringmoe::io::F32ToBF16(next());
    for (int64_t i = 0; i < elements; ++i) v_pool[i] = ringmoe::io::F32ToBF16(next());
    if (fp8) {
      k_fp8.resize(elements);
      v_fp8.resize(elements);
      k_scales.resize(elements / kHeadDim);
      v_scales.resize(elements / kHeadDim);
      std::vector<float> row(kHeadDim);
      for (int64_t r = 0; r < elements / kHeadDim; ++r) {
        for (int d = 0; d < kHeadDim; ++d) row[d] = ringmoe::io::BF16ToF32(k_pool[r * kHeadDim + d]);
        k_scales[r] = ringmoe::cpu::QuantizeFp8Row(row.data(), kHeadDim, &k_fp8[r * kHeadDim]);
        for (int d = 0; d < kHeadDim; ++d) row[d] = ringmoe::io::BF16ToF32(v_pool[r * kHeadDim + d]);
        v_scales[r] = ringmoe::cpu::QuantizeFp8Row(row.data(), kHeadDim, &v_fp8[r * kHeadDim]);
      }
      k_pool = {};
      v_pool = {};
    }
    q.resize(static_cast<size_t>(sequences) * n_new * kHeads * kHeadDim);
    for (float& x : q) x = 2.0f * next();
    out.assign(q.size(), 0.0f);
  }

  static int64_t block_stride() { return static_cast<int64_t>(kBlockTokens) * kKvHeads * kHeadDim; }
  PagedKvView view(int s) const {
    if (fp8) {
      PagedKvView view{ringmoe::io::DType::kF8E4M3,
                       k_fp8.data(),
                       v_fp8.data(),
                       block_stride(),
                       kBlockTokens,
                       kKvHeads,
                       kHeadDim,
                       tables[s].data(),
                       tokens};
      view.k_scales = k_scales.data();
      view.v_scales = v_scales.data();
      return view;
    }
    return PagedKvView{ringmoe::io::DType::kBF16,
                       k_pool.data(),
                       v_pool.data(),
                       block_stride(),
                       kBlockTokens,
                       kKvHeads,
                       kHeadDim,
                       tables[s].data(),
                       tokens};
  }
  const float* q_of(int s) const { return q.data() + static_cast<size_t>(s) * n_new * kHeads * kHeadDim; }
  float* out_of(int s) { return out.data() + static_cast<size_t>(s) * n_new * kHeads * kHeadDim; }
  // K and V bytes each query row reads; flops of q.k and p.v over the causal span.
  double kv_bytes() const {
    double rows = 0;
    for (int i = 0; i < n_new; ++i) rows += tokens - n_new + i + 1;
    const double row_bytes = fp8 ? kHeadDim + sizeof(float) : kHeadDim * sizeof(uint16_t);
    return sequences * rows * kKvHeads * row_bytes * 2.0;
  }
  double flops() const {
    double rows = 0;
    for (int i = 0; i < n_new; ++i) rows += tokens - n_new + i + 1;
    return sequences * rows * kHeads * 4.0 * kHeadDim;
  }
};

// CPU time of the whole process: on a shared, busy machine it shows the work done apart from time spent
// descheduled (idle pool threads that spin count too, so it errs low).
double ProcessCpuSeconds() {
  timespec now;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
  return now.tv_sec + now.tv_nsec * 1e-9;
}

struct Figures {
  double seconds = 0;  // per pass over the workload
  double kv_gb_per_s = 0, gflop_per_s = 0, per_core_kv_gb_per_s = 0, per_core_gflop_per_s = 0;
  double kv_gb_per_cpu_s = 0, gflop_per_cpu_s = 0;  // over CPU seconds instead of wall seconds x threads
};

// Mean time of passes (one task per sequence) after a warm-up pass, over at least min_seconds and 3 passes.
Figures Measure(Workload& work, ringmoe::cpu::CpuWorkers& workers, double min_seconds,
                const std::function<void(Workload&, int)>& attend) {
  const auto pass = [&] {
    workers.ParallelFor(work.sequences, 1, [&](int64_t begin, int64_t end) {
      for (int64_t s = begin; s < end; ++s) attend(work, static_cast<int>(s));
    });
  };
  pass();
  int passes = 0;
  const auto start = Clock::now();
  const double cpu_start = ProcessCpuSeconds();
  double elapsed = 0;
  while (passes < 3 || elapsed < min_seconds) {
    pass();
    ++passes;
    elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  }
  Figures f;
  f.seconds = elapsed / passes;
  f.kv_gb_per_s = work.kv_bytes() / f.seconds / 1e9;
  f.gflop_per_s = work.flops() / f.seconds / 1e9;
  f.per_core_kv_gb_per_s = f.kv_gb_per_s / workers.threads();
  f.per_core_gflop_per_s = f.gflop_per_s / workers.threads();
  const double cpu_seconds = (ProcessCpuSeconds() - cpu_start) / passes;
  f.kv_gb_per_cpu_s = work.kv_bytes() / cpu_seconds / 1e9;
  f.gflop_per_cpu_s = work.flops() / cpu_seconds / 1e9;
  return f;
}

nlohmann::json ToJson(const Figures& f) {
  return {{"seconds_per_pass", f.seconds},
          {"kv_GB_per_s", f.kv_gb_per_s},
          {"GFLOP_per_s", f.gflop_per_s},
          {"per_core_kv_GB_per_s", f.per_core_kv_gb_per_s},
          {"per_core_GFLOP_per_s", f.per_core_gflop_per_s},
          {"kv_GB_per_cpu_second", f.kv_gb_per_cpu_s},
          {"GFLOP_per_cpu_second", f.gflop_per_cpu_s}};
}

}  // namespace

int main(int argc, char** argv) {
  namespace internal = ringmoe::cpu::internal;
  CLI::App app{"CPU paged attention throughput (Qwen3-30B-A3B layer shape, bf16 KV cache)."};
  int batch = 256, context = 640, threads = 0, prefill_rows = 512, prefill_sequences = 8;
  double min_seconds = 1.0;
  std::string only_kernel, json_path, kv_dtype = "bf16";
  app.add_option("--batch", batch, "decoding sequences");
  app.add_option("--context", context, "tokens in each decoding sequence's cache (the new one included)");
  app.add_option("--prefill-rows", prefill_rows, "new tokens per prefill sequence, from position 0");
  app.add_option("--prefill-sequences", prefill_sequences, "prefill sequences");
  app.add_option("--seconds", min_seconds, "minimum time per measurement");
  app.add_option("--threads", threads, "worker threads (default: every core)");
  app.add_option("--kernel", only_kernel,
                 "measure only this kernel: avx512, avx512bf16 (bf16 pairs), portable or baseline");
  app.add_option("--kv-dtype", kv_dtype,
                 "the cache's type: bf16, or fp8 (e4m3 with a scale per token and head)")
      ->check(CLI::IsMember({"bf16", "fp8"}));
  app.add_option("--json", json_path, "write the figures as JSON");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error);
  }
  ringmoe::cpu::CpuWorkers workers(threads);
  const float scale = 1.0f / std::sqrt(static_cast<float>(kHeadDim));
  const bool fp8 = kv_dtype == "fp8";
  Workload decode(batch, context, 1, 1, fp8), prefill(prefill_sequences, prefill_rows, prefill_rows, 2, fp8);
  fmt::print("{} threads; {} heads, {} kv heads, head_dim {}, {} blocks of {} tokens\n", workers.threads(),
             kHeads, kKvHeads, kHeadDim, kv_dtype, kBlockTokens);
  fmt::print("decode: {} sequences x {} tokens ({:.0f} MB of K+V); prefill: {} sequences x {} new tokens\n",
             batch, context, decode.kv_bytes() / 1e6, prefill_sequences, prefill_rows);

  struct Kernel {
    const char* name;
    std::function<void(Workload&, int)> attend;
  };
  const auto current = [scale](Workload& w, int s) {
    ringmoe::cpu::PagedAttention(w.q_of(s), w.n_new, kHeads, w.view(s), scale, 0, w.out_of(s));
  };
  std::vector<std::pair<internal::AttentionKernel, Kernel>> kernels;
  const auto wanted = [&](const char* name) { return only_kernel.empty() || only_kernel == name; };
  if (ringmoe::cpu::KernelIsa() == ringmoe::cpu::CpuIsa::kAvx512 && wanted("avx512")) {
    kernels.push_back({internal::AttentionKernel::kAvx512, {"avx512", current}});
  }
  if (ringmoe::cpu::KernelIsa() == ringmoe::cpu::CpuIsa::kAvx512 && internal::CpuHasAvx512Bf16() &&
      wanted("avx512bf16")) {
    kernels.push_back({internal::AttentionKernel::kAvx512Bf16, {"avx512bf16", current}});
  }
  if (wanted("portable")) kernels.push_back({internal::AttentionKernel::kPortable, {"portable", current}});
  if (wanted("baseline") && !fp8) {  // the old kernel reads bf16 only
    const auto baseline = [scale](Workload& w, int s) {
      BaselineAttention(w.q_of(s), w.n_new, kHeads, w.view(s), scale, w.out_of(s));
    };
    kernels.push_back({internal::AttentionKernel::kAuto, {"baseline", baseline}});
  }

  nlohmann::json out = {{"threads", workers.threads()},
                        {"shape",
                         {{"heads", kHeads},
                          {"kv_heads", kKvHeads},
                          {"head_dim", kHeadDim},
                          {"block_tokens", kBlockTokens},
                          {"dtype", kv_dtype}}},
                        {"decode", {{"sequences", batch}, {"context", context}}},
                        {"prefill", {{"sequences", prefill_sequences}, {"new_tokens", prefill_rows}}},
                        {"decode_target_per_core_kv_GB_per_s", 4.0}};
  fmt::print("{:<10} {:>8} {:>9} {:>13} {:>12} {:>9} {:>13} {:>12}\n", "kernel", "case", "KV GB/s",
             "KV GB/s/core", "per CPU s", "GFLOP/s", "GFLOP/s/core", "per CPU s");
  for (auto& [selector, kernel] : kernels) {
    internal::SetAttentionKernelForTesting(selector);
    for (auto [name, work] : {std::pair{"decode", &decode}, {"prefill", &prefill}}) {
      const Figures f = Measure(*work, workers, min_seconds, kernel.attend);
      fmt::print("{:<10} {:>8} {:>9.2f} {:>13.2f} {:>12.2f} {:>9.1f} {:>13.1f} {:>12.1f}\n", kernel.name,
                 name, f.kv_gb_per_s, f.per_core_kv_gb_per_s, f.kv_gb_per_cpu_s, f.gflop_per_s,
                 f.per_core_gflop_per_s, f.gflop_per_cpu_s);
      out[name][kernel.name] = ToJson(f);
    }
  }
  internal::SetAttentionKernelForTesting(internal::AttentionKernel::kAuto);
  fmt::print("(decode target: >= 4 KV GB/s per core; prefill KV GB/s counts each row's causal span)\n");
  if (!json_path.empty()) std::ofstream(json_path) << out.dump(2) << "\n";
  return 0;
}
