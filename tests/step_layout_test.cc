// LayOutStep (runtime/engine/step_layout.h) on hand-built chunks: how a step's chunks are shared out among
// micro-batches by rows, the order of the four row kinds in each, the fresh prompts' offsets, the logits rows
// and the device-cache rows' table offsets. Plain C++: no GPU needed. Every expected value below is worked
// out by hand from the rules in step_layout.h (comments give the arithmetic).
#include "runtime/engine/step_layout.h"

#include <gtest/gtest.h>

#include <vector>

#include "runtime/engine/forward.h"
#include "runtime/engine/kv_cache.h"

namespace ringmoe {
namespace {

ModelSpec SmallSpec() {
  ModelSpec spec;
  spec.num_layers = 1;
  spec.num_heads = 2;
  spec.num_kv_heads = 1;
  spec.head_dim = 4;
  return spec;
}

const int32_t kTokens[16] = {};

StepChunk Chunk(const std::vector<int32_t>& table, int start, int count, bool want_logits = true,
                bool greedy = false) {
  StepChunk chunk;
  chunk.tokens = kTokens;
  chunk.start = start;
  chunk.count = count;
  chunk.block_table = &table;
  chunk.want_logits = want_logits;
  chunk.greedy = greedy;
  return chunk;
}

// The tables of a batch's chunks, in the batch's order (each test's tables are distinct objects).
std::vector<const std::vector<int32_t>*> Tables(const MicroBatch& batch) {
  std::vector<const std::vector<int32_t>*> tables;
  for (const StepChunk& chunk : batch.chunks) tables.push_back(chunk.block_table);
  return tables;
}

TEST(StepLayout, MicroBatchesTakeAboutEqualRowsInStepOrder) {
  // Host cache only, no fresh prompts: every chunk is a CPU one. Rows 4, 1, 1, 2, 3, 1 (12 in all).
  std::vector<int32_t> t0{0}, t1{1}, t2{2}, t3{3}, t4{4}, t5{5};
  const std::vector<StepChunk> chunks = {Chunk(t0, 10, 4),        Chunk(t1, 20, 1, false),
                                         Chunk(t2, 30, 1, false), Chunk(t3, 40, 2, true, true),
                                         Chunk(t4, 50, 3, false), Chunk(t5, 60, 1)};
  // Three parts of 12 rows: a part ends once the rows before a chunk reach its share (4, then 8):
  // [4] [1 1 2] [3 1].
  const StepLayout three = LayOutStep(chunks, 3, /*fresh_on_gpu=*/true);
  ASSERT_EQ(three.batches.size(), 3u);
  EXPECT_EQ(Tables(three.batches[0]), (std::vector<const std::vector<int32_t>*>{&t0}));
  EXPECT_EQ(Tables(three.batches[1]), (std::vector<const std::vector<int32_t>*>{&t1, &t2, &t3}));
  EXPECT_EQ(Tables(three.batches[2]), (std::vector<const std::vector<int32_t>*>{&t4, &t5}));
  const int first_rows[] = {0, 4, 8}, cpu_chunks[] = {1, 3, 2};
  for (int b = 0; b < 3; ++b) {
    const MicroBatch& batch = three.batches[b];
    EXPECT_EQ(batch.first_row, first_rows[b]) << b;
    EXPECT_EQ(batch.rows, 4) << b;
    EXPECT_EQ(batch.cpu_rows, 4) << b;
    EXPECT_EQ(batch.cpu_chunks, cpu_chunks[b]) << b;
    EXPECT_EQ(batch.host_chunks, cpu_chunks[b]) << b;
    EXPECT_EQ(batch.host_rows, 4) << b;
    EXPECT_EQ(batch.fresh_chunks, 0) << b;
    EXPECT_EQ(batch.max_fresh_rows, 0) << b;
    EXPECT_EQ(batch.fresh_offsets, 0) << b;
    EXPECT_EQ(batch.device_rows, 0) << b;
    EXPECT_EQ(batch.paged_rows, 0) << b;
  }
  EXPECT_EQ(three.rows, 12);
  EXPECT_EQ(three.positions, (std::vector<int32_t>{10, 11, 12, 13, 20, 30, 40, 41, 50, 51, 52, 60}));
  EXPECT_TRUE(three.fresh_offsets.empty());
  EXPECT_EQ(three.row_tables, std::vector<int32_t>(12, -1));
  EXPECT_TRUE(three.device_tables.empty());
  // Chunks 0, 3 and 5 want logits: their last rows, in chunk order; only chunk 3 is greedy.
  EXPECT_EQ(three.logits_rows, (std::vector<int>{3, 7, 11}));
  EXPECT_EQ(three.greedy, (std::vector<bool>{false, true, false}));

  // Two parts of 6 rows: [4 1 1] [2 3 1].
  const StepLayout two = LayOutStep(chunks, 2, true);
  ASSERT_EQ(two.batches.size(), 2u);
  EXPECT_EQ(Tables(two.batches[0]), (std::vector<const std::vector<int32_t>*>{&t0, &t1, &t2}));
  EXPECT_EQ(Tables(two.batches[1]), (std::vector<const std::vector<int32_t>*>{&t3, &t4, &t5}));
  EXPECT_EQ(two.batches[0].rows, 6);
  EXPECT_EQ(two.batches[1].first_row, 6);
  EXPECT_EQ(two.batches[1].rows, 6);
  // The rows keep the step's order whatever the split, so the logits rows are the same.
  EXPECT_EQ(two.logits_rows, three.logits_rows);
}

TEST(StepLayout, EmptyMicroBatchesAreDroppedAndAtLeastOneIsMade) {
  std::vector<int32_t> table{0};
  const std::vector<StepChunk> one = {Chunk(table, 7, 3)};
  const StepLayout four = LayOutStep(one, 4, true);
  ASSERT_EQ(four.batches.size(), 1u);
  EXPECT_EQ(four.batches[0].rows, 3);
  EXPECT_EQ(four.rows, 3);
  for (int micro_batches : {0, -2}) {
    const StepLayout single = LayOutStep(one, micro_batches, true);
    ASSERT_EQ(single.batches.size(), 1u) << micro_batches;
    EXPECT_EQ(single.batches[0].rows, 3) << micro_batches;
  }
  EXPECT_TRUE(LayOutStep({}, 2, true).batches.empty());
}

// A host cache of 8 blocks and 8 device blocks: ids 8 .. 15 are device ones (local ids 0 .. 7).
class StepLayoutWithDeviceKv : public ::testing::Test {
 protected:
  StepLayoutWithDeviceKv()
      : cache_(SmallSpec(), io::DType::kBF16, /*block_tokens=*/4, /*num_blocks=*/8, /*device_blocks=*/8) {}

  // In the scheduler's order, each kind twice:
  //   0 host decode       1 host fresh (3)    2 device cont. (3)  3 device fresh (2)  4 host cont. (2)
  //   5 host fresh (1)    6 device decode     7 device fresh (2)  8 host decode
  std::vector<StepChunk> Chunks() const {
    return {Chunk(h_decode1_, 5, 1, true, true),
            Chunk(h_fresh1_, 0, 3),
            Chunk(d_cont_, 4, 3, false),
            Chunk(d_fresh1_, 0, 2),
            Chunk(h_cont_, 4, 2, false),
            Chunk(h_fresh2_, 0, 1),
            Chunk(d_decode_, 6, 1, true, true),
            Chunk(d_fresh2_, 0, 2, true, true),
            Chunk(h_decode2_, 7, 1)};
  }

  KvCache cache_;
  const std::vector<int32_t> h_decode1_{0}, h_fresh1_{1}, d_cont_{11, 12}, d_fresh1_{10}, h_cont_{2, 3},
      h_fresh2_{4}, d_decode_{8, 9}, d_fresh2_{13}, h_decode2_{5};
};

TEST_F(StepLayoutWithDeviceKv, FourKindsInOrderWithFreshOffsetsAndDeviceTables) {
  ASSERT_TRUE(cache_.OnDevice(d_cont_));
  ASSERT_FALSE(cache_.OnDevice(h_cont_));
  const StepLayout layout = LayOutStep(Chunks(), 2, /*fresh_on_gpu=*/true, &cache_);
  // Each kind is split on its own, 4 rows each, 2 per part: CPU [0 4] [8]; fresh host [1] [5];
  // fresh device [3] [7]; paged [2] [6]. A micro-batch is CPU, fresh host, fresh device, paged.
  ASSERT_EQ(layout.batches.size(), 2u);
  const MicroBatch& b0 = layout.batches[0];
  const MicroBatch& b1 = layout.batches[1];
  EXPECT_EQ(Tables(b0), (std::vector<const std::vector<int32_t>*>{&h_decode1_, &h_cont_, &h_fresh1_,
                                                                  &d_fresh1_, &d_cont_}));
  EXPECT_EQ(Tables(b1),
            (std::vector<const std::vector<int32_t>*>{&h_decode2_, &h_fresh2_, &d_fresh2_, &d_decode_}));

  // b0: rows 1 + 2 (CPU), 3 (fresh host), 2 (fresh device), 3 (paged).
  EXPECT_EQ(b0.first_row, 0);
  EXPECT_EQ(b0.rows, 11);
  EXPECT_EQ(b0.cpu_chunks, 2);
  EXPECT_EQ(b0.cpu_rows, 3);
  EXPECT_EQ(b0.host_chunks, 3);
  EXPECT_EQ(b0.host_rows, 6);
  EXPECT_EQ(b0.fresh_chunks, 2);
  EXPECT_EQ(b0.max_fresh_rows, 3);
  EXPECT_EQ(b0.fresh_offsets, 0);
  EXPECT_EQ(b0.device_rows, 5);
  EXPECT_EQ(b0.paged_rows, 3);
  // b1: rows 1 (CPU), 1 (fresh host), 2 (fresh device), 1 (paged).
  EXPECT_EQ(b1.first_row, 11);
  EXPECT_EQ(b1.rows, 5);
  EXPECT_EQ(b1.cpu_chunks, 1);
  EXPECT_EQ(b1.cpu_rows, 1);
  EXPECT_EQ(b1.host_chunks, 2);
  EXPECT_EQ(b1.host_rows, 2);
  EXPECT_EQ(b1.fresh_chunks, 2);
  EXPECT_EQ(b1.max_fresh_rows, 2);
  EXPECT_EQ(b1.fresh_offsets, 3);  // b0 wrote 3 entries
  EXPECT_EQ(b1.device_rows, 3);
  EXPECT_EQ(b1.paged_rows, 1);
  EXPECT_EQ(layout.rows, 16);

  // Per micro-batch, from its first fresh row: 0, then the end of each fresh prompt. b0: 3 rows, then 2;
  // b1: 1, then 2.
  EXPECT_EQ(layout.fresh_offsets, (std::vector<int32_t>{0, 3, 5, 0, 1, 3}));
  EXPECT_EQ(layout.positions, (std::vector<int32_t>{5, 4, 5, 0, 1, 2, 0, 1, 4, 5, 6, /*b1*/ 7, 0, 0, 1, 6}));
  // Device rows point at their table in device_tables, which holds device-local ids (id - 8), appended in
  // row order: d_fresh1 {2} at 0, d_cont {3, 4} at 1, d_fresh2 {5} at 3, d_decode {0, 1} at 4.
  EXPECT_EQ(layout.device_tables, (std::vector<int32_t>{2, 3, 4, 5, 0, 1}));
  EXPECT_EQ(layout.row_tables,
            (std::vector<int32_t>{-1, -1, -1, -1, -1, -1, 0, 0, 1, 1, 1, /*b1*/ -1, -1, 3, 3, 4}));
  // Every chunk but 2 and 4 wants logits; in chunk order, their last rows: chunk 0 row 0, 1 row 5, 3 row 7,
  // 5 row 12, 6 row 15, 7 row 14, 8 row 11.
  EXPECT_EQ(layout.logits_rows, (std::vector<int>{0, 5, 7, 12, 15, 14, 11}));
  EXPECT_EQ(layout.greedy, (std::vector<bool>{true, false, false, false, true, true, false}));
}

TEST_F(StepLayoutWithDeviceKv, WithoutGpuPrefillFreshPromptsAreCpuOrPagedRows) {
  const StepLayout layout = LayOutStep(Chunks(), 2, /*fresh_on_gpu=*/false, &cache_);
  // CPU chunks 0 1 4 5 8 (rows 1 3 2 1 1, 8 in all): [0 1] [4 5 8]; paged 2 3 6 7 (rows 3 2 1 2): [2 3] [6
  // 7].
  ASSERT_EQ(layout.batches.size(), 2u);
  const MicroBatch& b0 = layout.batches[0];
  const MicroBatch& b1 = layout.batches[1];
  EXPECT_EQ(Tables(b0),
            (std::vector<const std::vector<int32_t>*>{&h_decode1_, &h_fresh1_, &d_cont_, &d_fresh1_}));
  EXPECT_EQ(Tables(b1), (std::vector<const std::vector<int32_t>*>{&h_cont_, &h_fresh2_, &h_decode2_,
                                                                  &d_decode_, &d_fresh2_}));
  EXPECT_EQ(b0.rows, 9);
  EXPECT_EQ(b0.cpu_chunks, 2);
  EXPECT_EQ(b0.cpu_rows, 4);
  EXPECT_EQ(b0.device_rows, 5);
  EXPECT_EQ(b0.paged_rows, 5);
  EXPECT_EQ(b1.first_row, 9);
  EXPECT_EQ(b1.rows, 7);
  EXPECT_EQ(b1.cpu_chunks, 3);
  EXPECT_EQ(b1.cpu_rows, 4);
  EXPECT_EQ(b1.paged_rows, 3);
  for (const MicroBatch& batch : layout.batches) {
    EXPECT_EQ(batch.fresh_chunks, 0);
    EXPECT_EQ(batch.host_rows, batch.cpu_rows);
  }
  EXPECT_TRUE(layout.fresh_offsets.empty());
  EXPECT_EQ(layout.positions, (std::vector<int32_t>{5, 0, 1, 2, 4, 5, 6, 0, 1, /*b1*/ 4, 5, 0, 7, 6, 0, 1}));
  // d_cont {3, 4} at 0, d_fresh1 {2} at 2, d_decode {0, 1} at 3, d_fresh2 {5} at 5.
  EXPECT_EQ(layout.device_tables, (std::vector<int32_t>{3, 4, 2, 0, 1, 5}));
  EXPECT_EQ(layout.row_tables,
            (std::vector<int32_t>{-1, -1, -1, -1, 0, 0, 0, 2, 2, /*b1*/ -1, -1, -1, -1, 3, 5, 5}));
}

TEST_F(StepLayoutWithDeviceKv, WithoutTheCacheEveryChunkIsAHostOne) {
  const StepLayout layout = LayOutStep(Chunks(), 1, /*fresh_on_gpu=*/true);
  ASSERT_EQ(layout.batches.size(), 1u);
  const MicroBatch& batch = layout.batches[0];
  // CPU 0 2 4 6 8 (rows 1 3 2 1 1), then fresh 1 3 5 7 (rows 3 2 1 2).
  EXPECT_EQ(batch.cpu_chunks, 5);
  EXPECT_EQ(batch.cpu_rows, 8);
  EXPECT_EQ(batch.host_chunks, 9);
  EXPECT_EQ(batch.host_rows, 16);
  EXPECT_EQ(batch.fresh_chunks, 4);
  EXPECT_EQ(batch.max_fresh_rows, 3);
  EXPECT_EQ(batch.device_rows, 0);
  EXPECT_EQ(layout.fresh_offsets, (std::vector<int32_t>{0, 3, 5, 6, 8}));
  EXPECT_EQ(layout.row_tables, std::vector<int32_t>(16, -1));
  EXPECT_TRUE(layout.device_tables.empty());
}

}  // namespace
}  // namespace ringmoe
