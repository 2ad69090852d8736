// Internals of cpu::PagedAttention: the kernel-selection hook for tests and benchmarks, and the tiling driver
// that the portable and the AVX-512 kernels share.
//
// The driver walks tiles of query rows; for each tile it packs the queries of every kv head in range (a
// decode row's are used in place), then walks the tile's KV span in chunks of kChunkTokens tokens and hands
// each (chunk, kv head) to the kernel, which updates an online softmax (running max, running sum, f32
// accumulators) for all query vectors of that kv head: the tile's rows times the GQA group. Each K and V row
// is therefore read once per tile, never per query head, and no buffer of num_tokens scores exists.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "cpu/attention.h"

namespace ringmoe::cpu::internal {

enum class AttentionKernel { kAuto, kPortable, kAvx512, kAvx512Bf16 };

// Forces the kernel of later calls (kAuto: runtime dispatch). A forced kAvx512 still falls back to the
// portable kernel where that one cannot run (KernelIsa() below AVX-512, head_dim not a multiple of 16).
void SetAttentionKernelForTesting(AttentionKernel kernel);
// The kernel a call with this head_dim and cache type runs now (kPortable, kAvx512 or kAvx512Bf16): the
// bf16-pair kernel for e4m3 caches (and bf16 ones only when it is forced) with head_dim % 32 == 0 on a CPU
// with AVX512-BF16 unless kAvx512 or kPortable is forced, else kAvx512's rule (AVX-512 allowed, head_dim %
// 16 == 0), else the portable one.
AttentionKernel SelectedAttentionKernel(int head_dim, io::DType dtype = io::DType::kF32);

// Both follow PagedAttentionHeads' contract; the AVX-512 one needs KernelIsa() == CpuIsa::kAvx512 (which
// RINGMOE_CPU_ISA=avx2 withholds, cpu/cpu_features.h) and head_dim % 16 == 0.
void PagedAttentionPortable(const float* q, int n_new, int heads, const PagedKvView& kv, float scale,
                            int sliding_window, float* out, int kv_head_begin, int kv_head_end);
void PagedAttentionAvx512(const float* q, int n_new, int heads, const PagedKvView& kv, float scale,
                          int sliding_window, float* out, int kv_head_begin, int kv_head_end);
// The bf16-pair kernel (attention_avx512_bf16.cc): bf16 and e4m3 caches only, head_dim % 32 == 0, and
// CpuHasAvx512Bf16(). Rounds queries and probabilities to bf16.
void PagedAttentionAvx512Bf16(const float* q, int n_new, int heads, const PagedKvView& kv, float scale,
                              int sliding_window, float* out, int kv_head_begin, int kv_head_end);
// Whether the CPU has AVX512-BF16 (with BW and VL).
bool CpuHasAvx512Bf16();

// Tokens per chunk: one 16-lane vector of scores per query vector.
constexpr int kChunkTokens = 16;
// Query vectors per kv head that a prefill tile aims at: enough to amortise staging a K/V chunk, few enough
// that the tile's queries and accumulators stay in L2.
constexpr int kTileVectors = 64;

// Query rows per tile: one for decode, else about kTileVectors / group.
inline int TileRows(int n_new, int group) { return std::clamp(kTileVectors / group, 1, std::max(n_new, 1)); }

// The tile's queries and softmax state, per kv head in range: q and acc [vectors, head_dim], max [vectors]
// and sum [vectors, kChunkTokens] (per lane, so a chunk adds its 16 terms without a horizontal sum). Query
// vector m is row m / group, head m % group of the kv head's group.
struct AttentionTile {
  int rows = 0;
  int group = 0;
  int vectors = 0;
  int head_dim = 0;
  const float* q = nullptr;
  float* acc = nullptr;
  float* max = nullptr;
  float* sum = nullptr;
  const uint16_t* row_masks = nullptr;  // per row: the chunk's lanes it attends to (bit t = token begin + t)

  const float* q_of(int local_head) const {
    return q + static_cast<int64_t>(local_head) * vectors * head_dim;
  }
  float* acc_of(int local_head) const { return acc + static_cast<int64_t>(local_head) * vectors * head_dim; }
  float* max_of(int local_head) const { return max + static_cast<int64_t>(local_head) * vectors; }
  float* sum_of(int local_head) const {
    return sum + static_cast<int64_t>(local_head) * vectors * kChunkTokens;
  }
};

// One chunk of the KV span: lanes [lane_begin, lane_end) are the tokens some row of the tile attends to; only
// those are read. row_offset[t]: element offset in the pools of lane t's row for kv head 0.
struct AttentionChunk {
  int begin = 0;
  int lane_begin = 0;
  int lane_end = 0;
  int64_t row_offset[kChunkTokens] = {};
};

// Storage of a 64-byte aligned float buffer per thread (each kernel call runs on one thread).
inline float* AlignedScratch(std::vector<float>& storage, size_t count) {
  if (storage.size() < count + 16) storage.resize(count + 16);
  const uintptr_t address = reinterpret_cast<uintptr_t>(storage.data());
  return storage.data() + ((64 - address % 64) % 64) / sizeof(float);
}

// Prefetches (into L2) one kv head's K and V rows of the next chunk, a few lines per Step() from points that
// the kernel spreads over its work on the current chunk. A sequence's blocks are scattered, which defeats the
// hardware prefetchers at every block boundary; and one burst of a chunk's lines would fill the load queue
// and stall the very computation it should overlap.
class ChunkPrefetcher {
 public:
  static constexpr int kSteps = 8;  // Step() calls a kernel makes per Attend, roughly evenly spread

  explicit ChunkPrefetcher(const PagedKvView& kv)
      : k_(static_cast<const char*>(kv.k_pool)),
        v_(static_cast<const char*>(kv.v_pool)),
        element_bytes_(static_cast<int64_t>(io::DTypeSize(kv.dtype))),
        row_bytes_(kv.head_dim * element_bytes_) {}

  // next: the chunk after the one being computed, or nullptr.
  void Start(const AttentionChunk* next, int kv_head, int head_dim) {
    next_ = next;
    if (next == nullptr) return;
    head_bytes_ = static_cast<int64_t>(kv_head) * head_dim * element_bytes_;
    token_ = next->lane_begin;
    byte_ = 0;
    const int64_t lines = (next->lane_end - next->lane_begin) * ((row_bytes_ + 63) / 64);
    per_step_ = static_cast<int>((lines + kSteps - 1) / kSteps);
  }
  void Step() {
    for (int i = 0; i < per_step_ && Issue(); ++i) {
    }
  }
  void Finish() {
    while (Issue()) {
    }
  }

 private:
  bool Issue() {
    if (next_ == nullptr || token_ >= next_->lane_end) return false;
    const int64_t at = next_->row_offset[token_] * element_bytes_ + head_bytes_ + byte_;
    __builtin_prefetch(k_ + at, 0, 2);
    __builtin_prefetch(v_ + at, 0, 2);
    byte_ += 64;
    if (byte_ >= row_bytes_) byte_ = 0, ++token_;
    return true;
  }

  const char* k_;
  const char* v_;
  int64_t element_bytes_, row_bytes_;
  const AttentionChunk* next_ = nullptr;
  int64_t head_bytes_ = 0, byte_ = 0;
  int token_ = 0, per_step_ = 0;
};

// Runs kernel.Attend(tile, chunk, local_head, kv_head, prefetcher) over every tile and chunk, then writes acc
// / sum to out.
template <typename Kernel>
void RunPagedAttention(const float* q, int n_new, int heads, const PagedKvView& kv, int sliding_window,
                       float* out, int kv_head_begin, int kv_head_end, Kernel& kernel) {
  const int head_dim = kv.head_dim, group = heads / kv.kv_heads;
  const int local_heads = kv_head_end - kv_head_begin;
  if (n_new <= 0 || local_heads <= 0) return;
  const int tile_rows = TileRows(n_new, group);
  const int64_t state = static_cast<int64_t>(local_heads) * tile_rows * group;
  thread_local std::vector<float> storage;
  thread_local std::vector<uint16_t> masks;
  float* base = AlignedScratch(storage, static_cast<size_t>(state * (2 * head_dim + 1 + kChunkTokens)));
  masks.resize(tile_rows);
  uint16_t* row_masks = masks.data();  // thread_locals cost a call per access in PIC code
  AttentionTile tile;
  tile.group = group;
  tile.head_dim = head_dim;
  float* packed_q = base;
  tile.acc = base + state * head_dim;
  tile.max = tile.acc + state * head_dim;
  tile.sum = tile.max + state;
  tile.row_masks = row_masks;
  const int first_position = kv.num_tokens - n_new;
  const auto span_begin = [&](int position) {
    return sliding_window > 0 ? std::max(0, position - sliding_window + 1) : 0;
  };
  const int64_t kv_row = static_cast<int64_t>(kv.kv_heads) * head_dim;
  ChunkPrefetcher prefetcher(kv);

  for (int r0 = 0; r0 < n_new; r0 += tile_rows) {
    const int rows = std::min(tile_rows, n_new - r0);
    tile.rows = rows;
    tile.vectors = rows * group;
    // Rows attend to [span_begin(position), position]; both ends grow with the row.
    const int lo = span_begin(first_position + r0), hi = first_position + r0 + rows;
    // Chunk offsets are computed one chunk ahead, for the prefetcher.
    const auto locate = [&](int c, AttentionChunk& chunk) {
      chunk.begin = c;
      chunk.lane_begin = std::max(lo, c) - c;
      chunk.lane_end = std::min(hi, c + kChunkTokens) - c;
      int token = c + chunk.lane_begin;  // walk the block table: one division per chunk
      int block = token / kv.block_tokens, within = token % kv.block_tokens;
      for (int t = chunk.lane_begin; t < chunk.lane_end; ++t) {
        chunk.row_offset[t] = kv.block_ids[block] * kv.block_stride + within * kv_row;
        if (++within == kv.block_tokens) within = 0, ++block;
      }
    };
    AttentionChunk chunks[2];
    int current = 0;
    locate(lo / kChunkTokens * kChunkTokens, chunks[current]);
    for (int l = 0; l < local_heads; ++l) {  // the first chunk's rows arrive while the tile is set up
      prefetcher.Start(&chunks[current], kv_head_begin + l, head_dim);
      prefetcher.Finish();
    }
    // A single row's queries of a kv head are already contiguous; more rows are packed.
    if (rows == 1) {
      tile.q = q + (static_cast<int64_t>(r0) * heads + kv_head_begin * group) * head_dim;
    } else {
      tile.q = packed_q;
      for (int l = 0; l < local_heads; ++l) {
        const int first_head = (kv_head_begin + l) * group;
        for (int r = 0; r < rows; ++r) {
          const float* src = q + (static_cast<int64_t>(r0 + r) * heads + first_head) * head_dim;
          std::copy(src, src + static_cast<int64_t>(group) * head_dim,
                    packed_q + (static_cast<int64_t>(l) * rows + r) * group * head_dim);
        }
      }
    }
    // A kernel that keeps the tile's queries in its own form converts them once here.
    if constexpr (requires { kernel.BeginTile(tile, local_heads); }) kernel.BeginTile(tile, local_heads);
    std::fill_n(tile.acc, static_cast<int64_t>(local_heads) * tile.vectors * head_dim, 0.0f);
    std::fill_n(tile.max, local_heads * tile.vectors, -std::numeric_limits<float>::infinity());
    std::fill_n(tile.sum, local_heads * tile.vectors * kChunkTokens, 0.0f);
    for (int c = chunks[current].begin; c < hi; c += kChunkTokens, current ^= 1) {
      const AttentionChunk& chunk = chunks[current];
      AttentionChunk& next = chunks[current ^ 1];
      const bool has_next = c + kChunkTokens < hi;
      if (has_next) locate(c + kChunkTokens, next);
      for (int r = 0; r < rows; ++r) {
        const int a = std::max(span_begin(first_position + r0 + r), c) - c;
        const int b = std::min(first_position + r0 + r + 1, c + kChunkTokens) - c;
        row_masks[r] = a < b ? static_cast<uint16_t>(((1u << b) - 1) & ~((1u << a) - 1)) : 0;
      }
      for (int l = 0; l < local_heads; ++l) {
        prefetcher.Start(has_next ? &next : nullptr, kv_head_begin + l, head_dim);
        kernel.Attend(tile, chunk, l, kv_head_begin + l, prefetcher);
        prefetcher.Finish();
      }
    }
    for (int l = 0; l < local_heads; ++l) {
      const int first_head = (kv_head_begin + l) * group;
      for (int m = 0; m < tile.vectors; ++m) {
        const int r = m / group, h = first_head + m % group;
        const float* lanes = tile.sum_of(l) + m * kChunkTokens;
        float sum = 0.0f;
        for (int t = 0; t < kChunkTokens; ++t) sum += lanes[t];
        const float inv_sum = 1.0f / sum;
        const float* acc = tile.acc_of(l) + static_cast<int64_t>(m) * head_dim;
        float* dst = out + (static_cast<int64_t>(r0 + r) * heads + h) * head_dim;
#pragma omp simd
        for (int d = 0; d < head_dim; ++d) dst[d] = acc[d] * inv_sum;
      }
    }
  }
}

}  // namespace ringmoe::cpu::internal
