// Repacking a MoE layer's routed experts at load time so that the layer streams to the GPU as one large copy
// (or, for a small batch, a few copies of just the routed experts), and grouping layers into sections.
// Host-only, plain C++.
//
// Layout of one packed layer (all bf16, row-major, PyTorch's [out, in] orientation):
//   expert e starts at e * expert_stride_bytes:
//     [gate rows (intermediate x hidden) | up rows (intermediate x hidden)]   the fused gate/up matrix [2I,
//     H] [down (hidden x intermediate)]
//   expert_stride_bytes is the expert's 3*I*H*2 bytes rounded up to kPackAlignment.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace ringmoe::gpu {

// Every expert and every layer in a section starts on this boundary (cuBLAS and copy engines like it).
inline constexpr int64_t kPackAlignment = 4096;

struct PackedLayerIndex {
  int num_experts = 0;
  int hidden = 0;
  int intermediate = 0;
  int64_t expert_stride_bytes = 0;

  int64_t gate_up_offset(int expert) const { return expert * expert_stride_bytes; }
  int64_t down_offset(int expert) const {
    return expert * expert_stride_bytes + int64_t{2} * intermediate * hidden * 2;
  }
  int64_t expert_bytes() const { return int64_t{3} * intermediate * hidden * 2; }  // Without padding.
  int64_t total_bytes() const { return num_experts * expert_stride_bytes; }
};

PackedLayerIndex MakePackedLayerIndex(int num_experts, int hidden, int intermediate);

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
