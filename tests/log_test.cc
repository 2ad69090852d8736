// The project's logging (runtime/log): levels, timestamps, the log file, and --log-level / --log-file on
// `ringmoe run`.
#include "runtime/log/log.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>

namespace {

namespace fs = std::filesystem;
using ringmoe::log::Level;

const std::string kBinary = std::string(RINGMOE_BINARY_DIR) + "/ringmoe";
const std::string kTinyModel = std::string(RINGMOE_SOURCE_DIR) + "/tests/data/models/tiny-qwen3-moe";

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

class LogTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ringmoe_log_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override {
    ASSERT_TRUE(ringmoe::log::Configure(Level::kInfo).ok());  // closes the test's file
    fs::remove_all(dir_);
  }
  fs::path dir_;
};

TEST(LogLevelTest, ParsesEveryNameAndRejectsOthers) {
  EXPECT_EQ(*ringmoe::log::ParseLevel("trace"), Level::kTrace);
  EXPECT_EQ(*ringmoe::log::ParseLevel("debug"), Level::kDebug);
  EXPECT_EQ(*ringmoe::log::ParseLevel("info"), Level::kInfo);
  EXPECT_EQ(*ringmoe::log::ParseLevel("warning"), Level::kWarning);
  EXPECT_EQ(*ringmoe::log::ParseLevel("warn"), Level::kWarning);
  EXPECT_EQ(*ringmoe::log::ParseLevel("error"), Level::kError);
  EXPECT_EQ(*ringmoe::log::ParseLevel("off"), Level::kOff);
  const absl::StatusOr<Level> bad = ringmoe::log::ParseLevel("loud");
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(bad.status()));
  EXPECT_NE(bad.status().message().find("loud"), absl::string_view::npos);
  for (Level level :
       {Level::kTrace, Level::kDebug, Level::kInfo, Level::kWarning, Level::kError, Level::kOff}) {
    EXPECT_EQ(*ringmoe::log::ParseLevel(ringmoe::log::LevelName(level)), level);
  }
}

TEST_F(LogTest, FileGetsTimestampedMessagesAtTheLevelAndAbove) {
  const fs::path file = dir_ / "run.log";
  ASSERT_TRUE(ringmoe::log::Configure(Level::kWarning, file.string()).ok());
  EXPECT_FALSE(ringmoe::log::Enabled(Level::kInfo));
  EXPECT_TRUE(ringmoe::log::Enabled(Level::kError));
  ringmoe::log::Info("not shown {}", 1);
  ringmoe::log::Warning("shown {} of {}", 1, 2);
  ringmoe::log::Error("also shown");
  ringmoe::log::Flush();
  const std::string text = ReadFile(file);
  EXPECT_EQ(text.find("not shown"), std::string::npos) << text;
  const std::regex line(R"(\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\] \[warning\] shown 1 of 2\n)"
                        R"(\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\] \[error\] also shown\n)");
  EXPECT_TRUE(std::regex_match(text, line)) << text;
}

TEST_F(LogTest, FileIsAppendedNotTruncated) {
  const fs::path file = dir_ / "append.log";
  ASSERT_TRUE(ringmoe::log::Configure(Level::kInfo, file.string()).ok());
  ringmoe::log::Info("first");
  ASSERT_TRUE(ringmoe::log::Configure(Level::kInfo, file.string()).ok());
  ringmoe::log::Info("second");
  ringmoe::log::Flush();
  const std::string text = ReadFile(file);
  EXPECT_NE(text.find("first"), std::string::npos) << text;
  EXPECT_LT(text.find("first"), text.find("second")) << text;
}

TEST_F(LogTest, OffSilencesEverything) {
  const fs::path file = dir_ / "off.log";
  ASSERT_TRUE(ringmoe::log::Configure(Level::kOff, file.string()).ok());
  EXPECT_FALSE(ringmoe::log::Enabled(Level::kError));
  ringmoe::log::Error("nothing");
  ringmoe::log::Flush();
  EXPECT_EQ(ReadFile(file), "");
}

TEST_F(LogTest, UnopenableFileFailsAndKeepsTheLogger) {
  ASSERT_TRUE(ringmoe::log::Configure(Level::kDebug).ok());
  std::ofstream(dir_ / "a_file") << "x";  // a path below a regular file cannot be created
  const absl::Status status = ringmoe::log::Configure(Level::kError, (dir_ / "a_file" / "x.log").string());
  EXPECT_TRUE(absl::IsFailedPrecondition(status)) << status;
  EXPECT_TRUE(ringmoe::log::Enabled(Level::kDebug));  // unchanged
}

struct CommandRun {
  int exit_code;
  std::string stderr_text;
};

CommandRun RunRingmoe(const std::string& arguments, const fs::path& dir) {
  const fs::path err = dir / "stderr.txt";
  const int status = std::system((kBinary + " " + arguments + " 2> " + err.string()).c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, ReadFile(err)};
}

TEST_F(LogTest, RunWritesItsLogToTheFileAndHonoursTheLevel) {
  std::ofstream(dir_ / "in.jsonl") << R"({"custom_id": "a", "prompt": "Hello", "max_tokens": 2})"
                                   << "\n";
  const std::string job =
      "run --model " + kTinyModel + " --input " + (dir_ / "in.jsonl").string() +
      " --device cpu --cpu-dtype f32 --threads 2 --no-plan --quiet --overwrite --output " +
      (dir_ / "out.jsonl").string();
  const fs::path file = dir_ / "job.log";
  CommandRun info = RunRingmoe(job + " --log-file " + file.string(), dir_);
  ASSERT_EQ(info.exit_code, 0) << info.stderr_text;
  const std::regex summary(R"(\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\] \[info\] ringmoe run: 1 lines -> )");
  EXPECT_TRUE(std::regex_search(ReadFile(file), summary)) << ReadFile(file);
  EXPECT_TRUE(std::regex_search(info.stderr_text, summary)) << info.stderr_text;

  CommandRun warning = RunRingmoe(job + " --log-level warning", dir_);
  ASSERT_EQ(warning.exit_code, 0) << warning.stderr_text;
  EXPECT_EQ(warning.stderr_text.find("[info]"), std::string::npos) << warning.stderr_text;
}

TEST_F(LogTest, BadLevelIsAUsageError) {
  CommandRun run = RunRingmoe("run --model " + kTinyModel + " --input x --output y --log-level loud", dir_);
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_NE(run.stderr_text.find("--log-level"), std::string::npos) << run.stderr_text;
  CommandRun plan = RunRingmoe("plan --model " + kTinyModel + " --log-level loud", dir_);
  EXPECT_EQ(plan.exit_code, 2);
}

}  // namespace
