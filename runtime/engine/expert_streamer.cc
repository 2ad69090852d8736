#include "runtime/engine/expert_streamer.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "gpu/section_ring.h"
#include "io/status_macros.h"

namespace ringmoe {

ExpertStreamer::ExpertStreamer(GpuModel& model, const ModelSpec& spec, bool routed_expert_copies,
                               const gpu::Stream& compute, const gpu::Stream& copy)
    : model_(model),
      spec_(spec),
      wants_routed_copies_(routed_expert_copies),
      compute_(compute),
      copy_(copy) {}

absl::Status ExpertStreamer::PrimeRing() {
  gpu::SectionRing* ring = model_.ring();
  if (ring == nullptr) return absl::OkStatus();
  slot_of_section_.assign(model_.num_sections(), -1);
  parts_one_at_a_time_ = model_.layer_parts() > 1 && ring->num_slots() < model_.layer_parts() + 1;
  routed_copies_ = wants_routed_copies_ && !parts_one_at_a_time_ && model_.num_sections() > ring->num_slots();
  if (routed_copies_) {
    // Nothing ahead: a section takes its slot when a micro-batch's routing asks for its experts.
    for (int section = 0; section < model_.num_sections(); ++section)
      slot_of_section_[section] = section % ring->num_slots();
    slot_experts_.assign(ring->num_slots(), {});
    return absl::OkStatus();
  }
  for (int section = 0; section < std::min(ring->num_slots(), model_.num_sections()); ++section) {
    RINGMOE_RETURN_IF_ERROR(ring->Fill(section, model_.source(), section, copy_));
    slot_of_section_[section] = section;
  }
  return absl::OkStatus();
}

absl::Status ExpertStreamer::BeginLayer(int layer) {
  const GpuLayer& g = model_.layer(layer);
  if (!spec_.layers[layer].is_moe) return absl::OkStatus();
  expert_bases_.assign(spec_.num_experts, static_cast<const uint8_t*>(g.experts.data()));
  const int64_t stride = model_.expert_index().expert_stride_bytes;
  if (parts_one_at_a_time_) return absl::OkStatus();  // BeginPart sets each part's bases
  for (const StreamedPart& part : g.parts) {
    const int slot = slot_of_section_[part.section];
    if (routed_copies_) {
      // Filled (and waited for) per micro-batch once its routing is known; the slot's old experts are stale.
      slot_experts_[slot].assign(part.num_experts, 0);
      const uint8_t* base =
          static_cast<const uint8_t*>(model_.ring()->slot_data(slot)) - part.first_expert * stride;
      std::fill_n(expert_bases_.begin() + part.first_expert, part.num_experts, base);
      continue;
    }
    absl::StatusOr<void*> address = model_.ring()->BeginCompute(slot, compute_);
    if (!address.ok()) return address.status();
    // Expert e of the part sits at (e - first_expert) * stride in its slot; the index adds e * stride.
    const uint8_t* base = static_cast<const uint8_t*>(*address) - part.first_expert * stride;
    std::fill_n(expert_bases_.begin() + part.first_expert, part.num_experts, base);
  }
  return absl::OkStatus();
}

absl::Status ExpertStreamer::FetchRoutedExperts(int layer, std::span<const int32_t> expert_counts) {
  if (!routed_copies_) return absl::OkStatus();
  gpu::SectionRing* ring = model_.ring();
  for (const StreamedPart& part : model_.layer(layer).parts) {
    const int slot = slot_of_section_[part.section];
    const std::vector<gpu::ByteRange> ranges = gpu::MissingRoutedRanges(
        model_.expert_index(), part.first_expert, expert_counts, slot_experts_[slot]);
    // The compute stream already waits for what earlier micro-batches fetched into the slot.
    if (ranges.empty()) continue;
    RINGMOE_RETURN_IF_ERROR(ring->FillRanges(slot, model_.source(), part.section, ranges, copy_));
    RINGMOE_RETURN_IF_ERROR(ring->BeginCompute(slot, compute_).status());
  }
  return absl::OkStatus();
}

absl::Status ExpertStreamer::BeginPart(int layer, int part_index) {
  const GpuLayer& g = model_.layer(layer);
  if (!parts_one_at_a_time_ || part_index < 0 || part_index >= static_cast<int>(g.parts.size())) {
    return absl::InternalError(absl::StrCat("ExpertStreamer::BeginPart: part ", part_index, " of layer ",
                                            layer, " (", g.parts.size(),
                                            " parts, one at a time: ", parts_one_at_a_time_, ")"));
  }
  const StreamedPart& part = g.parts[part_index];
  absl::StatusOr<void*> address = model_.ring()->BeginCompute(slot_of_section_[part.section], compute_);
  if (!address.ok()) return address.status();
  const int64_t stride = model_.expert_index().expert_stride_bytes;
  const uint8_t* base = static_cast<const uint8_t*>(*address) - part.first_expert * stride;
  std::fill_n(expert_bases_.begin() + part.first_expert, part.num_experts, base);
  return absl::OkStatus();
}

absl::Status ExpertStreamer::EndPart(int layer, int part_index) {
  const GpuLayer& g = model_.layer(layer);
  if (!parts_one_at_a_time_ || part_index < 0 || part_index >= static_cast<int>(g.parts.size())) {
    return absl::InternalError(
        absl::StrCat("ExpertStreamer::EndPart: part ", part_index, " of layer ", layer));
  }
  return ReleaseSlot(g.parts[part_index].section);
}

absl::Status ExpertStreamer::ReleaseSlot(int section) {
  gpu::SectionRing* ring = model_.ring();
  const int slot = slot_of_section_[section];
  RINGMOE_RETURN_IF_ERROR(ring->EndCompute(slot, compute_));
  const int sections = model_.num_sections();
  if (sections > ring->num_slots() && !routed_copies_) {
    // Round robin: the slot takes the section num_slots after, wrapping into the next step.
    const int next = (section + ring->num_slots()) % sections;
    RINGMOE_RETURN_IF_ERROR(ring->Fill(slot, model_.source(), next, copy_));
    slot_of_section_[next] = slot;
  }
  return absl::OkStatus();
}

absl::Status ExpertStreamer::EndLayer(int layer) {
  gpu::SectionRing* ring = model_.ring();
  const GpuLayer& g = model_.layer(layer);
  if (g.parts.empty()) return absl::OkStatus();
  if (!parts_one_at_a_time_) {
    for (const StreamedPart& part : g.parts) RINGMOE_RETURN_IF_ERROR(ReleaseSlot(part.section));
  }
  return ring->ReleaseFinishedCopies();
}

int64_t ExpertStreamer::streamed_bytes() const {
  const gpu::SectionRing* ring = model_.ring();
  return ring != nullptr ? ring->bytes_copied() : 0;
}

double ExpertStreamer::copy_seconds() const {
  const gpu::SectionRing* ring = model_.ring();
  return ring != nullptr ? ring->copy_seconds() : 0;
}

}  // namespace ringmoe
