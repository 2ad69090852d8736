#include "gpu/section_ring.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "gpu/device.h"
#include "io/status_macros.h"

namespace ringmoe::gpu {

absl::StatusOr<int> PinnedSectionSource::AddSection(std::vector<HostChunk> chunks) {
  int64_t end = 0;
  for (const HostChunk& chunk : chunks) {
    if (chunk.bytes < 0 || chunk.slot_offset < 0 || (chunk.bytes > 0 && chunk.host == nullptr)) {
      return absl::InvalidArgumentError(absl::StrCat("section ", sections_.size(), ": bad chunk (",
                                                     chunk.bytes, " bytes at slot offset ", chunk.slot_offset,
                                                     ")"));
    }
    end = std::max(end, chunk.slot_offset + chunk.bytes);
  }
  sections_.push_back(std::move(chunks));
  bytes_.push_back(end);
  return static_cast<int>(sections_.size()) - 1;
}

int64_t PinnedSectionSource::section_bytes(int section) const {
  return section >= 0 && section < num_sections() ? bytes_[section] : 0;
}

absl::StatusOr<std::vector<HostChunk>> PinnedSectionSource::Acquire(int section) {
  if (section < 0 || section >= num_sections()) {
    return absl::OutOfRangeError(
        absl::StrCat("section ", section, " requested; the source has ", num_sections()));
  }
  return sections_[section];
}

absl::StatusOr<std::unique_ptr<SectionRing>> SectionRing::Create(DeviceArena& arena, int num_slots,
                                                                 int64_t slot_bytes) {
  if (num_slots < 2)
    return absl::InvalidArgumentError(absl::StrCat("section ring needs >= 2 slots, got ", num_slots));
  if (slot_bytes <= 0)
    return absl::InvalidArgumentError(absl::StrCat("section ring slot of ", slot_bytes, " bytes"));
  RINGMOE_RETURN_IF_ERROR(RequireGpu());
  std::unique_ptr<SectionRing> ring(new SectionRing());
  ring->slot_bytes_ = slot_bytes;
  ring->slots_.resize(num_slots);
  for (int i = 0; i < num_slots; ++i) {
    Slot& slot = ring->slots_[i];
    RINGMOE_ASSIGN_OR_RETURN(
        slot.memory, arena.Allocate(slot_bytes, absl::StrCat("section ring slot ", i, " of ", num_slots)));
    RINGMOE_ASSIGN_OR_RETURN(slot.copy_start, Event::Create(/*timing=*/true));
    RINGMOE_ASSIGN_OR_RETURN(slot.filled, Event::Create(/*timing=*/true));
    RINGMOE_ASSIGN_OR_RETURN(slot.consumed, Event::Create());
  }
  return ring;
}

SectionRing::~SectionRing() {
  // Slots' memory must not be freed under a running copy or kernel.
  Drain().IgnoreError();
}

absl::Status SectionRing::CheckSlot(int slot, const char* what) const {
  if (slot < 0 || slot >= num_slots()) {
    return absl::OutOfRangeError(
        absl::StrCat(what, ": slot ", slot, " of a ring with ", num_slots(), " slots"));
  }
  return absl::OkStatus();
}

absl::Status SectionRing::ReleaseSlot(Slot& slot, bool wait) {
  if (slot.pending_source == nullptr) return absl::OkStatus();
  if (wait) {
    RINGMOE_RETURN_IF_ERROR(slot.filled.Synchronize());
  } else {
    RINGMOE_ASSIGN_OR_RETURN(bool done, slot.filled.IsComplete());
    if (!done) return absl::OkStatus();
  }
  RINGMOE_ASSIGN_OR_RETURN(float copy_ms, ElapsedMilliseconds(slot.copy_start, slot.filled));
  copy_seconds_ += copy_ms * 1e-3;
  slot.pending_source->Release(slot.pending_section);
  slot.pending_source = nullptr;
  slot.pending_section = -1;
  return absl::OkStatus();
}

absl::Status SectionRing::ReleaseFinishedCopies() {
  for (Slot& slot : slots_) RINGMOE_RETURN_IF_ERROR(ReleaseSlot(slot, /*wait=*/false));
  return absl::OkStatus();
}

absl::Status SectionRing::Drain() {
  for (Slot& slot : slots_) {
    if (slot.fill_queued) RINGMOE_RETURN_IF_ERROR(slot.filled.Synchronize());
    if (slot.consumed_recorded) RINGMOE_RETURN_IF_ERROR(slot.consumed.Synchronize());
    RINGMOE_RETURN_IF_ERROR(ReleaseSlot(slot, /*wait=*/true));
  }
  return absl::OkStatus();
}

absl::Status SectionRing::Fill(int slot, HostSectionSource& source, int section, const Stream& copy_stream) {
  RINGMOE_RETURN_IF_ERROR(CheckSlot(slot, "SectionRing::Fill"));
  int64_t bytes = source.section_bytes(section);
  ByteRange all{0, bytes};
  return FillRanges(slot, source, section, std::span<const ByteRange>(&all, 1), copy_stream);
}

absl::Status SectionRing::FillRanges(int slot_index, HostSectionSource& source, int section,
                                     std::span<const ByteRange> ranges, const Stream& copy_stream) {
  RINGMOE_RETURN_IF_ERROR(CheckSlot(slot_index, "SectionRing::FillRanges"));
  if (section < 0 || section >= source.num_sections()) {
    return absl::OutOfRangeError(
        absl::StrCat("section ", section, " requested; the source has ", source.num_sections()));
  }
  const int64_t section_bytes = source.section_bytes(section);
  if (section_bytes > slot_bytes_) {
    return absl::InvalidArgumentError(absl::StrCat("section ", section, " is ", FormatBytes(section_bytes),
                                                   ", larger than a ring slot (", FormatBytes(slot_bytes_),
                                                   ")"));
  }
  for (const ByteRange& range : ranges) {
    if (range.offset < 0 || range.bytes < 0 || range.offset + range.bytes > section_bytes) {
      return absl::InvalidArgumentError(absl::StrCat("section ", section, ": range [", range.offset, ", +",
                                                     range.bytes, ") outside its ", section_bytes, " bytes"));
    }
  }
  Slot& slot = slots_[slot_index];
  // The slot's previous section goes back to its source before the slot forgets it.
  RINGMOE_RETURN_IF_ERROR(ReleaseSlot(slot, /*wait=*/true));
  // Hand back every other finished copy's section too, before a source that reads into a few staging
  // buffers (the SSD tier) may wait for one.
  RINGMOE_RETURN_IF_ERROR(ReleaseFinishedCopies());
  RINGMOE_ASSIGN_OR_RETURN(std::vector<HostChunk> chunks, source.Acquire(section));
  for (const HostChunk& chunk : chunks) {
    if (chunk.slot_offset < 0 || chunk.bytes < 0 || chunk.slot_offset + chunk.bytes > slot_bytes_) {
      source.Release(section);
      return absl::InvalidArgumentError(absl::StrCat("section ", section, ": chunk at slot offset ",
                                                     chunk.slot_offset, " of ", chunk.bytes,
                                                     " bytes overruns the slot"));
    }
  }
  absl::Status status = QueueCopies(slot_index, source, section, chunks, ranges, copy_stream);
  if (!status.ok()) {
    // Copies already queued may still read the chunks: wait for them before handing the memory back.
    copy_stream.Synchronize().IgnoreError();
    slot.pending_source = nullptr;
    slot.pending_section = -1;
    slot.section = -1;
    slot.fill_queued = false;
    source.Release(section);
  }
  return status;
}

absl::Status SectionRing::QueueCopies(int slot_index, HostSectionSource& source, int section,
                                      const std::vector<HostChunk>& chunks, std::span<const ByteRange> ranges,
                                      const Stream& copy_stream) {
  Slot& slot = slots_[slot_index];
  // From here on the section counts as pending: whatever was queued is released only after `filled`.
  slot.pending_source = &source;
  slot.pending_section = section;
  slot.section = -1;
  if (slot.consumed_recorded) RINGMOE_RETURN_IF_ERROR(copy_stream.WaitFor(slot.consumed));
  RINGMOE_RETURN_IF_ERROR(slot.copy_start.Record(copy_stream));
  auto* base = static_cast<uint8_t*>(slot.memory.data());
  for (const ByteRange& range : ranges) {
    const int64_t range_end = range.offset + range.bytes;
    for (const HostChunk& chunk : chunks) {
      int64_t begin = std::max(range.offset, chunk.slot_offset);
      int64_t end = std::min(range_end, chunk.slot_offset + chunk.bytes);
      if (end <= begin) continue;
      const auto* host = static_cast<const uint8_t*>(chunk.host) + (begin - chunk.slot_offset);
      // In pieces, so that another stream's small copy in the same direction waits for a piece at most,
      // not for the whole section (copy engines serve their queues a request at a time).
      for (int64_t piece = begin; piece < end; piece += kFillPieceBytes) {
        const int64_t bytes = std::min(kFillPieceBytes, end - piece);
        RINGMOE_RETURN_IF_ERROR(CopyHostToDevice(base + piece, host + (piece - begin), bytes, copy_stream));
      }
      bytes_copied_ += end - begin;
    }
  }
  RINGMOE_RETURN_IF_ERROR(slot.filled.Record(copy_stream));
  slot.fill_queued = true;
  slot.section = section;
  return absl::OkStatus();
}

absl::StatusOr<void*> SectionRing::BeginCompute(int slot_index, const Stream& compute_stream) {
  RINGMOE_RETURN_IF_ERROR(CheckSlot(slot_index, "SectionRing::BeginCompute"));
  Slot& slot = slots_[slot_index];
  if (!slot.fill_queued || slot.section < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("SectionRing::BeginCompute: slot ", slot_index, " was never filled"));
  }
  RINGMOE_RETURN_IF_ERROR(compute_stream.WaitFor(slot.filled));
  return slot.memory.data();
}

absl::Status SectionRing::EndCompute(int slot_index, const Stream& compute_stream) {
  RINGMOE_RETURN_IF_ERROR(CheckSlot(slot_index, "SectionRing::EndCompute"));
  Slot& slot = slots_[slot_index];
  RINGMOE_RETURN_IF_ERROR(slot.consumed.Record(compute_stream));
  slot.consumed_recorded = true;
  return absl::OkStatus();
}

absl::StatusOr<int64_t> CopyRoutedExperts(const void* host_layer, const PackedLayerIndex& index,
                                          std::span<const int32_t> expert_counts, void* device_layer,
                                          const Stream& copy_stream) {
  if (static_cast<int>(expert_counts.size()) != index.num_experts) {
    return absl::InvalidArgumentError(absl::StrCat("CopyRoutedExperts: ", expert_counts.size(),
                                                   " expert counts for a layer of ", index.num_experts,
                                                   " experts"));
  }
  int64_t copied = 0;
  const auto* host = static_cast<const uint8_t*>(host_layer);
  auto* device = static_cast<uint8_t*>(device_layer);
  for (const ByteRange& range : RoutedExpertRanges(index, expert_counts)) {
    RINGMOE_RETURN_IF_ERROR(
        CopyHostToDevice(device + range.offset, host + range.offset, range.bytes, copy_stream));
    copied += range.bytes;
  }
  return copied;
}

bool PreferRoutedCopy(const PackedLayerIndex& index, std::span<const int32_t> expert_counts,
                      double max_fraction) {
  int64_t routed = 0;
  for (const ByteRange& range : RoutedExpertRanges(index, expert_counts)) routed += range.bytes;
  return static_cast<double>(routed) <= max_fraction * static_cast<double>(index.total_bytes());
}

std::vector<ByteRange> MissingRoutedRanges(const PackedLayerIndex& index, int first_expert,
                                           std::span<const int32_t> expert_counts, std::vector<char>& held) {
  PackedLayerIndex part = index;  // The part's experts, from its start: offsets come out relative to it.
  part.num_experts = static_cast<int>(held.size());
  const std::span<const int32_t> routed = expert_counts.subspan(first_expert, held.size());
  std::vector<int32_t> missing(held.size(), 0);
  bool any = false;
  for (size_t i = 0; i < held.size(); ++i) {
    missing[i] = routed[i] > 0 && !held[i];
    any = any || missing[i];
  }
  if (!any) return {};
  if (!PreferRoutedCopy(part, routed)) {
    std::fill(held.begin(), held.end(), 1);
    return {ByteRange{0, part.total_bytes()}};
  }
  for (size_t i = 0; i < held.size(); ++i) held[i] = held[i] || missing[i];
  return RoutedExpertRanges(part, missing);
}

}  // namespace ringmoe::gpu
