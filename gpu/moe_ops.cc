#include "gpu/moe_ops.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gpu/device.h"
#include "gpu/row_ops.h"
#include "io/status_macros.h"

#if RINGMOE_HAVE_CUDA
#include <cublas_v2.h>

#include "gpu/cuda_status.cuh"
#include "gpu/kernels.cuh"
#endif

namespace ringmoe::gpu {

std::span<const int32_t> MoeRunner::expert_counts() const {
  if (tokens_ < 0) return {};
  return std::span<const int32_t>(host_counts_.as<const int32_t>(), shape_.num_experts);
}

#if RINGMOE_HAVE_CUDA
using internal::AsCuda;

absl::StatusOr<MoeRunner> MoeRunner::Create(DeviceArena& arena, const MoeShape& shape, int max_tokens,
                                            GemmStrategy strategy, int fp8_scratch_experts) {
  RINGMOE_RETURN_IF_ERROR(RequireGpu());
  if (fp8_scratch_experts < 0 || fp8_scratch_experts > std::max(shape.num_experts, 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("MoeRunner: FP8 scratch for ", fp8_scratch_experts, " experts of ", shape.num_experts));
  }
  if (shape.hidden <= 0 || shape.intermediate <= 0 || shape.num_experts <= 0 || shape.top_k <= 0 ||
      shape.top_k > shape.num_experts || max_tokens <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("MoeRunner: hidden ", shape.hidden, ", intermediate ",
                                                   shape.intermediate, ", experts ", shape.num_experts,
                                                   ", top_k ", shape.top_k, ", max_tokens ", max_tokens));
  }
  MoeRunner runner;
  runner.shape_ = shape;
  runner.max_tokens_ = max_tokens;
  runner.strategy_ = strategy;
  const int64_t assignments = static_cast<int64_t>(max_tokens) * shape.top_k;
  const int64_t experts = shape.num_experts;
  const int64_t h = shape.hidden, i = shape.intermediate;
  auto allocate = [&](DeviceBuffer& buffer, int64_t bytes, const char* what) -> absl::Status {
    RINGMOE_ASSIGN_OR_RETURN(buffer, arena.Allocate(bytes, absl::StrCat("MoE ", what)));
    return absl::OkStatus();
  };
  RINGMOE_RETURN_IF_ERROR(allocate(runner.counts_, 4 * (experts + 1), "expert counts"));
  RINGMOE_RETURN_IF_ERROR(allocate(runner.offsets_, 4 * (experts + 1), "expert offsets"));
  RINGMOE_RETURN_IF_ERROR(allocate(runner.permutation_, 4 * assignments, "permutation"));
  RINGMOE_RETURN_IF_ERROR(allocate(runner.inverse_, 4 * assignments, "inverse permutation"));
  RINGMOE_RETURN_IF_ERROR(allocate(
      runner.sort_scratch_,
      static_cast<int64_t>(kernels::SortScratchBytes(static_cast<int>(assignments), shape.num_experts)),
      "sort scratch"));
  RINGMOE_RETURN_IF_ERROR(allocate(runner.sorted_x_, 2 * assignments * h, "sorted activations (bf16)"));
  RINGMOE_RETURN_IF_ERROR(allocate(runner.gate_up_, 4 * assignments * 2 * i, "gate/up output (f32)"));
  RINGMOE_RETURN_IF_ERROR(allocate(runner.activated_, 2 * assignments * i, "SwiGLU output (bf16)"));
  RINGMOE_RETURN_IF_ERROR(allocate(runner.expert_out_, 4 * assignments * h, "expert outputs (f32)"));
  RINGMOE_ASSIGN_OR_RETURN(runner.host_counts_, PinnedHostBuffer::Allocate(4 * (experts + 1), "MoE counts"));
  runner.counts_written_directly_ = DeviceReadsHostDirectly(runner.host_counts_.data());
  if (fp8_scratch_experts > 0) {
    runner.fp8_scratch_experts_ = fp8_scratch_experts;
    runner.fp8_scratch_index_ = MakePackedLayerIndex(fp8_scratch_experts, shape.hidden, shape.intermediate);
    RINGMOE_RETURN_IF_ERROR(
        allocate(runner.fp8_scratch_, runner.fp8_scratch_index_.total_bytes(), "FP8 dequantisation scratch"));
  }
  if (strategy != GemmStrategy::kLoopGemmEx || fp8_scratch_experts > 0) {
    // [A1 | B1 | C1 | A2 | B2 | C2 | FP8 sources], each `experts` long.
    const int64_t pointer_bytes = 7 * experts * static_cast<int64_t>(sizeof(void*));
    RINGMOE_RETURN_IF_ERROR(allocate(runner.device_pointers_, pointer_bytes, "grouped GEMM pointers"));
    RINGMOE_ASSIGN_OR_RETURN(runner.host_pointers_,
                             PinnedHostBuffer::Allocate(pointer_bytes, "grouped GEMM pointers"));
    runner.pointers_read_directly_ = DeviceReadsHostDirectly(runner.host_pointers_.data());
  }
  RINGMOE_ASSIGN_OR_RETURN(runner.counts_ready_, Event::Create(/*timing=*/false, /*blocking_sync=*/true));
  RINGMOE_ASSIGN_OR_RETURN(runner.pointers_copied_, Event::Create());
  runner.host_offsets_.assign(experts + 1, 0);
  return runner;
}

absl::Status MoeRunner::SortByExpert(const int32_t* expert_ids, int tokens, const Stream& stream) {
  RINGMOE_RETURN_IF_ERROR(QueueSort(expert_ids, tokens, stream));
  return WaitForCounts();
}

absl::Status MoeRunner::QueueSort(const int32_t* expert_ids, int tokens, const Stream& stream) {
  tokens_ = -1;
  queued_tokens_ = -1;
  if (tokens < 0 || tokens > max_tokens_) {
    return absl::InvalidArgumentError(absl::StrCat("MoeRunner::SortByExpert: ", tokens,
                                                   " tokens; this runner holds at most ", max_tokens_));
  }
  const int assignments = tokens * shape_.top_k;
  const int experts = shape_.num_experts;
  RINGMOE_CUDA_RETURN_IF_ERROR(
      kernels::LaunchSortByExpert(expert_ids, assignments, experts, counts_.as<int32_t>(),
                                  offsets_.as<int32_t>(), permutation_.as<int32_t>(), inverse_.as<int32_t>(),
                                  sort_scratch_.data(), static_cast<size_t>(sort_scratch_.size()),
                                  counts_written_directly_ ? host_counts_.as<int32_t>() : nullptr,
                                  AsCuda(stream)),
      "expert sort");
  // The counts come back at every tile, each on the step's critical path: written to pinned memory by the
  // sort's last kernel where the device can, so that no copy engine (busy with the ring's fills) is involved.
  if (!counts_written_directly_) {
    RINGMOE_RETURN_IF_ERROR(CopyDeviceToHost(host_counts_.data(), counts_.data(), 4 * (experts + 1), stream));
  }
  RINGMOE_RETURN_IF_ERROR(counts_ready_.Record(stream));
  queued_tokens_ = tokens;
  return absl::OkStatus();
}

absl::Status MoeRunner::WaitForCounts() {
  if (queued_tokens_ < 0)
    return absl::FailedPreconditionError("MoeRunner::WaitForCounts without a queued sort");
  const int tokens = queued_tokens_, experts = shape_.num_experts;
  queued_tokens_ = -1;
  RINGMOE_RETURN_IF_ERROR(counts_ready_.Synchronize());
  const int32_t* counts = host_counts_.as<const int32_t>();
  if (counts[experts] != 0) {
    return absl::InvalidArgumentError(absl::StrCat("MoeRunner::SortByExpert: ", counts[experts],
                                                   " routed expert ids outside [0, ", experts, ")"));
  }
  int32_t running = 0;
  for (int e = 0; e < experts; ++e) {
    host_offsets_[e] = running;
    running += counts[e];
  }
  host_offsets_[experts] = running;
  tokens_ = tokens;
  return absl::OkStatus();
}

absl::Status MoeRunner::RunExperts(BlasHandle& blas, const void* x_bf16, const float* weights,
                                   const void* packed_layer, const PackedLayerIndex& index, float* out,
                                   const Stream& stream) {
  const std::vector<const uint8_t*> bases(std::max(shape_.num_experts, 0),
                                          static_cast<const uint8_t*>(packed_layer));
  return RunExperts(blas, x_bf16, weights, bases, index, out, stream);
}

absl::Status MoeRunner::RunExperts(BlasHandle& blas, const void* x_bf16, const float* weights,
                                   std::span<const uint8_t* const> expert_bases,
                                   const PackedLayerIndex& index, float* out, const Stream& stream) {
  return RunExpertRange(blas, x_bf16, weights, expert_bases, index, 0, shape_.num_experts, out, stream);
}

absl::Status MoeRunner::RunExpertRange(BlasHandle& blas, const void* x_bf16, const float* weights,
                                       std::span<const uint8_t* const> expert_bases,
                                       const PackedLayerIndex& index, int first_expert, int end_expert,
                                       float* out, const Stream& stream) {
  if (first_expert < 0 || end_expert < first_expert || end_expert > shape_.num_experts) {
    return absl::InvalidArgumentError(absl::StrCat("MoeRunner::RunExpertRange: experts [", first_expert, ", ",
                                                   end_expert, ") of ", shape_.num_experts));
  }
  if (static_cast<int>(expert_bases.size()) != shape_.num_experts) {
    return absl::InvalidArgumentError(absl::StrCat("MoeRunner::RunExperts: ", expert_bases.size(),
                                                   " expert bases for ", shape_.num_experts, " experts"));
  }
  if (tokens_ < 0)
    return absl::FailedPreconditionError("MoeRunner::RunExperts before a successful SortByExpert");
  if (index.num_experts != shape_.num_experts || index.hidden != shape_.hidden ||
      index.intermediate != shape_.intermediate) {
    return absl::InvalidArgumentError(
        absl::StrCat("MoeRunner::RunExperts: packed layer is ", index.num_experts, " experts of ",
                     index.hidden, "x", index.intermediate, ", the runner was made for ", shape_.num_experts,
                     " of ", shape_.hidden, "x", shape_.intermediate));
  }
  if (tokens_ == 0) return absl::OkStatus();
  // The range's assignments: sorted positions [row_begin, row_end), the sort being by expert.
  const int row_begin = host_offsets_[first_expert], row_end = host_offsets_[end_expert];
  const int rows_in_range = row_end - row_begin;
  if (rows_in_range == 0) return absl::OkStatus();  // Nothing routed here: out stays as it is.
  const int h = shape_.hidden, i = shape_.intermediate;
  cudaStream_t cuda_stream = AsCuda(stream);
  RINGMOE_RETURN_IF_ERROR(blas.Bind(stream));
  RINGMOE_CUDA_RETURN_IF_ERROR(
      kernels::LaunchGatherRows(static_cast<const uint16_t*>(x_bf16), h,
                                permutation_.as<int32_t>() + row_begin, rows_in_range, shape_.top_k,
                                sorted_x_.as<uint16_t>() + int64_t{row_begin} * h, cuda_stream),
      "gather kernel");
  bool use_grouped = strategy_ == GemmStrategy::kGroupedBatched;
  if (strategy_ == GemmStrategy::kAuto) {
    int routed = 0;
    for (int e = first_expert; e < end_expert; ++e) routed += host_counts_.as<const int32_t>()[e] > 0;
    use_grouped = AutoPrefersGrouped(rows_in_range, routed);
  }
  bool grouped_done = false;  // The grouped path leaves bf16 outputs; the loop f32.
  if (index.fp8()) {
    RINGMOE_RETURN_IF_ERROR(
        RunGemmsFp8(blas, expert_bases, index, first_expert, end_expert, use_grouped, &grouped_done, stream));
  } else if (use_grouped) {
    absl::Status grouped = RunGemmsGrouped(blas, expert_bases, index, first_expert, end_expert, stream);
    if (absl::IsUnimplemented(grouped)) {
      // cuBLAS rejected the call: use the loop from now on, and say why (fallback_reason()).
      fallback_reason_ = std::string(grouped.message());
      strategy_ = GemmStrategy::kLoopGemmEx;
    } else {
      RINGMOE_RETURN_IF_ERROR(grouped);
      grouped_done = true;
    }
  }
  last_used_grouped_ = grouped_done;
  if (!grouped_done && !index.fp8()) {
    auto handle = static_cast<cublasHandle_t>(blas.handle());
    const float alpha = 1.0f, beta = 0.0f;
    const int32_t* counts = host_counts_.as<const int32_t>();
    for (int e = first_expert; e < end_expert; ++e) {
      const int rows = counts[e];
      if (rows == 0) continue;
      const int64_t first = host_offsets_[e];
      // Row-major C[rows, 2I] = X[rows, H] * W_gate_up[2I, H]^T, as column-major C^T = W X^T.
      RINGMOE_CUBLAS_RETURN_IF_ERROR(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, 2 * i, rows, h, &alpha,
                                                  expert_bases[e] + index.gate_up_offset(e), CUDA_R_16BF, h,
                                                  sorted_x_.as<uint16_t>() + first * h, CUDA_R_16BF, h, &beta,
                                                  gate_up_.as<float>() + first * 2 * i, CUDA_R_32F, 2 * i,
                                                  CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                                     absl::StrCat("cublasGemmEx (expert ", e, " gate/up, ", rows, " rows)"));
    }
    RINGMOE_CUDA_RETURN_IF_ERROR(
        kernels::LaunchSwiGlu(gate_up_.as<float>() + int64_t{row_begin} * 2 * i, false, rows_in_range, i,
                              activated_.as<uint16_t>() + int64_t{row_begin} * i, cuda_stream),
        "SwiGLU kernel");
    for (int e = first_expert; e < end_expert; ++e) {
      const int rows = counts[e];
      if (rows == 0) continue;
      const int64_t first = host_offsets_[e];
      RINGMOE_CUBLAS_RETURN_IF_ERROR(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, h, rows, i, &alpha,
                                                  expert_bases[e] + index.down_offset(e), CUDA_R_16BF, i,
                                                  activated_.as<uint16_t>() + first * i, CUDA_R_16BF, i,
                                                  &beta, expert_out_.as<float>() + first * h, CUDA_R_32F, h,
                                                  CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                                     absl::StrCat("cublasGemmEx (expert ", e, " down, ", rows, " rows)"));
    }
  }
  RINGMOE_CUDA_RETURN_IF_ERROR(
      kernels::LaunchCombine(expert_out_.data(), grouped_done, h, inverse_.as<int32_t>(), weights, tokens_,
                             shape_.top_k, row_begin, row_end, out, cuda_stream),
      "combine kernel");
  return absl::OkStatus();
}

absl::Status MoeRunner::UploadPointers(int64_t bytes, const Stream& stream) {
  // Each tile's upload is on the step's critical path (the GPU has just finished the sort and waits for
  // these): a kernel reads them where it can, instead of a copy queued behind the ring's fills.
  if (pointers_read_directly_) {
    return CopyHostToDeviceByKernel(device_pointers_.data(), host_pointers_.data(), bytes, stream);
  }
  return CopyHostToDevice(device_pointers_.data(), host_pointers_.data(), bytes, stream);
}

absl::Status MoeRunner::RunGemmsGrouped(BlasHandle& blas, std::span<const uint8_t* const> expert_bases,
                                        const PackedLayerIndex& index, int first_expert, int end_expert,
                                        const Stream& stream) {
  const int h = shape_.hidden, i = shape_.intermediate;
  const int experts = shape_.num_experts;
  const int32_t* counts = host_counts_.as<const int32_t>();
  // The staging area is reused by every call: the previous call's upload must have left it.
  if (pointers_pending_) RINGMOE_RETURN_IF_ERROR(pointers_copied_.Synchronize());
  auto** staged = host_pointers_.as<const void*>();
  // Layout: [A1 | B1 | C1 | A2 | B2 | C2], each `experts` long; only the first `groups` of each are used.
  std::vector<int> rows;
  int groups = 0;
  for (int e = first_expert; e < end_expert; ++e) {
    if (counts[e] == 0) continue;
    const int64_t first = host_offsets_[e];
    staged[0 * experts + groups] = expert_bases[e] + index.gate_up_offset(e);
    staged[1 * experts + groups] = sorted_x_.as<uint16_t>() + first * h;
    staged[2 * experts + groups] = gate_up_.as<uint16_t>() + first * 2 * i;  // bf16: cuBLAS's grouped call
                                                                             // wants C of the input type.
    staged[3 * experts + groups] = expert_bases[e] + index.down_offset(e);
    staged[4 * experts + groups] = activated_.as<uint16_t>() + first * i;
    staged[5 * experts + groups] = expert_out_.as<uint16_t>() + first * h;
    rows.push_back(counts[e]);
    ++groups;
  }
  if (groups == 0) return absl::OkStatus();
  RINGMOE_RETURN_IF_ERROR(UploadPointers(6 * experts * static_cast<int64_t>(sizeof(void*)), stream));
  RINGMOE_RETURN_IF_ERROR(pointers_copied_.Record(stream));
  pointers_pending_ = true;
  auto** device = device_pointers_.as<void*>();
  std::vector<cublasOperation_t> trans_a(groups, CUBLAS_OP_T), trans_b(groups, CUBLAS_OP_N);
  std::vector<float> alpha(groups, 1.0f), beta(groups, 0.0f);
  std::vector<int> two_i(groups, 2 * i), hidden(groups, h), inter(groups, i), group_size(groups, 1);
  auto handle = static_cast<cublasHandle_t>(blas.handle());
  // cuBLAS answers NOT_SUPPORTED or INVALID_VALUE for type combinations it lacks: Unimplemented, so that the
  // caller falls back to the loop.
  auto check = [](cublasStatus_t status, const char* what) -> absl::Status {
    if (status == CUBLAS_STATUS_NOT_SUPPORTED || status == CUBLAS_STATUS_INVALID_VALUE) {
      return absl::UnimplementedError(absl::StrCat(what, ": ", internal::CublasStatusName(status)));
    }
    return internal::CublasStatus(status, what);
  };
  RINGMOE_RETURN_IF_ERROR(
      check(cublasGemmGroupedBatchedEx(handle, trans_a.data(), trans_b.data(), two_i.data(), rows.data(),
                                       hidden.data(), alpha.data(), device + 0 * experts, CUDA_R_16BF,
                                       hidden.data(), device + 1 * experts, CUDA_R_16BF, hidden.data(),
                                       beta.data(), device + 2 * experts, CUDA_R_16BF, two_i.data(), groups,
                                       group_size.data(), CUBLAS_COMPUTE_32F),
            "cublasGemmGroupedBatchedEx (gate/up)"));
  const int64_t row_begin = host_offsets_[first_expert], row_end = host_offsets_[end_expert];
  RINGMOE_CUDA_RETURN_IF_ERROR(
      kernels::LaunchSwiGlu(gate_up_.as<uint16_t>() + row_begin * 2 * i, true,
                            static_cast<int>(row_end - row_begin), i,
                            activated_.as<uint16_t>() + row_begin * i, AsCuda(stream)),
      "SwiGLU kernel");
  RINGMOE_RETURN_IF_ERROR(
      check(cublasGemmGroupedBatchedEx(handle, trans_a.data(), trans_b.data(), hidden.data(), rows.data(),
                                       inter.data(), alpha.data(), device + 3 * experts, CUDA_R_16BF,
                                       inter.data(), device + 4 * experts, CUDA_R_16BF, inter.data(),
                                       beta.data(), device + 5 * experts, CUDA_R_16BF, hidden.data(), groups,
                                       group_size.data(), CUBLAS_COMPUTE_32F),
            "cublasGemmGroupedBatchedEx (down)"));
  return absl::OkStatus();
}

absl::Status MoeRunner::RunGemmsFp8(BlasHandle& blas, std::span<const uint8_t* const> expert_bases,
                                    const PackedLayerIndex& index, int first_expert, int end_expert,
                                    bool use_grouped, bool* grouped_done, const Stream& stream) {
  if (fp8_scratch_experts_ <= 0) {
    return absl::FailedPreconditionError(
        "MoeRunner::RunExperts: the layer is in the FP8 block layout and this runner has no FP8 scratch");
  }
  const int h = shape_.hidden, i = shape_.intermediate;
  const int experts = shape_.num_experts;
  const int32_t* counts = host_counts_.as<const int32_t>();
  std::vector<int> routed;
  for (int e = first_expert; e < end_expert; ++e) {
    if (counts[e] > 0) routed.push_back(e);
  }
  *grouped_done = false;
  if (routed.empty()) return absl::OkStatus();
  const int group = fp8_scratch_experts_;
  const PackedLayerIndex& scratch = fp8_scratch_index_;
  uint8_t* scratch_base = fp8_scratch_.as<uint8_t>();
  // Group g's experts go to scratch slots 0, 1, ...: the pointers of every group are staged in one copy.
  if (pointers_pending_) RINGMOE_RETURN_IF_ERROR(pointers_copied_.Synchronize());
  auto** staged = host_pointers_.as<const void*>();
  for (int g = 0; g < static_cast<int>(routed.size()); ++g) {
    const int e = routed[g];
    const int slot = g % group;
    const int64_t first = host_offsets_[e];
    staged[6 * experts + g] = expert_bases[e] + index.gate_up_offset(e);
    staged[0 * experts + g] = scratch_base + scratch.gate_up_offset(slot);
    staged[1 * experts + g] = sorted_x_.as<uint16_t>() + first * h;
    staged[2 * experts + g] = gate_up_.as<uint16_t>() + first * 2 * i;
    staged[3 * experts + g] = scratch_base + scratch.down_offset(slot);
    staged[4 * experts + g] = activated_.as<uint16_t>() + first * i;
    staged[5 * experts + g] = expert_out_.as<uint16_t>() + first * h;
  }
  RINGMOE_RETURN_IF_ERROR(UploadPointers(7 * experts * static_cast<int64_t>(sizeof(void*)), stream));
  RINGMOE_RETURN_IF_ERROR(pointers_copied_.Record(stream));
  pointers_pending_ = true;
  auto** device = device_pointers_.as<void*>();
  kernels::Fp8ExpertLayout layout;
  layout.hidden = h;
  layout.intermediate = i;
  layout.block_rows = index.fp8_block_rows;
  layout.block_cols = index.fp8_block_cols;
  layout.gate_scales_offset = index.gate_scales_offset(0);
  layout.up_scales_offset = index.up_scales_offset(0);
  layout.down_scales_offset = index.down_scales_offset(0);
  cudaStream_t cuda_stream = AsCuda(stream);
  auto handle = static_cast<cublasHandle_t>(blas.handle());
  auto check = [](cublasStatus_t status, const char* what) -> absl::Status {
    if (status == CUBLAS_STATUS_NOT_SUPPORTED || status == CUBLAS_STATUS_INVALID_VALUE) {
      return absl::UnimplementedError(absl::StrCat(what, ": ", internal::CublasStatusName(status)));
    }
    return internal::CublasStatus(status, what);
  };
  const float alpha = 1.0f, beta = 0.0f;
  for (int start = 0; start < static_cast<int>(routed.size()); start += group) {
    const int n = std::min<int>(group, static_cast<int>(routed.size()) - start);
    RINGMOE_CUDA_RETURN_IF_ERROR(
        kernels::LaunchDequantizeFp8Experts(
            reinterpret_cast<const uint8_t* const*>(device + 6 * experts + start), n, layout,
            reinterpret_cast<uint16_t*>(scratch_base), scratch.expert_stride_bytes, cuda_stream),
        "FP8 dequantisation kernel");
    const int64_t row_begin = host_offsets_[routed[start]];
    const int64_t row_end = host_offsets_[routed[start + n - 1] + 1];
    const int rows_in_group = static_cast<int>(row_end - row_begin);
    if (use_grouped) {
      std::vector<int> rows;
      for (int g = start; g < start + n; ++g) rows.push_back(counts[routed[g]]);
      std::vector<cublasOperation_t> trans_a(n, CUBLAS_OP_T), trans_b(n, CUBLAS_OP_N);
      std::vector<float> alphas(n, 1.0f), betas(n, 0.0f);
      std::vector<int> two_i(n, 2 * i), hidden(n, h), inter(n, i), group_size(n, 1);
      absl::Status gate_up = check(
          cublasGemmGroupedBatchedEx(handle, trans_a.data(), trans_b.data(), two_i.data(), rows.data(),
                                     hidden.data(), alphas.data(), device + 0 * experts + start, CUDA_R_16BF,
                                     hidden.data(), device + 1 * experts + start, CUDA_R_16BF, hidden.data(),
                                     betas.data(), device + 2 * experts + start, CUDA_R_16BF, two_i.data(), n,
                                     group_size.data(), CUBLAS_COMPUTE_32F),
          "cublasGemmGroupedBatchedEx (FP8 layer, gate/up)");
      if (absl::IsUnimplemented(gate_up) && start == 0) {
        // cuBLAS rejected the call before anything was written: the loop from now on (fallback_reason()).
        fallback_reason_ = std::string(gate_up.message());
        strategy_ = GemmStrategy::kLoopGemmEx;
        use_grouped = false;
      } else {
        RINGMOE_RETURN_IF_ERROR(gate_up);
        RINGMOE_CUDA_RETURN_IF_ERROR(
            kernels::LaunchSwiGlu(gate_up_.as<uint16_t>() + row_begin * 2 * i, true, rows_in_group, i,
                                  activated_.as<uint16_t>() + row_begin * i, cuda_stream),
            "SwiGLU kernel");
        RINGMOE_RETURN_IF_ERROR(check(
            cublasGemmGroupedBatchedEx(handle, trans_a.data(), trans_b.data(), hidden.data(), rows.data(),
                                       inter.data(), alphas.data(), device + 3 * experts + start, CUDA_R_16BF,
                                       inter.data(), device + 4 * experts + start, CUDA_R_16BF, inter.data(),
                                       betas.data(), device + 5 * experts + start, CUDA_R_16BF, hidden.data(),
                                       n, group_size.data(), CUBLAS_COMPUTE_32F),
            "cublasGemmGroupedBatchedEx (FP8 layer, down)"));
        continue;
      }
    }
    for (int g = start; g < start + n; ++g) {
      const int e = routed[g];
      const int64_t first = host_offsets_[e];
      RINGMOE_CUBLAS_RETURN_IF_ERROR(
          cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, 2 * i, counts[e], h, &alpha,
                       scratch_base + scratch.gate_up_offset(g - start), CUDA_R_16BF, h,
                       sorted_x_.as<uint16_t>() + first * h, CUDA_R_16BF, h, &beta,
                       gate_up_.as<float>() + first * 2 * i, CUDA_R_32F, 2 * i, CUBLAS_COMPUTE_32F,
                       CUBLAS_GEMM_DEFAULT),
          absl::StrCat("cublasGemmEx (FP8 expert ", e, " gate/up, ", counts[e], " rows)"));
    }
    RINGMOE_CUDA_RETURN_IF_ERROR(
        kernels::LaunchSwiGlu(gate_up_.as<float>() + row_begin * 2 * i, false, rows_in_group, i,
                              activated_.as<uint16_t>() + row_begin * i, cuda_stream),
        "SwiGLU kernel");
    for (int g = start; g < start + n; ++g) {
      const int e = routed[g];
      const int64_t first = host_offsets_[e];
      RINGMOE_CUBLAS_RETURN_IF_ERROR(
          cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, h, counts[e], i, &alpha,
                       scratch_base + scratch.down_offset(g - start), CUDA_R_16BF, i,
                       activated_.as<uint16_t>() + first * i, CUDA_R_16BF, i, &beta,
                       expert_out_.as<float>() + first * h, CUDA_R_32F, h, CUBLAS_COMPUTE_32F,
                       CUBLAS_GEMM_DEFAULT),
          absl::StrCat("cublasGemmEx (FP8 expert ", e, " down, ", counts[e], " rows)"));
    }
  }
  *grouped_done = use_grouped;
  return absl::OkStatus();
}

#else  // !RINGMOE_HAVE_CUDA

absl::StatusOr<MoeRunner> MoeRunner::Create(DeviceArena&, const MoeShape&, int, GemmStrategy, int) {
  return NotBuiltWithCuda();
}
absl::Status MoeRunner::SortByExpert(const int32_t*, int, const Stream&) { return NotBuiltWithCuda(); }
absl::Status MoeRunner::QueueSort(const int32_t*, int, const Stream&) { return NotBuiltWithCuda(); }
absl::Status MoeRunner::WaitForCounts() { return NotBuiltWithCuda(); }
absl::Status MoeRunner::RunExperts(BlasHandle&, const void*, const float*, const void*,
                                   const PackedLayerIndex&, float*, const Stream&) {
  return NotBuiltWithCuda();
}
absl::Status MoeRunner::RunExperts(BlasHandle&, const void*, const float*, std::span<const uint8_t* const>,
                                   const PackedLayerIndex&, float*, const Stream&) {
  return NotBuiltWithCuda();
}
absl::Status MoeRunner::RunExpertRange(BlasHandle&, const void*, const float*,
                                       std::span<const uint8_t* const>, const PackedLayerIndex&, int, int,
                                       float*, const Stream&) {
  return NotBuiltWithCuda();
}

#endif

}  // namespace ringmoe::gpu
