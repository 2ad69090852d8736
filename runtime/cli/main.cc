// ringmoe: command-line entry point; dispatches to the subcommand named first.
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/cli/commands.h"
#include "runtime/cli/version.h"

namespace {

struct Subcommand {
  const char* name;
  int (*main)(int, char**);
  const char* summary;
};

// `ringmoe version` and `ringmoe --version`: "ringmoe 0.1.0 (git abc1234, CUDA built in: yes)".
int VersionCommand(int, char**) {
  std::printf("ringmoe %s (git %s, CUDA built in: %s)\n", ringmoe::cli::kVersion, ringmoe::cli::kGitCommit,
              ringmoe::cli::kCudaBuiltIn ? "yes" : "no");
  return 0;
}

// One line per subcommand (keep alphabetical).
constexpr Subcommand kSubcommands[] = {
    {"plan", ringmoe::cli::PlanCommand, "predict a job's throughput, bottleneck and memory plan"},
    {"probe", ringmoe::cli::ProbeCommand, "measure this machine for the planner (writes a hardware profile)"},
    {"run", ringmoe::cli::RunCommand, "run a batch job: OpenAI Batch JSONL in, JSONL out"},
    {"tokenize", ringmoe::cli::TokenizeCommand, "encode JSON-string lines to token ids, or --decode them"},
    {"version", VersionCommand, "print the version, the git commit and whether CUDA is built in"},
};

// One set of exit statuses for every subcommand (commands.h): 0 success, 1 the job failed, 2 bad usage,
// 128 + the signal when a job stopped on SIGINT/SIGTERM (run: 130, 143). A subcommand that passes on CLI11's
// own code for a usage error (106 for an unknown flag, ...) exits 2.
int ExitStatus(int code) { return code == 0 || code == 1 || (code > 128 && code < 160) ? code : 2; }

void PrintUsage(FILE* out) {
  std::fprintf(
      out, "usage: ringmoe <command> [options]   (ringmoe <command> --help for its options)\n\ncommands:\n");
  for (const Subcommand& command : kSubcommands)
    std::fprintf(out, "  %-10s %s\n", command.name, command.summary);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0) {
    PrintUsage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (std::strcmp(argv[1], "--version") == 0) return VersionCommand(argc - 1, argv + 1);
  for (const Subcommand& command : kSubcommands) {
    if (std::string_view(argv[1]) != command.name) continue;
    // The subcommand parses argv[1..] with CLI11, which names the program after argv[0] in its help and
    // errors: "ringmoe run", not "run".
    std::string program = std::string("ringmoe ") + command.name;
    std::vector<char*> arguments(argv + 1, argv + argc);
    arguments[0] = program.data();
    arguments.push_back(nullptr);
    return ExitStatus(command.main(argc - 1, arguments.data()));
  }
  std::fprintf(stderr, "ringmoe: unknown command '%s'\n\n", argv[1]);
  PrintUsage(stderr);
  return 2;
}
