// What every subcommand shares: one set of exit statuses (0 ok, 1 failed, 2 bad usage) and help that names
// the program ("ringmoe run", not "run").
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace {

const std::string kBinary = std::string(RINGMOE_BINARY_DIR) + "/ringmoe";

struct CommandRun {
  int exit_code;
  std::string output;  // stdout and stderr
};

CommandRun RunRingmoe(const std::string& arguments) {
  FILE* pipe = ::popen((kBinary + " " + arguments + " 2>&1 < /dev/null").c_str(), "r");
  std::string output;
  char buffer[4096];
  for (size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;) output.append(buffer, n);
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

TEST(CliUsageTest, AnUnknownFlagExitsTwoOnEverySubcommand) {
  for (const char* command : {"run", "plan", "probe", "tokenize"}) {
    const CommandRun run = RunRingmoe(std::string(command) + " --no-such-flag");
    EXPECT_EQ(run.exit_code, 2) << command << ": " << run.output;
  }
  EXPECT_EQ(RunRingmoe("no-such-command").exit_code, 2);
  EXPECT_EQ(RunRingmoe("").exit_code, 2);
}

TEST(CliUsageTest, HelpNamesTheProgramAndExitsZero) {
  for (const char* command : {"run", "plan", "probe", "tokenize"}) {
    const CommandRun help = RunRingmoe(std::string(command) + " --help");
    EXPECT_EQ(help.exit_code, 0) << command;
    EXPECT_NE(help.output.find("ringmoe " + std::string(command)), std::string::npos) << help.output;
  }
  const CommandRun run_help = RunRingmoe("run --help");
  for (const char* flag : {"--log-level", "--log-file", "--shard"}) {
    EXPECT_NE(run_help.output.find(flag), std::string::npos) << flag;
  }
}

}  // namespace
