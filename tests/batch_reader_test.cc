// Streaming a batch file (runtime/frontend/batch_reader.h): the custom_id scan finds exactly the repeated ids
// ReadBatchFile finds while keeping only those lines, a later pass marks them the same way, and a file that
// changes between passes is an error, not a silently different job.
#include "runtime/frontend/batch_reader.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "runtime/frontend/batch_io.h"

namespace ringmoe {
namespace {

namespace fs = std::filesystem;

class BatchReaderTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ringmoe_batch_reader_" + std::to_string(::getpid()) + "_" +
                                        testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Write(const std::string& text) {
    const std::string path = (dir_ / "in.jsonl").string();
    std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
    return path;
  }
  // Every line a BatchFileReader gives, with its index.
  std::vector<std::pair<int64_t, BatchLine>> ReadAll(const std::string& path, const CustomIdScan& scan,
                                                     absl::Status* status) {
    std::vector<std::pair<int64_t, BatchLine>> lines;
    absl::StatusOr<std::unique_ptr<BatchFileReader>> reader = BatchFileReader::Open(path, scan);
    if (!reader.ok()) {
      *status = reader.status();
      return lines;
    }
    BatchLine line;
    int64_t index = 0;
    while ((*reader)->Next(&line, &index)) lines.emplace_back(index, std::move(line));
    *status = (*reader)->status();
    return lines;
  }
  fs::path dir_;
};

// The same lines, errors and duplicate messages as ReadBatchFile, which holds the whole file.
TEST_F(BatchReaderTest, AStreamedPassReadsWhatReadBatchFileReads) {
  const std::string text =
      "\xEF\xBB\xBF{\"custom_id\": \"a\", \"prompt\": [1]}\r\n"
      "\n"
      "{\"custom_id\": \"b\", \"prompt\": [2]}\n"
      "not json\n"
      "{\"custom_id\": \"a\", \"prompt\": [3]}\n"
      "{\"custom_id\": \"line-4\", \"prompt\": [4]}\n"  // the fallback id of line 4: repeated, not a
                                                        // duplicate
      "{\"custom_id\": \"b\", \"prompt\": \"bad\", \"max_tokens\": 0}\n"  // repeated but already bad
      "{\"custom_id\": \"a\", \"prompt\": [5]}";                          // no final newline
  const std::string path = Write(text);
  absl::StatusOr<CustomIdScan> scan = ScanCustomIds(path);
  ASSERT_TRUE(scan.ok()) << scan.status();
  EXPECT_EQ(scan->non_blank_lines, 7);
  EXPECT_EQ(scan->first_line_of_duplicate.size(), 3u);  // lines 5, 7 and 8
  EXPECT_EQ(scan->first_line_of_duplicate.at(5), 1);
  EXPECT_EQ(scan->first_line_of_duplicate.at(7), 3);
  EXPECT_EQ(scan->first_line_of_duplicate.at(8), 1);
  for (int line : {1, 3, 4, 5, 6, 7, 8}) EXPECT_TRUE(scan->IdIsRepeated(line)) << line;

  absl::Status status;
  std::vector<std::pair<int64_t, BatchLine>> streamed = ReadAll(path, *scan, &status);
  ASSERT_TRUE(status.ok()) << status;
  std::istringstream in(text);
  absl::StatusOr<std::vector<BatchLine>> held = ReadBatchFile(in, "memory");
  ASSERT_TRUE(held.ok()) << held.status();
  ASSERT_EQ(streamed.size(), held->size());
  for (size_t i = 0; i < held->size(); ++i) {
    const BatchLine& a = streamed[i].second;
    const BatchLine& b = (*held)[i];
    EXPECT_EQ(streamed[i].first, static_cast<int64_t>(i));
    EXPECT_EQ(a.line_number, b.line_number);
    EXPECT_EQ(a.custom_id, b.custom_id);
    EXPECT_EQ(a.request.status(), b.request.status()) << i;
    if (a.request.ok() && b.request.ok()) EXPECT_EQ(a.request->prompt_ids, b.request->prompt_ids);
  }
  EXPECT_NE(std::string(streamed[3].second.request.status().message()).find("also on line 1"),
            std::string::npos)
      << streamed[3].second.request.status();
}

TEST_F(BatchReaderTest, UniqueIdsKeepNothing) {
  std::string text;
  for (int i = 0; i < 5000; ++i) text += "{\"custom_id\": \"r" + std::to_string(i) + "\", \"prompt\": [1]}\n";
  absl::StatusOr<CustomIdScan> scan = ScanCustomIds(Write(text));
  ASSERT_TRUE(scan.ok()) << scan.status();
  EXPECT_EQ(scan->non_blank_lines, 5000);
  EXPECT_TRUE(scan->first_line_of_duplicate.empty());
  EXPECT_TRUE(scan->repeated_id_lines.empty());
}

TEST_F(BatchReaderTest, AFileChangedAfterTheScanIsAnError) {
  const std::string path =
      Write("{\"custom_id\": \"a\", \"prompt\": [1]}\n{\"custom_id\": \"b\", \"prompt\": [1]}\n");
  absl::StatusOr<CustomIdScan> scan = ScanCustomIds(path);
  ASSERT_TRUE(scan.ok()) << scan.status();
  // Changed before a pass opens it: refused at once.
  std::ofstream(path, std::ios::binary | std::ios::app) << "{\"custom_id\": \"c\", \"prompt\": [1]}\n";
  absl::Status status;
  ReadAll(path, *scan, &status);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_NE(std::string(status.message()).find(path), std::string::npos) << status;

  // Changed while a pass reads it (a line fewer than the scan counted): the end of the pass is an error.
  Write("{\"custom_id\": \"a\", \"prompt\": [1]}\n{\"custom_id\": \"b\", \"prompt\": [1]}\n");
  scan = ScanCustomIds(path);
  ASSERT_TRUE(scan.ok());
  CustomIdScan lying = *scan;
  lying.non_blank_lines = 3;
  std::vector<std::pair<int64_t, BatchLine>> lines = ReadAll(path, lying, &status);
  EXPECT_EQ(lines.size(), 2u);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_NE(std::string(status.message()).find("changed while the job ran"), std::string::npos) << status;
}

TEST_F(BatchReaderTest, NotARegularFileIsRefusedBeforeItIsOpened) {
  const std::string fifo = (dir_ / "fifo").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  absl::StatusOr<CustomIdScan> scan = ScanCustomIds(fifo);
  EXPECT_EQ(scan.status().code(), absl::StatusCode::kInvalidArgument) << scan.status();
  EXPECT_EQ(ScanCustomIds((dir_ / "missing").string()).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace ringmoe
