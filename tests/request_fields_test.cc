// Unknown request fields: an error naming the field, or with --lenient one warning per field name.
#include "runtime/frontend/request_fields.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

#include "runtime/frontend/batch_io.h"

namespace ringmoe {
namespace {

TEST(RequestFields, MisspelledFieldsAreRecorded) {
  BatchLine line =
      ParseBatchLine(R"({"custom_id": "a", "prompt": "x", "max_token": 100, "temprature": 0})", 1);
  ASSERT_TRUE(line.request.ok()) << line.request.status();
  EXPECT_EQ(line.unknown_fields, (std::vector<std::string>{"max_token", "temprature"}));
  BatchLine wrapped = ParseBatchLine(
      R"({"custom_id": "b", "url": "/v1/chat/completions", "extra": 1, "body": {"messages": [{"role": "user",
          "content": "x"}], "tools": [], "tool_choice": "auto", "toolz": []}})",
      2);
  ASSERT_TRUE(wrapped.request.ok()) << wrapped.request.status();
  EXPECT_EQ(wrapped.unknown_fields, (std::vector<std::string>{"extra", "toolz"}));
  BatchLine clean = ParseBatchLine(
      R"({"custom_id": "c", "prompt": "x", "model": "m", "user": "u", "presence_penalty": 0, "suffix": null})",
      3);
  EXPECT_TRUE(clean.unknown_fields.empty());
  // A chat-only field on a completions line is unknown there.
  BatchLine misplaced = ParseBatchLine(R"({"custom_id": "d", "prompt": "x", "tools": []})", 4);
  EXPECT_EQ(misplaced.unknown_fields, (std::vector<std::string>{"tools"}));
}

TEST(RequestFields, StrictByDefaultLenientOnRequest) {
  std::vector<BatchLine> lines;
  lines.push_back(ParseBatchLine(R"({"custom_id": "a", "prompt": "x", "max_token": 100})", 1));
  lines.push_back(ParseBatchLine(R"({"custom_id": "b", "prompt": "x", "max_token": 5, "temprature": 0})", 2));
  lines.push_back(ParseBatchLine(R"({"custom_id": "c", "prompt": "x"})", 3));
  std::vector<BatchLine> strict = lines;
  ApplyUnknownFieldPolicy(&strict, /*lenient=*/false, nullptr);
  ASSERT_FALSE(strict[0].request.ok());
  EXPECT_NE(std::string(strict[0].request.status().message())
                .find("line 1 (custom_id 'a'): field 'max_token' is not a known request field"),
            std::string::npos)
      << strict[0].request.status();
  EXPECT_NE(std::string(strict[1].request.status().message()).find("(nor are 'temprature')"),
            std::string::npos);
  EXPECT_EQ(ErrorCodeFor(strict[0].request.status()), "invalid_request");
  EXPECT_TRUE(strict[2].request.ok());

  std::FILE* warnings = std::tmpfile();
  ASSERT_NE(warnings, nullptr);
  ApplyUnknownFieldPolicy(&lines, /*lenient=*/true, warnings);
  EXPECT_TRUE(lines[0].request.ok() && lines[1].request.ok() && lines[2].request.ok());
  std::rewind(warnings);
  std::string text(4096, '\0');
  text.resize(std::fread(text.data(), 1, text.size(), warnings));
  std::fclose(warnings);
  EXPECT_EQ(text,
            "ringmoe run: warning: ignoring unknown request field 'max_token' (first on line 1)\n"
            "ringmoe run: warning: ignoring unknown request field 'temprature' (first on line 2)\n");
}

}  // namespace
}  // namespace ringmoe
