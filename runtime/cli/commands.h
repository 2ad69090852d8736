// The `ringmoe` subcommands. Each lives in its own file under runtime/cli/ and adds itself, with its flags,
// to main.cc's one CLI::App; main.cc parses the command line once and then runs the subcommand chosen.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace ringmoe::cli {

// A subcommand added to the `ringmoe` app. `run` does its work once the command line has parsed without error
// (never from a CLI11 callback, which would run before the unexpected-argument check); `arguments` are those
// typed after the subcommand's name, for messages that repeat the command. Its flags live in `run`'s state,
// so `run` must outlive the parse. It returns the process exit code: 0 on success, 1 when the job failed, 2
// on bad usage, 128 + the signal when a job stopped on SIGINT/SIGTERM.
struct Subcommand {
  CLI::App* app = nullptr;
  std::function<int(const std::vector<std::string>& arguments)> run;
};

Subcommand AddRunCommand(CLI::App& ringmoe);       // ringmoe run: OpenAI Batch JSONL in and out.
Subcommand AddTokenizeCommand(CLI::App& ringmoe);  // ringmoe tokenize: encode/decode JSON lines.
Subcommand AddPlanCommand(CLI::App& ringmoe);      // ringmoe plan: the predicted-throughput report.
Subcommand AddProbeCommand(CLI::App& ringmoe);     // ringmoe probe: measure this machine.

}  // namespace ringmoe::cli
