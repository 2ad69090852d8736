// KvCache in F8_E4M3 (--kv-dtype fp8): what Write stores reads back through View as e4m3 * scale, one scale
// per (token, kv head) at the view's documented place, within FP8's accuracy of the f32 rows written; and its
// byte count is the planner's.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "io/dtype.h"
#include "planner/execution_plan.h"
#include "runtime/engine/kv_cache.h"

namespace ringmoe {
namespace {

ModelSpec SmallSpec() {
  ModelSpec spec;
  spec.num_layers = 3;
  spec.num_heads = 4;
  spec.num_kv_heads = 2;
  spec.head_dim = 24;
  return spec;
}

TEST(KvCacheFp8, WriteThenViewGivesTheRowsWithinHalfAnE4M3Step) {
  const ModelSpec spec = SmallSpec();
  const int kv_width = spec.kv_width(), block_tokens = 4, tokens = 11;
  KvCache cache(spec, io::DType::kF8E4M3, block_tokens, 16);
  EXPECT_EQ(cache.bytes_per_token(), planner::KvBytesPerToken(spec, io::DType::kF8E4M3));
  EXPECT_EQ(cache.bytes_per_token(), 2 * 3 * (48 + 2 * 4));
  std::vector<int32_t> filler, table;
  ASSERT_TRUE(cache.Reserve(5, &filler));  // so that the table's blocks are not the first ones
  ASSERT_TRUE(cache.Reserve(tokens, &table));
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  // Rows with very different magnitudes per head: one scale per (token, head) keeps each accurate.
  std::vector<float> k(static_cast<size_t>(tokens) * kv_width), v(k.size());
  for (int t = 0; t < tokens; ++t) {
    for (int i = 0; i < kv_width; ++i) {
      const float magnitude = i < spec.head_dim ? 100.0f : 0.01f;
      k[t * kv_width + i] = normal(rng) * magnitude;
      v[t * kv_width + i] = normal(rng) * magnitude * (t + 1);
    }
  }
  const int layer = 1;
  cache.Write(layer, table, 0, 6, k.data(), v.data(), kv_width);  // a prefill chunk,
  cache.Write(layer, table, 6, tokens - 6, k.data() + 6 * kv_width, v.data() + 6 * kv_width,
              kv_width);  // then more
  const cpu::PagedKvView view = cache.View(layer, table, tokens);
  ASSERT_EQ(view.dtype, io::DType::kF8E4M3);
  ASSERT_NE(view.k_scales, nullptr);
  ASSERT_NE(view.v_scales, nullptr);
  const auto* k_pool = static_cast<const uint8_t*>(view.k_pool);
  const auto* v_pool = static_cast<const uint8_t*>(view.v_pool);
  for (int t = 0; t < tokens; ++t) {
    for (int h = 0; h < spec.num_kv_heads; ++h) {
      const int64_t offset = view.block_ids[t / block_tokens] * view.block_stride +
                             static_cast<int64_t>(t % block_tokens) * kv_width + h * spec.head_dim;
      const float k_scale = view.k_scales[offset / spec.head_dim];
      const float v_scale = view.v_scales[offset / spec.head_dim];
      float k_amax = 0, v_amax = 0;
      for (int d = 0; d < spec.head_dim; ++d) {
        k_amax = std::max(k_amax, std::fabs(k[t * kv_width + h * spec.head_dim + d]));
        v_amax = std::max(v_amax, std::fabs(v[t * kv_width + h * spec.head_dim + d]));
      }
      EXPECT_FLOAT_EQ(k_scale, k_amax / 448.0f) << t << "," << h;
      EXPECT_FLOAT_EQ(v_scale, v_amax / 448.0f) << t << "," << h;
      for (int d = 0; d < spec.head_dim; ++d) {
        const float k_want = k[t * kv_width + h * spec.head_dim + d];
        const float v_want = v[t * kv_width + h * spec.head_dim + d];
        const float k_got = io::F8E4M3ToF32(k_pool[offset + d]) * k_scale;
        const float v_got = io::F8E4M3ToF32(v_pool[offset + d]) * v_scale;
        EXPECT_LE(std::fabs(k_got - k_want),
                  std::max(std::fabs(k_want) * 0x1p-4f, 0x1p-10f * k_scale) * 1.0001f)
            << "K token " << t << " head " << h << " dim " << d;
        EXPECT_LE(std::fabs(v_got - v_want),
                  std::max(std::fabs(v_want) * 0x1p-4f, 0x1p-10f * v_scale) * 1.0001f)
            << "V token " << t << " head " << h << " dim " << d;
      }
    }
  }
  // Other layers are untouched by this layer's writes: their views have their own scales.
  EXPECT_NE(cache.View(0, table, tokens).k_scales, view.k_scales);
}

}  // namespace
}  // namespace ringmoe
