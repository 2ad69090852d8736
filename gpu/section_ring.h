// The section ring: N >= 2 device slots, each holding one section (a run of layers' streamed expert bytes).
// A copy stream fills slot i+1 from a host producer while the compute stream works on slot i; events order
// the two: "slot filled" -> compute may start; "compute done" -> the slot may be refilled. No host waits on
// the fast path. See gpu/DESIGN.md for how the engine drives it.
//
// The host side is a producer interface, HostSectionSource, so that a third tier (SSD -> pinned sections via
// io_uring) plugs in without changing the ring. PinnedSectionSource serves sections already in pinned memory.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gpu/device_arena.h"
#include "gpu/expert_packing.h"
#include "gpu/stream.h"

namespace ringmoe::gpu {

// A piece of a section in pinned host memory and where it lands in the slot. It must lie inside one pinned
// allocation or one registered chunk (HostRegistration::Split cuts ranges accordingly): a copy may not span
// two.
struct HostChunk {
  const void* host = nullptr;
  int64_t bytes = 0;
  int64_t slot_offset = 0;
};

// Produces sections in pinned host memory. Threading: called only from the thread that drives the ring.
class HostSectionSource {
 public:
  virtual ~HostSectionSource() = default;
  virtual int num_sections() const = 0;
  virtual int64_t section_bytes(int section) const = 0;
  // The pinned chunks that make up `section`; they must stay valid and unchanged until Release(section).
  // May block (an SSD-backed source waits for its reads here).
  virtual absl::StatusOr<std::vector<HostChunk>> Acquire(int section) = 0;
  // Every copy out of the chunks acquired for `section` has completed; their memory may be reused.
  virtual void Release(int section) = 0;
};

// Sections whose bytes already sit in pinned memory for the whole run (PinnedHostBuffer, HostRegistration of
// a mapped checkpoint); Acquire returns them and Release does nothing.
class PinnedSectionSource final : public HostSectionSource {
 public:
  // Adds a section made of `chunks` (pinned, outliving this source); returns its index. InvalidArgument on
  // a negative size or a null pointer.
  absl::StatusOr<int> AddSection(std::vector<HostChunk> chunks);

  int num_sections() const override { return static_cast<int>(sections_.size()); }
  int64_t section_bytes(int section) const override;
  absl::StatusOr<std::vector<HostChunk>> Acquire(int section) override;
  void Release(int) override {}

 private:
  std::vector<std::vector<HostChunk>> sections_;
  std::vector<int64_t> bytes_;
};

// Ring fills are queued as copies of at most this many bytes (at 55 GB/s, 1.2 ms each): large enough to
// run at full link speed, small enough not to hold other streams' copies up for long.
inline constexpr int64_t kFillPieceBytes = int64_t{64} << 20;

// Threading: one host thread drives a ring (Fill / BeginCompute / EndCompute); the GPU work it queues runs on
// the streams passed in. The ring must outlive the work it queued (Drain() before destroying it).
class SectionRing {
 public:
  static absl::StatusOr<std::unique_ptr<SectionRing>> Create(DeviceArena& arena, int num_slots,
                                                             int64_t slot_bytes);
  ~SectionRing();

  int num_slots() const { return static_cast<int>(slots_.size()); }
  int64_t slot_bytes() const { return slot_bytes_; }
  void* slot_data(int slot) const { return slots_[slot].memory.data(); }
  int section_in(int slot) const { return slots_[slot].section; }  // -1 while empty.

  // Queues on `copy_stream` the copy of all of `section` into `slot`, ordered after the compute that last
  // used the slot (EndCompute). Acquires the section from `source` (may block) and releases it once copied.
  absl::Status Fill(int slot, HostSectionSource& source, int section, const Stream& copy_stream);
  // As Fill, but copies only `ranges` (offsets within the section), e.g. the experts a small batch routes
  // to (RoutedExpertRanges, shifted by the layer's offset). Bytes outside the ranges keep stale contents.
  absl::Status FillRanges(int slot, HostSectionSource& source, int section, std::span<const ByteRange> ranges,
                          const Stream& copy_stream);

  // Makes `compute_stream` wait (on the GPU) for the slot's fill; returns the slot's device address.
  absl::StatusOr<void*> BeginCompute(int slot, const Stream& compute_stream);
  // All compute reading the slot has been queued on `compute_stream`; the slot may be refilled after it.
  absl::Status EndCompute(int slot, const Stream& compute_stream);

  // Gives finished copies' sections back to their sources (never blocks).
  absl::Status ReleaseFinishedCopies();
  // Waits for every queued copy and releases every section.
  absl::Status Drain();

  int64_t bytes_copied() const { return bytes_copied_; }  // Total queued by Fill/FillRanges.
  // Seconds the copy stream spent copying fills that have completed and been released (from the end of each
  // fill's wait for its slot to its last byte): bytes over this is the bandwidth while streaming.
  double copy_seconds() const { return copy_seconds_; }

 private:
  struct Slot {
    DeviceBuffer memory;
    Event copy_start;  // Recorded on the copy stream once the slot is free, before its copies (timing).
    Event filled;      // Recorded on the copy stream after the slot's copies (timing).
    Event consumed;    // Recorded on the compute stream after the last kernel reading the slot.
    bool consumed_recorded = false;
    bool fill_queued = false;
    int section = -1;
    HostSectionSource* pending_source = nullptr;  // Section to Release once `filled` completes.
    int pending_section = -1;
  };
  SectionRing() = default;
  absl::Status CheckSlot(int slot, const char* what) const;
  absl::Status ReleaseSlot(Slot& slot, bool wait);
  absl::Status QueueCopies(int slot, HostSectionSource& source, int section,
                           const std::vector<HostChunk>& chunks, std::span<const ByteRange> ranges,
                           const Stream& copy_stream);

  std::vector<Slot> slots_;
  int64_t slot_bytes_ = 0;
  int64_t bytes_copied_ = 0;
  double copy_seconds_ = 0;
};

// Copies to `device_layer` only the experts with expert_counts[e] > 0 (neighbours merged into one copy), each
// to its place in the packed layout, so `index` stays valid for the GEMMs. Returns the bytes queued.
// For a small batch that routes to few experts; a large batch should copy the whole layer in one go.
absl::StatusOr<int64_t> CopyRoutedExperts(const void* host_layer, const PackedLayerIndex& index,
                                          std::span<const int32_t> expert_counts, void* device_layer,
                                          const Stream& copy_stream);

// True when copying only the routed experts saves enough to be worth the extra copies: the routed experts'
// bytes are at most `max_fraction` of the layer.
bool PreferRoutedCopy(const PackedLayerIndex& index, std::span<const int32_t> expert_counts,
                      double max_fraction = 0.75);

// For a ring slot that holds a part of a layer: experts [first_expert, first_expert + held.size()) of the
// layer `index` describes, `held` marking those already in the slot. Returns the copies (offsets within the
// part) that bring in what `expert_counts` (the whole layer's) routes to and the slot lacks, and marks them
// held: none when it holds them all, and the whole part once PreferRoutedCopy finds too much of it routed.
std::vector<ByteRange> MissingRoutedRanges(const PackedLayerIndex& index, int first_expert,
                                           std::span<const int32_t> expert_counts, std::vector<char>& held);

}  // namespace ringmoe::gpu
