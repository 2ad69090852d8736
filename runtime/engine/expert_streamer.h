// ExpertStreamer: drives the section ring for an offload step. It decides which ring slot holds which
// streamed section, makes the compute stream wait for a layer's slots before its expert GEMMs, refills the
// slots a layer frees with the sections N ahead, and in routed mode (GpuPlacement::routed_expert_copies)
// copies only the experts each micro-batch routes to (gpu/DESIGN.md, "Small batches").
//
// Threading: PrimeRing runs on the driving thread in GpuForward::Create, before the feeder thread starts.
// From then on BeginLayer, FetchRoutedExperts, EndLayer and expert_bases belong to the feeder thread (the
// driving thread posts them as tasks, in layer order, around the micro-batches' work); the GPU-side order of
// copies and compute is kept by the ring's events, so no host thread waits for a copy here. The driving
// thread reads streamed_bytes and copy_seconds only while the feeder is idle (after GpuFeeder::Drain).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "gpu/stream.h"
#include "io/model_spec.h"
#include "runtime/engine/gpu_model.h"

namespace ringmoe {

class ExpertStreamer {
 public:
  // `model`, `compute` and `copy` must outlive the streamer. routed_expert_copies: the plan asks for routed
  // copies (they apply only where the ring cannot hold every streamed section).
  ExpertStreamer(GpuModel& model, const ModelSpec& spec, bool routed_expert_copies,
                 const gpu::Stream& compute, const gpu::Stream& copy);

  // Fills the ring's slots with the first sections (nothing in routed mode: slots are filled on demand).
  absl::Status PrimeRing();

  // The layer's routed experts: the compute stream waits for their ring slots; sets expert_bases(). With
  // parts one at a time, a streamed layer's parts are waited for and released by BeginPart / EndPart.
  absl::Status BeginLayer(int layer);
  // Whether streamed layers' parts pass through the ring one at a time (a ring shallower than a layer:
  // planner::ExecutionPlan::parts_one_at_a_time).
  bool parts_one_at_a_time() const { return parts_one_at_a_time_; }
  // Parts one at a time: the compute stream waits for part `part` of `layer` (GpuModel's parts, in section
  // order) and its experts' bases are set; EndPart frees its slot after the work queued so far, and the slot
  // takes the section N ahead.
  absl::Status BeginPart(int layer, int part);
  absl::Status EndPart(int layer, int part);
  // Routed mode, once a micro-batch's expert counts (the whole layer's) are back on the host: copies the
  // layer's routed experts that its slots lack and makes the compute stream wait for them. Does nothing
  // otherwise.
  absl::Status FetchRoutedExperts(int layer, std::span<const int32_t> expert_counts);
  // The layer's slots are free after the work queued so far; they take the sections N ahead (parts one at a
  // time: EndPart has done that already).
  absl::Status EndLayer(int layer);

  // Per expert of the layer between BeginLayer and EndLayer: the device address its packed index is
  // relative to (resident layers: the layer's buffer; streamed parts: slot address - first_expert * stride).
  const std::vector<const uint8_t*>& expert_bases() const { return expert_bases_; }
  // Whether micro-batches fetch their routed experts (decided by PrimeRing).
  bool routed_copies() const { return routed_copies_; }

  // Host-to-device expert bytes queued so far (the priming included), and the copy stream's seconds for the
  // fills that have completed (gpu::SectionRing's counters; 0 without a ring).
  int64_t streamed_bytes() const;
  double copy_seconds() const;

 private:
  // The section's slot is free after the work queued so far: it takes the section N ahead.
  absl::Status ReleaseSlot(int section);

  GpuModel& model_;
  const ModelSpec& spec_;
  const bool wants_routed_copies_;
  const gpu::Stream& compute_;
  const gpu::Stream& copy_;
  std::vector<int> slot_of_section_;
  bool routed_copies_ = false;                   // wants_routed_copies_, and the ring rotates.
  bool parts_one_at_a_time_ = false;             // the ring holds fewer slots than a layer's parts + 1
  std::vector<std::vector<char>> slot_experts_;  // Routed mode: which of its part's experts each slot holds.
  std::vector<const uint8_t*> expert_bases_;     // Of the layer being computed.
};

}  // namespace ringmoe
