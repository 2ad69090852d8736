// Repacking a MoE layer's routed experts at load time so that the layer streams to the GPU as one large copy
// (or, for a small batch, a few copies of just the routed experts), and grouping layers into sections.
// Host-only, plain C++.
//
// Layout of one packed layer (row-major, PyTorch's [out, in] orientation):
//   expert e starts at e * expert_stride_bytes:
//     [gate rows (intermediate x hidden) | up rows (intermediate x hidden)]   the fused gate/up matrix [2I,
//     H] [down (hidden x intermediate)]
//   in bf16; or, in the FP8 block layout (fp8() below), the same three matrices as e4m3 bytes followed by
//   their f32 block scales (gate, up, down; each row-major over its blocks, each kScaleAlignment-aligned):
//   the FP8 bytes stream to the GPU, which dequantises them next to the GEMM (MoeRunner).
//   expert_stride_bytes is the expert's bytes rounded up to kPackAlignment.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace ringmoe::gpu {

// Every expert and every layer in a section starts on this boundary (cuBLAS and copy engines like it).
inline constexpr int64_t kPackAlignment = 4096;

// The FP8 layout's scale arrays start on this boundary.
inline constexpr int64_t kScaleAlignment = 256;

struct PackedLayerIndex {
  int num_experts = 0;
  int hidden = 0;
  int intermediate = 0;
  int64_t expert_stride_bytes = 0;
  // FP8 block layout when > 0: e4m3 weights, one f32 scale_inv per block of fp8_block_rows x fp8_block_cols.
  int fp8_block_rows = 0;
  int fp8_block_cols = 0;

  bool fp8() const { return fp8_block_rows > 0; }
  int64_t element_bytes() const { return fp8() ? 1 : 2; }
  int64_t matrix_bytes() const { return int64_t{intermediate} * hidden * element_bytes(); }
  int64_t gate_up_offset(int expert) const { return expert * expert_stride_bytes; }
  int64_t down_offset(int expert) const { return expert * expert_stride_bytes + 2 * matrix_bytes(); }
  // FP8 layout: scales of gate and up ([ceil(I / rows), ceil(H / cols)] each) and of down ([ceil(H / rows),
  // ceil(I / cols)]).
  int64_t gate_scale_count() const {
    return Blocks(intermediate, fp8_block_rows) * Blocks(hidden, fp8_block_cols);
  }
  int64_t down_scale_count() const {
    return Blocks(hidden, fp8_block_rows) * Blocks(intermediate, fp8_block_cols);
  }
  int64_t gate_scales_offset(int expert) const {
    return expert * expert_stride_bytes +
           (3 * matrix_bytes() + kScaleAlignment - 1) / kScaleAlignment * kScaleAlignment;
  }
  int64_t up_scales_offset(int expert) const {
    return gate_scales_offset(expert) + ScaleBytes(gate_scale_count());
  }
  int64_t down_scales_offset(int expert) const {
    return up_scales_offset(expert) + ScaleBytes(gate_scale_count());
  }
  // Without padding.
  int64_t expert_bytes() const {
    return fp8() ? down_scales_offset(0) + 4 * down_scale_count() : 3 * matrix_bytes();
  }
  int64_t total_bytes() const { return num_experts * expert_stride_bytes; }

 private:
  static int64_t Blocks(int64_t size, int64_t block) { return block > 0 ? (size + block - 1) / block : 0; }
  static int64_t ScaleBytes(int64_t count) {
    return (4 * count + kScaleAlignment - 1) / kScaleAlignment * kScaleAlignment;
  }
};

PackedLayerIndex MakePackedLayerIndex(int num_experts, int hidden, int intermediate);
// The FP8 block layout of the same experts (block_rows, block_cols > 0).
PackedLayerIndex MakeFp8PackedLayerIndex(int num_experts, int hidden, int intermediate, int block_rows,
                                         int block_cols);

// Experts of an FP8 layer that the runner dequantises to bf16 at once: enough for about 64 MiB of bf16
// weights, at least one, at most all. MoeRunner's scratch and the planner's price of it.
int Fp8DequantScratchExperts(int num_experts, int hidden, int intermediate);

// One expert's matrices as loaded from the checkpoint (bf16 bits, host memory, row-major).
struct ExpertMatricesBf16 {
  const uint16_t* gate = nullptr;  // [intermediate, hidden]
  const uint16_t* up = nullptr;    // [intermediate, hidden]
  const uint16_t* down = nullptr;  // [hidden, intermediate]
};

// Writes the experts into `dst` (index.total_bytes() bytes, e.g. a pinned section buffer) in the layout
// above; padding is zeroed. InvalidArgument when the count or the destination size does not match the index.
absl::Status PackLayerExperts(std::span<const ExpertMatricesBf16> experts, const PackedLayerIndex& index,
                              void* dst, int64_t dst_bytes);

// One expert's matrices in FP8 blocks (host memory): e4m3 bytes [rows, cols] and f32 scale_inv per block,
// row-major over the blocks, in the index's block size.
struct Fp8MatrixView {
  const uint8_t* weight = nullptr;
  const float* scale_inv = nullptr;
};
struct ExpertMatricesFp8 {
  Fp8MatrixView gate, up, down;  // gate, up: [intermediate, hidden]; down: [hidden, intermediate]
};

// Writes expert `expert` of an FP8 index (index.fp8()) into the packed layer at `layer` (index.total_bytes()
// bytes); its padding is zeroed. InvalidArgument for a bf16 index, a missing matrix or an expert out of
// range.
absl::Status PackExpertFp8(const ExpertMatricesFp8& matrices, const PackedLayerIndex& index, int expert,
                           void* layer);

// Bytes [offset, offset + bytes) of the packed layer PackLayerExperts would write, into `dst`: the SSD
// tier's section files are written a stripe at a time without packing a whole layer in memory.
absl::Status CopyPackedRange(std::span<const ExpertMatricesBf16> experts, const PackedLayerIndex& index,
                             int64_t offset, void* dst, int64_t bytes);

// A section: consecutive MoE layers streamed together into one ring slot.
struct SectionLayout {
  int first_layer = 0;                   // Model layer index of layers[0].
  std::vector<PackedLayerIndex> layers;  // One per layer in the section.
  std::vector<int64_t> layer_offsets;    // Byte offset of each layer in the section (kPackAlignment-aligned).
  int64_t total_bytes = 0;
};

SectionLayout MakeSectionLayout(int first_layer, std::span<const PackedLayerIndex> layers);

// The contiguous byte ranges of a packed layer that hold the experts with expert_counts[e] > 0: neighbouring
// routed experts merge into one range. Offsets are relative to the layer's start.
struct ByteRange {
  int64_t offset = 0;
  int64_t bytes = 0;
};
std::vector<ByteRange> RoutedExpertRanges(const PackedLayerIndex& index,
                                          std::span<const int32_t> expert_counts);

}  // namespace ringmoe::gpu
