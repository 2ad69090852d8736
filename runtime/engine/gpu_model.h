// GpuModel: the model's weights laid out for the GPU path, as the plan places them.
//
// Resident on the GPU (bf16 unless noted): every layer's q/k/v/o projections (biases and norms in f32; MLA's
// q_a, q_b or q, kv_a and o), the routers (f32, with DeepSeek-V3's correction bias), shared experts and dense
// MLPs (packed as single-expert layers for gpu::MoeRunner), lm_head and the final norm; then the routed
// experts of as many MoE layers as the plan allows, spread evenly over the model. The routed experts of the
// other MoE layers stream through the section ring every step: those the plan puts in pinned memory are
// packed there at load, one buffer per layer; those it puts on SSD (ExpertTier::kSsd) are read every step,
// straight into the packed layout's pieces in pinned staging buffers (gpu::SsdSectionSource), and never held
// in memory: from the checkpoint's files, or with --ssd-dir from section files laid out once in the packed
// layout and striped over the drives (io/section_file.h). The embedding stays in host memory (rows are looked
// up on the CPU). Immutable after Create, except the ring, which the forward pass drives (one thread).
#pragma once

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "gpu/blas.h"
#include "gpu/device_arena.h"
#include "gpu/expert_packing.h"
#include "gpu/host_memory.h"
#include "gpu/moe_ops.h"
#include "gpu/section_ring.h"
#include "gpu/stream.h"
#include "gpu/tiered_section_source.h"
#include "planner/execution_plan.h"
#include "runtime/engine/model_weights.h"

namespace ringmoe {

// Where the weights go and how the ring runs: the GPU part of the ExecutionPlan (Engine::Open copies it).
struct GpuPlacement {
  // Per layer: where its routed experts live (planner::SpreadResidentLayers); kNone for dense layers.
  std::vector<planner::ExpertTier> expert_tiers;
  // Device slots that streamed layers pass through: >= layer_parts + 1, or as few as 2 for layers cut into
  // parts, which then run one at a time (planner::ExecutionPlan::parts_one_at_a_time: one micro-batch, no
  // expert tiles, shards or routed copies).
  int ring_slots = 2;
  int layer_parts = 1;  // Sections each streamed layer's routed experts are cut into (ring slots are
                        // one part each: smaller slots fit a smaller GPU budget).
  // Expert shards (planner::ExecutionPlan::expert_shards): each MoE layer's routed experts run as this many
  // shards, each into a partial output, combined in shard order (runtime/engine/gpu_expert_shards.h); all on
  // this GPU. layer_parts must be a multiple of it when layers stream: parts are cut shard-major.
  int expert_shards = 1;
  int micro_batches = 2;  // Slices of a step in flight at once.
  // The expert runners take a micro-batch's rows in tiles of at most this many (0: all at once), and are
  // sized for that many (planner::ExecutionPlan::expert_tile_tokens).
  int expert_tile_tokens = 0;
  bool prefill_attention_on_gpu = true;  // Fresh prompts' attention on the GPU (else on the CPU, as decodes).
  // Streamed parts are copied when a micro-batch's routing is known, and only the experts it routes to that
  // are not in the slot yet (the whole part once most of it is routed); nothing is copied ahead. Ignored when
  // the ring has a slot for every streamed section (they stay put).
  bool routed_expert_copies = false;
  int64_t workspace_bytes = 0;  // Device memory the forward pass keeps for activations and scratch.
  int64_t kv_cache_bytes = 0;   // Device memory of the GPU share of the KV cache (KvCache device blocks).
  // Bytes of each of the SSD tier's pinned staging buffers as the plan priced them (planner::
  // SsdStagingBufferBytes); 0: as the sections' reads need.
  int64_t ssd_staging_buffer_bytes = 0;
  // The routed experts' held type (planner::HeldExpertDType): kBF16, or kF8E4M3 = FP8 blocks in pinned
  // memory, ring slots and resident layers, dequantised on the GPU beside the GEMMs (ModelWeights loaded
  // without holding them: GpuModel packs them from the checkpoint's tensors).
  io::DType expert_dtype = io::DType::kBF16;
  // --ssd-dir: the SSD tier reads section files laid out in these directories (one per drive, striped;
  // io/section_file.h) instead of the checkpoint's files. Empty: the checkpoint's files.
  std::vector<std::string> ssd_dirs;
  // Diagnostics (EngineOptions::gpu_stage_times): time each stage of the compute stream's work with events.
  bool gpu_stage_times = false;
  // Diagnostics (EngineOptions::expert_gemm): the routed experts' GEMM strategy; kAuto unless forced.
  gpu::GemmStrategy expert_gemm = gpu::GemmStrategy::kAuto;
};

// A part of a streamed layer's routed experts: experts [first_expert, first_expert + num_experts), one ring
// section.
struct StreamedPart {
  int section = -1;
  int first_expert = 0;
  int num_experts = 0;
};

struct GpuLayer {
  gpu::DeviceBuffer q, k, v, o;                       // bf16 [out, in]
  gpu::DeviceBuffer q_bias, k_bias, v_bias;           // f32, empty without bias
  gpu::DeviceBuffer input_norm, post_attention_norm;  // f32 [hidden]
  gpu::DeviceBuffer q_norm, k_norm;                   // f32, empty without QK-norm
  gpu::DeviceBuffer router;                           // f32 [experts, hidden]
  gpu::DeviceBuffer router_bias;                      // f32 [experts]: DeepSeek-V3's correction bias
  // MLA (DeepSeek): q_a [q_lora_rank, hidden] with its f32 norm and q_b [heads * qk, q_lora_rank] (or q:
  // q_proj), kv_a [latent + rope, hidden] with its f32 norm, kv_b [heads * (nope + v), latent] (f32, as
  // the CPU's absorbed attention keeps it: fresh prompts' attention on the GPU), o [hidden, heads * v]; k and
  // v stay empty.
  gpu::DeviceBuffer q_a, q_a_norm, q_b, kv_a, kv_a_norm, kv_b;
  gpu::DeviceBuffer mlp;            // packed single expert: dense MLP or shared expert
  gpu::DeviceBuffer shared_gate;    // bf16 [1, hidden]
  gpu::DeviceBuffer experts;        // packed routed experts, when resident
  std::vector<StreamedPart> parts;  // when streamed: its ring sections, in expert order
};

class GpuModel {
 public:
  static absl::StatusOr<std::unique_ptr<GpuModel>> Create(const ModelWeights& weights,
                                                          const GpuPlacement& placement,
                                                          int64_t gpu_cap_bytes, const gpu::Stream& stream);
  ~GpuModel();

  const ModelWeights& weights() const { return weights_; }
  const GpuLayer& layer(int i) const { return layers_[i]; }
  const gpu::DeviceBuffer& lm_head() const { return lm_head_; }
  const gpu::DeviceBuffer& final_norm() const { return final_norm_; }
  const gpu::PackedLayerIndex& expert_index() const { return expert_index_; }
  const gpu::PackedLayerIndex& dense_index() const { return dense_index_; }
  const gpu::PackedLayerIndex& shared_index() const { return shared_index_; }
  gpu::DeviceArena& arena() { return *arena_; }
  gpu::SectionRing* ring() { return ring_.get(); }
  gpu::HostSectionSource& source() { return source_; }
  // The SSD tier's reader (its bandwidth and waits for the run's report); null without SSD layers.
  const gpu::SsdSectionSource* ssd_source() const { return ssd_source_.get(); }
  int ssd_moe_layers() const { return ssd_moe_layers_; }
  int num_sections() const { return source_.num_sections(); }
  int layer_parts() const { return layer_parts_; }
  int resident_moe_layers() const { return resident_moe_layers_; }
  int64_t streamed_bytes_per_step() const { return streamed_bytes_per_step_; }

 private:
  explicit GpuModel(const ModelWeights& weights) : weights_(weights) {}
  absl::Status Upload(const void* host, int64_t bytes, const char* what, gpu::DeviceBuffer* out,
                      const gpu::Stream& stream);

  const ModelWeights& weights_;
  std::unique_ptr<gpu::DeviceArena> arena_;
  std::vector<GpuLayer> layers_;
  gpu::DeviceBuffer lm_head_, final_norm_;
  gpu::PackedLayerIndex expert_index_, dense_index_, shared_index_;
  std::vector<gpu::PinnedHostBuffer> streamed_;  // one packed MoE layer each
  gpu::PinnedSectionSource pinned_source_;
  std::unique_ptr<gpu::SsdSectionSource> ssd_source_;
  gpu::TieredSectionSource
      source_;  // The ring's view: every streamed section, pinned or SSD, in layer order.
  int ssd_moe_layers_ = 0;
  std::unique_ptr<gpu::SectionRing> ring_;
  int resident_moe_layers_ = 0;
  int layer_parts_ = 1;
  int64_t streamed_bytes_per_step_ = 0;
  // bf16 conversions kept until the uploads complete; a deque so that references stay valid as it grows.
  std::deque<std::vector<uint16_t>> staging_;
};

}  // namespace ringmoe
