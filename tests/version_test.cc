// `ringmoe --version` and `ringmoe version`, run from the built binary: one line naming the version CMake's
// project() declares, the git commit and whether the CUDA path is built in.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <regex>
#include <string>

namespace {

const std::string kBinary = std::string(RINGMOE_BINARY_DIR) + "/ringmoe";

struct CommandOutput {
  int exit_code;
  std::string stdout_text;
};

CommandOutput RunRingmoe(const std::string& arguments) {
  const std::string command = kBinary + " " + arguments;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return {-1, ""};
  std::string text;
  char buffer[256];
  for (size_t read; (read = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;) text.append(buffer, read);
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, text};
}

TEST(Version, FlagPrintsVersionCommitAndCuda) {
  const CommandOutput output = RunRingmoe("--version");
  ASSERT_EQ(output.exit_code, 0);
  std::smatch match;
  const std::regex shape(
      R"(ringmoe (\d+\.\d+\.\d+) \(git ([0-9a-f]{4,40}|unknown), CUDA built in: (yes|no)\)\n)");
  ASSERT_TRUE(std::regex_match(output.stdout_text, match, shape)) << output.stdout_text;
  EXPECT_EQ(match[1], RINGMOE_PROJECT_VERSION);
#ifdef RINGMOE_HAVE_CUDA
  EXPECT_EQ(match[3], "yes");
#else
  EXPECT_EQ(match[3], "no");
#endif
}

TEST(Version, SubcommandPrintsTheSameLine) {
  const CommandOutput flag = RunRingmoe("--version");
  const CommandOutput subcommand = RunRingmoe("version");
  EXPECT_EQ(subcommand.exit_code, 0);
  EXPECT_EQ(subcommand.stdout_text, flag.stdout_text);
}

}  // namespace
