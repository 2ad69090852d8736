#include "gpu/tiered_section_source.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace ringmoe::gpu {

absl::StatusOr<std::unique_ptr<SsdSectionSource>> SsdSectionSource::Create(
    std::vector<std::string> files, std::vector<io::SectionSpec> sections, int staging_buffers,
    int64_t staging_bytes, const io::SectionReadOptions& options) {
  std::unique_ptr<SsdSectionSource> source(new SsdSectionSource());
  int64_t largest = 0;
  for (const io::SectionSpec& spec : sections) {
    absl::StatusOr<io::SectionReadPlan> plan = io::PlanSectionReads(spec, options);
    if (!plan.ok()) return plan.status();
    largest = std::max<int64_t>(largest, static_cast<int64_t>(plan->staging_bytes));
    source->section_bytes_.push_back(static_cast<int64_t>(spec.section_bytes));
  }
  absl::Status started =
      source->Start(staging_buffers, staging_bytes, largest, static_cast<int64_t>(options.alignment),
                    [&](std::vector<std::span<uint8_t>> buffers) {
                      return io::SectionPrefetcher::Create(std::move(files), std::move(sections),
                                                           std::move(buffers), options);
                    });
  if (!started.ok()) return started;
  return source;
}

absl::StatusOr<std::unique_ptr<SsdSectionSource>> SsdSectionSource::CreateFromPlans(
    std::vector<std::string> files, std::vector<io::SectionReadPlan> plans, int staging_buffers,
    int64_t staging_bytes, const io::SectionReadOptions& options) {
  std::unique_ptr<SsdSectionSource> source(new SsdSectionSource());
  int64_t largest = 0;
  for (const io::SectionReadPlan& plan : plans) {
    largest = std::max<int64_t>(largest, static_cast<int64_t>(plan.staging_bytes));
    uint64_t bytes = 0;
    for (const io::PlannedPiece& piece : plan.pieces)
      bytes = std::max(bytes, piece.section_offset + piece.bytes);
    source->section_bytes_.push_back(static_cast<int64_t>(bytes));
  }
  absl::Status started =
      source->Start(staging_buffers, staging_bytes, largest, static_cast<int64_t>(options.alignment),
                    [&](std::vector<std::span<uint8_t>> buffers) {
                      return io::SectionPrefetcher::CreateFromPlans(std::move(files), std::move(plans),
                                                                    std::move(buffers), options);
                    });
  if (!started.ok()) return started;
  return source;
}

absl::Status SsdSectionSource::Start(
    int staging_buffers, int64_t staging_bytes, int64_t largest, int64_t alignment,
    const std::function<absl::StatusOr<std::unique_ptr<io::SectionPrefetcher>>(
        std::vector<std::span<uint8_t>>)>& make_prefetcher) {
  if (staging_buffers < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("the SSD tier needs at least 2 staging buffers, not ", staging_buffers));
  }
  if (staging_bytes == 0) staging_bytes = largest;
  if (largest > staging_bytes) {
    return absl::InternalError(absl::StrCat("an SSD section's reads need ", largest,
                                            " staging bytes; the plan priced ", staging_bytes));
  }
  std::vector<std::span<uint8_t>> buffers;
  for (int i = 0; i < staging_buffers; ++i) {
    absl::StatusOr<PinnedHostBuffer> buffer =
        PinnedHostBuffer::Allocate(staging_bytes, "SSD staging buffer", alignment);
    if (!buffer.ok()) return buffer.status();
    buffers.emplace_back(buffer->as<uint8_t>(), static_cast<size_t>(staging_bytes));
    staging_.push_back(std::move(*buffer));
  }
  staging_bytes_ = staging_bytes * staging_buffers;
  absl::StatusOr<std::unique_ptr<io::SectionPrefetcher>> prefetcher = make_prefetcher(std::move(buffers));
  if (!prefetcher.ok()) return prefetcher.status();
  prefetcher_ = std::move(*prefetcher);
  return absl::OkStatus();
}

SsdSectionSource::~SsdSectionSource() { prefetcher_.reset(); }

absl::StatusOr<std::vector<HostChunk>> SsdSectionSource::Acquire(int section) {
  absl::StatusOr<std::vector<io::StagedPiece>> pieces = prefetcher_->Acquire(section);
  if (!pieces.ok()) return pieces.status();
  std::vector<HostChunk> chunks;
  chunks.reserve(pieces->size());
  for (const io::StagedPiece& piece : *pieces) {
    chunks.push_back(
        {piece.host, static_cast<int64_t>(piece.bytes), static_cast<int64_t>(piece.section_offset)});
  }
  return chunks;
}

void SsdSectionSource::Release(int section) { prefetcher_->Release(section); }

int TieredSectionSource::Add(HostSectionSource* source, int section) {
  entries_.emplace_back(source, section);
  return static_cast<int>(entries_.size()) - 1;
}

int64_t TieredSectionSource::section_bytes(int section) const {
  const auto& [source, index] = entries_[section];
  return source->section_bytes(index);
}

absl::StatusOr<std::vector<HostChunk>> TieredSectionSource::Acquire(int section) {
  const auto& [source, index] = entries_[section];
  return source->Acquire(index);
}

void TieredSectionSource::Release(int section) {
  const auto& [source, index] = entries_[section];
  source->Release(index);
}

}  // namespace ringmoe::gpu
