// ringmoe probe: measure this machine (topology, DRAM, CPU attention, oneDNN matmuls, GPU copies and GEMMs,
// SSD reads) and write the hardware profile the planner uses, to the per-machine cache and optionally --out.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "planner/hardware_profile.h"
#include "planner/probe/probe.h"
#include "runtime/cli/commands.h"
#include "runtime/log/log.h"
#include "runtime/log/log_flags.h"

namespace ringmoe::cli {

namespace {

struct ProbeFlags {
  std::string out, model, dir;
  std::vector<std::string> ssd_dirs;
  int threads = 0;
  bool quick = false, no_cache = false;
  log::LogFlags log;
};

// Measures this machine as `flags` say, once CLI11 has filled them.
int ProbeFromFlags(const ProbeFlags& flags) {
  if (absl::Status logging = log::ApplyLogFlags(flags.log); !logging.ok()) {
    log::Error("ringmoe probe: {}", std::string(logging.message()));
    return absl::IsInvalidArgument(logging) ? 2 : 1;
  }
  planner::ProbeOptions options;
  options.threads = flags.threads;
  options.quick = flags.quick;
  options.ssd_dir = !flags.dir.empty()        ? flags.dir
                    : !flags.model.empty()    ? flags.model
                    : !flags.ssd_dirs.empty() ? flags.ssd_dirs.front()
                                              : std::string();
  for (const std::string& dir : flags.ssd_dirs) {
    if (!std::filesystem::is_directory(dir)) {
      log::Error("ringmoe probe: --ssd-dir {} is not a directory", dir);
      return 2;
    }
  }
  options.ssd_drive_dirs = flags.ssd_dirs;
  if (!options.ssd_dir.empty() && std::filesystem::is_regular_file(options.ssd_dir)) {
    options.ssd_dir = std::filesystem::path(options.ssd_dir).parent_path().string();
    if (options.ssd_dir.empty()) options.ssd_dir = ".";
  }
  if (!options.ssd_dir.empty() && !std::filesystem::is_directory(options.ssd_dir)) {
    log::Error("ringmoe probe: {} is not a directory", options.ssd_dir);
    return 2;
  }
  options.progress = [](std::string_view line) { log::Info("ringmoe probe:   {}", line); };
  log::Info("ringmoe probe: measuring this machine");
  absl::StatusOr<planner::HardwareProfile> profile = planner::ProbeMachine(options);
  if (!profile.ok()) {
    log::Error("ringmoe probe: {}", std::string(profile.status().message()));
    return 1;
  }
  std::vector<std::string> targets;
  if (!flags.no_cache) targets.push_back(planner::DefaultProfilePath());
  if (!flags.out.empty()) targets.push_back(flags.out);
  int status = 0;
  for (const std::string& target : targets) {
    if (absl::Status saved = planner::SaveProfile(*profile, target); !saved.ok()) {
      log::Error("ringmoe probe: {}", std::string(saved.message()));
      status = 1;
    } else {
      log::Info("ringmoe probe: wrote {}", target);
    }
  }
  if (targets.empty()) std::fputs(planner::ProfileToJson(*profile).c_str(), stdout);
  return status;
}

}  // namespace

Subcommand AddProbeCommand(CLI::App& ringmoe) {
  CLI::App& app = *ringmoe.add_subcommand(
      "probe", "Measure this machine for the planner (under a minute); writes a hardware profile JSON.");
  auto owned_flags = std::make_shared<ProbeFlags>();  // filled by the parse, read by the run below
  ProbeFlags& flags = *owned_flags;
  app.add_option("--out", flags.out, "also write the profile here");
  app.add_option("--model", flags.model,
                 "model folder: its filesystem is the one whose SSD reads are measured");
  app.add_option("--dir", flags.dir,
                 "directory whose filesystem to measure for SSD reads (instead of --model)");
  app.add_option(
      "--ssd-dir", flags.ssd_dirs,
      "a directory on one NVMe drive for the SSD tier's section files (repeat, one per drive): each "
      "one's sustained read rate is measured; the planner sums them (a device counted once)");
  app.add_option("--threads", flags.threads, "CPU threads to measure with (0 = all)")->capture_default_str();
  app.add_flag("--quick", flags.quick, "small buffers, rough figures (a few seconds)");
  app.add_flag("--no-cache", flags.no_cache, "do not write the per-machine cache");
  log::AddLogFlags(app, &flags.log);
  return {&app, [owned_flags](const std::vector<std::string>&) { return ProbeFromFlags(*owned_flags); }};
}

}  // namespace ringmoe::cli
