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

// `streams` says what `output` holds: "2>&1" both, "2>/dev/null" stdout only, "2>&1 >/dev/null" stderr only.
CommandRun RunRingmoe(const std::string& arguments, const std::string& streams = "2>&1") {
  FILE* pipe = ::popen((kBinary + " " + arguments + " " + streams + " < /dev/null").c_str(), "r");
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
    EXPECT_NE(help.output.find("Usage: ringmoe " + std::string(command) + " [OPTIONS]"), std::string::npos)
        << help.output;
  }
  const CommandRun run_help = RunRingmoe("run --help");
  for (const char* flag : {"--log-level", "--log-file", "--shard"}) {
    EXPECT_NE(run_help.output.find(flag), std::string::npos) << flag;
  }
}

TEST(CliUsageTest, TopLevelHelpListsEveryCommandOnStdout) {
  const CommandRun help = RunRingmoe("--help", "2>/dev/null");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.output.find("Usage: ringmoe"), std::string::npos) << help.output;
  for (const char* command : {"plan", "probe", "run", "tokenize", "version"}) {
    EXPECT_NE(help.output.find("\n  " + std::string(command) + " "), std::string::npos)
        << command << help.output;
  }
}

TEST(CliUsageTest, NoCommandPrintsUsageToStderrAndExitsTwo) {
  const CommandRun on_stdout = RunRingmoe("", "2>/dev/null");
  EXPECT_EQ(on_stdout.exit_code, 2);
  EXPECT_EQ(on_stdout.output, "");
  const CommandRun on_stderr = RunRingmoe("", "2>&1 >/dev/null");
  EXPECT_NE(on_stderr.output.find("Usage: ringmoe"), std::string::npos) << on_stderr.output;
  EXPECT_NE(on_stderr.output.find("tokenize"), std::string::npos) << on_stderr.output;
}

TEST(CliUsageTest, AnUnknownCommandIsNamed) {
  for (const char* command : {"bogus", "--bogus", "bogus --model x"}) {
    const CommandRun run = RunRingmoe(command);
    EXPECT_EQ(run.exit_code, 2) << command;
    const std::string name = std::string(command).substr(0, std::string(command).find(' '));
    EXPECT_NE(run.output.find("unknown command '" + name + "'"), std::string::npos) << run.output;
  }
}

TEST(CliUsageTest, AFlagOfAnotherLevelIsAnError) {
  // --version belongs to `ringmoe`, not to `ringmoe run`; --model to `run`, not to `ringmoe`.
  EXPECT_EQ(RunRingmoe("run --version").exit_code, 2);
  EXPECT_EQ(RunRingmoe("--model x run").exit_code, 2);
}

}  // namespace
