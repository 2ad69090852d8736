// CPU MLA decode attention speed (cpu/mla_attention.h) on one layer of a DeepSeek-V3-shaped cache: 128 query
// heads attending, in the absorbed form, over one bf16 row of 512 latent + 64 rope values per token (blocks
// of 16 tokens scattered over a pool). B sequences of context C, one decode query each, one task per sequence
// on the engine's thread pool. Prints KV GB/s (cached row bytes read over seconds) and GFLOP/s (2 x 128 x
// (576 + 512) per context token): absorbed MLA does ~240 FLOPs per cached byte, so on a CPU it is FLOP-bound,
// unlike GQA's paged attention (attention_bench), and the planner prices it by the probe's mla_gflops (the
// same kernel at the same shape).
//   build/bench/mla_bench [--batch 64] [--context 640] [--seconds 1] [--threads N] [--json FILE]
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <vector>

#include "cpu/mla_attention.h"
#include "cpu/thread_pool.h"
#include "io/dtype.h"

namespace {

constexpr int kHeads = 128, kLatent = 512, kRope = 64, kRow = kLatent + kRope, kBlockTokens = 16;

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"CPU MLA (absorbed) decode attention on a DeepSeek-V3-shaped bf16 latent cache"};
  int batch = 64, context = 640, threads = 0;
  double seconds = 1.0;
  std::string json_path;
  app.add_option("--batch", batch, "Sequences, one decode query each")->check(CLI::Range(1, 1 << 16));
  app.add_option("--context", context, "Cached tokens per sequence")->check(CLI::Range(1, 1 << 20));
  app.add_option("--seconds", seconds, "Minimum measuring time")->check(CLI::Range(0.01, 600.0));
  app.add_option("--threads", threads, "Worker threads (0: every core)");
  app.add_option("--json", json_path, "Also write the figures here");
  std::string matmuls = "auto";
  app.add_option(
         "--matmuls", matmuls,
         "f32 (the tile widened), split (bf16 tile, each f32 operand as two bf16 terms) or auto (split "
         "where oneDNN has AMX)")
      ->check(CLI::IsMember({"auto", "f32", "split"}))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  using ringmoe::cpu::internal::MlaMatmuls;
  ringmoe::cpu::internal::SetMlaMatmulsForTesting(matmuls == "f32"     ? MlaMatmuls::kF32
                                                  : matmuls == "split" ? MlaMatmuls::kSplitBf16
                                                                       : MlaMatmuls::kAuto);
  const bool split = matmuls == "split" || (matmuls == "auto" && ringmoe::cpu::MlaSplitBf16Matmuls());

  const int blocks_per_sequence = (context + kBlockTokens - 1) / kBlockTokens;
  const int64_t num_blocks = int64_t{batch} * blocks_per_sequence;
  std::vector<uint16_t> pool(static_cast<size_t>(num_blocks) * kBlockTokens * kRow);
  std::mt19937 random(1);
  std::normal_distribution<float> normal;
  for (uint16_t& v : pool) v = ringmoe::io::F32ToBF16(normal(random));
  std::vector<int32_t> block_ids(num_blocks);
  std::iota(block_ids.begin(), block_ids.end(), 0);
  std::shuffle(block_ids.begin(), block_ids.end(), random);  // scattered, as a long-running cache is
  std::vector<float> q(static_cast<size_t>(batch) * kHeads * kRow),
      out(static_cast<size_t>(batch) * kHeads * kLatent);
  for (float& v : q) v = 0.05f * normal(random);

  ringmoe::cpu::CpuWorkers workers(threads);
  auto pass = [&] {
    workers.ParallelFor(batch, 1, [&](int64_t begin, int64_t end) {
      for (int64_t s = begin; s < end; ++s) {
        ringmoe::cpu::PagedKvView view;
        view.dtype = ringmoe::io::DType::kBF16;
        view.k_pool = pool.data();
        view.block_stride = int64_t{kBlockTokens} * kRow;
        view.block_tokens = kBlockTokens;
        view.kv_heads = 1;
        view.head_dim = kRow;
        view.block_ids = block_ids.data() + s * blocks_per_sequence;
        view.num_tokens = context;
        ringmoe::cpu::PagedMlaAttention(q.data() + s * kHeads * kRow, 1, kHeads, 0, kHeads, view, kLatent,
                                        0.135f, out.data() + s * kHeads * kLatent);
      }
    });
  };
  pass();  // warm-up
  int passes = 0;
  const auto start = std::chrono::steady_clock::now();
  double elapsed = 0;
  while (elapsed < seconds) {
    pass();
    ++passes;
    elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  const double per_pass = elapsed / passes;
  const double bytes = double(batch) * context * kRow * 2;
  const double flops = double(batch) * context * kHeads * 2.0 * (kRow + kLatent);
  const int used_threads = workers.threads();
  fmt::print(
      "MLA decode, {} sequences x {} tokens, {} heads, rows of {} bf16, {} threads, {} matmuls: {:.3f} ms a "
      "pass\n",
      batch, context, kHeads, kRow, used_threads, split ? "split-bf16" : "f32", per_pass * 1e3);
  fmt::print("  KV {:.2f} GB/s ({:.3f} per thread), {:.1f} GFLOP/s ({:.2f} per thread)\n",
             bytes / per_pass / 1e9, bytes / per_pass / 1e9 / used_threads, flops / per_pass / 1e9,
             flops / per_pass / 1e9 / used_threads);
  if (!json_path.empty()) {
    nlohmann::json result = {{"batch", batch},
                             {"context", context},
                             {"heads", kHeads},
                             {"row_values", kRow},
                             {"threads", used_threads},
                             {"matmuls", split ? "split_bf16" : "f32"},
                             {"seconds_per_pass", per_pass},
                             {"kv_gbps", bytes / per_pass / 1e9},
                             {"gflops", flops / per_pass / 1e9}};
    std::ofstream(json_path) << result.dump(2) << "\n";
  }
  return 0;
}
