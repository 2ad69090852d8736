// The bad-input corpus, request side (issue 21): every bad request line (tests/data/bad_inputs/
// request_lines.txt, plus the cases too large to keep there) is an error of its own line that names what is
// wrong; bad files (empty, blank, BOM, CRLF, duplicates, a 50 MB line) read without a crash; and the whole
// corpus through a real `ringmoe run` gives exactly one output line per input line, no crash, no hang.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "runtime/frontend/batch_io.h"
#include "tests/testing/output_lines.h"

namespace ringmoe {
namespace {

using ::ringmoe::testing::ErrorOf;
using ::ringmoe::testing::Succeeded;

namespace fs = std::filesystem;
const std::string kCorpus = std::string(RINGMOE_SOURCE_DIR) + "/tests/data/bad_inputs/request_lines.txt";
const std::string kTinyModel = std::string(RINGMOE_SOURCE_DIR) + "/tests/data/models/tiny-qwen3-moe";

struct Case {
  int corpus_line;
  std::string expect;  // a substring the error message must contain
  std::string line;    // the request line, escapes decoded
};

// "\xNN" is byte NN; every other byte is itself.
std::string Unescape(const std::string& text) {
  std::string bytes;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 3 < text.size() + 0 && text[i + 1] == 'x' && std::isxdigit(text[i + 2]) &&
        std::isxdigit(text[i + 3])) {
      bytes.push_back(static_cast<char>(std::stoi(text.substr(i + 2, 2), nullptr, 16)));
      i += 3;
    } else {
      bytes.push_back(text[i]);
    }
  }
  return bytes;
}

std::vector<Case> LoadCorpus() {
  std::ifstream in(kCorpus, std::ios::binary);
  EXPECT_TRUE(in.is_open()) << kCorpus;
  std::vector<Case> cases;
  int number = 0;
  for (std::string text; std::getline(in, text);) {
    ++number;
    if (text.empty() || text[0] == '#') continue;
    const size_t tab = text.find('\t');
    EXPECT_NE(tab, std::string::npos) << kCorpus << ":" << number;
    if (tab == std::string::npos) continue;
    cases.push_back({number, text.substr(0, tab), Unescape(text.substr(tab + 1))});
  }
  return cases;
}

// The cases too large for the corpus file.
std::vector<Case> GeneratedCases() {
  std::vector<Case> cases;
  cases.push_back({0, "nested deeper", std::string(100000, '[')});
  std::string deep_object;
  for (int i = 0; i < 50000; ++i) deep_object += "{\"a\":";
  cases.push_back({0, "nested deeper", deep_object});
  // The crash of issue 21: 80,000 nested brackets in custom_id.
  cases.push_back(
      {0, "nested deeper",
       "{\"custom_id\": " + std::string(80000, '[') + std::string(80000, ']') + ", \"prompt\": \"x\"}"});
  cases.push_back({0, "number overflow",
                   "{\"custom_id\": \"long-prompt-list\", \"prompt\": [" + std::string(1 << 20, '1') + "]}"});
  return cases;
}

std::string Lowercase(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

TEST(BadRequestLines, EveryCaseIsAClearErrorOfItsOwnLine) {
  std::vector<Case> cases = LoadCorpus();
  ASSERT_GE(cases.size(), 150u) << "the corpus file holds the bulk of the cases";
  for (Case& generated : GeneratedCases()) cases.push_back(std::move(generated));
  for (const Case& bad : cases) {
    const std::string where = bad.corpus_line > 0
                                  ? "request_lines.txt:" + std::to_string(bad.corpus_line)
                                  : "generated case of " + std::to_string(bad.line.size()) + " bytes";
    const BatchLine parsed = ParseBatchLine(bad.line, 41);
    ASSERT_FALSE(parsed.request.ok()) << where << ": accepted " << bad.line.substr(0, 200);
    const std::string message(parsed.request.status().message());
    EXPECT_TRUE(absl::IsInvalidArgument(parsed.request.status())) << where << ": " << message;
    EXPECT_NE(message.find("line 41"), std::string::npos)
        << where << ": the message names no line: " << message;
    EXPECT_NE(Lowercase(message).find(Lowercase(bad.expect)), std::string::npos)
        << where << ": the message does not say '" << bad.expect << "': " << message;
    EXPECT_LT(message.size(), 2000u) << where << ": a message must stay readable";
    // Its output line is valid JSON whatever bytes the input held.
    const std::string output = FormatResultLine(parsed, nullptr, "m", "batch_req_x_41", 0);
    const nlohmann::json reparsed = nlohmann::json::parse(output, nullptr, false);
    ASSERT_FALSE(reparsed.is_discarded()) << where << ": output not JSON: " << output.substr(0, 200);
    EXPECT_EQ(reparsed["response"]["status_code"], 400) << where;
    EXPECT_EQ(ErrorOf(reparsed)["type"], "invalid_request_error") << where;
    EXPECT_EQ(ErrorOf(reparsed)["code"], "invalid_request") << where;
  }
}

absl::StatusOr<std::vector<BatchLine>> ReadText(const std::string& text) {
  std::istringstream in(text);
  return ReadBatchFile(in, "test.jsonl");
}

TEST(BadBatchFiles, EmptyBlankBomCrlfAndDuplicatesAreReadAsDocumented) {
  for (const std::string empty :
       {"", "\n", "\n\n\n", "   \n\t\n", "\r\n", "\xEF\xBB\xBF", "\xEF\xBB\xBF\n \n"}) {
    absl::StatusOr<std::vector<BatchLine>> lines = ReadText(empty);
    ASSERT_TRUE(lines.ok()) << lines.status();
    EXPECT_TRUE(lines->empty()) << "a blank file has no requests";
  }
  const std::string good = R"({"custom_id": "a", "prompt": [1, 2]})";
  absl::StatusOr<std::vector<BatchLine>> crlf =
      ReadText("\xEF\xBB\xBF" + good + "\r\n\r\n" + R"({"custom_id": "b", "prompt": "x"})" + "\r\n" + good);
  ASSERT_TRUE(crlf.ok()) << crlf.status();
  ASSERT_EQ(crlf->size(), 3u);
  EXPECT_TRUE((*crlf)[0].request.ok()) << (*crlf)[0].request.status();
  EXPECT_TRUE((*crlf)[1].request.ok()) << (*crlf)[1].request.status();
  EXPECT_EQ((*crlf)[1].line_number, 3);
  ASSERT_FALSE((*crlf)[2].request.ok());
  EXPECT_NE((*crlf)[2].request.status().message().find("also on line 1"), std::string::npos)
      << (*crlf)[2].request.status();
}

// A 50 MB line (over the 16 MiB limit) between two good lines: an error line of its own, read without
// holding it, and the lines around it are intact.
TEST(BadBatchFiles, AFiftyMegabyteLineIsAnErrorOfItsOwn) {
  std::string text = R"({"custom_id": "before", "prompt": [1]})"
                     "\n";
  text += R"({"custom_id": "huge", "prompt": ")" + std::string(50 << 20, 'a') + "\"}\n";
  text += R"({"custom_id": "after", "prompt": [2]})"
          "\n";
  absl::StatusOr<std::vector<BatchLine>> lines = ReadText(text);
  text.clear();
  text.shrink_to_fit();
  ASSERT_TRUE(lines.ok()) << lines.status();
  ASSERT_EQ(lines->size(), 3u);
  EXPECT_TRUE((*lines)[0].request.ok());
  ASSERT_FALSE((*lines)[1].request.ok());
  EXPECT_NE((*lines)[1].request.status().message().find("longer than"), std::string::npos)
      << (*lines)[1].request.status();
  EXPECT_EQ((*lines)[1].custom_id, "line-2");
  EXPECT_TRUE((*lines)[2].request.ok());
  EXPECT_EQ((*lines)[2].custom_id, "after");
}

// Everything above through the real command: one output line per input line (no line lost, none twice),
// every bad line an error naming its problem, the good lines answered, exit 0.
TEST(BadBatchFiles, TheWholeCorpusThroughRingmoeRunLosesNoLine) {
  const fs::path dir = fs::temp_directory_path() / ("ringmoe_bad_requests_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::vector<Case> cases = LoadCorpus();
  for (Case& generated : GeneratedCases()) cases.push_back(std::move(generated));
  std::string input;
  std::map<int, std::string> expect_by_line;
  int line_number = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    input += cases[i].line + "\n";
    expect_by_line[++line_number] = cases[i].expect;
    if (i % 40 == 0) {  // good requests between the bad ones
      input +=
          "{\"custom_id\": \"good-" + std::to_string(i) + "\", \"prompt\": [1, 2, 3], \"max_tokens\": 2}\n";
      ++line_number;
    }
  }
  input += std::string(50 << 20, 'x') + "\n";  // the 50 MB line, not even JSON
  expect_by_line[++line_number] = "longer than";
  const fs::path input_path = dir / "in.jsonl", output_path = dir / "out.jsonl";
  std::ofstream(input_path, std::ios::binary) << input;
  input.clear();
  input.shrink_to_fit();

  const std::string binary = std::string(RINGMOE_BINARY_DIR) + "/ringmoe";
  const std::string command = binary + " run --model " + kTinyModel + " --input " + input_path.string() +
                              " --output " + output_path.string() +
                              " --device cpu --no-plan --quiet --threads 2 --cpu-dtype f32 2>" +
                              (dir / "stderr.txt").string();
  const int status = std::system(command.c_str());
  std::ifstream stderr_file(dir / "stderr.txt");
  std::stringstream stderr_text;
  stderr_text << stderr_file.rdbuf();
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << ": " << stderr_text.str();

  std::ifstream out(output_path, std::ios::binary);
  std::map<int, int> seen;  // input line -> output lines
  int good = 0;
  for (std::string text; std::getline(out, text);) {
    const nlohmann::json line = nlohmann::json::parse(text, nullptr, false);
    ASSERT_FALSE(line.is_discarded()) << text.substr(0, 200);
    const std::string id = line["id"];
    const int input_line = std::stoi(id.substr(id.rfind('_') + 1));
    ++seen[input_line];
    if (Succeeded(line)) {
      ++good;
      continue;
    }
    auto expect = expect_by_line.find(input_line);
    ASSERT_NE(expect, expect_by_line.end()) << "a good line failed: " << text.substr(0, 300);
    const std::string message = ErrorOf(line)["message"];
    EXPECT_NE(Lowercase(message).find(Lowercase(expect->second)), std::string::npos)
        << "line " << input_line << ": " << message.substr(0, 300);
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(line_number)) << "every input line has its output line";
  for (const auto& [input_line, count] : seen) EXPECT_EQ(count, 1) << "line " << input_line;
  EXPECT_EQ(good, line_number - static_cast<int>(expect_by_line.size()));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace ringmoe
