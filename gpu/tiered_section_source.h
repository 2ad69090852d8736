// The host side of the ring's three tiers: sections already in pinned memory (PinnedSectionSource) and
// sections read from the checkpoint's files on SSD every time the ring needs them (SsdSectionSource, over
// io::SectionPrefetcher with pinned staging buffers), behind one HostSectionSource (TieredSectionSource),
// so that the ring and the forward pass do not know which tier a section comes from.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "gpu/host_memory.h"
#include "gpu/section_ring.h"
#include "io/section_reader.h"

namespace ringmoe::gpu {

// Sections read from SSD: io::SectionPrefetcher reads them ahead in section order, round robin, into
// `staging_buffers` pinned buffers allocated here; Acquire waits for a section's reads (the time shows in
// stats().wait_seconds) and Release hands its buffer back once the ring's copies out of it completed.
// Threading: HostSectionSource's (one driving thread); stats() may be called from any thread.
class SsdSectionSource final : public HostSectionSource {
 public:
  // `files`: the checkpoint's shard paths that `sections` index. Every section's staging layout must fit
  // `staging_bytes` (0: the largest section's layout, io::PlanSectionReads).
  static absl::StatusOr<std::unique_ptr<SsdSectionSource>> Create(std::vector<std::string> files,
                                                                  std::vector<io::SectionSpec> sections,
                                                                  int staging_buffers, int64_t staging_bytes,
                                                                  const io::SectionReadOptions& options);
  // The same over read plans made elsewhere: the section files of --ssd-dir (io/section_file.h), read with
  // io::SectionPrefetcher::CreateFromPlans, every drive of a section at once.
  static absl::StatusOr<std::unique_ptr<SsdSectionSource>> CreateFromPlans(
      std::vector<std::string> files, std::vector<io::SectionReadPlan> plans, int staging_buffers,
      int64_t staging_bytes, const io::SectionReadOptions& options);
  ~SsdSectionSource() override;

  int num_sections() const override { return static_cast<int>(section_bytes_.size()); }
  int64_t section_bytes(int section) const override { return section_bytes_[section]; }
  absl::StatusOr<std::vector<HostChunk>> Acquire(int section) override;
  void Release(int section) override;

  io::SectionPrefetcher::Stats stats() const { return prefetcher_->stats(); }
  int64_t staging_bytes() const { return staging_bytes_; }  // All buffers together.

 private:
  SsdSectionSource() = default;
  // Allocates the pinned buffers (each aligned for O_DIRECT) and starts `make_prefetcher` over them.
  absl::Status Start(int staging_buffers, int64_t staging_bytes, int64_t largest, int64_t alignment,
                     const std::function<absl::StatusOr<std::unique_ptr<io::SectionPrefetcher>>(
                         std::vector<std::span<uint8_t>>)>& make_prefetcher);
  std::vector<PinnedHostBuffer> staging_;
  std::vector<int64_t> section_bytes_;
  int64_t staging_bytes_ = 0;
  std::unique_ptr<io::SectionPrefetcher> prefetcher_;  // Declared last: stops before the buffers go.
};

// Sections of several sources under one index space, in the order they were added.
// Threading: HostSectionSource's.
class TieredSectionSource final : public HostSectionSource {
 public:
  // Section `section` of `source` (which outlives this) becomes section num_sections() - 1 here.
  int Add(HostSectionSource* source, int section);

  int num_sections() const override { return static_cast<int>(entries_.size()); }
  int64_t section_bytes(int section) const override;
  absl::StatusOr<std::vector<HostChunk>> Acquire(int section) override;
  void Release(int section) override;

 private:
  std::vector<std::pair<HostSectionSource*, int>> entries_;
};

}  // namespace ringmoe::gpu
