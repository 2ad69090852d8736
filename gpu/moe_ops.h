// The routed-expert pass of one MoE layer on the GPU; twin of cpu::MoeForward (cpu/moe.h).
//
//   1. SortByExpert: counts, offsets and a stable permutation of the (token, k) assignments by expert, and a
//      host copy of the counts (written to pinned memory by the sort's last kernel, or copied back where the
//      device cannot write it: the GEMM shapes and the routed-expert copy need it).
//   2. RunExperts: gather the rows in expert order, one fused gate/up GEMM per expert (bf16 in, f32 out) into
//      [rows, 2I], SwiGLU to bf16, the down GEMM per expert, then out[t] += sum_j w[t, j] * y[slot(t, j)] in
//      token order. Weights are a packed layer (gpu/expert_packing.h) in device memory, e.g. a ring slot.
//      A layer in the FP8 block layout is dequantised to bf16 a few routed experts at a time into the
//      runner's scratch (Fp8DequantScratchExperts of them), each group's GEMMs and SwiGLU running on its
//      rows before the next group is dequantised: the same bf16 values, products and rounding as the CPU
//      twin's load-time dequantisation.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gpu/blas.h"
#include "gpu/device_arena.h"
#include "gpu/expert_packing.h"
#include "gpu/host_memory.h"
#include "gpu/stream.h"

namespace ringmoe::gpu {

struct MoeShape {
  int hidden = 0;
  int intermediate = 0;  // Of one routed expert (moe_intermediate_size).
  int num_experts = 0;
  int top_k = 0;
};

// How the per-expert GEMMs are issued: one cublasGemmEx per routed expert (bf16 in, f32 out), or one
// cublasGemmGroupedBatchedEx call per projection (bf16 in, bf16 out: the grouped call takes C of the input
// type; f32 accumulation either way). kAuto picks per call by the mean rows per routed expert: measured on
// the H200 (tests/gpu_probe_test.cc), the grouped call is 3-9x faster at decode sizes (launch-bound loop) and
// up to 2.5x slower at >= 256 rows per expert of Mixtral's size. The default stays the loop: its f32 outputs
// match the CPU twin to ~1e-5 (grouped: ~4e-3), which golden comparisons want; pass kAuto for speed. A
// grouped call that cuBLAS rejects falls back to the loop for good; see strategy() and fallback_reason().
enum class GemmStrategy { kLoopGemmEx, kGroupedBatched, kAuto };

// Threading: one host thread and one stream at a time (it owns scratch buffers reused by every call).
class MoeRunner {
 public:
  // Allocates scratch for up to max_tokens tokens from `arena` (about max_tokens * top_k * (10 H + 10 I)
  // bytes). fp8_scratch_experts > 0: also room to dequantise that many experts at once, so that RunExperts
  // takes layers in the FP8 block layout (else they are refused).
  static absl::StatusOr<MoeRunner> Create(DeviceArena& arena, const MoeShape& shape, int max_tokens,
                                          GemmStrategy strategy = GemmStrategy::kLoopGemmEx,
                                          int fp8_scratch_experts = 0);
  // kAuto uses the grouped call below this many rows per routed expert (mean), the loop from there on, except
  // with kAutoGroupedMinExperts routed experts or more: then the loop's two launches per expert (and the
  // host's time issuing them while the GPU waits on the expert counts) cost more than the grouped call's
  // slower tiles (Qwen3's 2048x768 experts, 128 routed: grouped 221 against loop 129 TFLOP/s at 256 rows).
  static constexpr int kAutoGroupedMaxRows = 160;
  static constexpr int kAutoGroupedMinExperts = 32;
  static bool AutoPrefersGrouped(int64_t assignments, int routed_experts) {
    return routed_experts > 0 && (routed_experts >= kAutoGroupedMinExperts ||
                                  assignments < int64_t{kAutoGroupedMaxRows} * routed_experts);
  }

  MoeRunner(MoeRunner&&) noexcept = default;
  MoeRunner& operator=(MoeRunner&&) noexcept = default;

  // expert_ids: device int32 [tokens, top_k]. Queues the sort on `stream`, then waits (host) for the counts.
  // InvalidArgument when tokens > max_tokens or an id is outside [0, num_experts).
  absl::Status SortByExpert(const int32_t* expert_ids, int tokens, const Stream& stream);
  // SortByExpert in two halves: QueueSort queues the sort and the counts' copy back (no host wait; the
  // same argument checks), WaitForCounts waits for them and makes them the runner's last sort. Between the
  // two the caller may queue more work on the stream, but not another sort on this runner.
  absl::Status QueueSort(const int32_t* expert_ids, int tokens, const Stream& stream);
  absl::Status WaitForCounts();

  // Valid after SortByExpert: host copies of counts [num_experts] and offsets [num_experts + 1].
  std::span<const int32_t> expert_counts() const;
  std::span<const int32_t> expert_offsets() const { return host_offsets_; }
  // Device arrays of the last sort: offsets [E + 1], permutation[s] = assignment t * top_k + j at sorted
  // position s (stable), inverse[t * top_k + j] = s.
  const int32_t* device_offsets() const { return offsets_.as<int32_t>(); }
  const int32_t* device_permutation() const { return permutation_.as<int32_t>(); }
  const int32_t* device_inverse() const { return inverse_.as<int32_t>(); }

  // out[t, :] += sum_j weights[t, j] * Expert_{ids[t, j]}(x[t, :]) for the tokens of the last sort.
  // x: device bf16 [tokens, hidden]; weights: device f32 [tokens, top_k]; packed_layer: device address of
  // the layer in `index`'s layout (only experts with a non-zero count are read); out: device f32
  // [tokens, hidden]. Queued on `stream`; no host wait.
  absl::Status RunExperts(BlasHandle& blas, const void* x_bf16, const float* weights,
                          const void* packed_layer, const PackedLayerIndex& index, float* out,
                          const Stream& stream);
  // The same with the layer's experts in several places (a streamed layer cut into parts, each in its own
  // ring slot): expert e's matrices are at expert_bases[e] + index.gate_up_offset(e) / down_offset(e), so a
  // part holding experts [first, ...) from slot address A has base A - first * index.expert_stride_bytes.
  // expert_bases: host array [num_experts].
  absl::Status RunExperts(BlasHandle& blas, const void* x_bf16, const float* weights,
                          std::span<const uint8_t* const> expert_bases, const PackedLayerIndex& index,
                          float* out, const Stream& stream);
  // The same over only the experts [first_expert, end_expert) of the last sort (an expert shard:
  // runtime/engine/gpu_expert_shards.h): out[t, :] += sum over t's assignments j routed into that range of
  // weights[t, j] * Expert_{ids[t, j]}(x[t, :]); the others add nothing, and only the range's experts are
  // read. Its rows are contiguous in the sorted order, so the gather, GEMMs, SwiGLU and combine cover just
  // them; kAuto decides by the range's own rows and routed experts. The whole range [0, num_experts) is
  // RunExperts.
  absl::Status RunExpertRange(BlasHandle& blas, const void* x_bf16, const float* weights,
                              std::span<const uint8_t* const> expert_bases, const PackedLayerIndex& index,
                              int first_expert, int end_expert, float* out, const Stream& stream);

  const MoeShape& shape() const { return shape_; }
  int max_tokens() const { return max_tokens_; }
  GemmStrategy strategy() const { return strategy_; }
  // Whether the last RunExperts used the grouped call.
  bool last_used_grouped() const { return last_used_grouped_; }
  // Why a kGroupedBatched or kAuto runner now uses only the loop ("" when it does not).
  const std::string& fallback_reason() const { return fallback_reason_; }
  int sorted_tokens() const { return tokens_; }

 private:
  MoeRunner() = default;
  // host_pointers_' first `bytes` into device_pointers_, on `stream`.
  absl::Status UploadPointers(int64_t bytes, const Stream& stream);
  // Both over the experts [first_expert, end_expert) only.
  absl::Status RunGemmsGrouped(BlasHandle& blas, std::span<const uint8_t* const> expert_bases,
                               const PackedLayerIndex& index, int first_expert, int end_expert,
                               const Stream& stream);
  // The GEMMs and SwiGLU of an FP8 layer, group by group of dequantised experts; leaves expert_out_ as the
  // bf16 path does (bf16 when *grouped_done, else f32).
  absl::Status RunGemmsFp8(BlasHandle& blas, std::span<const uint8_t* const> expert_bases,
                           const PackedLayerIndex& index, int first_expert, int end_expert, bool use_grouped,
                           bool* grouped_done, const Stream& stream);

  MoeShape shape_;
  int max_tokens_ = 0;
  GemmStrategy strategy_ = GemmStrategy::kLoopGemmEx;
  std::string fallback_reason_;
  bool last_used_grouped_ = false;
  int tokens_ = -1;         // Tokens of the last successful sort; -1 before.
  int queued_tokens_ = -1;  // Tokens of a sort QueueSort queued and WaitForCounts has not yet taken.

  DeviceBuffer counts_, offsets_, permutation_, inverse_, sort_scratch_;
  DeviceBuffer sorted_x_, gate_up_, activated_, expert_out_;
  DeviceBuffer device_pointers_;  // Grouped GEMM: A, B, C pointer arrays of both projections; FP8: sources.
  int fp8_scratch_experts_ = 0;
  DeviceBuffer fp8_scratch_;  // bf16 experts dequantised from an FP8 layer
  PackedLayerIndex fp8_scratch_index_;
  PinnedHostBuffer host_counts_;  // [E + 1]: the sort's counts, read back.
  PinnedHostBuffer host_pointers_;
  Event counts_ready_;
  Event pointers_copied_;
  bool pointers_pending_ = false;
  bool pointers_read_directly_ = false;   // host_pointers_ is read by a kernel, not copied
  bool counts_written_directly_ = false;  // host_counts_ is written by the sort's last kernel, not copied

  std::vector<int32_t> host_offsets_;
};

}  // namespace ringmoe::gpu
