// The GPU share of the KV cache on the host side: KvCache's device blocks (device first while a whole table
// fits, never mixed, freed to their own side) and LayOutStep's four runs per micro-batch (CPU-attended, fresh
// host, fresh device, paged device) with the device rows' tables. No GPU needed.
#include <gtest/gtest.h>

#include <vector>

#include "runtime/engine/forward.h"
#include "runtime/engine/kv_cache.h"
#include "runtime/engine/step_layout.h"

namespace ringmoe {
namespace {

ModelSpec SmallSpec() {
  ModelSpec spec;
  spec.num_layers = 2;
  spec.num_heads = 4;
  spec.num_kv_heads = 2;
  spec.head_dim = 8;
  return spec;
}

TEST(KvCacheDeviceBlocks, DeviceFirstWhileAWholeTableFitsThenHost) {
  KvCache cache(SmallSpec(), io::DType::kBF16, /*block_tokens=*/4, /*num_blocks=*/10, /*device_blocks=*/5);
  std::vector<int32_t> a, b, c;
  ASSERT_TRUE(cache.Reserve(12, &a));  // 3 blocks: device
  EXPECT_TRUE(cache.OnDevice(a));
  for (int32_t id : a) EXPECT_GE(id, 10);
  ASSERT_TRUE(cache.Reserve(9, &b));  // 3 blocks, 2 device ones left: host
  EXPECT_FALSE(cache.OnDevice(b));
  for (int32_t id : b) EXPECT_LT(id, 10);
  EXPECT_EQ(cache.free_device_blocks(), 2);
  ASSERT_TRUE(cache.Reserve(8, &c));  // 2 blocks: the device's last two
  EXPECT_TRUE(cache.OnDevice(c));
  EXPECT_EQ(cache.free_device_blocks(), 0);
  EXPECT_EQ(cache.free_blocks(), 7);
  cache.Free(&a);
  EXPECT_EQ(cache.free_device_blocks(), 3);
  EXPECT_EQ(cache.free_blocks(), 7);
  cache.Free(&b);
  EXPECT_EQ(cache.free_blocks(), 10);
  // Growing a table stays on its side.
  std::vector<int32_t> d;
  ASSERT_TRUE(cache.Reserve(4, &d));
  ASSERT_TRUE(cache.OnDevice(d));
  ASSERT_TRUE(cache.Reserve(12, &d));
  EXPECT_TRUE(cache.OnDevice(d));
  for (int32_t id : d) EXPECT_GE(id, 10);
  EXPECT_FALSE(cache.Reserve(16, &d));  // a fourth device block is not free; no host block is mixed in
  EXPECT_EQ(d.size(), 3u);
}

TEST(KvCacheDeviceBlocks, NoDeviceBlocksIsTheHostCacheAsBefore) {
  KvCache cache(SmallSpec(), io::DType::kBF16, 4, 3);
  std::vector<int32_t> a;
  ASSERT_TRUE(cache.Reserve(12, &a));
  EXPECT_FALSE(cache.OnDevice(a));
  EXPECT_EQ(a, (std::vector<int32_t>{0, 1, 2}));
  EXPECT_FALSE(cache.Reserve(16, &a));
}

TEST(LayOutStep, FourRunsPerMicroBatchWithTheDeviceRowsTables) {
  KvCache cache(SmallSpec(), io::DType::kBF16, 4, 20, 20);
  std::vector<int32_t> host_decode, host_fresh, device_fresh, device_decode, device_continue;
  // Device tables first (device-first allocation), then host ones once the device is full.
  ASSERT_TRUE(cache.Reserve(8, &device_decode));
  ASSERT_TRUE(cache.Reserve(8, &device_fresh));
  ASSERT_TRUE(cache.Reserve(16, &device_continue));
  std::vector<int32_t> filler;
  ASSERT_TRUE(cache.Reserve(4 * cache.free_device_blocks(), &filler));
  ASSERT_TRUE(cache.Reserve(8, &host_decode));
  ASSERT_TRUE(cache.Reserve(8, &host_fresh));
  ASSERT_FALSE(cache.OnDevice(host_decode));
  ASSERT_TRUE(cache.OnDevice(device_continue));
  const int32_t tokens[16] = {};
  auto chunk = [&](const std::vector<int32_t>& table, int start, int count) {
    StepChunk c;
    c.tokens = tokens;
    c.start = start;
    c.count = count;
    c.block_table = &table;
    c.want_logits = true;
    return c;
  };
  // In the scheduler's order: mixed kinds.
  const std::vector<StepChunk> chunks = {chunk(device_decode, 5, 1), chunk(host_fresh, 0, 3),
                                         chunk(host_decode, 6, 1), chunk(device_continue, 4, 6),
                                         chunk(device_fresh, 0, 2)};
  const StepLayout layout = LayOutStep(chunks, /*micro_batches=*/1, /*fresh_on_gpu=*/true, &cache);
  ASSERT_EQ(layout.batches.size(), 1u);
  const MicroBatch& batch = layout.batches[0];
  ASSERT_EQ(batch.chunks.size(), 5u);
  // CPU (host decode), fresh host, fresh device, paged (device decode, device continuation).
  EXPECT_EQ(batch.chunks[0].block_table, &host_decode);
  EXPECT_EQ(batch.chunks[1].block_table, &host_fresh);
  EXPECT_EQ(batch.chunks[2].block_table, &device_fresh);
  EXPECT_EQ(batch.chunks[3].block_table, &device_decode);
  EXPECT_EQ(batch.chunks[4].block_table, &device_continue);
  EXPECT_EQ(batch.cpu_chunks, 1);
  EXPECT_EQ(batch.cpu_rows, 1);
  EXPECT_EQ(batch.host_chunks, 2);
  EXPECT_EQ(batch.host_rows, 4);
  EXPECT_EQ(batch.fresh_chunks, 2);
  EXPECT_EQ(batch.max_fresh_rows, 3);
  EXPECT_EQ(batch.device_rows, 9);
  EXPECT_EQ(batch.paged_rows, 7);
  EXPECT_EQ(batch.rows, 13);
  EXPECT_EQ(layout.fresh_offsets, (std::vector<int32_t>{0, 3, 5}));
  EXPECT_EQ(layout.positions, (std::vector<int32_t>{6, 0, 1, 2, 0, 1, 5, 4, 5, 6, 7, 8, 9}));
  // Device rows name their tables (device-local ids); host rows -1.
  ASSERT_EQ(layout.row_tables.size(), 13u);
  for (int r = 0; r < 4; ++r) EXPECT_EQ(layout.row_tables[r], -1) << r;
  auto table_at = [&](int row) {
    return std::vector<int32_t>(layout.device_tables.begin() + layout.row_tables[row],
                                layout.device_tables.begin() + layout.row_tables[row] + 2);
  };
  EXPECT_EQ(table_at(4), (std::vector<int32_t>{device_fresh[0] - 20, device_fresh[1] - 20}));
  EXPECT_EQ(table_at(6), (std::vector<int32_t>{device_decode[0] - 20, device_decode[1] - 20}));
  EXPECT_EQ(table_at(12), (std::vector<int32_t>{device_continue[0] - 20, device_continue[1] - 20}));
  EXPECT_EQ(layout.device_tables.size(), 2u + 2u + 4u);
  // Logit rows in the caller's order.
  EXPECT_EQ(layout.logits_rows, (std::vector<int>{6, 3, 0, 12, 5}));

  // Without the GPU's prefill attention, fresh device prompts are paged; fresh host ones go to the CPU.
  const StepLayout cpu_fresh = LayOutStep(chunks, 1, /*fresh_on_gpu=*/false, &cache);
  EXPECT_EQ(cpu_fresh.batches[0].cpu_chunks, 2);
  EXPECT_EQ(cpu_fresh.batches[0].fresh_chunks, 0);
  EXPECT_EQ(cpu_fresh.batches[0].paged_rows, 9);
  // Several micro-batches share out each kind by rows, and lose none.
  std::vector<StepChunk> many;
  for (int i = 0; i < 4; ++i) {
    for (const StepChunk& c : chunks) many.push_back(c);
  }
  const StepLayout two = LayOutStep(many, 2, true, &cache);
  ASSERT_EQ(two.batches.size(), 2u);
  for (const MicroBatch& b : two.batches) {
    EXPECT_EQ(b.device_rows, 18);
    EXPECT_EQ(b.host_rows, 8);
    EXPECT_EQ(b.paged_rows, 14);
  }
  EXPECT_EQ(two.batches[1].first_row, 26);
  // No cache: every chunk is a host one, as before.
  const StepLayout host_only = LayOutStep(chunks, 1, true);
  EXPECT_EQ(host_only.batches[0].device_rows, 0);
  EXPECT_EQ(host_only.batches[0].fresh_chunks, 2);
  EXPECT_TRUE(host_only.device_tables.empty());
}

}  // namespace
}  // namespace ringmoe
