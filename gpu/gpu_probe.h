// GPU probe for the planner: device, PCIe copy bandwidth, and the routed-expert GEMM rate per batch size.
// Plain C++; returns UnavailableError without a GPU or in a build without CUDA.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "gpu/device.h"  // GpuAvailable
#include "gpu/moe_ops.h"

namespace ringmoe::gpu {

struct GemmRate {
  int tokens_per_expert;
  double tflops;
};

struct GpuProbeOptions {
  int hidden = 2048;
  int intermediate = 768;
  int experts = 8;
  std::vector<int> tokens_per_expert = {1, 4, 16, 64, 256, 1024};
  int64_t copy_bytes = int64_t{1} << 30;
};

struct GpuProbeResult {
  std::string name;
  int64_t memory_bytes = 0;
  int sm_count = 0;
  double h2d_gbps = 0, d2h_gbps = 0, bidirectional_gbps = 0;  // Pinned host memory; 1 GB = 1e9 bytes.
  std::vector<GemmRate> grouped_gemm_bf16;  // The routed-expert pass (both GEMMs), best strategy per size.
  double prefill_attention_tflops = 0;      // PrefillAttention of 16 fresh 512-token prompts, Qwen3's heads.
  double paged_attention_gbps = 0;          // PagedAttentionRows' KV read rate: decodes over a device cache.
};

// Takes a few seconds: allocates 2 x copy_bytes of pinned host and device memory.
absl::StatusOr<GpuProbeResult> ProbeGpu(const GpuProbeOptions& options);

// The routed-expert pass (gather, gate/up GEMM, SwiGLU, down GEMM, combine) of `options.experts` experts with
// each expert given exactly t tokens, in TFLOP/s of its GEMMs (2 * t * experts * 3 * hidden * intermediate
// flops), issued with `strategy`. Used by ProbeGpu (best of both) and to compare the strategies.
absl::StatusOr<std::vector<GemmRate>> MeasureExpertGemm(const GpuProbeOptions& options,
                                                        GemmStrategy strategy);

// PrefillAttention (gpu/attention_ops.h) of `chunks` fresh prompts of `rows` tokens each, with 32 heads,
// 4 kv heads and head_dim 128, in TFLOP/s of its causal attention (4 * heads * head_dim per query-key pair).
absl::StatusOr<double> MeasurePrefillAttention(int chunks = 16, int rows = 512);

// PagedAttentionRows (gpu/kv_cache_ops.h) of `sequences` decodes over `tokens` cached bf16 tokens each, with
// 32 heads, 8 kv heads and head_dim 128 in blocks of 16 tokens, in GB/s of K/V read (1 GB = 1e9 bytes).
absl::StatusOr<double> MeasurePagedAttention(int sequences = 256, int tokens = 1024);

}  // namespace ringmoe::gpu
