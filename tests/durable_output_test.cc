// `ringmoe run`'s output as an interrupted user meets it: results appended as they finish, a job killed with
// SIGKILL and resumed until done, and every way an existing output could be lost (refused, the input as
// output, a bad model, a cut last line, a second writer). These run the built binary, as cli_test.cc does.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
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
using nlohmann::json;

const std::string kBinary = std::string(RINGMOE_BINARY_DIR) + "/ringmoe";
const std::string kTinyModel = std::string(RINGMOE_SOURCE_DIR) + "/tests/data/models/tiny-qwen3-moe";
const std::vector<const char*> kFastFlags = {"--device",  "cpu", "--no-plan",   "--quiet",
                                             "--threads", "2",   "--cpu-dtype", "f32"};

std::string ReadText(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void WriteText(const fs::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

std::vector<std::string> SplitLines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// Every line of an output file, parsed; a line that is not JSON fails the test.
std::vector<json> ReadJsonLines(const fs::path& path) {
  std::vector<json> lines;
  for (const std::string& line : SplitLines(ReadText(path))) {
    json parsed = json::parse(line, nullptr, /*allow_exceptions=*/false);
    EXPECT_FALSE(parsed.is_discarded()) << path << ": not JSON: " << line;
    lines.push_back(std::move(parsed));
  }
  return lines;
}

std::vector<int> TokenIds(const json& line) {
  return line["response"]["body"]["choices"][0]["token_ids"].get<std::vector<int>>();
}

struct Finished {
  int exit_code;  // -1 when a signal ended it
  std::string stderr_text;
};

class DurableOutputTest : public testing::Test {
 protected:
  void SetUp() override {
    const auto* test = testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / ("ringmoe_durable_" + std::to_string(::getpid()) + "_" + test->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Starts `ringmoe run` with `arguments` (and the fast, private flags every test wants) in the background,
  // its stderr in dir_/stderr.txt. A private XDG_CACHE_HOME keeps the user's probe cache out of it.
  pid_t Start(const std::vector<std::string>& arguments) {
    std::vector<std::string> argv = {kBinary, "run"};
    argv.insert(argv.end(), arguments.begin(), arguments.end());
    for (const char* fast : kFastFlags) argv.push_back(fast);
    return StartArgv(std::move(argv));
  }

  // Starts `argv` (a full command line) as Start does.
  pid_t StartArgv(std::vector<std::string> argv) {
    return ringmoe::testing::StartChild(std::move(argv), (dir_ / "cache").string(),
                                        (dir_ / "stderr.txt").string());
  }

  Finished Wait(pid_t pid) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, ReadText(dir_ / "stderr.txt")};
  }

  Finished Run(const std::vector<std::string>& arguments) { return Wait(Start(arguments)); }

  std::vector<std::string> Job(const fs::path& input, const fs::path& output,
                               const std::string& model = kTinyModel) {
    return {"--model", model, "--input", input.string(), "--output", output.string()};
  }

  // `count` greedy requests over the golden prompts, max_tokens 4..8: 65 different answers, each known.
  fs::path WriteRequests(int count, const std::string& name = "requests.jsonl") {
    const json golden = json::parse(std::ifstream(kTinyModel + "/golden.json"));
    std::string text;
    for (int i = 0; i < count; ++i) {
      const json& prompt = golden["prompts"][i % golden["prompts"].size()];
      json line = {{"custom_id", "req-" + std::to_string(i)},
                   {"prompt", prompt["prompt_ids"]},
                   {"max_tokens", 4 + i % 5},
                   {"temperature", 0}};
      text += line.dump() + "\n";
    }
    const fs::path path = dir_ / name;
    WriteText(path, text);
    return path;
  }

  fs::path dir_;
};

// The point of the whole design: SIGKILL at three random moments, --resume after each, and the final output
// is exactly the uninterrupted run's, one line per custom_id. Every kill leaves only whole lines (a cut last
// line at most), and at least one kill must land mid-job with results already written (before this, a killed
// job left 0 bytes).
TEST_F(DurableOutputTest, KilledThreeTimesAndResumedEqualsAnUninterruptedRun) {
  constexpr int kRequests = 2000;
  const fs::path input = WriteRequests(kRequests);
  const fs::path reference = dir_ / "reference.jsonl", output = dir_ / "resumed.jsonl";
  // Small steps (4 sequences, 4 prompt tokens a step) stretch the job to a few seconds, so that kills at
  // random moments of it land in the middle of it.
  const std::vector<std::string> small_steps = {"--max-batch", "4", "--prefill-chunk", "4"};
  std::vector<std::string> reference_job = Job(input, reference);
  reference_job.insert(reference_job.end(), small_steps.begin(), small_steps.end());
  const auto reference_start = std::chrono::steady_clock::now();
  Finished uninterrupted = Run(reference_job);
  ASSERT_EQ(uninterrupted.exit_code, 0) << uninterrupted.stderr_text;
  const double reference_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - reference_start).count();
  std::map<std::string, std::vector<int>> expected;
  for (const json& line : ReadJsonLines(reference)) {
    ASSERT_TRUE(Succeeded(line)) << line.dump();
    ASSERT_TRUE(expected.emplace(line["custom_id"], TokenIds(line)).second) << line.dump();
  }
  ASSERT_EQ(expected.size(), static_cast<size_t>(kRequests));

  const unsigned seed = std::random_device{}();
  SCOPED_TRACE("kill times seeded with " + std::to_string(seed) + "; uninterrupted run " +
               std::to_string(reference_seconds) + " s");
  std::mt19937 random(seed);
  // Each kill waits for the run's first new result line (start-up alone can outlast a fixed delay: on the
  // GPU box loading took most of an 8 s run), then lands a random 0 to 300 ms later, while most of the job
  // is still to run.
  std::uniform_int_distribution<int> delay_ms(0, 300);
  std::vector<std::string> job = Job(input, output);
  job.insert(job.end(), small_steps.begin(), small_steps.end());
  job.push_back("--resume");
  int kills_mid_job = 0;  // killed while running, with some but not all results written
  for (int kill = 0; kill < 3; ++kill) {
    const size_t before = ReadText(output).size();
    const pid_t pid = Start(job);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (ReadText(output).size() <= before && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    const int delay = delay_ms(random);
    std::this_thread::sleep_for(std::chrono::milliseconds(delay));
    ::kill(pid, SIGKILL);
    Finished killed = Wait(pid);
    // Only the last line may be incomplete: everything before the last newline is whole JSON lines.
    const std::string text = ReadText(output);
    const std::string whole = text.substr(0, text.rfind('\n') + 1);
    int lines = 0;
    for (const std::string& line : SplitLines(whole)) {
      EXPECT_FALSE(json::parse(line, nullptr, false).is_discarded())
          << "kill " << kill << ": torn line " << line;
      ++lines;
    }
    if (killed.exit_code == -1 && lines > 0 && lines < kRequests) ++kills_mid_job;
    std::printf("kill %d after %d ms: %d whole lines%s (%s)\n", kill, delay, lines,
                whole.size() < text.size() ? " and a cut last line" : "",
                killed.exit_code == -1 ? "killed" : "had finished");
  }
  EXPECT_GE(kills_mid_job, 1)
      << "no kill found some results written and others not: results are not appended "
         "as they finish (or the job ran far faster or slower than expected)";
  Finished finished = Run(job);
  ASSERT_EQ(finished.exit_code, 0) << finished.stderr_text;

  std::map<std::string, int> seen;
  for (const json& line : ReadJsonLines(output)) {
    const std::string id = line["custom_id"];
    ++seen[id];
    ASSERT_TRUE(Succeeded(line)) << line.dump();
    ASSERT_TRUE(expected.count(id)) << id;
    EXPECT_EQ(TokenIds(line), expected[id]) << id;
  }
  EXPECT_EQ(seen.size(), expected.size());
  for (const auto& [id, count] : seen) EXPECT_EQ(count, 1) << id;
}

TEST_F(DurableOutputTest, ExistingOutputIsRefusedWithoutResumeOrOverwrite) {
  const fs::path input = WriteRequests(3), output = dir_ / "out.jsonl";
  const std::string precious = "{\"custom_id\": \"from an earlier job\"}\n";
  WriteText(output, precious);
  Finished refused = Run(Job(input, output));
  EXPECT_EQ(refused.exit_code, 2) << refused.stderr_text;
  EXPECT_NE(refused.stderr_text.find(output.string()), std::string::npos) << refused.stderr_text;
  EXPECT_NE(refused.stderr_text.find("--resume"), std::string::npos) << refused.stderr_text;
  EXPECT_NE(refused.stderr_text.find("--overwrite"), std::string::npos) << refused.stderr_text;
  EXPECT_EQ(ReadText(output), precious);

  std::vector<std::string> both = Job(input, output);
  both.insert(both.end(), {"--resume", "--overwrite"});
  Finished contradictory = Run(both);
  EXPECT_EQ(contradictory.exit_code, 2) << contradictory.stderr_text;
  EXPECT_EQ(ReadText(output), precious);

  // An empty file is no earlier work: it is written without either flag.
  WriteText(output, "");
  Finished into_empty = Run(Job(input, output));
  ASSERT_EQ(into_empty.exit_code, 0) << into_empty.stderr_text;
  EXPECT_EQ(ReadJsonLines(output).size(), 3u);

  WriteText(output, precious);
  std::vector<std::string> overwrite = Job(input, output);
  overwrite.push_back("--overwrite");
  Finished replaced = Run(overwrite);
  ASSERT_EQ(replaced.exit_code, 0) << replaced.stderr_text;
  std::vector<json> lines = ReadJsonLines(output);
  ASSERT_EQ(lines.size(), 3u);
  for (const json& line : lines) EXPECT_TRUE(Succeeded(line)) << line.dump();
}

TEST_F(DurableOutputTest, TheInputIsNeverTheOutput) {
  const fs::path input = WriteRequests(3);
  const std::string requests = ReadText(input);
  fs::create_symlink(input, dir_ / "symlink.jsonl");
  fs::create_hard_link(input, dir_ / "hardlink.jsonl");
  for (const fs::path& output :
       {input, dir_ / "symlink.jsonl", dir_ / "hardlink.jsonl", dir_ / "." / input.filename()}) {
    for (const char* flag : {"--resume", "--overwrite"}) {
      std::vector<std::string> job = Job(input, output);
      job.push_back(flag);
      Finished refused = Run(job);
      EXPECT_EQ(refused.exit_code, 2) << output << " " << flag << ": " << refused.stderr_text;
      EXPECT_NE(refused.stderr_text.find("is the input file"), std::string::npos) << refused.stderr_text;
      EXPECT_EQ(ReadText(input), requests) << output << " " << flag;
    }
  }
}

TEST_F(DurableOutputTest, ABadModelLeavesTheOutputUntouched) {
  const fs::path input = WriteRequests(3), output = dir_ / "out.jsonl";
  const std::string earlier = ReadText(input);  // any earlier content
  WriteText(output, earlier);
  fs::create_directories(dir_ / "broken");
  WriteText(dir_ / "broken" / "config.json", "{\"model_type\": ");
  for (const fs::path& model : {dir_ / "missing", dir_ / "broken"}) {
    for (const char* flag : {"--overwrite", "--resume"}) {
      std::vector<std::string> job = Job(input, output, model.string());
      job.push_back(flag);
      Finished failed = Run(job);
      EXPECT_EQ(failed.exit_code, 1) << model << " " << flag << ": " << failed.stderr_text;
      EXPECT_NE(failed.stderr_text.find(model.filename().string()), std::string::npos) << failed.stderr_text;
      EXPECT_EQ(ReadText(output), earlier) << model << " " << flag;
    }
  }
  // A model whose config loads but whose weights do not: the engine fails after the output is opened, and
  // still nothing was cut.
  fs::create_directories(dir_ / "no_weights");
  fs::copy_file(kTinyModel + "/config.json", dir_ / "no_weights" / "config.json");
  std::vector<std::string> job = Job(input, output, (dir_ / "no_weights").string());
  job.push_back("--overwrite");
  Finished failed = Run(job);
  EXPECT_EQ(failed.exit_code, 1) << failed.stderr_text;
  EXPECT_EQ(ReadText(output), earlier);
}

// A cut last line (no newline) and a last line that is not JSON are dropped and their requests run again;
// a bad line with lines after it is no output of ours, and --resume refuses to guess.
TEST_F(DurableOutputTest, ResumeCutsATornLastLineAndRedoesIt) {
  const fs::path input = WriteRequests(10), full = dir_ / "full.jsonl", output = dir_ / "out.jsonl";
  ASSERT_EQ(Run(Job(input, full)).exit_code, 0);
  const std::vector<std::string> lines = SplitLines(ReadText(full));
  ASSERT_EQ(lines.size(), 10u);
  std::map<std::string, std::vector<int>> expected;
  for (const std::string& line : lines)
    expected[json::parse(line)["custom_id"]] = TokenIds(json::parse(line));
  std::string kept;
  for (int i = 0; i < 6; ++i) kept += lines[i] + "\n";

  std::vector<std::string> resume = Job(input, output);
  resume.push_back("--resume");
  for (const std::string& torn :
       {lines[6].substr(0, lines[6].size() / 2), lines[6].substr(0, 40) + "\n",
        lines[6]}) {  // cut; ends in a newline but is not JSON; whole but no newline
    WriteText(output, kept + torn);
    Finished resumed = Run(resume);
    ASSERT_EQ(resumed.exit_code, 0) << resumed.stderr_text;
    EXPECT_NE(resumed.stderr_text.find("cut last line dropped"), std::string::npos) << resumed.stderr_text;
    const std::string text = ReadText(output);
    EXPECT_EQ(text.substr(0, kept.size()), kept) << "the complete lines are kept as they were";
    std::map<std::string, int> seen;
    for (const json& line : ReadJsonLines(output)) {
      ++seen[line["custom_id"]];
      EXPECT_EQ(TokenIds(line), expected[line["custom_id"]]) << line.dump();
    }
    EXPECT_EQ(seen.size(), 10u);
    for (const auto& [id, count] : seen) EXPECT_EQ(count, 1) << id;
  }

  const std::string broken_middle = kept + "not json\n" + lines[7] + "\n";
  WriteText(output, broken_middle);
  Finished refused = Run(resume);
  EXPECT_EQ(refused.exit_code, 2) << refused.stderr_text;
  EXPECT_NE(refused.stderr_text.find("line 7"), std::string::npos) << refused.stderr_text;
  EXPECT_EQ(ReadText(output), broken_middle);

  // Resuming a finished job runs nothing and changes nothing.
  WriteText(output, ReadText(full));
  Finished nothing = Run(resume);
  ASSERT_EQ(nothing.exit_code, 0) << nothing.stderr_text;
  EXPECT_NE(nothing.stderr_text.find("nothing to run"), std::string::npos) << nothing.stderr_text;
  EXPECT_EQ(ReadText(output), ReadText(full));
}

// The later line of a repeated custom_id is an error naming both lines; the first one runs. On --resume the
// two are told apart by line number, so the duplicate's error line never stands in for the first's result.
// --resume keeps error lines of both forms, OpenAI's HTTP-error form that ringmoe writes now and the
// "response": null form an older ringmoe wrote for every failure, and runs only what they do not answer.
TEST_F(DurableOutputTest, ResumeKeepsErrorLinesOfTheNewAndTheOldForm) {
  const fs::path input = dir_ / "requests.jsonl", output = dir_ / "out.jsonl";
  WriteText(input,
            "{\"custom_id\": \"bad\", \"prompt\": [1, 2, 3], \"max_tokens\": 0}\n"
            "{\"custom_id\": \"old-bad\", \"prompt\": [1, 2], \"max_tokens\": -1}\n"
            "{\"custom_id\": \"a\", \"prompt\": [4, 5], \"max_tokens\": 3, \"temperature\": 0}\n"
            "{\"custom_id\": \"b\", \"prompt\": [6], \"max_tokens\": 3, \"temperature\": 0}\n");
  ASSERT_EQ(Run(Job(input, output)).exit_code, 0);
  std::string bad_line;
  for (const json& line : ReadJsonLines(output)) {
    if (line["custom_id"] == "bad") bad_line = line.dump();
  }
  const json bad = json::parse(bad_line);
  ASSERT_FALSE(bad_line.empty());
  EXPECT_EQ(bad["response"]["status_code"], 400) << bad_line;
  EXPECT_EQ(ErrorOf(bad)["param"], "max_tokens") << bad_line;
  // The older form for the second bad line; "a" and "b" are still to run.
  const std::string old_line =
      R"({"id": "batch_req_1_2", "custom_id": "old-bad", "response": null, "error": {"code": "invalid_request", )"
      R"("message": "line 2 (custom_id 'old-bad'): field 'max_tokens' must be an integer >= 1, got -1", "param": "max_tokens"}})";
  WriteText(output, bad_line + "\n" + old_line + "\n");
  std::vector<std::string> resume = Job(input, output);
  resume.push_back("--resume");
  Finished resumed = Run(resume);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.stderr_text;
  std::vector<json> after = ReadJsonLines(output);
  ASSERT_EQ(after.size(), 4u);
  EXPECT_EQ(after[0].dump(), bad_line);
  EXPECT_EQ(after[1], json::parse(old_line));
  std::map<std::string, int> answered;
  for (size_t i = 2; i < after.size(); ++i) {
    EXPECT_TRUE(Succeeded(after[i])) << after[i].dump();
    ++answered[after[i]["custom_id"]];
  }
  EXPECT_EQ(answered, (std::map<std::string, int>{{"a", 1}, {"b", 1}}));
}

TEST_F(DurableOutputTest, DuplicateCustomIdIsAnErrorLineAndResumesApart) {
  const fs::path input = dir_ / "requests.jsonl", output = dir_ / "out.jsonl";
  WriteText(input,
            "{\"custom_id\": \"a\", \"prompt\": [1, 2, 3], \"max_tokens\": 4, \"temperature\": 0}\n"
            "{\"custom_id\": \"b\", \"prompt\": [4, 5], \"max_tokens\": 4, \"temperature\": 0}\n"
            "\n"
            "{\"custom_id\": \"a\", \"prompt\": [6], \"max_tokens\": 4, \"temperature\": 0}\n");
  ASSERT_EQ(Run(Job(input, output)).exit_code, 0);
  std::vector<json> lines = ReadJsonLines(output);
  ASSERT_EQ(lines.size(), 3u);
  // Bad lines are written before any request finishes.
  EXPECT_EQ(lines[0]["custom_id"], "a");
  ASSERT_FALSE(Succeeded(lines[0])) << lines[0].dump();
  EXPECT_EQ(lines[0]["response"]["status_code"], 400) << lines[0].dump();
  const json error = ErrorOf(lines[0]);
  EXPECT_EQ(error["code"], "invalid_request");
  EXPECT_EQ(error["param"], "custom_id");
  const std::string message = error["message"];
  EXPECT_NE(message.find("line 4"), std::string::npos) << message;
  EXPECT_NE(message.find("line 1"), std::string::npos) << message;
  std::string first_result;
  for (const json& line : lines) {
    if (line["custom_id"] == "a" && Succeeded(line)) first_result = line.dump();
  }
  ASSERT_FALSE(first_result.empty());

  // Keep only the duplicate's error line: the first "a" must run again, "b" too, and nothing twice.
  WriteText(output, lines[0].dump() + "\n");
  std::vector<std::string> resume = Job(input, output);
  resume.push_back("--resume");
  Finished resumed = Run(resume);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.stderr_text;
  std::vector<json> after = ReadJsonLines(output);
  ASSERT_EQ(after.size(), 3u);
  int a_results = 0, a_errors = 0, b_results = 0;
  for (const json& line : after) {
    if (line["custom_id"] == "a") (Succeeded(line) ? a_results : a_errors)++;
    if (line["custom_id"] == "b" && Succeeded(line)) ++b_results;
  }
  EXPECT_EQ(a_results, 1);
  EXPECT_EQ(a_errors, 1);
  EXPECT_EQ(b_results, 1);
}

TEST_F(DurableOutputTest, ASecondWriterIsRefusedAtOnce) {
  const fs::path input = WriteRequests(3), output = dir_ / "out.jsonl";
  const std::string earlier = "{\"custom_id\": \"req-0\"}\n";
  WriteText(output, earlier);
  const int fd = ::open(output.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);
  for (const char* flag : {"--resume", "--overwrite"}) {
    std::vector<std::string> job = Job(input, output);
    job.push_back(flag);
    const auto start = std::chrono::steady_clock::now();
    Finished refused = Run(job);
    EXPECT_EQ(refused.exit_code, 1) << refused.stderr_text;
    EXPECT_NE(refused.stderr_text.find(output.string()), std::string::npos) << refused.stderr_text;
    EXPECT_NE(refused.stderr_text.find("locked"), std::string::npos) << refused.stderr_text;
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 20.0)
        << "it must not wait for the lock";
    EXPECT_EQ(ReadText(output), earlier);
  }
  ::close(fd);  // the lock goes with it
  std::vector<std::string> job = Job(input, output);
  job.push_back("--resume");
  Finished after = Run(job);
  ASSERT_EQ(after.exit_code, 0) << after.stderr_text;
  EXPECT_EQ(ReadJsonLines(output).size(), 3u);  // req-0 kept, req-1 and req-2 appended
}

// SIGTERM at random points of a 2000-request job: each stop is clean (exit 143, a message naming the signal
// and the exact command that resumes, only whole lines and no `cancelled` lines in the output), a double
// signal exits at once with whole lines only, and running the printed command (through the shell, as a user
// would paste it) finishes the job with every custom_id once and the uninterrupted run's greedy tokens.
TEST_F(DurableOutputTest, SigtermStopsCleanlyAndThePrintedCommandResumes) {
  constexpr int kRequests = 2000;
  const fs::path input = WriteRequests(kRequests);
  const fs::path reference = dir_ / "reference.jsonl", output = dir_ / "stopped.jsonl";
  const std::vector<std::string> small_steps = {"--max-batch", "4", "--prefill-chunk", "4"};
  std::vector<std::string> reference_job = Job(input, reference);
  reference_job.insert(reference_job.end(), small_steps.begin(), small_steps.end());
  Finished uninterrupted = Run(reference_job);
  ASSERT_EQ(uninterrupted.exit_code, 0) << uninterrupted.stderr_text;
  std::map<std::string, std::vector<int>> expected;
  for (const json& line : ReadJsonLines(reference)) expected[line["custom_id"]] = TokenIds(line);
  ASSERT_EQ(expected.size(), static_cast<size_t>(kRequests));

  const unsigned seed = std::random_device{}();
  SCOPED_TRACE("signal times seeded with " + std::to_string(seed));
  std::mt19937 random(seed);
  std::uniform_int_distribution<int> delay_ms(0, 800);
  std::vector<std::string> job = Job(input, output);
  job.insert(job.end(), small_steps.begin(), small_steps.end());
  job.push_back("--overwrite");  // the first run replaces; the printed command must turn this into --resume
  std::string resume_command;
  int clean_stops = 0;
  for (int round = 0; round < 3; ++round) {
    const bool twice = round == 2;
    const size_t before = round == 0 ? 0 : ReadText(output).size();
    const pid_t pid = Start(job);
    // Signal once the job runs (it has written a line: its handlers are in place; on a loaded machine loading
    // alone can take seconds), then after a random further delay.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (ReadText(output).size() <= before && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    const int delay = delay_ms(random);
    std::this_thread::sleep_for(std::chrono::milliseconds(delay));
    ::kill(pid, SIGTERM);
    if (twice) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      ::kill(pid, SIGINT);
    }
    const auto signalled = std::chrono::steady_clock::now();
    Finished stopped = Wait(pid);
    const double stop_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - signalled).count();
    const std::string text = ReadText(output);
    std::printf("round %d: signal after %d ms, exit %d after %.3f s, %zu lines\n", round, delay,
                stopped.exit_code, stop_seconds, SplitLines(text).size());
    // Only whole lines: the stop writes nothing partial, and the second signal never exits mid-line.
    EXPECT_TRUE(text.empty() || text.back() == '\n') << "round " << round << ": a cut last line";
    for (const json& line : ReadJsonLines(output)) {
      ASSERT_TRUE(Succeeded(line)) << "a cancelled request must not be written: " << line.dump();
    }
    EXPECT_LT(stop_seconds, 10.0) << "the stop is bounded (--stop-grace 5 s and a step)";
    if (stopped.exit_code == 0) {  // the job won the race: it was done before the signal
      job.back() = "--resume";
      break;
    }
    if (stopped.exit_code == -1) {  // signalled before the job installed its handlers: nothing was written
      EXPECT_TRUE(text.empty() || round > 0) << stopped.stderr_text;
      continue;
    }
    if (twice) {
      // Both may be pending at once, and then SIGINT (the lower number) is delivered first.
      EXPECT_TRUE(stopped.exit_code == 128 + SIGINT || stopped.exit_code == 128 + SIGTERM)
          << stopped.exit_code << ": " << stopped.stderr_text;
      EXPECT_NE(stopped.stderr_text.find("exiting at once"), std::string::npos) << stopped.stderr_text;
    } else {
      ++clean_stops;
      EXPECT_EQ(stopped.exit_code, 128 + SIGTERM) << stopped.stderr_text;
      EXPECT_NE(stopped.stderr_text.find("stopped by SIGTERM"), std::string::npos) << stopped.stderr_text;
      const std::string marker = "To finish the job, run:\n  ";
      const size_t at = stopped.stderr_text.find(marker);
      ASSERT_NE(at, std::string::npos) << stopped.stderr_text;
      const size_t begin = at + marker.size();
      resume_command = stopped.stderr_text.substr(begin, stopped.stderr_text.find('\n', begin) - begin);
      // The command as typed, --overwrite dropped, --resume kept where it was or else added at the end.
      std::string wanted = "ringmoe run";
      bool has_resume = false;
      for (const std::string& argument : job) {
        if (argument != "--overwrite") wanted += " " + argument;
        has_resume = has_resume || argument == "--resume";
      }
      for (const char* fast : kFastFlags) wanted += std::string(" ") + fast;
      EXPECT_EQ(resume_command, has_resume ? wanted : wanted + " --resume");
    }
    job.back() = "--resume";
  }
  EXPECT_GE(clean_stops, 1) << "no SIGTERM landed while the job ran";
  if (resume_command.empty()) resume_command = "ringmoe run --resume";  // (the failure above says why)
  // The printed command, as pasted into a shell, with the built binary for `ringmoe`.
  Finished finished = Wait(StartArgv({"/bin/sh", "-c", kBinary + resume_command.substr(strlen("ringmoe"))}));
  ASSERT_EQ(finished.exit_code, 0) << finished.stderr_text;
  std::map<std::string, int> seen;
  for (const json& line : ReadJsonLines(output)) {
    const std::string id = line["custom_id"];
    ++seen[id];
    ASSERT_TRUE(expected.count(id)) << id;
    EXPECT_EQ(TokenIds(line), expected[id]) << id;
  }
  EXPECT_EQ(seen.size(), expected.size());
  for (const auto& [id, count] : seen) EXPECT_EQ(count, 1) << id;
}

// A disk that fails (here /dev/full: every write is ENOSPC) stops the job at once with the OS's reason and
// the resume command, rather than after the whole job with no reason.
TEST_F(DurableOutputTest, AWriteErrorStopsTheJobAtOnceWithTheReason) {
  if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  const fs::path input = WriteRequests(2000);
  std::vector<std::string> job = Job(input, "/dev/full");
  job.insert(job.end(), {"--max-batch", "4", "--prefill-chunk", "4"});
  const auto start = std::chrono::steady_clock::now();
  Finished failed = Run(job);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(failed.exit_code, 1) << failed.stderr_text;
  EXPECT_NE(failed.stderr_text.find("No space left on device"), std::string::npos) << failed.stderr_text;
  EXPECT_NE(failed.stderr_text.find("--resume"), std::string::npos) << failed.stderr_text;
  EXPECT_NE(failed.stderr_text.find("requests not run"), std::string::npos) << failed.stderr_text;
  EXPECT_LT(seconds, 5.0) << "the job must stop at the first failed write, not run on";
}

// The model file truncated while the job runs: the job ends with a clear error naming the file (not a
// SIGBUS), keeps whole lines only, and once the model is restored --resume finishes the job.
TEST_F(DurableOutputTest, ACheckpointTruncatedMidJobEndsItWithAClearErrorAndResumes) {
  const fs::path model = dir_ / "model";
  fs::create_directories(model);
  for (const fs::directory_entry& entry : fs::directory_iterator(kTinyModel))
    fs::copy_file(entry.path(), model / entry.path().filename());
  const fs::path input = WriteRequests(2000), output = dir_ / "out.jsonl";
  std::vector<std::string> job = Job(input, output, model.string());
  job.insert(job.end(), {"--max-batch", "4", "--prefill-chunk", "4"});
  const pid_t pid = Start(job);
  // Truncate once the job has written some results (it is then past loading and in the middle of the run).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (ReadText(output).size() < 2000 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  fs::resize_file(model / "model.safetensors", 1000);
  Finished failed = Wait(pid);
  EXPECT_EQ(failed.exit_code, 1) << failed.stderr_text;
  EXPECT_NE(failed.stderr_text.find("model.safetensors"), std::string::npos) << failed.stderr_text;
  EXPECT_NE(failed.stderr_text.find("--resume"), std::string::npos) << failed.stderr_text;
  const std::string text = ReadText(output);
  EXPECT_TRUE(text.empty() || text.back() == '\n');
  const size_t kept = ReadJsonLines(output).size();
  EXPECT_GT(kept, 0u);
  EXPECT_LT(kept, 2000u) << "the job was meant to be stopped in the middle";

  fs::copy_file(fs::path(kTinyModel) / "model.safetensors", model / "model.safetensors",
                fs::copy_options::overwrite_existing);
  job.push_back("--resume");
  Finished resumed = Run(job);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.stderr_text;
  std::map<std::string, int> seen;
  for (const json& line : ReadJsonLines(output)) {
    ++seen[line["custom_id"]];
    EXPECT_TRUE(Succeeded(line)) << line.dump();
  }
  EXPECT_EQ(seen.size(), 2000u);
  for (const auto& [id, count] : seen) EXPECT_EQ(count, 1) << id;
}

}  // namespace
