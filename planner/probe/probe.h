// The hardware probe behind `ringmoe probe`: measures this machine in well under a minute and returns a
// HardwareProfile. CPU parts live in probe_cpu.cc; GPU parts come from the GPU layer (gpu/gpu_probe.h) and
// SSD reads from io/uring_reader.h, each left out with a reason when that layer is not built or has no
// device. Threading: each function uses the whole machine while it runs; call one at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "planner/hardware_profile.h"

namespace ringmoe::planner {

struct ProbeOptions {
  std::string ssd_dir;  // Directory on the filesystem that holds the model; empty = SSD left out.
  // --ssd-dir: directories (one per drive) whose sustained read rate is measured each (SsdProfile::drives).
  std::vector<std::string> ssd_drive_dirs;
  int threads = 0;     // CPU threads; 0 = every hardware thread.
  bool quick = false;  // Small buffers and few repetitions (tests); figures are rougher.
  std::function<void(std::string_view)> progress;  // Called with a line per measurement; may be empty.
};

absl::StatusOr<HardwareProfile> ProbeMachine(const ProbeOptions& options);

// `path` non-empty: load that profile. Otherwise load the per-machine cache (DefaultProfilePath()), or probe
// and write the cache when there is none. `used_path` receives the file the profile came from.
absl::StatusOr<HardwareProfile> LoadOrProbeProfile(const std::string& path, const ProbeOptions& options,
                                                   std::string* used_path);

// The CPU measurements (probe_cpu.cc), exposed for tests and benchmarks.
Topology ProbeTopology();
// All `threads` threads summing one `bytes`-long buffer; GB/s, best of `repeats`.
double MeasureDramReadGbps(int threads, int64_t bytes, int repeats);
// Decode attention over a bf16 paged KV cache: per kv head, dot products of its query group against each K
// row, softmax, then the weighted sum of V rows. `kv_bytes` sizes the cache.
CpuAttentionRate MeasureCpuAttention(int threads, int64_t kv_bytes, int repeats);
// oneDNN matmul [m x k] x [k x n] for each m; bf16 = false for f32. Empty when oneDNN has no fast kernel for
// the type here (reference implementation or none); `why_not` then says so.
std::vector<RatePoint> MeasureOnednnMatmul(bool bf16, int k, int n, const std::vector<int>& ms,
                                           double seconds_per_point, std::string* why_not);
// AVX512-BF16 and AMX-BF16: cpuid, as far as ONEDNN_MAX_CPU_ISA lets oneDNN use them (so the plan assumes the
// compute type the engine picks, cpu::CpuHasNativeBf16).
void DetectBf16Support(bool* avx512_bf16, bool* amx_bf16);

}  // namespace ringmoe::planner
