// MemoryTable: what the engine allocates on the GPU, in pinned host memory and in ordinary host memory for a
// model and a plan, item by item. One function of (ModelSpec, ExecutionPlan): the engine allocates from its
// parts (StepBufferItems for the step's buffers, DenseWeightItems for the GPU's fixed weights) and the
// planner prices plans with the same counts (model_costs.h's GpuWorkspaceBytes), so they cannot drift apart;
// tests/memory_table_test.cc checks the sums and tests/gpu_memory_table_test.cc the engine's arena on a GPU.
// Plain arithmetic: no device code.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "gpu/blas.h"
#include "gpu/expert_packing.h"
#include "gpu/device_arena.h"
#include "io/model_spec.h"
#include "planner/execution_plan.h"

namespace ringmoe::planner {

enum class MemoryTier { kGpu, kPinned, kHost };
std::string_view MemoryTierName(MemoryTier tier);

struct MemoryItem {
  MemoryTier tier = MemoryTier::kGpu;
  std::string what;
  int64_t bytes = 0;
};

struct MemoryTable {
  std::vector<MemoryItem> items;
  int64_t Total(MemoryTier tier) const;
  // Bytes of the items whose name starts with `prefix`.
  int64_t Sum(std::string_view prefix) const;
  // One line per tier with its total, then the items.
  std::string Format() const;
};

// lm_head runs over at most this many rows at once, which bounds the logits buffers.
inline constexpr int kLogitsRows = 256;
// The device arena charges every allocation in whole units of this many bytes, and cuBLAS takes its workspace
// from it: the gpu/ layer's own constants (plain headers; nothing here links device code).
inline constexpr int64_t kArenaGranularity = gpu::DeviceArena::kGranularity;
inline constexpr int64_t kCublasWorkspaceBytes = gpu::BlasHandle::kDefaultWorkspaceBytes;

// One packed routed expert's bytes, padded as gpu/expert_packing.h lays experts out (gpu::kPackAlignment).
int64_t PackedExpertStride(int hidden, int intermediate);
// The packed layout of a layer of `spec`'s routed experts held in `held_expert_dtype` (HeldExpertDType):
// bf16, or FP8 blocks (the checkpoint's block size for an FP8 checkpoint, else 128 x 128). The engine packs
// exactly this; ring slots and resident layers are priced from it.
gpu::PackedLayerIndex RoutedExpertLayerIndex(const ModelSpec& spec, io::DType held_expert_dtype);

// The SSD tier reads ring sections (parts of layers' routed experts) from the checkpoint's files into pinned
// staging buffers, one section a buffer. Each of the ring's slots may hold a section whose copy out of its
// buffer has not been seen to complete yet, so a ring of N slots needs N + 1 buffers for the reader always to
// have one to fill (planner/DESIGN.md).
inline int SsdStagingBuffers(int ring_sections) { return ring_sections + 1; }
// O_DIRECT reads start and end on this boundary (4 KiB: every NVMe's logical block size or a multiple of it).
inline constexpr int64_t kSsdReadAlignment = 4096;
// Bytes one staging buffer needs for a section of `experts` routed experts of `expert_bf16_bytes` each
// (gate, up and down: three tensors an expert) stored as `stored` in the checkpoint: each tensor read with
// its ends rounded out to kSsdReadAlignment, plus room for the bf16 conversion when the checkpoint is not
// bf16. An upper bound on what io::PlanSectionReads lays out (it merges neighbours).
int64_t SsdStagingBufferBytes(int64_t experts, int64_t expert_bf16_bytes, io::DType stored);
// The dtype `spec`'s checkpoint stores its weights in, from config.json's torch_dtype (bf16 when unknown).
io::DType CheckpointDType(const ModelSpec& spec);

// The device buffers then the pinned staging buffers of an offload step of up to `max_tokens` tokens, in the
// order runtime/engine/gpu_step_buffers.cc allocates them (it allocates exactly these). device_kv_blocks and
// device_kv_bytes: the GPU share of the KV cache (KvCache device blocks, K and V of every layer).
std::vector<MemoryItem> StepBufferItems(const ModelSpec& spec, int max_tokens, int micro_batches,
                                        int device_kv_blocks, int64_t device_kv_bytes);
// The workspaces of the step's gpu::MoeRunners (routed experts; dense MLPs and shared experts as single
// experts), as gpu/moe_ops.cc sizes them; CUB's sort scratch is estimated (its size is known only on a GPU).
// held_expert_dtype F8_E4M3 adds the routed-expert runner's dequantisation scratch.
std::vector<MemoryItem> MoeRunnerItems(const ModelSpec& spec, int max_tokens,
                                       io::DType held_expert_dtype = io::DType::kBF16);
// Every weight the GPU path keeps on the GPU whatever the plan: attention (bf16 matrices, f32 biases and
// norms), routers (f32), shared experts and dense MLPs (packed), lm_head and the final norm.
// MLA models (DeepSeek): q_a, q_a's norm and q_b (or q_proj), kv_a and its norm, kv_b in f32 and o_proj.
std::vector<MemoryItem> DenseWeightItems(const ModelSpec& spec);
// MLA models whose fresh prompts attend on the GPU (ExecutionPlan::prefill_attention_on_gpu): the scratch of
// that attention for steps of up to max_tokens tokens, as runtime/engine/gpu_step_ops.cc allocates it (the
// split latents and rope keys, kv_b's output, K and V padded to qk_head_dim, the padded output). Empty for
// other models.
std::vector<MemoryItem> MlaPrefillItems(const ModelSpec& spec, int max_tokens);
// The expert shards' partial outputs (ExecutionPlan::expert_shards, planner/expert_shards.h): with more than
// one shard in all, each shard a GPU runs writes its routed experts' output, f32 [max_tokens, hidden], into a
// buffer of its own before the shards are combined in shard order; `shards` over `gpus` GPUs, the items of
// one GPU, in shard order (runtime/engine/gpu_expert_shards.cc allocates exactly these). Empty with one
// shard or no MoE layer.
std::vector<MemoryItem> ExpertShardItems(const ModelSpec& spec, int max_tokens, int shards, int gpus = 1);
// MLA models on the GPU path: host bytes of what the CPU's attention keeps in f32 besides the cache (kv_b,
// absorb_q's transposed copy of W_UK, kv_a's norm); 0 for other models.
int64_t MlaHostWeightBytes(const ModelSpec& spec);

// Everything for `plan` on `spec`. max_context_tokens sizes the host KV cache the plan's sequences touch.
MemoryTable ComputeMemoryTable(const ModelSpec& spec, const ExecutionPlan& plan, int max_context_tokens);

}  // namespace ringmoe::planner
