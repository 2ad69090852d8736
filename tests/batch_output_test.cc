// What --resume reads from an existing output (runtime/frontend/batch_output.h): which lines are whole, which
// requests they answer, and the file's lock and refusals, without running a model.
#include "runtime/frontend/batch_output.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace ringmoe {
namespace {

namespace fs = std::filesystem;

std::string Line(const std::string& custom_id, int input_line) {
  return "{\"id\": \"batch_req_1700000000000_" + std::to_string(input_line) + "\", \"custom_id\": \"" +
         custom_id + "\", \"response\": null, \"error\": null}";
}

TEST(ScanFinishedLines, KeepsWholeLinesAndDropsACutLastOne) {
  const std::string whole = Line("a", 1) + "\n" + Line("b", 2) + "\n";
  absl::StatusOr<FinishedLines> scanned =
      ScanFinishedLines(whole + "{\"id\": \"batch_req_1_3\", \"cus", "out");
  ASSERT_TRUE(scanned.ok()) << scanned.status();
  EXPECT_EQ(scanned->complete_lines, 2);
  EXPECT_EQ(scanned->complete_bytes, static_cast<int64_t>(whole.size()));
  EXPECT_TRUE(scanned->dropped_torn_line);
  const std::string text = whole + "{\"id\": \"batch_req_1_3\", \"cus";
  scanned = ScanFinishedLines(text, "out");
  ASSERT_TRUE(scanned.ok()) << scanned.status();
  ASSERT_EQ(scanned->lines.size(), 2u);
  absl::StatusOr<bool> answered = IsAnswered(*scanned, OutputLineInText(text), "b", 2, /*id_repeated=*/true);
  ASSERT_TRUE(answered.ok()) << answered.status();
  EXPECT_TRUE(*answered);
  answered = IsAnswered(*scanned, OutputLineInText(text), "c", 3, /*id_repeated=*/false);
  ASSERT_TRUE(answered.ok()) << answered.status();
  EXPECT_FALSE(*answered) << "the cut line answers nothing";

  scanned = ScanFinishedLines(whole + "{\"id\": \"batch_req\n", "out");  // a newline, but not JSON
  ASSERT_TRUE(scanned.ok()) << scanned.status();
  EXPECT_EQ(scanned->complete_bytes, static_cast<int64_t>(whole.size()));
  EXPECT_TRUE(scanned->dropped_torn_line);

  scanned = ScanFinishedLines(whole + Line("c", 3), "out");  // whole JSON, but its newline was never written
  ASSERT_TRUE(scanned.ok()) << scanned.status();
  EXPECT_EQ(scanned->complete_lines, 2);
  EXPECT_TRUE(scanned->dropped_torn_line);

  scanned = ScanFinishedLines(whole, "out");
  ASSERT_TRUE(scanned.ok()) << scanned.status();
  EXPECT_FALSE(scanned->dropped_torn_line);
  EXPECT_EQ(scanned->complete_bytes, static_cast<int64_t>(whole.size()));
}

TEST(ScanFinishedLines, ABadLineWithLinesAfterItIsAnError) {
  for (const std::string& bad :
       {std::string("not json"), std::string("[1, 2]"), std::string("{\"custom_id\": 7}")}) {
    absl::StatusOr<FinishedLines> scanned =
        ScanFinishedLines(Line("a", 1) + "\n" + bad + "\n" + Line("b", 3) + "\n", "results.jsonl");
    ASSERT_FALSE(scanned.ok()) << bad;
    EXPECT_EQ(scanned.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(scanned.status().message().find("results.jsonl line 2"), std::string::npos) << scanned.status();
  }
}

BatchLine Input(const std::string& custom_id, int line_number) {
  BatchLine line;
  line.custom_id = custom_id;
  line.line_number = line_number;
  line.request = Request{};
  return line;
}

TEST(AnsweredLines, MatchesByCustomIdAndRepeatedIdsByLine) {
  const std::vector<BatchLine> input = {Input("a", 1), Input("b", 2), Input("a", 4), Input("c", 5)};
  // "b" answered by a line of a run where it sat on another line number: custom_id alone decides.
  const std::string first = Line("a", 4) + "\n" + Line("b", 9) + "\n";
  absl::StatusOr<FinishedLines> finished = ScanFinishedLines(first, "out");
  ASSERT_TRUE(finished.ok());
  EXPECT_EQ(AnsweredLines(input, *finished, OutputLineInText(first)).value(),
            (std::vector<bool>{false, true, true, false}));
  const std::string second = Line("a", 1) + "\n";
  finished = ScanFinishedLines(second, "out");
  ASSERT_TRUE(finished.ok());
  EXPECT_EQ(AnsweredLines(input, *finished, OutputLineInText(second)).value(),
            (std::vector<bool>{true, false, false, false}));
}

// Only 16 bytes are kept per output line (a hash of its custom_id and its offset): a hash match is checked
// against the line itself, so an id that merely shares a hash with an answered one is not answered.
TEST(AnsweredLines, AHashMatchIsCheckedAgainstTheLineItself) {
  const std::string text = Line("a", 1) + "\n" + Line("b", 2) + "\n";
  absl::StatusOr<FinishedLines> finished = ScanFinishedLines(text, "out");
  ASSERT_TRUE(finished.ok());
  // Give "b"'s line the hash of "zzz", as a collision would.
  for (FinishedLines::Line& line : finished->lines) {
    if (line.offset > 0) line.id_hash = FinishedIdHash("zzz");
  }
  std::sort(finished->lines.begin(), finished->lines.end());
  EXPECT_FALSE(IsAnswered(*finished, OutputLineInText(text), "zzz", 5, false).value());
  EXPECT_TRUE(IsAnswered(*finished, OutputLineInText(text), "a", 1, false).value());
  EXPECT_FALSE(IsAnswered(*finished, OutputLineInText(text), "b", 2, false).value())
      << "its hash is no longer in the index";
}

// --resume over error lines: every form FormatResultLine writes (HTTP 400, 500 and 503 responses, a
// cancelled request's null response) and the form older ringmoe versions wrote for every failure
// ("response": null, "error": {code, message, param}) answer their requests; only custom_id and id are read.
TEST(AnsweredLines, ErrorLinesOfEveryFormAnswerTheirRequests) {
  Result nan_logits, no_memory, cancelled;
  nan_logits.status = absl::InternalError("request 'nan': the model's logits are NaN at generated token 1");
  no_memory.status = absl::ResourceExhaustedError("request 'oom': needs 9000 tokens of KV cache");
  cancelled.status = absl::CancelledError("request 'stop' cancelled while running");
  const BatchLine bad = ParseBatchLine(R"({"custom_id": "bad", "prompt": "x", "max_tokens": 0})", 1);
  const BatchLine not_json = ParseBatchLine(R"({"custom_id": )", 2);
  const std::vector<std::string> written = {
      FormatResultLine(bad, nullptr, "m", "batch_req_r_1", 0),
      FormatResultLine(not_json, nullptr, "m", "batch_req_r_2", 0),
      FormatResultLine(Input("nan", 3), &nan_logits, "m", "batch_req_r_3", 0),
      FormatResultLine(Input("oom", 4), &no_memory, "m", "batch_req_r_4", 0),
      FormatResultLine(Input("stop", 5), &cancelled, "m", "batch_req_r_5", 0),
      // An older ringmoe's error line.
      R"({"id": "batch_req_r_6", "custom_id": "old", "response": null, "error": {"code": "invalid_request", )"
      R"("message": "line 6 (custom_id 'old'): field 'max_tokens' must be an integer >= 1, got 0", "param": "max_tokens"}})",
  };
  std::string text;
  for (const std::string& line : written) text += line + "\n";
  absl::StatusOr<FinishedLines> finished = ScanFinishedLines(text, "out");
  ASSERT_TRUE(finished.ok()) << finished.status();
  EXPECT_EQ(finished->complete_lines, 6);
  EXPECT_FALSE(finished->dropped_torn_line);
  const std::vector<BatchLine> input = {Input("bad", 1), Input("line-2", 2), Input("nan", 3),
                                        Input("oom", 4), Input("stop", 5),   Input("old", 6),
                                        Input("new", 7)};
  EXPECT_EQ(AnsweredLines(input, *finished, OutputLineInText(text)).value(),
            (std::vector<bool>{true, true, true, true, true, true, false}));
}

class BatchOutputFileTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ringmoe_batch_output_" + std::to_string(::getpid()) + "_" +
                                        testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    std::ofstream(dir_ / "in.jsonl") << "{}\n";
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Read(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }
  fs::path dir_;
};

TEST_F(BatchOutputFileTest, ResumeCutsOnlyWhenWritingBegins) {
  const fs::path path = dir_ / "out.jsonl";
  const std::string whole = Line("a", 1) + "\n";
  std::ofstream(path, std::ios::binary) << whole << "{\"cut";
  {
    absl::StatusOr<std::unique_ptr<BatchOutputFile>> file =
        BatchOutputFile::Open(path.string(), (dir_ / "in.jsonl").string(), ExistingOutput::kResume);
    ASSERT_TRUE(file.ok()) << file.status();
    EXPECT_EQ(Read(path), whole + "{\"cut") << "opening changes nothing";
    ASSERT_TRUE((*file)->BeginWriting().ok());
    (*file)->Append(Line("b", 2));
    EXPECT_TRUE((*file)->Close().ok());
  }
  EXPECT_EQ(Read(path), whole + Line("b", 2) + "\n");
}

TEST_F(BatchOutputFileTest, RefusesNonEmptyOutputsTheInputAndALockedFile) {
  const fs::path path = dir_ / "out.jsonl";
  std::ofstream(path) << "x\n";
  absl::StatusOr<std::unique_ptr<BatchOutputFile>> file =
      BatchOutputFile::Open(path.string(), (dir_ / "in.jsonl").string(), ExistingOutput::kRefuse);
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), absl::StatusCode::kAlreadyExists);

  file = BatchOutputFile::Open((dir_ / "in.jsonl").string(), (dir_ / "in.jsonl").string(),
                               ExistingOutput::kOverwrite);
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument);

  file = BatchOutputFile::Open(path.string(), (dir_ / "in.jsonl").string(), ExistingOutput::kOverwrite);
  ASSERT_TRUE(file.ok()) << file.status();
  absl::StatusOr<std::unique_ptr<BatchOutputFile>> second =
      BatchOutputFile::Open(path.string(), (dir_ / "in.jsonl").string(), ExistingOutput::kOverwrite);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(Read(path), "x\n") << "overwrite empties the file only once writing begins";
}

}  // namespace
}  // namespace ringmoe
