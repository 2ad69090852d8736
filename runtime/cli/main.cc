// ringmoe: command-line entry point. One CLI::App named "ringmoe" holds every subcommand, each added with its
// flags by its own file (commands.h), so help and errors name the program ("ringmoe run"); the command line
// is parsed once, then the chosen subcommand runs.
#include <algorithm>
#include <cstdio>
#include <exception>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "CLI/CLI.hpp"
#include "runtime/cli/commands.h"
#include "runtime/cli/version.h"

namespace {

// `ringmoe version` and `ringmoe --version`: "ringmoe 0.1.0 (git abc1234, CUDA built in: yes)".
std::string VersionLine() {
  return std::string("ringmoe ") + ringmoe::cli::kVersion + " (git " + ringmoe::cli::kGitCommit +
         ", CUDA built in: " + (ringmoe::cli::kCudaBuiltIn ? "yes" : "no") + ")";
}

ringmoe::cli::Subcommand AddVersionCommand(CLI::App& ringmoe) {
  CLI::App* version =
      ringmoe.add_subcommand("version", "Print the version, the git commit and whether CUDA is built in.");
  return {version, [](const std::vector<std::string>&) {
            std::printf("%s\n", VersionLine().c_str());
            return 0;
          }};
}

// The one-line summary `ringmoe --help` lists for each subcommand (keep alphabetical); a subcommand's own
// --help opens with its longer description.
const std::map<std::string, std::string, std::less<>> kSummaries = {
    {"plan", "predict a job's throughput, bottleneck and memory plan"},
    {"probe", "measure this machine for the planner (writes a hardware profile)"},
    {"run", "run a batch job: OpenAI Batch JSONL in, JSONL out"},
    {"tokenize", "encode JSON-string lines to token ids, or --decode them"},
    {"version", "print the version, the git commit and whether CUDA is built in"},
};

// Lists each subcommand with its summary instead of its (longer) description.
class SummaryFormatter : public CLI::Formatter {
 public:
  std::string make_subcommand(const CLI::App* sub) const override {
    const auto summary = kSummaries.find(sub->get_name());
    std::stringstream out;
    CLI::detail::format_help(out, sub->get_name(),
                             summary != kSummaries.end() ? summary->second : sub->get_description(),
                             column_width_);
    return out.str();
  }
};

// One set of exit statuses for every subcommand (commands.h): 0 success, 1 the job failed, 2 bad usage,
// 128 + the signal when a job stopped on SIGINT/SIGTERM (run: 130, 143). CLI11's own code for a usage error
// (106 for an unknown flag, ...) becomes 2.
int ExitStatus(int code) { return code == 0 || code == 1 || (code > 128 && code < 160) ? code : 2; }

int Main(int argc, char** argv) {
  CLI::App app{"Batch inference of Mixture-of-Experts LLMs.", "ringmoe"};
  app.set_version_flag("--version", VersionLine(),
                       "print the version, the git commit and whether CUDA is built in");
  const std::vector<ringmoe::cli::Subcommand> subcommands = {
      ringmoe::cli::AddPlanCommand(app), ringmoe::cli::AddProbeCommand(app), ringmoe::cli::AddRunCommand(app),
      ringmoe::cli::AddTokenizeCommand(app), AddVersionCommand(app)};
  app.require_subcommand(1);
  // Set after the subcommands are added, so that they do not inherit them.
  app.formatter(std::make_shared<SummaryFormatter>());
  app.footer("ringmoe SUBCOMMAND --help for its options");
  if (argc < 2) {
    std::fputs(app.help().c_str(), stderr);
    return 2;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    // No subcommand chosen and something typed: name what was not understood rather than "A subcommand is
    // required".
    const std::vector<std::string> unparsed = app.remaining();
    if (app.get_subcommands().empty() && !unparsed.empty() && error.get_exit_code() != 0) {
      std::fprintf(stderr, "ringmoe: unknown command '%s'\n\n%s", unparsed.front().c_str(),
                   app.help().c_str());
      return 2;
    }
    return app.exit(error) == 0 ? 0 : 2;  // help and version: 0; bad usage: 2
  }
  for (const ringmoe::cli::Subcommand& subcommand : subcommands) {
    if (!subcommand.app->parsed()) continue;
    // What was typed after the subcommand's name (before it, only --help and --version, which end the parse).
    int first = 1;
    while (first < argc && std::string_view(argv[first]) != subcommand.app->get_name()) ++first;
    return ExitStatus(
        subcommand.run(std::vector<std::string>(argv + std::min(first + 1, argc), argv + argc)));
  }
  std::fputs(app.help().c_str(), stderr);  // unreachable: require_subcommand(1) chose one
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  // No exception may reach terminate: one thrown while the app is built or a subcommand runs (allocation, a
  // thread that cannot start) ends the command with a message.
  try {
    return Main(argc, argv);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "ringmoe: internal error: %s\n", error.what());
    return 1;
  }
}
