#include "gpu/expert_packing.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace ringmoe::gpu {
namespace {

int64_t AlignUp(int64_t value, int64_t alignment) { return (value + alignment - 1) / alignment * alignment; }

}  // namespace

PackedLayerIndex MakePackedLayerIndex(int num_experts, int hidden, int intermediate) {
  PackedLayerIndex index;
  index.num_experts = num_experts;
  index.hidden = hidden;
  index.intermediate = intermediate;
  index.expert_stride_bytes = AlignUp(index.expert_bytes(), kPackAlignment);
  return index;
}

PackedLayerIndex MakeFp8PackedLayerIndex(int num_experts, int hidden, int intermediate, int block_rows,
                                         int block_cols) {
  PackedLayerIndex index;
  index.num_experts = num_experts;
  index.hidden = hidden;
  index.intermediate = intermediate;
  index.fp8_block_rows = block_rows;
  index.fp8_block_cols = block_cols;
  index.expert_stride_bytes = AlignUp(index.expert_bytes(), kPackAlignment);
  return index;
}

int Fp8DequantScratchExperts(int num_experts, int hidden, int intermediate) {
  constexpr int64_t kTargetBytes = int64_t{64} << 20;
  const int64_t stride = MakePackedLayerIndex(1, hidden, intermediate).expert_stride_bytes;
  const int64_t experts = stride > 0 ? kTargetBytes / stride : 1;
  return static_cast<int>(std::clamp<int64_t>(experts, 1, std::max(num_experts, 1)));
}

absl::Status PackExpertFp8(const ExpertMatricesFp8& matrices, const PackedLayerIndex& index, int expert,
                           void* layer) {
  if (!index.fp8()) return absl::InvalidArgumentError("PackExpertFp8: the index is not in the FP8 layout");
  if (expert < 0 || expert >= index.num_experts || layer == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("PackExpertFp8: expert ", expert, " of ", index.num_experts));
  }
  for (const Fp8MatrixView* m : {&matrices.gate, &matrices.up, &matrices.down}) {
    if (m->weight == nullptr || m->scale_inv == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("PackExpertFp8: expert ", expert, " is missing a matrix"));
    }
  }
  auto* out = static_cast<uint8_t*>(layer);
  const auto matrix = static_cast<size_t>(index.matrix_bytes());
  std::memset(out + index.gate_up_offset(expert), 0, static_cast<size_t>(index.expert_stride_bytes));
  std::memcpy(out + index.gate_up_offset(expert), matrices.gate.weight, matrix);
  std::memcpy(out + index.gate_up_offset(expert) + matrix, matrices.up.weight, matrix);
  std::memcpy(out + index.down_offset(expert), matrices.down.weight, matrix);
  const auto gate_scales = static_cast<size_t>(4 * index.gate_scale_count());
  std::memcpy(out + index.gate_scales_offset(expert), matrices.gate.scale_inv, gate_scales);
  std::memcpy(out + index.up_scales_offset(expert), matrices.up.scale_inv, gate_scales);
  std::memcpy(out + index.down_scales_offset(expert), matrices.down.scale_inv,
              static_cast<size_t>(4 * index.down_scale_count()));
  return absl::OkStatus();
}

absl::Status PackLayerExperts(std::span<const ExpertMatricesBf16> experts, const PackedLayerIndex& index,
                              void* dst, int64_t dst_bytes) {
  if (index.fp8()) return absl::InvalidArgumentError("PackLayerExperts: the index is in the FP8 layout");
  if (static_cast<int64_t>(experts.size()) != index.num_experts) {
    return absl::InvalidArgumentError(absl::StrCat("PackLayerExperts: ", experts.size(),
                                                   " experts given, the index has ", index.num_experts));
  }
  if (dst == nullptr || dst_bytes < index.total_bytes()) {
    return absl::InvalidArgumentError(absl::StrCat("PackLayerExperts: destination of ", dst_bytes,
                                                   " bytes, the packed layer needs ", index.total_bytes()));
  }
  const size_t matrix_bytes = static_cast<size_t>(index.intermediate) * index.hidden * 2;
  auto* out = static_cast<uint8_t*>(dst);
  for (int e = 0; e < index.num_experts; ++e) {
    const ExpertMatricesBf16& expert = experts[e];
    if (expert.gate == nullptr || expert.up == nullptr || expert.down == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("PackLayerExperts: expert ", e, " is missing a matrix"));
    }
    uint8_t* base = out + index.gate_up_offset(e);
    std::memcpy(base, expert.gate, matrix_bytes);
    std::memcpy(base + matrix_bytes, expert.up, matrix_bytes);
    std::memcpy(out + index.down_offset(e), expert.down, matrix_bytes);
    int64_t padding = index.expert_stride_bytes - index.expert_bytes();
    if (padding > 0) std::memset(base + index.expert_bytes(), 0, static_cast<size_t>(padding));
  }
  return absl::OkStatus();
}

absl::Status CopyPackedRange(std::span<const ExpertMatricesBf16> experts, const PackedLayerIndex& index,
                             int64_t offset, void* dst, int64_t bytes) {
  if (static_cast<int64_t>(experts.size()) != index.num_experts || offset < 0 || bytes < 0 ||
      offset + bytes > index.total_bytes()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CopyPackedRange: bytes [", offset, ", ", offset + bytes, ") of a packed layer of ",
        index.total_bytes(), " bytes and ", index.num_experts, " experts (", experts.size(), " given)"));
  }
  const int64_t matrix_bytes = int64_t{index.intermediate} * index.hidden * 2;
  auto* out = static_cast<uint8_t*>(dst);
  for (int64_t done = 0; done < bytes;) {
    const int64_t position = offset + done;
    const int e = static_cast<int>(position / index.expert_stride_bytes);
    const int64_t within = position - e * index.expert_stride_bytes;
    const ExpertMatricesBf16& expert = experts[e];
    // The expert's pieces in order: gate, up, down, then padding.
    const int segment = static_cast<int>(std::min<int64_t>(within / matrix_bytes, 3));
    const int64_t segment_start = segment * matrix_bytes;
    const int64_t segment_end = segment < 3 ? segment_start + matrix_bytes : index.expert_stride_bytes;
    const int64_t length = std::min(segment_end - within, bytes - done);
    const uint16_t* source = segment == 0 ? expert.gate : segment == 1 ? expert.up : expert.down;
    if (segment < 3) {
      if (source == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat("CopyPackedRange: expert ", e, " is missing a matrix"));
      }
      std::memcpy(out + done, reinterpret_cast<const uint8_t*>(source) + (within - segment_start),
                  static_cast<size_t>(length));
    } else {
      std::memset(out + done, 0, static_cast<size_t>(length));
    }
    done += length;
  }
  return absl::OkStatus();
}

SectionLayout MakeSectionLayout(int first_layer, std::span<const PackedLayerIndex> layers) {
  SectionLayout layout;
  layout.first_layer = first_layer;
  int64_t offset = 0;
  for (const PackedLayerIndex& layer : layers) {
    layout.layers.push_back(layer);
    layout.layer_offsets.push_back(offset);
    offset = AlignUp(offset + layer.total_bytes(), kPackAlignment);
  }
  layout.total_bytes = offset;
  return layout;
}

std::vector<ByteRange> RoutedExpertRanges(const PackedLayerIndex& index,
                                          std::span<const int32_t> expert_counts) {
  std::vector<ByteRange> ranges;
  const int experts = std::min<int>(index.num_experts, static_cast<int>(expert_counts.size()));
  for (int e = 0; e < experts; ++e) {
    if (expert_counts[e] <= 0) continue;
    int64_t offset = index.gate_up_offset(e);
    if (!ranges.empty() && ranges.back().offset + ranges.back().bytes == offset) {
      ranges.back().bytes += index.expert_stride_bytes;
    } else {
      ranges.push_back({offset, index.expert_stride_bytes});
    }
  }
  // Each range's last expert's trailing padding need not travel.
  for (ByteRange& range : ranges) range.bytes -= index.expert_stride_bytes - index.expert_bytes();
  return ranges;
}

}  // namespace ringmoe::gpu
