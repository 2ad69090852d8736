// HardwareProfile: what `ringmoe probe` measured on one machine, and its JSON form (the probe's output, the
// per-machine cache and bench/h200_profile.json all share it). Plain data; immutable once loaded.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace ringmoe::planner {

inline constexpr int kProfileFormatVersion = 1;

// One point of a measured throughput curve: `tokens` rows (tokens per expert for grouped GEMMs, M for a
// matmul) ran at `tflops`.
struct RatePoint {
  int tokens = 0;
  double tflops = 0.0;
};

struct NumaNode {
  int os_index = 0;
  int cores = 0;
  int64_t memory_bytes = 0;
};

struct Topology {
  std::string cpu_model;
  int packages = 0;
  int cores = 0;    // physical cores
  int threads = 0;  // hardware threads (PUs)
  int64_t memory_bytes = 0;
  std::vector<NumaNode> numa_nodes;
};

struct CpuAttentionRate {
  // KV-cache bytes read per second by decode attention, all cores, at a shape whose bytes bind (bytes_heads
  // query heads over bytes_kv_heads KV heads; older probes: the FLOP shape below).
  double kv_gbps = 0.0;
  // The FLOP rate (q.k and p.v, 4 FLOPs per KV element pair) at a shape whose FLOPs bind (heads, kv_heads).
  double gflops = 0.0;
  // Prefill chunks that continue a cached prefix (many query rows per KV row: FLOP-bound), all cores;
  // 0 = not measured (the model then uses gflops).
  double prefill_gflops = 0.0;
  int heads = 0, kv_heads = 0, head_dim = 0, context = 0;  // The shape it was measured at.
  bool estimated = false;                   // true: not measured on that machine (see the profile's notes).
  int bytes_heads = 0, bytes_kv_heads = 0;  // The shape kv_gbps was measured at (0: heads, kv_heads).
  // The decode FLOP rate over an e4m3 cache (--kv-dtype fp8) at the FLOP shape: its values are widened as
  // they are read, so it computes slower than over bf16; 0 = not measured (the model then uses gflops).
  double fp8_gflops = 0.0;
  // MLA's absorbed decode (cpu::PagedMlaAttention: DeepSeek-V3's 128 heads over one bf16 row of 512 latent +
  // 64 rope values, 2 x (576 + 512) FLOPs per head and cached token), all cores: matmuls, not the kernel
  // above, so its own rate; 0 = not measured (the model then uses gflops).
  double mla_gflops = 0.0;
};

struct CpuProfile {
  int threads = 0;              // Threads the probe used.
  double dram_read_gbps = 0.0;  // All cores reading one large buffer.
  bool has_avx512_bf16 = false;
  bool has_amx_bf16 = false;
  CpuAttentionRate attention;
  int matmul_k = 0, matmul_n = 0;      // The matmul shape behind the curves below (M varies).
  std::vector<RatePoint> matmul_f32;   // oneDNN, sorted by tokens (M).
  std::vector<RatePoint> matmul_bf16;  // Empty when oneDNN has no fast bf16 path here.
};

// DRAM shared by DMA (pinned host-to-device copies) and CPU reads: each alone and both at once.
struct DramContention {
  double dma_alone_gbps = 0.0;
  double cpu_alone_gbps = 0.0;
  double dma_shared_gbps = 0.0;
  double cpu_shared_gbps = 0.0;
};

struct GpuProfile {
  std::string name;
  int64_t memory_bytes = 0;
  int sm_count = 0;
  double h2d_gbps = 0.0, d2h_gbps = 0.0, bidirectional_gbps = 0.0;  // Pinned host memory.
  // GPU decode attention's KV read rate over a device cache (gpu::PagedAttentionRows, probed); 0 = unknown
  // (no GPU share of the KV cache then).
  double attention_kv_gbps = 0.0;
  // Causal attention of fresh prompts on the GPU (gpu::PrefillAttention), TFLOP/s at 512-token prompts;
  // 0 = not measured (the model then assumes kDefaultPrefillAttentionTflops and says so).
  double prefill_attention_tflops = 0.0;
  int gemm_hidden = 0, gemm_intermediate = 0;  // The expert shape behind the curve.
  std::vector<RatePoint> grouped_gemm_bf16;    // tokens = tokens per expert, sorted.
  // GPUs of this kind in the server, each on its own host link (the figures above are one GPU's). 1 = a
  // one-GPU probe: a plan for several GPUs then assumes that many such links. In JSON only when above 1.
  int count = 1;
  // Host-to-device GB/s of all `count` links copying at once (they share DRAM); 0 = not measured: the model
  // assumes count x h2d_gbps capped by DRAM (planner/DESIGN.md, "Several GPUs"). In JSON only when measured.
  double all_links_h2d_gbps = 0.0;
};

struct SsdReadRate {
  int queue_depth = 0;
  int64_t block_bytes = 0;
  double gbps = 0.0;
};

// One --ssd-dir as `ringmoe probe --ssd-dir A --ssd-dir B ...` measured it.
struct SsdDrive {
  std::string path;     // The directory.
  uint64_t device = 0;  // Its st_dev when probed: two directories on one device share its bandwidth.
  double gbps = 0.0;    // Sustained O_DIRECT reads at the SSD tier's settings (4 MiB, 32 in flight).
  bool direct = true;   // False: the filesystem refused O_DIRECT (or is tmpfs): not a drive's rate.
};

struct SsdProfile {
  std::string path;  // The directory measured (the model's filesystem).
  std::vector<SsdReadRate> reads;
  // The reads bypassed the page cache (O_DIRECT). False when the filesystem refused O_DIRECT: the rates are
  // then buffered reads, whose dependence on queue depth (readahead) is not the drive's. In JSON, "direct":
  // false is written when false and an absent field reads as true (profiles from before the field).
  // Last, so that SsdProfile{path, reads} still means what it did.
  bool direct = true;
  // A sustained read at the SSD tier's own settings (4 MiB reads, 32 in flight) over a file several times
  // larger than one sweep reading: what the planner prices the SSD tier at, since the sweep's short readings
  // vary by tens of percent on a shared or throttled drive. 0 in profiles from before it was measured.
  double sustained_gbps = 0.0;
  double best_gbps() const;
  // Every --ssd-dir the probe measured (empty in profiles without them).
  std::vector<SsdDrive> drives;
  // Set for a run whose SSD tier is striped over --ssd-dir directories (StripeSsdOverDirs): the sum of their
  // drives' rates, each device counted once. Not written to JSON.
  double striped_gbps = 0.0;
  // Set with striped_gbps: the SSD tier reads section files in the ring's own layout (any held expert type,
  // FP8 included), not the checkpoint's files. Not written to JSON.
  bool section_files = false;
  // The rate the planner uses: the striped drives' sum when set, else sustained_gbps when measured, else the
  // sweep's best.
  double planning_gbps() const {
    return striped_gbps > 0 ? striped_gbps : sustained_gbps > 0 ? sustained_gbps : best_gbps();
  }
};

struct HardwareProfile {
  std::string source;  // Who made it: "ringmoe probe" or a note on where the figures came from.
  std::string hostname;
  std::string probed_at;  // ISO 8601 UTC.
  std::vector<std::string> notes;
  Topology topology;
  int64_t pinned_limit_bytes = 0;  // Most host memory the engine may pin; 0 = no limit beyond the budget.
  CpuProfile cpu;
  std::optional<DramContention> contention;
  std::optional<GpuProfile> gpu;
  std::string gpu_absent_reason;  // Set when gpu is empty.
  std::optional<SsdProfile> ssd;
  std::string ssd_absent_reason;  // Set when ssd is empty.
};

// The SSD rate of section files striped over `dirs` (--ssd-dir): each directory's probed rate (profile->ssd->
// drives, matched by path, else by device; else the probed model drive's rate when on its device), summed
// over distinct devices, into profile->ssd->striped_gbps. `warnings` gets a line for two directories on one
// device (counted once) and for a directory nobody probed (counted at the slowest probed rate; `ringmoe
// probe --ssd-dir` measures it). Errors: a directory that cannot be stat'ed (InvalidArgument naming it). No
// SSD in the profile: nothing to do.
absl::Status StripeSsdOverDirs(const std::vector<std::string>& dirs, HardwareProfile* profile,
                               std::vector<std::string>* warnings);

std::string ProfileToJson(const HardwareProfile& profile);
// `source` names the file in error messages.
absl::StatusOr<HardwareProfile> ProfileFromJson(const std::string& text, const std::string& source);
absl::StatusOr<HardwareProfile> LoadProfile(const std::string& path);
absl::Status SaveProfile(const HardwareProfile& profile, const std::string& path);

// ~/.cache/ringmoe/hardware-<hostname>.json (XDG_CACHE_HOME honoured).
std::string DefaultProfilePath();

}  // namespace ringmoe::planner
