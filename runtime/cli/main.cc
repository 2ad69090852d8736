// ringmoe: command-line entry point; dispatches to the subcommand named first.
#include <cstdio>
#include <cstring>
#include <string_view>

#include "runtime/cli/commands.h"

namespace {

struct Subcommand {
  const char* name;
  int (*main)(int, char**);
  const char* summary;
};

// One line per subcommand (keep alphabetical).
constexpr Subcommand kSubcommands[] = {
    {"plan", ringmoe::cli::PlanCommand, "predict a job's throughput, bottleneck and memory plan"},
    {"probe", ringmoe::cli::ProbeCommand, "measure this machine for the planner (writes a hardware profile)"},
    {"run", ringmoe::cli::RunCommand, "run a batch job: OpenAI Batch JSONL in, JSONL out"},
    {"tokenize", ringmoe::cli::TokenizeCommand, "encode JSON-string lines to token ids, or --decode them"},
};

void PrintUsage(FILE* out) {
  std::fprintf(out, "usage: ringmoe <command> [options]   (ringmoe <command> --help for its options)\n\ncommands:\n");
  for (const Subcommand& command : kSubcommands) std::fprintf(out, "  %-10s %s\n", command.name, command.summary);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0) {
    PrintUsage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  for (const Subcommand& command : kSubcommands) {
    if (std::string_view(argv[1]) == command.name) return command.main(argc - 1, argv + 1);
  }
  std::fprintf(stderr, "ringmoe: unknown command '%s'\n\n", argv[1]);
  PrintUsage(stderr);
  return 2;
}
