// MLA's fresh-prompt attention as the GPU path composes it (GpuStepOps::EnqueueMlaPrefill: the expanded form
// with kv_b applied, K = [k_nope ; shared rope key], V padded to qk_head_dim, then the first v_head_dim of
// each head), replayed on the CPU with the very block copies the GPU queues
// (runtime/engine/mla_prefill_layout.h) and the CPU twins of its kernels, against the CPU's absorbed MLA
// (MlaAttentionOnCpu) on the golden DeepSeek checkpoints' first layer in f32. No GPU needed: this checks the
// composition; gpu_mla_ops_test checks the kernels against the same twins.
#include "runtime/engine/mla_prefill_layout.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "cpu/cpu_ops.h"
#include "io/checkpoint.h"
#include "io/model_spec.h"
#include "runtime/engine/forward.h"
#include "runtime/engine/kv_cache.h"
#include "runtime/engine/mla_step.h"
#include "runtime/engine/model_weights.h"

namespace ringmoe {
namespace {

// gpu::CopyBlocks' semantics on the host.
void CopyBlocksOnHost(const float* src, float* dst, const gpu::BlockCopy& copy) {
  for (int r = 0; r < copy.rows; ++r) {
    for (int g = 0; g < copy.groups; ++g) {
      for (int i = 0; i < copy.width; ++i) {
        dst[r * copy.dst_row_stride + g * copy.dst_group_stride + i] =
            src[r * copy.src_row_stride + g * copy.src_group_stride + i];
      }
    }
  }
}

class MlaPrefillLayoutTest : public testing::TestWithParam<const char*> {};

TEST_P(MlaPrefillLayoutTest, ExpandedFormOfTheGpuMatchesTheAbsorbedCpuForm) {
  const std::string dir = std::string(RINGMOE_SOURCE_DIR) + "/tests/data/golden_deepseek/" + GetParam();
  absl::StatusOr<ModelSpec> spec = LoadModelSpec(dir);
  ASSERT_TRUE(spec.ok()) << spec.status();
  absl::StatusOr<std::unique_ptr<io::Checkpoint>> checkpoint = io::Checkpoint::Open(dir);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  absl::StatusOr<std::unique_ptr<ModelWeights>> weights =
      ModelWeights::Load(*spec, std::move(*checkpoint), io::DType::kF32);
  ASSERT_TRUE(weights.ok()) << weights.status();
  const AttentionWeights& w = (*weights)->layer(0).attention;
  const MlaSpec& mla = spec->mla;
  const int heads = spec->num_heads, qk = mla.qk_head_dim(), nope = mla.qk_nope_head_dim;
  const int latent = mla.kv_lora_rank, rope_dim = mla.qk_rope_head_dim, row = mla.cache_width();
  const int qw = spec->q_width(), aw = spec->attention_out_width(), hidden = spec->hidden_size;
  const cpu::RotaryEmbedding rope = MlaRotary(*spec);
  cpu::CpuWorkers workers(2);

  // Two fresh prompts of 13 and 6 tokens, as one micro-batch's fresh rows (attention within each).
  const std::vector<int> prompts = {13, 6};
  int rows = 0;
  for (int count : prompts) rows += count;
  std::mt19937 random(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(rows) * hidden);
  for (float& value : x) value = normal(random);

  // The CPU's absorbed form, each prompt through the cache.
  KvCache cache(*spec, io::DType::kF32, 4, 64);
  std::vector<std::vector<int32_t>> tables(prompts.size());
  std::vector<StepChunk> chunks;
  for (size_t c = 0; c < prompts.size(); ++c) {
    ASSERT_TRUE(cache.Reserve(prompts[c], &tables[c]));
    StepChunk chunk;
    chunk.count = prompts[c];
    chunk.block_table = &tables[c];
    chunks.push_back(chunk);
  }
  std::vector<float> want(static_cast<size_t>(rows) * aw);
  MlaScratch scratch;
  MlaAttentionOnCpu(*spec, w, rope, 0, chunks, x.data(), rows, want.data(), cache, workers, scratch);

  // The GPU's composition on the host: projections, then the layout's copies around each kernel's twin.
  std::vector<float> q(static_cast<size_t>(rows) * qw), kv(static_cast<size_t>(rows) * row);
  if (mla.q_lora_rank > 0) {
    std::vector<float> q_lora(static_cast<size_t>(rows) * mla.q_lora_rank);
    cpu::Linear(x.data(), rows, w.q_a, nullptr, q_lora.data());
    cpu::RmsNorm(q_lora.data(), w.q_a_norm.data(), rows, mla.q_lora_rank, kMlaLatentNormEps, q_lora.data());
    cpu::Linear(q_lora.data(), rows, w.q_b, nullptr, q.data());
  } else {
    cpu::Linear(x.data(), rows, w.q, nullptr, q.data());
  }
  cpu::Linear(x.data(), rows, w.kv_a, nullptr, kv.data());
  const MlaPrefillCopies copies = MlaPrefillLayout(*spec, rows);
  std::vector<float> latents(static_cast<size_t>(rows) * latent),
      rope_keys(static_cast<size_t>(rows) * rope_dim);
  CopyBlocksOnHost(kv.data(), latents.data(), copies.latents);
  CopyBlocksOnHost(kv.data() + latent, rope_keys.data(), copies.rope_keys);
  cpu::RmsNorm(latents.data(), w.kv_a_norm.data(), rows, latent, kMlaLatentNormEps, latents.data());
  std::vector<float> kv_b_out(static_cast<size_t>(rows) * w.kv_b.rows);
  cpu::Linear(latents.data(), rows, w.kv_b, nullptr, kv_b_out.data());
  std::vector<int32_t> positions;
  for (int count : prompts) {
    for (int p = 0; p < count; ++p) positions.push_back(p);
  }
  cpu::ApplyRotary(rope, rope_keys.data(), rows, 1, rope_dim, 0, positions.data());
  cpu::ApplyRotary(rope, q.data() + nope, rows, heads, qw, qk, positions.data());
  std::vector<float> k(static_cast<size_t>(rows) * qw, 0.0f), v(static_cast<size_t>(rows) * qw, 0.0f);
  CopyBlocksOnHost(kv_b_out.data(), k.data(), copies.k_nope);
  CopyBlocksOnHost(rope_keys.data(), k.data() + nope, copies.k_rope);
  CopyBlocksOnHost(kv_b_out.data() + nope, v.data(), copies.v);
  // gpu::PrefillAttention's twin: causal softmax attention within each prompt, one head size for q, k, v.
  std::vector<float> padded(static_cast<size_t>(rows) * qw, 0.0f);
  const float scale = spec->softmax_scale();
  for (int c = 0, first = 0; c < static_cast<int>(prompts.size()); first += prompts[c], ++c) {
    for (int t = first; t < first + prompts[c]; ++t) {
      for (int h = 0; h < heads; ++h) {
        std::vector<double> scores;
        double most = -1e300;
        for (int s = first; s <= t; ++s) {
          double dot = 0;
          for (int i = 0; i < qk; ++i)
            dot += double{q[(t * heads + h) * qk + i]} * k[(s * heads + h) * qk + i];
          scores.push_back(dot * scale);
          most = std::max(most, scores.back());
        }
        double sum = 0;
        for (double& score : scores) sum += score = std::exp(score - most);
        for (int s = first; s <= t; ++s) {
          for (int i = 0; i < qk; ++i) {
            padded[(t * heads + h) * qk + i] +=
                static_cast<float>(scores[s - first] / sum * v[(s * heads + h) * qk + i]);
          }
        }
      }
    }
  }
  std::vector<float> got(static_cast<size_t>(rows) * aw, -1.0f);
  CopyBlocksOnHost(padded.data(), got.data(), copies.out);

  double diff = 0, norm = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    diff += (double{got[i]} - want[i]) * (double{got[i]} - want[i]);
    norm += double{want[i]} * want[i];
  }
  EXPECT_GT(norm, 0);
  EXPECT_LT(std::sqrt(diff / norm), 1e-5);
  // V's padding stays out of the outputs: the padded heads' tails are zero, and every output was written.
  for (int t = 0; t < rows; ++t) {
    for (int h = 0; h < heads; ++h) {
      for (int i = mla.v_head_dim; i < qk; ++i) EXPECT_EQ(padded[(t * heads + h) * qk + i], 0.0f);
    }
  }
  EXPECT_EQ(std::count(got.begin(), got.end(), -1.0f), 0);
}

INSTANTIATE_TEST_SUITE_P(GoldenCheckpoints, MlaPrefillLayoutTest,
                         testing::Values("deepseek_v3", "deepseek_v3_no_qlora", "deepseek_v2"),
                         [](const testing::TestParamInfo<const char*>& info) { return info.param; });

}  // namespace
}  // namespace ringmoe
