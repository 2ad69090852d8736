#include "planner/probe/probe.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cpu/cpu_features.h"

#if __has_include("gpu/gpu_probe.h")
#include "gpu/gpu_probe.h"
#define RINGMOE_PLANNER_HAS_GPU_PROBE 1
#endif
#if __has_include("io/uring_reader.h")
#include "io/section_reader.h"
#include "io/uring_reader.h"
#define RINGMOE_PLANNER_HAS_URING_READER 1
#endif

namespace ringmoe::planner {
namespace {

constexpr int64_t kMiB = int64_t{1} << 20;

std::string Hostname() {
  char host[256] = {};
  if (::gethostname(host, sizeof(host) - 1) != 0) return "unknown";
  return host;
}

std::string NowUtc() {
  std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}

void Progress(const ProbeOptions& options, const std::string& line) {
  if (options.progress) options.progress(line);
}

// GPU figures from the GPU layer, or the reason there are none.
void ProbeGpuInto(const ProbeOptions& options, HardwareProfile* profile) {
#ifdef RINGMOE_PLANNER_HAS_GPU_PROBE
  std::string why_not;
  if (!gpu::GpuAvailable(&why_not)) {
    profile->gpu_absent_reason = why_not.empty() ? "no usable GPU" : why_not;
    return;
  }
  gpu::GpuProbeOptions gpu_options;
  if (options.quick) gpu_options.copy_bytes = 256 * kMiB;
  absl::StatusOr<gpu::GpuProbeResult> result = gpu::ProbeGpu(gpu_options);
  if (!result.ok()) {
    profile->gpu_absent_reason = std::string(result.status().message());
    return;
  }
  GpuProfile gpu;
  gpu.name = result->name;
  gpu.memory_bytes = result->memory_bytes;
  gpu.sm_count = result->sm_count;
  gpu.h2d_gbps = result->h2d_gbps;
  gpu.d2h_gbps = result->d2h_gbps;
  gpu.bidirectional_gbps = result->bidirectional_gbps;
  gpu.prefill_attention_tflops = result->prefill_attention_tflops;
  gpu.attention_kv_gbps = result->paged_attention_gbps;
  gpu.gemm_hidden = gpu_options.hidden;
  gpu.gemm_intermediate = gpu_options.intermediate;
  for (const gpu::GemmRate& rate : result->grouped_gemm_bf16) {
    if (rate.tflops > 0) gpu.grouped_gemm_bf16.push_back({rate.tokens_per_expert, rate.tflops});
  }
  std::sort(gpu.grouped_gemm_bf16.begin(), gpu.grouped_gemm_bf16.end(),
            [](const RatePoint& a, const RatePoint& b) { return a.tokens < b.tokens; });
  if (gpu.grouped_gemm_bf16.empty()) {
    profile->gpu_absent_reason = "the GPU probe returned no GEMM rates";
    return;
  }
  profile->gpu = gpu;
  profile->notes.push_back("dram_contention is not measured by this probe");
  Progress(options, absl::StrFormat("gpu: %s, h2d %.1f GB/s, d2h %.1f GB/s, paged attention %.0f GB/s of KV",
                                    gpu.name, gpu.h2d_gbps, gpu.d2h_gbps, gpu.attention_kv_gbps));
#else
  (void)options;
  profile->gpu_absent_reason = "GPU layer not built (gpu/gpu_probe.h is missing)";
#endif
}

#ifdef RINGMOE_PLANNER_HAS_URING_READER
// "tmpfs" or "ramfs" when `dir` lives in memory, else nullptr.
const char* MemoryFilesystemName(const std::string& dir) {
  struct statfs info {};
  if (::statfs(dir.c_str(), &info) != 0) return nullptr;
  if (info.f_type == TMPFS_MAGIC) return "tmpfs";
  if (info.f_type == RAMFS_MAGIC) return "ramfs";
  return nullptr;
}

// A scratch file of `bytes` to read back, in a private folder (mkdtemp: a fresh name, mode 0700) on the
// filesystem to measure, created with O_EXCL | O_NOFOLLOW: nobody else's file or planted link can be written
// through, and a shared folder only ever holds it briefly. Both are removed on destruction.
class ScratchFile {
 public:
  ScratchFile(const std::string& dir, int64_t bytes) {
    folder_ = absl::StrCat(dir, "/.ringmoe-probe-XXXXXX");
    if (::mkdtemp(folder_.data()) == nullptr) {
      error_ = absl::StrCat(dir, ": cannot create a private scratch folder to measure its disk (",
                            std::strerror(errno), "); pass --probe-dir with a writable folder on that disk");
      folder_.clear();
      return;
    }
    path_ = folder_ + "/read-test.tmp";
    const int fd = ::open(path_.c_str(), O_CREAT | O_EXCL | O_NOFOLLOW | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0) {
      error_ = absl::StrCat(path_, ": cannot create the scratch file: ", std::strerror(errno));
      return;
    }
    const size_t block = 1 << 20;
    std::vector<char> chunk(block);
    for (size_t i = 0; i < chunk.size(); ++i) chunk[i] = static_cast<char>(i * 131 + 7);
    bool written = true;
    for (int64_t done = 0; done < bytes && written; done += block) {
      written = ::write(fd, chunk.data(), chunk.size()) == static_cast<ssize_t>(chunk.size());
    }
    written = written && ::fsync(fd) == 0;
    ::close(fd);
    if (!written) error_ = absl::StrCat(path_, ": could not write ", bytes / kMiB, " MiB to measure");
  }
  ~ScratchFile() {
    if (!path_.empty()) ::unlink(path_.c_str());
    if (!folder_.empty()) ::rmdir(folder_.c_str());
  }
  ScratchFile(const ScratchFile&) = delete;
  ScratchFile& operator=(const ScratchFile&) = delete;
  const std::string& error() const { return error_; }  // Empty when the file is ready.
  const std::string& path() const { return path_; }

 private:
  std::string folder_, path_, error_;
};

// The read sweep: block sizes x queue depths over the scratch file, two passes in opposite orders (a drive
// that is throttled after a burst, or shared, then shows as two readings that disagree rather than as a rate
// that falls with depth). Each setting keeps its slower reading. Fills ssd->reads and ssd->direct and prints
// a table; returns the first error's message, empty when every reading succeeded.
std::string SweepSsdReads(const ProbeOptions& options, const std::string& path, int64_t file_bytes,
                          SsdProfile* ssd) {
  const std::vector<int64_t> blocks = {256 * 1024, kMiB, 4 * kMiB};
  const std::vector<int> depths = {1, 4, 32};
  struct Setting {
    int64_t block;
    int depth;
    double gbps[2] = {0, 0};
  };
  std::vector<Setting> settings;
  for (int64_t block : blocks) {
    for (int depth : depths) settings.push_back({block, depth});
  }
  std::string failure;
  bool all_direct = true;
  for (int pass = 0; pass < 2 && failure.empty(); ++pass) {
    for (size_t k = 0; k < settings.size() && failure.empty(); ++k) {
      Setting& setting = settings[pass == 0 ? k : settings.size() - 1 - k];
      bool direct = false;
      absl::StatusOr<double> gbps = io::MeasureReadBandwidth(
          path, setting.depth, static_cast<size_t>(setting.block), static_cast<size_t>(file_bytes), &direct);
      if (!gbps.ok()) {
        failure = std::string(gbps.status().message());
        break;
      }
      all_direct = all_direct && direct;
      setting.gbps[pass] = *gbps;
    }
  }
  if (!failure.empty()) return failure;
  ssd->direct = all_direct;
  Progress(options, absl::StrFormat("ssd: %s reads of %s, GB/s (pass 1 / pass 2; the slower is kept)",
                                    all_direct ? "O_DIRECT" : "buffered (O_DIRECT refused)", ssd->path));
  std::string header = "ssd:   block  ";
  for (int depth : depths) absl::StrAppend(&header, absl::StrFormat("  depth %-2d     ", depth));
  Progress(options, header);
  double widest_disagreement = 0;
  for (int64_t block : blocks) {
    std::string row = absl::StrFormat("ssd: %4d KiB  ", static_cast<int>(block / 1024));
    for (const Setting& setting : settings) {
      if (setting.block != block) continue;
      // A file with fewer blocks than the depth cannot keep that many reads in flight: record what it had.
      const int effective_depth =
          static_cast<int>(std::min<int64_t>(setting.depth, std::max<int64_t>(1, file_bytes / block)));
      const double kept = std::min(setting.gbps[0], setting.gbps[1]);
      ssd->reads.push_back({effective_depth, block, kept});
      widest_disagreement = std::max(widest_disagreement,
                                     std::max(setting.gbps[0], setting.gbps[1]) / std::max(kept, 1e-9) - 1);
      absl::StrAppend(&row, absl::StrFormat("  %5.2f / %5.2f", setting.gbps[0], setting.gbps[1]));
    }
    Progress(options, row);
  }
  if (widest_disagreement > 0.2) {
    Progress(options, absl::StrFormat("ssd: readings of one setting differ by up to %.0f%% between passes "
                                      "(a throttled or shared drive, or the page cache)",
                                      100 * widest_disagreement));
  }
  return "";
}
#endif

// O_DIRECT reads through io_uring from a scratch file on the model's filesystem; the file is deleted after.
void ProbeSsdInto(const ProbeOptions& options, HardwareProfile* profile) {
  if (options.ssd_dir.empty()) {
    profile->ssd_absent_reason = "no --model or --dir given to name the filesystem to measure";
    return;
  }
#ifdef RINGMOE_PLANNER_HAS_URING_READER
  // The sweep reads the first 384 MiB; the sustained reading at the SSD tier's settings reads all of it.
  const int64_t sweep_bytes = (options.quick ? 32 : 384) * kMiB;
  const int64_t file_bytes = (options.quick ? 32 : 2048) * kMiB;
  ScratchFile scratch(options.ssd_dir, file_bytes);
  if (!scratch.error().empty()) {
    profile->ssd_absent_reason = scratch.error();
    return;
  }
  const std::string& path = scratch.path();
  SsdProfile ssd;
  ssd.path = options.ssd_dir;
  std::string failure = SweepSsdReads(options, path, sweep_bytes, &ssd);
  if (failure.empty()) {
    const io::SectionReadOptions engine_reads;
    absl::StatusOr<double> sustained = io::MeasureReadBandwidth(
        path, engine_reads.queue_depth, static_cast<size_t>(engine_reads.max_read_bytes),
        static_cast<size_t>(file_bytes));
    if (sustained.ok()) {
      ssd.sustained_gbps = *sustained;
      Progress(options, absl::StrFormat(
                            "ssd: sustained %.2f GB/s over %d MiB in %d KiB reads, %d in flight (the "
                            "SSD tier's settings; the planner prices SSD reads at this rate)",
                            *sustained, static_cast<int>(file_bytes / kMiB),
                            static_cast<int>(engine_reads.max_read_bytes / 1024), engine_reads.queue_depth));
    }
  }
  if (ssd.reads.empty()) {
    profile->ssd_absent_reason = absl::StrCat("io_uring O_DIRECT reads failed: ", failure);
    return;
  }
  if (const char* memory_fs = MemoryFilesystemName(options.ssd_dir)) {
    // tmpfs takes O_DIRECT opens since Linux 6.6, so "direct" alone does not mean a drive was read.
    ssd.direct = false;
    profile->notes.push_back(absl::StrCat("ssd: ", options.ssd_dir, " is on ", memory_fs,
                                          ": its read rates are memory copies, not a drive's"));
  }
  if (!ssd.direct) {
    Progress(options, "ssd: the reads were not O_DIRECT from a drive: the rates are not the drive's");
  }
  profile->ssd = ssd;
#else
  profile->ssd_absent_reason = "SSD reader not built (io/uring_reader.h is missing)";
#endif
}

// --ssd-dir: each directory's sustained read at the SSD tier's settings, into profile->ssd->drives (the
// planner sums them for section files striped over those drives).
void ProbeSsdDrivesInto(const ProbeOptions& options, HardwareProfile* profile) {
  if (options.ssd_drive_dirs.empty()) return;
#ifdef RINGMOE_PLANNER_HAS_URING_READER
  if (!profile->ssd) {
    Progress(options, "ssd: the --ssd-dir drives are not measured: the model's drive could not be");
    return;
  }
  const int64_t file_bytes = (options.quick ? 32 : 2048) * kMiB;
  const io::SectionReadOptions engine_reads;
  for (const std::string& dir : options.ssd_drive_dirs) {
    struct stat info {};
    if (::stat(dir.c_str(), &info) != 0) {
      profile->notes.push_back(absl::StrCat("ssd: --ssd-dir ", dir, " not measured: ", std::strerror(errno)));
      continue;
    }
    SsdDrive drive{dir, static_cast<uint64_t>(info.st_dev)};
    const auto same = std::find_if(profile->ssd->drives.begin(), profile->ssd->drives.end(),
                                   [&](const SsdDrive& other) { return other.device == drive.device; });
    if (same != profile->ssd->drives.end()) {
      Progress(options, absl::StrCat("ssd: warning: --ssd-dir ", dir, " is on the same device as ",
                                     same->path, ": one drive, counted once when striping"));
    }
    ScratchFile scratch(dir, file_bytes);
    absl::StatusOr<double> gbps =
        scratch.error().empty() ? io::MeasureReadBandwidth(scratch.path(), engine_reads.queue_depth,
                                                           static_cast<size_t>(engine_reads.max_read_bytes),
                                                           static_cast<size_t>(file_bytes), &drive.direct)
                                : absl::StatusOr<double>(absl::UnavailableError(scratch.error()));
    if (!gbps.ok()) {
      profile->notes.push_back(
          absl::StrCat("ssd: --ssd-dir ", dir, " not measured: ", gbps.status().message()));
      Progress(options, profile->notes.back());
      continue;
    }
    if (MemoryFilesystemName(dir) != nullptr) drive.direct = false;
    drive.gbps = *gbps;
    Progress(options, absl::StrFormat("ssd: --ssd-dir %s: sustained %.2f GB/s (%s)", dir, drive.gbps,
                                      drive.direct ? "O_DIRECT" : "not O_DIRECT: not the drive's rate"));
    profile->ssd->drives.push_back(drive);
  }
#else
  (void)options;
  (void)profile;
#endif
}

}  // namespace

absl::StatusOr<HardwareProfile> ProbeMachine(const ProbeOptions& options) {
  // The attention probe runs the engine's kernel, which RINGMOE_CPU_ISA caps.
  if (absl::Status isa = cpu::CheckCpuIsaEnvironment(); !isa.ok()) return isa;
  HardwareProfile profile;
  profile.source = "ringmoe probe";
  profile.hostname = Hostname();
  profile.probed_at = NowUtc();
  profile.topology = ProbeTopology();
  const Topology& topology = profile.topology;
  Progress(options,
           absl::StrFormat("topology: %d packages, %d NUMA nodes, %d cores, %d threads, %.1f GiB",
                           topology.packages, static_cast<int>(topology.numa_nodes.size()), topology.cores,
                           topology.threads, topology.memory_bytes / double(1 << 30)));
  // Pinned memory cannot be paged out: leave a fifth of the machine to everything else.
  profile.pinned_limit_bytes = topology.memory_bytes / 5 * 4;

  CpuProfile& cpu = profile.cpu;
  cpu.threads = options.threads > 0 ? options.threads : std::max(1, topology.threads);
  DetectBf16Support(&cpu.has_avx512_bf16, &cpu.has_amx_bf16);
  const int repeats = options.quick ? 2 : 4;
  const int64_t dram_bytes = std::min<int64_t>((options.quick ? 64 : 1024) * kMiB, topology.memory_bytes / 8);
  cpu.dram_read_gbps = MeasureDramReadGbps(cpu.threads, std::max<int64_t>(dram_bytes, 16 * kMiB), repeats);
  Progress(options, absl::StrFormat("dram read: %.1f GB/s with %d threads", cpu.dram_read_gbps, cpu.threads));
  // Well past the last-level cache (300 MiB on the H200 box), as a real KV cache is.
  cpu.attention = MeasureCpuAttention(cpu.threads, (options.quick ? 32 : 1024) * kMiB, repeats);
  Progress(
      options,
      absl::StrFormat("cpu attention: %.1f GB/s of bf16 KV, %.1f GFLOP/s (%.1f over an e4m3 cache); prefill "
                      "%.1f GFLOP/s; MLA decode %.1f GFLOP/s",
                      cpu.attention.kv_gbps, cpu.attention.gflops, cpu.attention.fp8_gflops,
                      cpu.attention.prefill_gflops, cpu.attention.mla_gflops));

  // An expert's fused gate+up projection of Qwen3-30B-A3B: k = hidden 2048, n = 2 x 768.
  cpu.matmul_k = 2048;
  cpu.matmul_n = 1536;
  std::vector<int> ms = options.quick ? std::vector<int>{1, 16, 64} : std::vector<int>{1, 4, 16, 64, 256};
  const double seconds_per_point = options.quick ? 0.02 : 0.25;
  std::string why_not;
  cpu.matmul_f32 = MeasureOnednnMatmul(false, cpu.matmul_k, cpu.matmul_n, ms, seconds_per_point, &why_not);
  if (cpu.matmul_f32.empty()) return absl::InternalError(absl::StrCat("oneDNN f32 matmul failed: ", why_not));
  Progress(options, absl::StrFormat("oneDNN f32 matmul: %.3f TFLOP/s at M=%d", cpu.matmul_f32.back().tflops,
                                    cpu.matmul_f32.back().tokens));
  why_not.clear();
  cpu.matmul_bf16 = MeasureOnednnMatmul(true, cpu.matmul_k, cpu.matmul_n, ms, seconds_per_point, &why_not);
  if (cpu.matmul_bf16.empty()) {
    profile.notes.push_back(absl::StrCat("no bf16 matmul rates: ", why_not));
    Progress(options, absl::StrCat("oneDNN bf16 matmul: none (", why_not, ")"));
  } else {
    Progress(options, absl::StrFormat("oneDNN bf16 matmul: %.3f TFLOP/s at M=%d",
                                      cpu.matmul_bf16.back().tflops, cpu.matmul_bf16.back().tokens));
  }

  ProbeGpuInto(options, &profile);
  if (!profile.gpu) Progress(options, absl::StrCat("gpu: none (", profile.gpu_absent_reason, ")"));
  ProbeSsdInto(options, &profile);
  if (!profile.ssd) Progress(options, absl::StrCat("ssd: none (", profile.ssd_absent_reason, ")"));
  ProbeSsdDrivesInto(options, &profile);
  return profile;
}

absl::StatusOr<HardwareProfile> LoadOrProbeProfile(const std::string& path, const ProbeOptions& options,
                                                   std::string* used_path) {
  if (!path.empty()) {
    if (used_path != nullptr) *used_path = path;
    return LoadProfile(path);
  }
  std::string cache = DefaultProfilePath();
  if (used_path != nullptr) *used_path = cache;
  if (std::filesystem::exists(cache)) return LoadProfile(cache);
  absl::StatusOr<HardwareProfile> profile = ProbeMachine(options);
  if (!profile.ok()) return profile.status();
  if (absl::Status saved = SaveProfile(*profile, cache); !saved.ok()) {
    profile->notes.push_back(absl::StrCat("could not cache the profile: ", saved.message()));
  }
  return profile;
}

}  // namespace ringmoe::planner
