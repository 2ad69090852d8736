#include "planner/hardware_profile.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"

namespace ringmoe::planner {
namespace {

using json = nlohmann::json;

constexpr char kFormatName[] = "ringmoe-hardware-profile";

json CurveToJson(const std::vector<RatePoint>& curve) {
  json out = json::array();
  for (const RatePoint& point : curve) out.push_back({{"tokens", point.tokens}, {"tflops", point.tflops}});
  return out;
}

// Reads fields of one JSON object, remembering the first error with the file and field path in it.
class Reader {
 public:
  Reader(const json& object, std::string path, absl::Status* status)
      : object_(object), path_(std::move(path)), status_(status) {
    if (!object_.is_object()) Fail("", "is not an object");
  }

  template <typename T>
  T Get(const char* key, T fallback, bool required = false) {
    if (!object_.is_object()) return fallback;
    auto it = object_.find(key);
    if (it == object_.end() || it->is_null()) {
      if (required) Fail(key, "is missing");
      return fallback;
    }
    try {
      return it->get<T>();
    } catch (const json::exception&) {
      Fail(key, "has the wrong type");
      return fallback;
    }
  }

  // A sub-object; `present` says whether it was there.
  const json* Child(const char* key) const {
    if (!object_.is_object()) return nullptr;
    auto it = object_.find(key);
    if (it == object_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  std::string PathOf(const char* key) const { return path_.empty() ? key : absl::StrCat(path_, ".", key); }

  void Fail(const char* key, const char* what) {
    if (status_->ok()) {
      *status_ = absl::InvalidArgumentError(absl::StrCat("field '", PathOf(key), "' ", what));
    }
  }

 private:
  const json& object_;
  std::string path_;
  absl::Status* status_;
};

std::vector<RatePoint> CurveFromJson(const json* array, const std::string& path, absl::Status* status) {
  std::vector<RatePoint> curve;
  if (array == nullptr) return curve;
  if (!array->is_array()) {
    if (status->ok())
      *status = absl::InvalidArgumentError(absl::StrCat("field '", path, "' is not an array"));
    return curve;
  }
  for (size_t i = 0; i < array->size(); ++i) {
    Reader point((*array)[i], absl::StrCat(path, "[", i, "]"), status);
    RatePoint rate{point.Get<int>("tokens", 0, true), point.Get<double>("tflops", 0.0, true)};
    if (status->ok() && (rate.tokens <= 0 || !(rate.tflops > 0.0))) {
      *status = absl::InvalidArgumentError(
          absl::StrCat("field '", path, "[", i, "]' needs positive tokens and tflops"));
    }
    curve.push_back(rate);
  }
  std::sort(curve.begin(), curve.end(),
            [](const RatePoint& a, const RatePoint& b) { return a.tokens < b.tokens; });
  return curve;
}

}  // namespace

double SsdProfile::best_gbps() const {
  double best = 0.0;
  for (const SsdReadRate& read : reads) best = std::max(best, read.gbps);
  return best;
}

absl::Status StripeSsdOverDirs(const std::vector<std::string>& dirs, HardwareProfile* profile,
                               std::vector<std::string>* warnings) {
  if (dirs.empty() || !profile->ssd) return absl::OkStatus();
  SsdProfile& ssd = *profile->ssd;
  ssd.striped_gbps = 0;  // From the probe's figures alone, whatever an earlier call set.
  ssd.section_files = false;
  std::error_code ignored;
  auto same_path = [&](const std::string& a, const std::string& b) {
    return std::filesystem::weakly_canonical(a, ignored) == std::filesystem::weakly_canonical(b, ignored);
  };
  struct stat model_info {};
  const bool model_known = !ssd.path.empty() && ::stat(ssd.path.c_str(), &model_info) == 0;
  double slowest = ssd.planning_gbps();
  for (const SsdDrive& drive : ssd.drives) slowest = std::min(slowest, drive.gbps);
  std::vector<std::pair<uint64_t, std::string>> counted;  // Devices already summed, and by which dir.
  double total = 0.0;
  for (const std::string& dir : dirs) {
    struct stat info {};
    if (::stat(dir.c_str(), &info) != 0) {
      return absl::InvalidArgumentError(absl::StrCat("--ssd-dir '", dir, "': ", std::strerror(errno)));
    }
    const auto device = static_cast<uint64_t>(info.st_dev);
    const auto shared = std::find_if(counted.begin(), counted.end(),
                                     [&](const auto& entry) { return entry.first == device; });
    if (shared != counted.end()) {
      warnings->push_back(absl::StrCat("--ssd-dir '", dir, "' is on the same device as '", shared->second,
                                       "': its bandwidth is counted once (striping over one drive gains "
                                       "nothing)"));
      continue;
    }
    counted.emplace_back(device, dir);
    const SsdDrive* match = nullptr;
    for (const SsdDrive& drive : ssd.drives) {
      if (same_path(drive.path, dir)) match = &drive;
    }
    for (const SsdDrive& drive : ssd.drives) {
      if (match == nullptr && drive.device == device) match = &drive;
    }
    if (match != nullptr) {
      total += match->gbps;
    } else if (model_known && model_info.st_dev == info.st_dev) {
      total += ssd.sustained_gbps > 0 ? ssd.sustained_gbps : ssd.best_gbps();
    } else {
      warnings->push_back(absl::StrFormat(
          "--ssd-dir '%s' was not probed: counted at %.2f GB/s, the slowest probed drive (`ringmoe probe "
          "--ssd-dir ...` with every directory measures each)",
          dir, slowest));
      total += slowest;
    }
  }
  ssd.striped_gbps = total;
  ssd.section_files = true;
  return absl::OkStatus();
}

std::string ProfileToJson(const HardwareProfile& profile) {
  json root;
  root["format"] = kFormatName;
  root["version"] = kProfileFormatVersion;
  root["source"] = profile.source;
  root["hostname"] = profile.hostname;
  root["probed_at"] = profile.probed_at;
  root["notes"] = profile.notes;

  const Topology& topology = profile.topology;
  json nodes = json::array();
  for (const NumaNode& node : topology.numa_nodes) {
    nodes.push_back(
        {{"os_index", node.os_index}, {"cores", node.cores}, {"memory_bytes", node.memory_bytes}});
  }
  root["topology"] = {
      {"cpu_model", topology.cpu_model}, {"packages", topology.packages},         {"cores", topology.cores},
      {"threads", topology.threads},     {"memory_bytes", topology.memory_bytes}, {"numa_nodes", nodes}};
  root["pinned_limit_bytes"] = profile.pinned_limit_bytes;

  const CpuProfile& cpu = profile.cpu;
  const CpuAttentionRate& attention = cpu.attention;
  root["cpu"] = {{"threads", cpu.threads},
                 {"dram_read_gbps", cpu.dram_read_gbps},
                 {"avx512_bf16", cpu.has_avx512_bf16},
                 {"amx_bf16", cpu.has_amx_bf16},
                 {"attention",
                  {{"kv_gbps", attention.kv_gbps},
                   {"gflops", attention.gflops},
                   {"prefill_gflops", attention.prefill_gflops},
                   {"heads", attention.heads},
                   {"kv_heads", attention.kv_heads},
                   {"head_dim", attention.head_dim},
                   {"context", attention.context},
                   {"estimated", attention.estimated}}},
                 {"matmul_k", cpu.matmul_k},
                 {"matmul_n", cpu.matmul_n},
                 {"matmul_f32", CurveToJson(cpu.matmul_f32)},
                 {"matmul_bf16", CurveToJson(cpu.matmul_bf16)}};
  if (attention.bytes_kv_heads > 0) {  // Older probes measured one shape only.
    root["cpu"]["attention"]["bytes_heads"] = attention.bytes_heads;
    root["cpu"]["attention"]["bytes_kv_heads"] = attention.bytes_kv_heads;
  }
  if (attention.fp8_gflops > 0)
    root["cpu"]["attention"]["fp8_gflops"] = attention.fp8_gflops;  // newer probes
  if (attention.mla_gflops > 0) root["cpu"]["attention"]["mla_gflops"] = attention.mla_gflops;

  if (profile.contention) {
    const DramContention& c = *profile.contention;
    root["dram_contention"] = {{"dma_alone_gbps", c.dma_alone_gbps},
                               {"cpu_alone_gbps", c.cpu_alone_gbps},
                               {"dma_shared_gbps", c.dma_shared_gbps},
                               {"cpu_shared_gbps", c.cpu_shared_gbps}};
  } else {
    root["dram_contention"] = nullptr;
  }

  if (profile.gpu) {
    const GpuProfile& gpu = *profile.gpu;
    root["gpu"] = {{"name", gpu.name},
                   {"memory_bytes", gpu.memory_bytes},
                   {"sm_count", gpu.sm_count},
                   {"h2d_gbps", gpu.h2d_gbps},
                   {"d2h_gbps", gpu.d2h_gbps},
                   {"bidirectional_gbps", gpu.bidirectional_gbps},
                   {"attention_kv_gbps", gpu.attention_kv_gbps},
                   {"prefill_attention_tflops", gpu.prefill_attention_tflops},
                   {"gemm_hidden", gpu.gemm_hidden},
                   {"gemm_intermediate", gpu.gemm_intermediate},
                   {"grouped_gemm_bf16", CurveToJson(gpu.grouped_gemm_bf16)}};
    // Written only for several GPUs, so one-GPU profiles keep their form.
    if (gpu.count != 1) root["gpu"]["count"] = gpu.count;
    if (gpu.all_links_h2d_gbps > 0) root["gpu"]["all_links_h2d_gbps"] = gpu.all_links_h2d_gbps;
  } else {
    root["gpu"] = nullptr;
    root["gpu_absent_reason"] = profile.gpu_absent_reason;
  }

  if (profile.ssd) {
    json reads = json::array();
    for (const SsdReadRate& read : profile.ssd->reads) {
      reads.push_back(
          {{"queue_depth", read.queue_depth}, {"block_bytes", read.block_bytes}, {"gbps", read.gbps}});
    }
    root["ssd"] = {{"path", profile.ssd->path}, {"reads", reads}};
    // Written only when false, so that profiles from before the field (O_DIRECT was always tried) keep
    // their exact text.
    if (!profile.ssd->direct) root["ssd"]["direct"] = false;
    if (profile.ssd->sustained_gbps > 0) root["ssd"]["sustained_gbps"] = profile.ssd->sustained_gbps;
    if (!profile.ssd->drives.empty()) {
      json drives = json::array();
      for (const SsdDrive& drive : profile.ssd->drives) {
        drives.push_back({{"path", drive.path}, {"device", drive.device}, {"gbps", drive.gbps}});
        if (!drive.direct) drives.back()["direct"] = false;
      }
      root["ssd"]["drives"] = drives;
    }
  } else {
    root["ssd"] = nullptr;
    root["ssd_absent_reason"] = profile.ssd_absent_reason;
  }
  return root.dump(2) + "\n";
}

absl::StatusOr<HardwareProfile> ProfileFromJson(const std::string& text, const std::string& source) {
  json root = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": not a JSON object"));
  }
  absl::Status status;
  Reader top(root, "", &status);
  if (top.Get<std::string>("format", "", true) != kFormatName && status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": not a ringmoe hardware profile (format is not '", kFormatName, "')"));
  }
  int version = top.Get<int>("version", 0, true);
  if (status.ok() && version != kProfileFormatVersion) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": profile version ", version,
                                                   ", this build reads ", kProfileFormatVersion,
                                                   "; run `ringmoe probe` again"));
  }
  HardwareProfile profile;
  profile.source = top.Get<std::string>("source", "");
  profile.hostname = top.Get<std::string>("hostname", "");
  profile.probed_at = top.Get<std::string>("probed_at", "");
  profile.notes = top.Get<std::vector<std::string>>("notes", {});
  profile.pinned_limit_bytes = top.Get<int64_t>("pinned_limit_bytes", 0);

  const json* topology_json = top.Child("topology");
  if (topology_json == nullptr) top.Fail("topology", "is missing");
  if (topology_json != nullptr) {
    Reader topology(*topology_json, "topology", &status);
    profile.topology.cpu_model = topology.Get<std::string>("cpu_model", "");
    profile.topology.packages = topology.Get<int>("packages", 0, true);
    profile.topology.cores = topology.Get<int>("cores", 0, true);
    profile.topology.threads = topology.Get<int>("threads", profile.topology.cores);
    profile.topology.memory_bytes = topology.Get<int64_t>("memory_bytes", 0, true);
    if (const json* nodes = topology.Child("numa_nodes"); nodes != nullptr && nodes->is_array()) {
      for (size_t i = 0; i < nodes->size(); ++i) {
        Reader node((*nodes)[i], absl::StrCat("topology.numa_nodes[", i, "]"), &status);
        profile.topology.numa_nodes.push_back(
            {node.Get<int>("os_index", 0), node.Get<int>("cores", 0), node.Get<int64_t>("memory_bytes", 0)});
      }
    }
  }

  const json* cpu_json = top.Child("cpu");
  if (cpu_json == nullptr) top.Fail("cpu", "is missing");
  if (cpu_json != nullptr) {
    Reader cpu(*cpu_json, "cpu", &status);
    profile.cpu.threads = cpu.Get<int>("threads", 0);
    profile.cpu.dram_read_gbps = cpu.Get<double>("dram_read_gbps", 0.0, true);
    profile.cpu.has_avx512_bf16 = cpu.Get<bool>("avx512_bf16", false);
    profile.cpu.has_amx_bf16 = cpu.Get<bool>("amx_bf16", false);
    profile.cpu.matmul_k = cpu.Get<int>("matmul_k", 0);
    profile.cpu.matmul_n = cpu.Get<int>("matmul_n", 0);
    profile.cpu.matmul_f32 = CurveFromJson(cpu.Child("matmul_f32"), "cpu.matmul_f32", &status);
    profile.cpu.matmul_bf16 = CurveFromJson(cpu.Child("matmul_bf16"), "cpu.matmul_bf16", &status);
    const json* attention_json = cpu.Child("attention");
    if (attention_json == nullptr) cpu.Fail("attention", "is missing");
    if (attention_json != nullptr) {
      Reader attention(*attention_json, "cpu.attention", &status);
      CpuAttentionRate& rate = profile.cpu.attention;
      rate.kv_gbps = attention.Get<double>("kv_gbps", 0.0, true);
      rate.gflops = attention.Get<double>("gflops", 0.0, true);
      rate.prefill_gflops = attention.Get<double>("prefill_gflops", 0.0);
      rate.fp8_gflops = attention.Get<double>("fp8_gflops", 0.0);
      rate.mla_gflops = attention.Get<double>("mla_gflops", 0.0);
      rate.bytes_heads = attention.Get<int>("bytes_heads", 0);
      rate.bytes_kv_heads = attention.Get<int>("bytes_kv_heads", 0);
      rate.heads = attention.Get<int>("heads", 0);
      rate.kv_heads = attention.Get<int>("kv_heads", 0);
      rate.head_dim = attention.Get<int>("head_dim", 0);
      rate.context = attention.Get<int>("context", 0);
      rate.estimated = attention.Get<bool>("estimated", false);
    }
    if (status.ok() && profile.cpu.matmul_f32.empty() && profile.cpu.matmul_bf16.empty()) {
      status = absl::InvalidArgumentError("cpu has neither matmul_f32 nor matmul_bf16 rates");
    }
    if (status.ok() && (!(profile.cpu.dram_read_gbps > 0) || !(profile.cpu.attention.kv_gbps > 0) ||
                        !(profile.cpu.attention.gflops > 0))) {
      status = absl::InvalidArgumentError("cpu.dram_read_gbps and cpu.attention rates must be positive");
    }
  }

  if (const json* contention_json = top.Child("dram_contention")) {
    Reader contention(*contention_json, "dram_contention", &status);
    DramContention c;
    c.dma_alone_gbps = contention.Get<double>("dma_alone_gbps", 0.0, true);
    c.cpu_alone_gbps = contention.Get<double>("cpu_alone_gbps", 0.0, true);
    c.dma_shared_gbps = contention.Get<double>("dma_shared_gbps", 0.0, true);
    c.cpu_shared_gbps = contention.Get<double>("cpu_shared_gbps", 0.0, true);
    if (status.ok() &&
        !(c.dma_alone_gbps > 0 && c.cpu_alone_gbps > 0 && c.dma_shared_gbps > 0 && c.cpu_shared_gbps > 0)) {
      status = absl::InvalidArgumentError("dram_contention rates must be positive");
    }
    profile.contention = c;
  }

  if (const json* gpu_json = top.Child("gpu")) {
    Reader gpu(*gpu_json, "gpu", &status);
    GpuProfile g;
    g.name = gpu.Get<std::string>("name", "", true);
    g.memory_bytes = gpu.Get<int64_t>("memory_bytes", 0, true);
    g.sm_count = gpu.Get<int>("sm_count", 0);
    g.h2d_gbps = gpu.Get<double>("h2d_gbps", 0.0, true);
    g.d2h_gbps = gpu.Get<double>("d2h_gbps", 0.0, true);
    g.bidirectional_gbps = gpu.Get<double>("bidirectional_gbps", 0.0);
    g.attention_kv_gbps = gpu.Get<double>("attention_kv_gbps", 0.0);
    g.prefill_attention_tflops = gpu.Get<double>("prefill_attention_tflops", 0.0);
    g.gemm_hidden = gpu.Get<int>("gemm_hidden", 0);
    g.gemm_intermediate = gpu.Get<int>("gemm_intermediate", 0);
    g.grouped_gemm_bf16 = CurveFromJson(gpu.Child("grouped_gemm_bf16"), "gpu.grouped_gemm_bf16", &status);
    g.count = gpu.Get<int>("count", 1);
    g.all_links_h2d_gbps = gpu.Get<double>("all_links_h2d_gbps", 0.0);
    if (status.ok() && (g.count < 1 || g.all_links_h2d_gbps < 0)) {
      status = absl::InvalidArgumentError(
          "gpu.count must be at least 1 and gpu.all_links_h2d_gbps must not be negative");
    }
    if (status.ok() &&
        (g.memory_bytes <= 0 || !(g.h2d_gbps > 0) || !(g.d2h_gbps > 0) || g.grouped_gemm_bf16.empty())) {
      status = absl::InvalidArgumentError(
          "gpu needs positive memory_bytes, h2d_gbps, d2h_gbps and a grouped_gemm_bf16 curve");
    }
    profile.gpu = g;
  } else {
    profile.gpu_absent_reason = top.Get<std::string>("gpu_absent_reason", "not in the profile");
  }

  if (const json* ssd_json = top.Child("ssd")) {
    Reader ssd(*ssd_json, "ssd", &status);
    SsdProfile s;
    s.path = ssd.Get<std::string>("path", "");
    s.direct = ssd.Get<bool>("direct", true);
    s.sustained_gbps = ssd.Get<double>("sustained_gbps", 0.0);
    if (const json* reads = ssd.Child("reads"); reads != nullptr && reads->is_array()) {
      for (size_t i = 0; i < reads->size(); ++i) {
        Reader read((*reads)[i], absl::StrCat("ssd.reads[", i, "]"), &status);
        s.reads.push_back({read.Get<int>("queue_depth", 0, true), read.Get<int64_t>("block_bytes", 0),
                           read.Get<double>("gbps", 0.0, true)});
      }
    }
    if (const json* drives = ssd.Child("drives"); drives != nullptr && drives->is_array()) {
      for (size_t i = 0; i < drives->size(); ++i) {
        Reader drive((*drives)[i], absl::StrCat("ssd.drives[", i, "]"), &status);
        s.drives.push_back({drive.Get<std::string>("path", "", true), drive.Get<uint64_t>("device", 0),
                            drive.Get<double>("gbps", 0.0, true), drive.Get<bool>("direct", true)});
        if (status.ok() && !(s.drives.back().gbps > 0)) {
          status = absl::InvalidArgumentError(absl::StrCat("ssd.drives[", i, "] has no positive gbps"));
        }
      }
    }
    if (status.ok() && !(s.best_gbps() > 0))
      status = absl::InvalidArgumentError("ssd has no positive read rate");
    profile.ssd = s;
  } else {
    profile.ssd_absent_reason = top.Get<std::string>("ssd_absent_reason", "not in the profile");
  }

  if (!status.ok()) return absl::InvalidArgumentError(absl::StrCat(source, ": ", status.message()));
  return profile;
}

absl::StatusOr<HardwareProfile> LoadProfile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open the hardware profile"));
  std::stringstream text;
  text << in.rdbuf();
  return ProfileFromJson(text.str(), path);
}

absl::Status SaveProfile(const HardwareProfile& profile, const std::string& path) {
  std::error_code error;
  std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, error);
  // Write beside, then rename, so a reader never sees half a profile.
  std::string temporary = absl::StrCat(path, ".tmp.", ::getpid());
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    if (!out)
      return absl::PermissionDeniedError(absl::StrCat(temporary, ": cannot write the hardware profile"));
    out << ProfileToJson(profile);
    if (!out.flush()) return absl::DataLossError(absl::StrCat(temporary, ": write failed"));
  }
  std::filesystem::rename(temporary, path, error);
  if (error) {
    std::filesystem::remove(temporary, error);
    return absl::PermissionDeniedError(absl::StrCat(path, ": cannot replace the hardware profile"));
  }
  return absl::OkStatus();
}

std::string DefaultProfilePath() {
  char host[256] = {};
  if (::gethostname(host, sizeof(host) - 1) != 0) std::snprintf(host, sizeof(host), "unknown");
  std::string cache;
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg != nullptr && *xdg != '\0') {
    cache = xdg;
  } else if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
    cache = absl::StrCat(home, "/.cache");
  } else {
    cache = "/tmp";
  }
  return absl::StrCat(cache, "/ringmoe/hardware-", host, ".json");
}

}  // namespace ringmoe::planner
