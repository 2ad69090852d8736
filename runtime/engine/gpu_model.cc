#include "runtime/engine/gpu_model.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <string_view>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "cpu/fp8_blocks.h"
#include "gpu/device.h"
#include "io/fp8_weights.h"
#include "io/section_file.h"
#include "io/status_macros.h"
#include "planner/expert_shards.h"
#include "planner/memory_table.h"

namespace ringmoe {
namespace {

const uint16_t* Bf16(const cpu::Matrix& matrix) { return static_cast<const uint16_t*>(matrix.data); }

int64_t MatrixBytes(const cpu::Matrix& matrix) { return int64_t{2} * matrix.rows * matrix.cols; }

std::vector<gpu::ExpertMatricesBf16> ExpertViews(std::span<const cpu::ExpertWeights> experts) {
  std::vector<gpu::ExpertMatricesBf16> views;
  for (const cpu::ExpertWeights& expert : experts) {
    views.push_back({Bf16(expert.gate), Bf16(expert.up), Bf16(expert.down)});
  }
  return views;
}

// Converts `view` (F32, BF16, F16 or F8 bytes of `count` values) to f32; the first error sticks in *status.
void ToF32(const io::TensorView& view, int64_t count, float* out, absl::Status* status) {
  absl::Status converted = io::ConvertToF32(view.dtype(), view.data(), out, static_cast<size_t>(count));
  if (!converted.ok() && status->ok()) *status = converted;
}

// One routed expert's matrices as FP8 blocks in `index`'s block size: an FP8 checkpoint's e4m3 bytes and
// scales as stored (scales as f32), or a float checkpoint's values quantised here (--expert-dtype fp8, the
// same quantiser and values as the CPU path's load-time round trip).
absl::Status PackFp8Expert(const LayerWeights::ExpertTensors& tensors, const gpu::PackedLayerIndex& index,
                           int expert, void* layer) {
  struct Owned {
    std::vector<uint8_t> weight;
    std::vector<float> scales;
  };
  Owned owned[3];
  gpu::Fp8MatrixView views[3];
  const std::pair<const io::TensorView*, const std::optional<io::TensorView>*> matrices[3] = {
      {&tensors.gate, &tensors.gate_scale},
      {&tensors.up, &tensors.up_scale},
      {&tensors.down, &tensors.down_scale}};
  absl::Status status;
  for (int m = 0; m < 3; ++m) {
    const io::TensorView& view = *matrices[m].first;
    const cpu::Fp8BlockShape shape{view.shape()[0], view.shape()[1], index.fp8_block_rows,
                                   index.fp8_block_cols};
    if (view.dtype() == io::DType::kF8E5M2) {
      return absl::UnimplementedError(absl::StrCat("tensor '", view.name(), "' (in ", view.file(),
                                                   ") is F8_E5M2; the GPU streams F8_E4M3 experts only"));
    }
    owned[m].scales.resize(static_cast<size_t>(shape.num_scales()));
    if (view.dtype() == io::DType::kF8E4M3) {
      const std::optional<io::TensorView>& scale = *matrices[m].second;
      if (!scale.has_value() || scale->numel() != shape.num_scales()) {
        return absl::InvalidArgumentError(absl::StrCat("tensor '", view.name(), "' (in ", view.file(),
                                                       ") has no block scales of ", shape.scale_rows(), " x ",
                                                       shape.scale_cols()));
      }
      ToF32(*scale, shape.num_scales(), owned[m].scales.data(), &status);
      views[m] = {static_cast<const uint8_t*>(view.data()), owned[m].scales.data()};
    } else {
      std::vector<float> values(static_cast<size_t>(shape.rows * shape.cols));
      ToF32(view, shape.rows * shape.cols, values.data(), &status);
      owned[m].weight.resize(values.size());
      cpu::QuantizeFp8Blocks(shape, values.data(), owned[m].weight.data(), owned[m].scales.data());
      views[m] = {owned[m].weight.data(), owned[m].scales.data()};
    }
  }
  if (!status.ok()) return status;
  return gpu::PackExpertFp8({views[0], views[1], views[2]}, index, expert, layer);
}

// A layer's routed experts packed as FP8 blocks into `layer`, the experts spread over the host's cores
// (quantising a float checkpoint is the slow part of loading).
absl::Status PackFp8Layer(const LayerWeights& weights, const gpu::PackedLayerIndex& index, void* layer) {
  const int experts = index.num_experts;
  if (static_cast<int>(weights.expert_tensors.size()) != experts) {
    return absl::InternalError("PackFp8Layer: the layer's expert tensors were not loaded");
  }
  const int threads =
      std::clamp(static_cast<int>(std::thread::hardware_concurrency()), 1, std::min(experts, 32));
  std::vector<absl::Status> statuses(threads);
  std::atomic<int> next{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      for (int e = next++; e < experts; e = next++) {
        absl::Status packed = PackFp8Expert(weights.expert_tensors[e], index, e, layer);
        if (!packed.ok() && statuses[t].ok()) statuses[t] = packed;
      }
    });
  }
  for (std::thread& thread : pool) thread.join();
  for (const absl::Status& status : statuses) {
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

// The SSD tier's sections: per kSsd layer, its parts (experts [first, first + count)), in ring order.
struct SsdPart {
  int layer = 0;
  int first = 0;
  int count = 0;
};
struct SsdSections {
  std::vector<SsdPart> parts;
  std::vector<std::vector<int>> layer_sections;  // Per layer: its parts' indices in `parts`.
  // From the checkpoint's files: each part's tensors as stored, placed where PackLayerExperts would put
  // their bf16 bytes (so the ring's slots look the same whatever the tier).
  std::vector<std::string> files;
  std::vector<io::SectionSpec> sections;
};

SsdSections ListSsdParts(const ModelSpec& spec, const GpuPlacement& placement) {
  SsdSections ssd;
  ssd.layer_sections.resize(spec.num_layers);
  const std::vector<planner::ExpertRange> parts =
      planner::LayerPartRanges(spec.num_experts, placement.expert_shards, placement.layer_parts);
  for (int i = 0; i < spec.num_layers; ++i) {
    if (placement.expert_tiers[i] != planner::ExpertTier::kSsd) continue;
    for (const planner::ExpertRange& part : parts) {
      ssd.layer_sections[i].push_back(static_cast<int>(ssd.parts.size()));
      ssd.parts.push_back({i, part.first, part.count});
    }
  }
  return ssd;
}

absl::Status PlanCheckpointReads(const ModelWeights& weights, const gpu::PackedLayerIndex& index,
                                 SsdSections* ssd) {
  if (index.fp8()) {
    return absl::UnimplementedError(
        "the plan puts FP8 experts on the SSD tier, which reads only bf16 sections from the checkpoint's "
        "files: "
        "give --ssd-dir (its section files hold the FP8 layout the ring takes)");
  }
  absl::flat_hash_map<std::string, int> file_index;
  const uint64_t matrix_bytes = uint64_t{2} * index.intermediate * index.hidden;
  for (const SsdPart& part : ssd->parts) {
    const LayerWeights& w = weights.layer(part.layer);
    io::SectionSpec section;
    section.section_bytes = static_cast<uint64_t>(part.count * index.expert_stride_bytes);
    for (int e = part.first; e < part.first + part.count; ++e) {
      const LayerWeights::ExpertTensors& tensors = w.expert_tensors[e];
      const uint64_t base = static_cast<uint64_t>((e - part.first) * index.expert_stride_bytes);
      const std::pair<const io::TensorView*, uint64_t> placed[] = {{&tensors.gate, base},
                                                                   {&tensors.up, base + matrix_bytes},
                                                                   {&tensors.down, base + 2 * matrix_bytes}};
      for (const auto& [view, offset] : placed) {
        if (view->dtype() != io::DType::kBF16 && view->dtype() != io::DType::kF32 &&
            view->dtype() != io::DType::kF16) {
          return absl::InvalidArgumentError(
              absl::StrCat("tensor '", view->name(), "' (in ", view->file(), ") has dtype ",
                           std::string(io::DTypeName(view->dtype())),
                           "; the SSD tier reads F32, BF16 and F16 from the checkpoint (give --ssd-dir: its "
                           "section files hold the experts as the ring does)"));
        }
        auto [it, added] = file_index.try_emplace(view->path(), static_cast<int>(ssd->files.size()));
        if (added) ssd->files.push_back(view->path());
        section.tensors.push_back({.file = it->second,
                                   .file_offset = view->file_offset(),
                                   .file_bytes = view->nbytes(),
                                   .dtype = view->dtype(),
                                   .section_offset = offset});
      }
    }
    ssd->sections.push_back(std::move(section));
  }
  return absl::OkStatus();
}

// --ssd-dir: the section files (io/section_file.h) hold each SSD part exactly as the ring consumes it, the
// packed layout of the held experts (bf16 as loaded, or the FP8 block layout of an FP8 checkpoint or
// --expert-dtype fp8), so the SSD tier serves any checkpoint with the DRAM tier's very bytes.
absl::StatusOr<io::SectionFileSet> EnsureSsdSectionFiles(const ModelWeights& weights,
                                                         const GpuPlacement& placement,
                                                         const gpu::PackedLayerIndex& index,
                                                         const SsdSections& ssd,
                                                         const io::SectionReadOptions& read_options) {
  const ModelSpec& spec = weights.spec();
  io::SectionFileIdentity identity;
  identity.model_dir = weights.checkpoint().dir();
  std::vector<std::string> sources;
  absl::flat_hash_map<std::string, bool> seen;
  for (const SsdPart& part : ssd.parts) {
    for (const LayerWeights::ExpertTensors& tensors : weights.layer(part.layer).expert_tensors) {
      for (const io::TensorView* view : {&tensors.gate, &tensors.up, &tensors.down}) {
        if (seen.try_emplace(view->path(), true).second) sources.push_back(view->path());
        // An FP8 weight's block scales may live in another shard: its bytes depend on them too.
        if (const io::TensorView* scale = weights.checkpoint().Find(io::ScaleInvName(view->name()));
            scale != nullptr && seen.try_emplace(scale->path(), true).second) {
          sources.push_back(scale->path());
        }
      }
    }
  }
  const std::string config = identity.model_dir + "/config.json";
  if (::access(config.c_str(), R_OK) == 0) sources.push_back(config);
  absl::StatusOr<std::vector<io::SectionSourceFile>> stats = io::StatSourceFiles(sources);
  if (!stats.ok()) return stats.status();
  identity.sources = *std::move(stats);
  // What the bytes are: the ring's layout (gpu/expert_packing.h) and where its values came from.
  const bool fp8_checkpoint = spec.quantization.method == WeightQuantization::kFp8Block;
  if (index.fp8()) {
    identity.content =
        absl::StrCat("F8_E4M3 blocks ", index.fp8_block_rows, "x", index.fp8_block_cols, " with f32 scales, ",
                     fp8_checkpoint ? "as the checkpoint stores them" : "quantised at load");
  } else if (fp8_checkpoint) {
    identity.content = absl::StrCat("bf16 dequantised from ", spec.quantization.block_rows, "x",
                                    spec.quantization.block_cols, " FP8 blocks");
  } else if (weights.expert_dtype() == io::DType::kF8E4M3) {
    identity.content = "bf16 rounded through 128x128 F8_E4M3 blocks";
  } else {
    identity.content = "bf16";
  }
  std::string plan = absl::StrCat("experts ", spec.num_experts, " hidden ", index.hidden, " intermediate ",
                                  index.intermediate, " stride ", index.expert_stride_bytes, ";");
  for (const SsdPart& part : ssd.parts) {
    absl::StrAppend(&plan, part.layer, ":", part.first, "+", part.count, ";");
    identity.section_bytes.push_back(static_cast<uint64_t>(part.count * index.expert_stride_bytes));
  }
  identity.plan_hash = io::StableHash64(plan);

  io::SectionFileOptions options;
  options.log = [](std::string_view line) {
    std::fprintf(stderr, "ringmoe: %.*s\n", static_cast<int>(line.size()), line.data());
  };
  // FP8: each expert packed once (quantising a float checkpoint is the slow part) into a one-expert buffer,
  // then copied out a stripe at a time; stripes come in order, so the last packed expert is all the cache
  // needed.
  gpu::PackedLayerIndex one_expert = index;
  one_expert.num_experts = 1;
  std::vector<uint8_t> packed(index.fp8() ? static_cast<size_t>(index.expert_stride_bytes) : 0);
  std::pair<int, int> packed_expert{-1, -1};  // (section, expert) in `packed`
  const io::SectionFill fill = [&](int section, uint64_t offset, std::span<uint8_t> out) -> absl::Status {
    const SsdPart& part = ssd.parts[section];
    const LayerWeights& w = weights.layer(part.layer);
    if (!index.fp8()) {
      std::vector<gpu::ExpertMatricesBf16> views;
      for (int e = part.first; e < part.first + part.count; ++e) {
        const cpu::ExpertWeights& expert = w.experts[e];
        views.push_back({Bf16(expert.gate), Bf16(expert.up), Bf16(expert.down)});
      }
      const gpu::PackedLayerIndex part_index =
          gpu::MakePackedLayerIndex(part.count, index.hidden, index.intermediate);
      return gpu::CopyPackedRange(views, part_index, static_cast<int64_t>(offset), out.data(),
                                  static_cast<int64_t>(out.size()));
    }
    const auto stride = static_cast<uint64_t>(index.expert_stride_bytes);
    for (uint64_t done = 0; done < out.size();) {
      const uint64_t position = offset + done;
      const int expert = part.first + static_cast<int>(position / stride);
      const uint64_t within = position % stride;
      const uint64_t length = std::min<uint64_t>(stride - within, out.size() - done);
      if (packed_expert != std::pair{section, expert}) {
        if (absl::Status status = PackFp8Expert(w.expert_tensors[expert], one_expert, 0, packed.data());
            !status.ok()) {
          return status;
        }
        packed_expert = {section, expert};
      }
      std::memcpy(out.data() + done, packed.data() + within, static_cast<size_t>(length));
      done += length;
    }
    return absl::OkStatus();
  };
  return io::EnsureSectionFiles(placement.ssd_dirs, identity, fill, options, read_options.max_read_bytes);
}

}  // namespace

GpuModel::~GpuModel() {
  if (ring_) (void)ring_->Drain();
}

absl::Status GpuModel::Upload(const void* host, int64_t bytes, const char* what, gpu::DeviceBuffer* out,
                              const gpu::Stream& stream) {
  absl::StatusOr<gpu::DeviceBuffer> buffer = arena_->Allocate(bytes, what);
  if (!buffer.ok()) return buffer.status();
  *out = std::move(*buffer);
  return gpu::CopyHostToDevice(out->data(), host, bytes, stream);
}

absl::StatusOr<std::unique_ptr<GpuModel>> GpuModel::Create(const ModelWeights& weights,
                                                           const GpuPlacement& placement,
                                                           int64_t gpu_cap_bytes, const gpu::Stream& stream) {
  const ModelSpec& spec = weights.spec();
  if (weights.compute_dtype() != io::DType::kBF16) {
    return absl::InternalError("the GPU path needs the weights loaded as bf16");
  }
  if (placement.layer_parts < 1 || placement.layer_parts > spec.num_experts) {
    return absl::InvalidArgumentError(absl::StrCat("a streamed layer can be cut into 1 to ", spec.num_experts,
                                                   " parts, not ", placement.layer_parts));
  }
  if (spec.num_moe_layers() > 0) {
    const bool streamed = std::any_of(
        placement.expert_tiers.begin(), placement.expert_tiers.end(),
        [](auto t) { return t == planner::ExpertTier::kPinnedHost || t == planner::ExpertTier::kSsd; });
    RINGMOE_RETURN_IF_ERROR(planner::CheckExpertShards(spec.num_experts, placement.expert_shards,
                                                       placement.layer_parts, streamed));
  }
  if (placement.ring_slots < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("the section ring needs at least 2 slots, not ", placement.ring_slots));
  }
  if (placement.layer_parts > 1 && placement.ring_slots < placement.layer_parts + 1 &&
      (placement.micro_batches != 1 || placement.expert_shards > 1 || placement.routed_expert_copies)) {
    // The layer's parts then pass through the ring one at a time, every row through each (ValidatePlan).
    return absl::InvalidArgumentError(
        absl::StrCat("a ring of ", placement.ring_slots, " slots for layers cut into ", placement.layer_parts,
                     " parts runs them one at a time: one micro-batch, no expert shards or routed copies"));
  }
  std::unique_ptr<GpuModel> model(new GpuModel(weights));
  if (gpu_cap_bytes <= 0) {
    absl::StatusOr<gpu::DeviceMemoryInfo> memory = gpu::QueryDeviceMemory();
    if (!memory.ok()) return memory.status();
    gpu_cap_bytes = memory->free_bytes - std::max<int64_t>(int64_t{1} << 30, memory->free_bytes / 20);
  }
  model->arena_ = std::make_unique<gpu::DeviceArena>(gpu_cap_bytes);
  const int hidden = spec.hidden_size;
  model->expert_index_ = planner::RoutedExpertLayerIndex(spec, placement.expert_dtype);
  if (spec.intermediate_size > 0)
    model->dense_index_ = gpu::MakePackedLayerIndex(1, hidden, spec.intermediate_size);
  if (spec.shared_expert_intermediate_size > 0) {
    model->shared_index_ = gpu::MakePackedLayerIndex(1, hidden, spec.shared_expert_intermediate_size);
  }

  // What stays resident whatever the plan: everything but the routed experts (the memory table's count).
  int64_t fixed = 0;
  for (const planner::MemoryItem& item : planner::DenseWeightItems(spec)) fixed += item.bytes;
  const int moe_layers = spec.num_moe_layers();
  const int64_t layer_bytes = model->expert_index_.total_bytes();
  // Parts of a streamed layer: each expert shard's experts split as evenly as possible, the first ones one
  // larger, so that every part belongs to one shard (planner/expert_shards.h); one shard: the layer's.
  const int parts = placement.layer_parts;
  const std::vector<planner::ExpertRange> part_ranges =
      planner::LayerPartRanges(spec.num_experts, placement.expert_shards, parts);
  const int64_t stride = model->expert_index_.expert_stride_bytes;
  const int64_t slot_bytes =
      int64_t{planner::MaxPartExperts(spec.num_experts, placement.expert_shards, parts)} * stride;
  const int64_t room = gpu_cap_bytes - fixed - placement.workspace_bytes - placement.kv_cache_bytes;
  if (static_cast<int>(placement.expert_tiers.size()) != spec.num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("the plan places the experts of ",
                                                   placement.expert_tiers.size(), " layers; the model has ",
                                                   spec.num_layers));
  }
  const int resident = static_cast<int>(
      std::count(placement.expert_tiers.begin(), placement.expert_tiers.end(), planner::ExpertTier::kGpu));
  const int streamed = moe_layers - resident;
  const int slots = streamed > 0 ? placement.ring_slots : 0;
  if (room < resident * layer_bytes + slots * slot_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "GPU budget of ", gpu::FormatBytes(gpu_cap_bytes), " is too small: the non-expert weights need ",
        gpu::FormatBytes(fixed), ", the step's workspace ", gpu::FormatBytes(placement.workspace_bytes),
        ", the GPU's KV blocks ", gpu::FormatBytes(placement.kv_cache_bytes), ", ", resident,
        " resident expert layers ", gpu::FormatBytes(resident * layer_bytes), " and ", slots,
        " ring slots of ", gpu::FormatBytes(slot_bytes)));
  }
  model->resident_moe_layers_ = resident;
  model->layer_parts_ = parts;

  SsdSections ssd = ListSsdParts(spec, placement);
  if (!ssd.parts.empty()) {
    // The reader starts on the first sections at once, while the rest of the model loads.
    absl::StatusOr<std::unique_ptr<gpu::SsdSectionSource>> source;
    if (placement.ssd_dirs.empty()) {
      if (absl::Status planned = PlanCheckpointReads(weights, model->expert_index_, &ssd); !planned.ok()) {
        return planned;
      }
      source = gpu::SsdSectionSource::Create(ssd.files, ssd.sections,
                                             planner::SsdStagingBuffers(placement.ring_slots),
                                             placement.ssd_staging_buffer_bytes, {});
    } else {
      // Up to 32 reads in flight per drive: each drive at the depth it was probed at.
      io::SectionReadOptions read_options;
      read_options.queue_depth =
          std::min<int>(4096, read_options.queue_depth * static_cast<int>(placement.ssd_dirs.size()));
      absl::StatusOr<io::SectionFileSet> files =
          EnsureSsdSectionFiles(weights, placement, model->expert_index_, ssd, read_options);
      if (!files.ok()) return files.status();
      // Staging as the section files need (each part's packed bytes, no conversion area): at most what the
      // plan priced for reads of the checkpoint.
      source = gpu::SsdSectionSource::CreateFromPlans(
          files->paths, files->plans, planner::SsdStagingBuffers(placement.ring_slots), 0, read_options);
    }
    if (!source.ok()) return source.status();
    model->ssd_source_ = std::move(*source);
    // Slower than the plan assumed, but correct: say so once instead of failing (seccomp, old kernels,
    // tmpfs).
    const io::SectionPrefetcher::Stats reader = model->ssd_source_->stats();
    if (!reader.uring) {
      std::fprintf(stderr,
                   "ringmoe: warning: io_uring is unavailable here; the SSD tier reads with pread, "
                   "one read at a time, below the drive's bandwidth\n");
    }
    if (!reader.direct) {
      std::fprintf(stderr,
                   "ringmoe: warning: %s refuses O_DIRECT; the SSD tier reads through the page cache "
                   "(and drops what it read from it)\n",
                   placement.ssd_dirs.empty() ? "the checkpoint's filesystem" : "an --ssd-dir filesystem");
    }
  }

  model->layers_.resize(spec.num_layers);
  for (int i = 0; i < spec.num_layers; ++i) {
    const LayerWeights& w = weights.layer(i);
    const AttentionWeights& a = w.attention;
    GpuLayer& g = model->layers_[i];
    auto upload = [&](const void* host, int64_t bytes, const char* what, gpu::DeviceBuffer* out) {
      return model->Upload(host, bytes, what, out, stream);
    };
    absl::Status status;
    if (spec.is_mla()) {
      // MLA: the projections the GPU runs (q LoRA or q_proj, kv_a and its norm, kv_b for fresh prompts,
      // o_proj). The planner's DenseWeightItems counts the same.
      if (spec.mla.q_lora_rank > 0) {
        status = upload(a.q_a.data, MatrixBytes(a.q_a), "q_a_proj", &g.q_a);
        if (status.ok())
          status = upload(a.q_a_norm.data(), 4LL * a.q_a_norm.size(), "q_a_layernorm", &g.q_a_norm);
        if (status.ok()) status = upload(a.q_b.data, MatrixBytes(a.q_b), "q_b_proj", &g.q_b);
      } else {
        status = upload(a.q.data, MatrixBytes(a.q), "q_proj", &g.q);
      }
      if (status.ok()) status = upload(a.kv_a.data, MatrixBytes(a.kv_a), "kv_a_proj_with_mqa", &g.kv_a);
      if (status.ok())
        status = upload(a.kv_a_norm.data(), 4LL * a.kv_a_norm.size(), "kv_a_layernorm", &g.kv_a_norm);
      if (status.ok()) {
        // kv_b stays f32, as the CPU's absorbed attention keeps it: fresh prompts' attention on the GPU then
        // computes what the CPU's would (a bf16 kv_b moved tiny DeepSeek goldens' logprobs by up to 0.2).
        status = upload(a.kv_b.data, 4LL * a.kv_b.rows * a.kv_b.cols, "kv_b_proj", &g.kv_b);
      }
    } else {
      status = upload(a.q.data, MatrixBytes(a.q), "q_proj", &g.q);
      if (status.ok()) status = upload(a.k.data, MatrixBytes(a.k), "k_proj", &g.k);
      if (status.ok()) status = upload(a.v.data, MatrixBytes(a.v), "v_proj", &g.v);
    }
    if (status.ok()) status = upload(a.o.data, MatrixBytes(a.o), "o_proj", &g.o);
    if (status.ok() && !a.q_bias.empty()) {
      status = upload(a.q_bias.data(), 4LL * a.q_bias.size(), "q bias", &g.q_bias);
      if (status.ok()) status = upload(a.k_bias.data(), 4LL * a.k_bias.size(), "k bias", &g.k_bias);
      if (status.ok()) status = upload(a.v_bias.data(), 4LL * a.v_bias.size(), "v bias", &g.v_bias);
    }
    if (status.ok()) status = upload(a.input_norm.data(), 4LL * hidden, "input norm", &g.input_norm);
    if (status.ok())
      status = upload(a.post_attention_norm.data(), 4LL * hidden, "post norm", &g.post_attention_norm);
    if (status.ok() && !a.q_norm.empty()) {
      status = upload(a.q_norm.data(), 4LL * a.q_norm.size(), "q norm", &g.q_norm);
      if (status.ok()) status = upload(a.k_norm.data(), 4LL * a.k_norm.size(), "k norm", &g.k_norm);
    }
    if (!status.ok()) return status;

    std::vector<uint16_t>& packed = model->staging_.emplace_back();
    if (!spec.layers[i].is_moe) {
      packed.resize(model->dense_index_.total_bytes() / 2);
      std::vector<cpu::ExpertWeights> one = {w.dense_mlp};
      status =
          gpu::PackLayerExperts(ExpertViews(one), model->dense_index_, packed.data(), 2LL * packed.size());
      if (status.ok()) status = upload(packed.data(), 2LL * packed.size(), "dense MLP", &g.mlp);
      if (!status.ok()) return status;
      continue;
    }
    // The router stays f32: its logits pick the experts, and it is tiny.
    status = upload(w.router.data, 4LL * spec.num_experts * hidden, "router", &g.router);
    if (status.ok() && spec.router == RouterKind::kSigmoidGroupTopK) {
      if (static_cast<int>(w.router_bias.size()) != spec.num_experts) {
        return absl::InternalError(
            absl::StrCat("layer ", i, ": the router's correction bias was not loaded"));
      }
      status = upload(w.router_bias.data(), 4LL * spec.num_experts, "router correction bias", &g.router_bias);
    }
    if (status.ok() && spec.layers[i].has_shared_expert) {
      packed.resize(model->shared_index_.total_bytes() / 2);
      std::vector<cpu::ExpertWeights> one = {w.shared_expert};
      status =
          gpu::PackLayerExperts(ExpertViews(one), model->shared_index_, packed.data(), 2LL * packed.size());
      if (status.ok()) status = upload(packed.data(), 2LL * packed.size(), "shared expert", &g.mlp);
      if (spec.shared_expert_gated) {  // Qwen2-MoE's sigmoid gate; DeepSeek's shared experts have none
        std::vector<uint16_t>& gate = model->staging_.emplace_back(hidden);
        io::ConvertF32ToBF16(static_cast<const float*>(w.shared_expert_gate.data), gate.data(), hidden);
        if (status.ok()) status = upload(gate.data(), 2LL * hidden, "shared expert gate", &g.shared_gate);
      }
    }
    if (!status.ok()) return status;

    const std::vector<gpu::ExpertMatricesBf16> experts = ExpertViews(w.experts);
    const gpu::PackedLayerIndex& index = model->expert_index_;
    auto pack = [&](void* dst) {
      return index.fp8() ? PackFp8Layer(w, index, dst)
                         : gpu::PackLayerExperts(experts, index, dst, layer_bytes);
    };
    // The plan spreads resident layers evenly among the streamed ones (planner::SpreadResidentLayers).
    if (placement.expert_tiers[i] == planner::ExpertTier::kGpu) {
      std::vector<uint16_t>& layer = model->staging_.emplace_back(layer_bytes / 2);
      status = pack(layer.data());
      if (status.ok()) status = upload(layer.data(), layer_bytes, "resident experts", &g.experts);
    } else if (placement.expert_tiers[i] == planner::ExpertTier::kSsd) {
      for (int part = 0; part < parts; ++part) {
        const int section = model->source_.Add(model->ssd_source_.get(), ssd.layer_sections[i][part]);
        g.parts.push_back({section, part_ranges[part].first, part_ranges[part].count});
      }
      model->streamed_bytes_per_step_ += layer_bytes;
      ++model->ssd_moe_layers_;
    } else {
      absl::StatusOr<gpu::PinnedHostBuffer> pinned =
          gpu::PinnedHostBuffer::Allocate(layer_bytes, "streamed experts");
      if (!pinned.ok()) return pinned.status();
      status = pack(pinned->data());
      for (const planner::ExpertRange& part : part_ranges) {
        absl::StatusOr<int> pinned_section = model->pinned_source_.AddSection(
            {gpu::HostChunk{pinned->as<uint8_t>() + part.first * stride, part.count * stride, 0}});
        if (!pinned_section.ok()) return pinned_section.status();
        g.parts.push_back(
            {model->source_.Add(&model->pinned_source_, *pinned_section), part.first, part.count});
      }
      model->streamed_.push_back(std::move(*pinned));
      model->streamed_bytes_per_step_ += layer_bytes;
    }
    if (!status.ok()) return status;
    // The layer now lives in device or pinned memory (pageable uploads have read their source when the call
    // returns): drop the checkpoint's resident pages of it, so that loading never holds the model twice.
    const io::Checkpoint& checkpoint = weights.checkpoint();
    for (const cpu::Matrix* matrix : {&a.q, &a.k, &a.v, &a.o, &a.q_a, &a.q_b, &a.kv_a}) {
      if (matrix->data != nullptr) checkpoint.ReleaseResidentPages(matrix->data, MatrixBytes(*matrix));
    }
    for (const cpu::ExpertWeights& expert : w.experts) {
      for (const cpu::Matrix* matrix : {&expert.gate, &expert.up, &expert.down}) {
        if (matrix->data != nullptr) checkpoint.ReleaseResidentPages(matrix->data, MatrixBytes(*matrix));
      }
    }
    if (index.fp8()) {
      for (const LayerWeights::ExpertTensors& tensors : w.expert_tensors) {
        for (const io::TensorView* view : {&tensors.gate, &tensors.up, &tensors.down})
          checkpoint.ReleaseResidentPages(view->data(), view->nbytes());
      }
    }
  }
  absl::Status status = model->Upload(weights.lm_head().data, MatrixBytes(weights.lm_head()), "lm_head",
                                      &model->lm_head_, stream);
  if (status.ok()) {
    status =
        model->Upload(weights.final_norm().data(), 4LL * hidden, "final norm", &model->final_norm_, stream);
  }
  if (status.ok()) status = stream.Synchronize();
  if (!status.ok()) return status;
  model->staging_.clear();
  if (streamed > 0) {
    absl::StatusOr<std::unique_ptr<gpu::SectionRing>> ring =
        gpu::SectionRing::Create(*model->arena_, slots, slot_bytes);
    if (!ring.ok()) return ring.status();
    model->ring_ = std::move(*ring);
  }
  return model;
}

}  // namespace ringmoe
