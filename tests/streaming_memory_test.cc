// `ringmoe run` streams its input (issue 21): its peak memory does not grow with the number of requests, and
// an input that changes while the job runs ends it with a clear error. These run the built binary, as
// durable_output_test.cc does.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "nlohmann/json.hpp"
#include "tests/testing/child_process.h"
#include "tests/testing/output_lines.h"

namespace {

using ::ringmoe::testing::ErrorOf;
using ::ringmoe::testing::Succeeded;

namespace fs = std::filesystem;

const std::string kBinary = std::string(RINGMOE_BINARY_DIR) + "/ringmoe";
const std::string kTinyModel = std::string(RINGMOE_SOURCE_DIR) + "/tests/data/models/tiny-qwen3-moe";

std::string ReadText(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

struct Finished {
  int exit_code = -1;  // -1 when a signal ended it
  long peak_rss_kib = 0;
  std::string stderr_text;
};

class StreamingMemoryTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ringmoe_streaming_" + std::to_string(::getpid()) + "_" +
                                        testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  pid_t Start(const std::vector<std::string>& arguments) {
    std::vector<std::string> argv = {kBinary, "run"};
    argv.insert(argv.end(), arguments.begin(), arguments.end());
    for (const char* fast :
         {"--device", "cpu", "--no-plan", "--quiet", "--threads", "2", "--cpu-dtype", "f32"})
      argv.push_back(fast);
    return ringmoe::testing::StartChild(std::move(argv), (dir_ / "cache").string(),
                                        (dir_ / "stderr.txt").string());
  }

  // Waits for `pid` and reads its own peak resident set (wait4's rusage is the child's alone).
  Finished Wait(pid_t pid) {
    int status = 0;
    struct rusage usage {};
    ::wait4(pid, &status, 0, &usage);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, usage.ru_maxrss, ReadText(dir_ / "stderr.txt")};
  }

  // `count` one-token greedy requests of one token each, each line carrying a 1000-byte stop string (request
  // content the job must keep while the request waits or runs, as long prompts are): about 1.1 KB a line.
  fs::path WriteRequests(int count, const std::string& name) {
    const fs::path path = dir_ / name;
    std::ofstream out(path, std::ios::binary);
    std::string stop(1000, 'x');
    for (int i = 0; i < count; ++i) {
      for (int k = 0; k < 8; ++k) stop[(i * 8 + k) % stop.size()] = static_cast<char>('a' + (i + k) % 26);
      out << "{\"custom_id\": \"req-" << i << "\", \"prompt\": [" << 1 + i % 997
          << "], \"max_tokens\": 1, \"temperature\": 0, \"stop\": [\"" << stop << "\"]}\n";
    }
    return path;
  }

  fs::path dir_;
};

// The same job at N and 4N requests: every request runs and has its line, and the peak resident set grows by
// far less than the extra requests would take if they were held. Held in memory (before issue 21's
// streaming), 95,000 such lines (100 MB) took 266 MB above a one-line job, about 2.8 KB a line, so the
// 30,000 extra lines here would add some 80 MB; streamed, all that grows is the scan's hash set of custom_ids
// (about 16 bytes a line, freed before the model loads) and the kept lines' index on --resume.
TEST_F(StreamingMemoryTest, PeakMemoryDoesNotGrowWithTheNumberOfRequests) {
  constexpr int kSmall = 10000;
  long peak_kib[2] = {0, 0};
  for (int size = 0; size < 2; ++size) {
    const int count = size == 0 ? kSmall : 4 * kSmall;
    const fs::path input = WriteRequests(count, "requests" + std::to_string(count) + ".jsonl");
    const fs::path output = dir_ / ("out" + std::to_string(count) + ".jsonl");
    const auto start = std::chrono::steady_clock::now();
    Finished finished = Wait(Start({"--model", kTinyModel, "--input", input.string(), "--output",
                                    output.string(), "--max-batch", "64", "--prefill-chunk", "64"}));
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    ASSERT_EQ(finished.exit_code, 0) << finished.stderr_text;
    std::set<std::string> ids;
    std::istringstream lines(ReadText(output));
    for (std::string line; std::getline(lines, line);) {
      const nlohmann::json parsed = nlohmann::json::parse(line);
      ASSERT_TRUE(Succeeded(parsed)) << line;
      ids.insert(parsed["custom_id"].get<std::string>());
    }
    EXPECT_EQ(ids.size(), static_cast<size_t>(count)) << "every request once";
    peak_kib[size] = finished.peak_rss_kib;
    std::printf("%d requests (%.1f MB of input): peak RSS %.1f MB, %.1f s\n", count,
                static_cast<double>(fs::file_size(input)) / 1e6, finished.peak_rss_kib / 1024.0, seconds);
  }
  const double growth_mib = (peak_kib[1] - peak_kib[0]) / 1024.0;
  std::printf("peak RSS growth from %d to %d requests: %.1f MB\n", kSmall, 4 * kSmall, growth_mib);
  EXPECT_LT(growth_mib, 20.0) << "the job's memory grows with its input: requests or results are held";
}

// The input is read again while the job runs: one that changes under it ends the job with a clear error
// naming the file and the command to resume, and the output holds whole lines only.
TEST_F(StreamingMemoryTest, AnInputChangedWhileTheJobRunsEndsItWithAClearError) {
  const fs::path input = WriteRequests(3000, "requests.jsonl"), output = dir_ / "out.jsonl";
  const pid_t pid = Start({"--model", kTinyModel, "--input", input.string(), "--output", output.string(),
                           "--max-batch", "4", "--prefill-chunk", "4"});
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (ReadText(output).empty() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  fs::resize_file(input, fs::file_size(input) / 2);  // cut, mid-line
  Finished failed = Wait(pid);
  EXPECT_EQ(failed.exit_code, 1) << failed.stderr_text;
  EXPECT_NE(failed.stderr_text.find("changed while the job ran"), std::string::npos) << failed.stderr_text;
  EXPECT_NE(failed.stderr_text.find(input.string()), std::string::npos) << failed.stderr_text;
  EXPECT_NE(failed.stderr_text.find("--resume"), std::string::npos) << failed.stderr_text;
  const std::string text = ReadText(output);
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n');
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);)
    EXPECT_FALSE(nlohmann::json::parse(line, nullptr, false).is_discarded()) << line;
}

}  // namespace
