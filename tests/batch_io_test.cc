#include "runtime/frontend/batch_io.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace ringmoe {
namespace {

using nlohmann::json;

std::string Message(const absl::StatusOr<Request>& request) {
  return std::string(request.status().message());
}

// ---------------------------------------------------------------------------------------------------------
// Accepted forms and defaults.

TEST(ParseBatchLine, FullFormReadsEveryField) {
  BatchLine line = ParseBatchLine(
      R"({"custom_id": "req-1", "method": "POST", "url": "/v1/completions", "body": {"model": "m",
          "prompt": "Hello", "max_tokens": 7, "temperature": 0.5, "top_p": 0.9, "seed": 42,
          "stop": ["\n", "END"], "logprobs": 1, "stop_token_ids": [2, 3], "ignore_eos": true}})",
      4);
  EXPECT_EQ(line.line_number, 4);
  EXPECT_EQ(line.custom_id, "req-1");
  ASSERT_TRUE(line.request.ok()) << line.request.status();
  const Request& request = *line.request;
  EXPECT_EQ(request.id, "req-1");
  EXPECT_EQ(request.prompt_text, "Hello");
  EXPECT_TRUE(request.prompt_ids.empty());
  EXPECT_EQ(request.max_tokens, 7);
  EXPECT_FLOAT_EQ(request.sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(request.sampling.top_p, 0.9f);
  EXPECT_EQ(request.sampling.seed, 42u);
  EXPECT_EQ(request.stop, (std::vector<std::string>{"\n", "END"}));
  EXPECT_TRUE(request.logprobs);
  EXPECT_EQ(request.stop_token_ids, (std::vector<int32_t>{2, 3}));
  EXPECT_TRUE(request.ignore_eos);
}

TEST(ParseBatchLine, ShortFormUsesDefaults) {
  BatchLine line = ParseBatchLine(R"({"custom_id": "short", "prompt": [1, 2, 3]})", 1);
  ASSERT_TRUE(line.request.ok()) << line.request.status();
  const Request& request = *line.request;
  EXPECT_EQ(request.prompt_ids, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_TRUE(request.prompt_text.empty());
  EXPECT_EQ(request.max_tokens, 16);
  EXPECT_FLOAT_EQ(request.sampling.temperature, 1.0f);  // OpenAI's default, not greedy.
  EXPECT_FLOAT_EQ(request.sampling.top_p, 1.0f);
  EXPECT_EQ(request.sampling.seed, DefaultSeedForCustomId("short"));
  EXPECT_TRUE(request.stop.empty());
  EXPECT_TRUE(request.stop_token_ids.empty());
  EXPECT_FALSE(request.logprobs);
  EXPECT_FALSE(request.ignore_eos);
}

TEST(ParseBatchLine, ShortFormReadsTopLevelFields) {
  BatchLine line = ParseBatchLine(
      R"({"custom_id": "s", "prompt": "x", "max_tokens": 3, "temperature": 0, "stop": "###", "seed": -1})",
      1);
  ASSERT_TRUE(line.request.ok()) << line.request.status();
  EXPECT_EQ(line.request->max_tokens, 3);
  EXPECT_FLOAT_EQ(line.request->sampling.temperature, 0.0f);
  EXPECT_EQ(line.request->stop, std::vector<std::string>{"###"});
  EXPECT_EQ(line.request->sampling.seed, ~uint64_t{0});  // -1 wraps to the same 64-bit pattern.
}

TEST(ParseBatchLine, DefaultSeedIsAStableHashOfTheCustomId) {
  // FNV-1a 64 reference values: the seed must never change between releases, or reruns stop reproducing.
  EXPECT_EQ(DefaultSeedForCustomId(""), 14695981039346656037ull);
  EXPECT_EQ(DefaultSeedForCustomId("a"), 0xaf63dc4c8601ec8cull);
  EXPECT_NE(DefaultSeedForCustomId("req-1"), DefaultSeedForCustomId("req-2"));
  BatchLine first = ParseBatchLine(R"({"custom_id": "req-1", "prompt": "x"})", 1);
  BatchLine again = ParseBatchLine(R"({"custom_id": "req-1", "prompt": "y", "seed": null})", 9);
  ASSERT_TRUE(first.request.ok() && again.request.ok());
  EXPECT_EQ(first.request->sampling.seed, again.request->sampling.seed);
}

TEST(ParseBatchLine, IgnoresHarmlessOpenAiFieldsAndNulls) {
  BatchLine line = ParseBatchLine(
      R"({"custom_id": "c", "method": "POST", "url": "/v1/completions", "body": {"prompt": "x",
          "model": "gpt", "n": 1, "best_of": 1, "echo": false, "stream": false, "user": "u",
          "presence_penalty": 0, "temperature": null, "top_p": null, "stop": null, "logprobs": null,
          "max_tokens": null, "suffix": null}})",
      1);
  ASSERT_TRUE(line.request.ok()) << line.request.status();
  EXPECT_EQ(line.request->max_tokens, 16);
  EXPECT_FLOAT_EQ(line.request->sampling.temperature, 1.0f);
  EXPECT_FALSE(line.request->logprobs);
}

TEST(ParseBatchLine, LogprobsForms) {
  struct Case {
    const char* value;
    bool on;
  };
  for (const Case& c : {Case{"true", true}, Case{"false", false}, Case{"null", false}, Case{"0", true},
                        Case{"1", true}, Case{"5", true}}) {
    BatchLine line =
        ParseBatchLine(absl::StrCat(R"({"custom_id": "l", "prompt": "x", "logprobs": )", c.value, "}"), 1);
    ASSERT_TRUE(line.request.ok()) << c.value << ": " << line.request.status();
    EXPECT_EQ(line.request->logprobs, c.on) << c.value;
  }
}

TEST(ParseBatchLine, FourStopStringsAreAllowed) {
  BatchLine line = ParseBatchLine(R"({"custom_id": "s", "prompt": "x", "stop": ["a", "b", "c", "d"]})", 1);
  ASSERT_TRUE(line.request.ok()) << line.request.status();
  EXPECT_EQ(line.request->stop.size(), 4u);
}

// ---------------------------------------------------------------------------------------------------------
// Bad fields: each error names the line, the custom_id and the field.

struct BadField {
  const char* fields;  // Spliced into {"custom_id": "bad-7", "prompt": "x", <fields>} unless prompt given.
  const char* field;   // The field the message must name.
  const char* explanation;  // A fragment the message must contain.
};

class BadFieldTest : public ::testing::TestWithParam<BadField> {};

TEST_P(BadFieldTest, NamesLineCustomIdAndField) {
  const BadField& bad = GetParam();
  std::string fields = bad.fields;
  std::string text =
      fields.find("\"prompt\"") != std::string::npos || fields.find("\"body\"") != std::string::npos
          ? absl::StrCat(R"({"custom_id": "bad-7", )", fields, "}")
          : absl::StrCat(R"({"custom_id": "bad-7", "prompt": "x", )", fields, "}");
  BatchLine line = ParseBatchLine(text, 7);
  EXPECT_EQ(line.custom_id, "bad-7");
  ASSERT_FALSE(line.request.ok()) << text;
  EXPECT_EQ(line.request.status().code(), absl::StatusCode::kInvalidArgument);
  std::string message = Message(line.request);
  EXPECT_NE(message.find("line 7"), std::string::npos) << message;
  EXPECT_NE(message.find("custom_id 'bad-7'"), std::string::npos) << message;
  EXPECT_NE(message.find(absl::StrCat("field '", bad.field, "'")), std::string::npos) << message;
  EXPECT_NE(message.find(bad.explanation), std::string::npos) << message;
}

INSTANTIATE_TEST_SUITE_P(
    Fields, BadFieldTest,
    ::testing::Values(
        BadField{R"("method": "GET")", "method", "POST"},
        BadField{R"("url": "/v1/chat/completions")", "prompt", "a chat request gives 'messages'"},
        BadField{R"("url": "/v1/chat/completions", "body": {"messages": []})", "messages", "non-empty array"},
        BadField{R"("url": "/v1/chat/completions", "body": {"messages": [{"content": "x"}]})", "messages",
                 "string 'role'"},
        BadField{R"("prompt": "x", "max_tokens": 3, "max_completion_tokens": 4)", "max_completion_tokens",
                 "is 4 but 'max_tokens' is 3"},
        BadField{R"("url": "/v1/embeddings")", "url", "/v1/completions"},
        BadField{R"("body": [1])", "body", "must be an object"},
        BadField{R"("body": {"prompt": "x"}, "prompt": "y")", "prompt", "use one form"},
        BadField{R"("body": {"max_tokens": 5})", "prompt", "is missing"},
        BadField{R"("prompt": "")", "prompt", "empty string"},
        BadField{R"("prompt": [])", "prompt", "empty array"},
        BadField{R"("prompt": [1, -2])", "prompt", "element 1"},
        BadField{R"("prompt": [1, 2.5])", "prompt", "element 1"},
        BadField{R"("prompt": [1, "a"])", "prompt", "element 1"},
        BadField{R"("prompt": [3000000000])", "prompt", "element 0"},
        BadField{R"("prompt": ["a", "b"])", "prompt", "one prompt per request"},
        BadField{R"("prompt": [[1], [2]])", "prompt", "one prompt per request"},
        BadField{R"("prompt": {"text": "x"})", "prompt", "string or an array"},
        BadField{R"("prompt": 5)", "prompt", "string or an array"},
        BadField{R"("max_tokens": 0)", "max_tokens", ">= 1"},
        BadField{R"("max_tokens": -3)", "max_tokens", ">= 1"},
        BadField{R"("max_tokens": "16")", "max_tokens", "integer"},
        BadField{R"("max_tokens": 1.5)", "max_tokens", "integer"},
        BadField{R"("max_tokens": 99999999999)", "max_tokens", "integer"},
        BadField{R"("temperature": -0.1)", "temperature", "[0, 2]"},
        BadField{R"("temperature": 2.5)", "temperature", "[0, 2]"},
        BadField{R"("temperature": "hot")", "temperature", "number"},
        BadField{R"("top_p": 0)", "top_p", "(0, 1]"}, BadField{R"("top_p": 1.01)", "top_p", "(0, 1]"},
        BadField{R"("top_p": true)", "top_p", "number"}, BadField{R"("seed": "x")", "seed", "integer"},
        BadField{R"("seed": 1.5)", "seed", "integer"}, BadField{R"("stop": "")", "stop", "empty string"},
        BadField{R"("stop": ["a", ""])", "stop", "element 1"},
        BadField{R"("stop": ["a", 3])", "stop", "element 1"},
        BadField{R"("stop": ["a", "b", "c", "d", "e"])", "stop", "at most 4"},
        BadField{R"("stop": 7)", "stop", "string or an array"},
        BadField{R"("logprobs": 21)", "logprobs", "0..20"},
        BadField{R"("logprobs": -1)", "logprobs", "0..20"},
        BadField{R"("logprobs": "yes")", "logprobs", "0..20"},
        BadField{R"("stop_token_ids": 2)", "stop_token_ids", "array"},
        BadField{R"("stop_token_ids": [2, -1])", "stop_token_ids", "element 1"},
        BadField{R"("stop_token_ids": [2.5])", "stop_token_ids", "element 0"},
        BadField{R"("ignore_eos": "yes")", "ignore_eos", "true or false"},
        BadField{R"("n": 129)", "n", "1..128"}, BadField{R"("n": 0)", "n", "1..128"},
        BadField{R"("best_of": 3)", "best_of", "not supported"},
        BadField{R"("echo": "yes")", "echo", "true or false"},
        BadField{R"("stream": true)", "stream", "not supported"}));

TEST(ParseBatchLine, MissingPromptInShortForm) {
  BatchLine line = ParseBatchLine(R"({"custom_id": "p", "max_tokens": 5})", 2);
  ASSERT_FALSE(line.request.ok());
  EXPECT_EQ(Message(line.request), "line 2 (custom_id 'p'): field 'prompt' is missing");
}

TEST(ParseBatchLine, FieldErrorsInsideTheBodyAreFound) {
  BatchLine line = ParseBatchLine(
      R"({"custom_id": "b", "method": "POST", "url": "/v1/completions", "body": {"prompt": "x", "top_p": 2}})",
      3);
  ASSERT_FALSE(line.request.ok());
  EXPECT_NE(Message(line.request).find("line 3 (custom_id 'b'): field 'top_p'"), std::string::npos)
      << Message(line.request);
}

// Whole-line problems: the custom_id cannot be read, so the line number stands in for it.
TEST(ParseBatchLine, NotJson) {
  BatchLine line = ParseBatchLine(R"({"custom_id": "x", "prompt": )", 5);
  EXPECT_EQ(line.custom_id, "line-5");
  ASSERT_FALSE(line.request.ok());
  EXPECT_NE(Message(line.request).find("line 5: not valid JSON"), std::string::npos) << Message(line.request);
}

TEST(ParseBatchLine, NotAnObject) {
  BatchLine line = ParseBatchLine(R"(["custom_id", "x"])", 6);
  EXPECT_EQ(line.custom_id, "line-6");
  ASSERT_FALSE(line.request.ok());
  EXPECT_EQ(Message(line.request), "line 6: expected a JSON object, got array");
}

TEST(ParseBatchLine, CustomIdMissingEmptyOrNotAString) {
  BatchLine missing = ParseBatchLine(R"({"prompt": "x"})", 8);
  EXPECT_EQ(missing.custom_id, "line-8");
  ASSERT_FALSE(missing.request.ok());
  EXPECT_EQ(Message(missing.request), "line 8: field 'custom_id' is missing");

  BatchLine number = ParseBatchLine(R"({"custom_id": 12, "prompt": "x"})", 9);
  EXPECT_EQ(number.custom_id, "line-9");
  ASSERT_FALSE(number.request.ok());
  EXPECT_EQ(Message(number.request), "line 9: field 'custom_id' must be a string, got 12");

  BatchLine empty = ParseBatchLine(R"({"custom_id": "", "prompt": "x"})", 10);
  EXPECT_EQ(empty.custom_id, "line-10");
  ASSERT_FALSE(empty.request.ok());
  EXPECT_EQ(Message(empty.request), "line 10: field 'custom_id' is an empty string");
}

TEST(ParseBatchLine, RejectsLinesOverSixteenMiB) {
  std::string line =
      absl::StrCat(R"({"custom_id": "big", "prompt": ")", std::string(kMaxBatchLineBytes, 'a'), "\"}");
  BatchLine parsed = ParseBatchLine(line, 3);
  ASSERT_FALSE(parsed.request.ok());
  EXPECT_NE(Message(parsed.request).find("line 3"), std::string::npos);
  EXPECT_NE(Message(parsed.request).find("limit"), std::string::npos) << Message(parsed.request);
}

// ---------------------------------------------------------------------------------------------------------
// Whole files.

TEST(ReadBatchFile, SkipsBlankLinesHandlesCrlfAndAMissingFinalNewline) {
  std::istringstream in(
      "\xEF\xBB\xBF{\"custom_id\": \"a\", \"prompt\": \"x\"}\r\n"
      "\r\n"
      "   \n"
      "{\"custom_id\": \"b\", \"prompt\": [1]}\r\n"
      "{\"custom_id\": \"c\", \"prompt\": \"z\"}");
  absl::StatusOr<std::vector<BatchLine>> lines = ReadBatchFile(in, "memory");
  ASSERT_TRUE(lines.ok()) << lines.status();
  ASSERT_EQ(lines->size(), 3u);
  EXPECT_EQ((*lines)[0].custom_id, "a");
  EXPECT_EQ((*lines)[0].line_number, 1);
  EXPECT_EQ((*lines)[1].custom_id, "b");
  EXPECT_EQ((*lines)[1].line_number, 4);
  EXPECT_EQ((*lines)[2].custom_id, "c");
  EXPECT_EQ((*lines)[2].line_number, 5);
  for (const BatchLine& line : *lines) EXPECT_TRUE(line.request.ok()) << line.request.status();
}

TEST(ReadBatchFile, DuplicateCustomIdFailsOnTheLaterLine) {
  std::istringstream in(
      "{\"custom_id\": \"x\", \"prompt\": \"a\"}\n"
      "{\"custom_id\": \"y\", \"prompt\": \"b\"}\n"
      "{\"custom_id\": \"x\", \"prompt\": \"c\"}\n");
  absl::StatusOr<std::vector<BatchLine>> lines = ReadBatchFile(in, "memory");
  ASSERT_TRUE(lines.ok()) << lines.status();
  ASSERT_EQ(lines->size(), 3u);
  EXPECT_TRUE((*lines)[0].request.ok());
  EXPECT_TRUE((*lines)[1].request.ok());
  ASSERT_FALSE((*lines)[2].request.ok());
  EXPECT_EQ((*lines)[2].custom_id, "x");
  EXPECT_EQ(Message((*lines)[2].request), "line 3: custom_id 'x' also on line 1");
}

TEST(ReadBatchFile, AnOverlongLineFailsAloneAndNumberingContinues) {
  std::string text = "{\"custom_id\": \"a\", \"prompt\": \"x\"}\n";
  text += std::string(kMaxBatchLineBytes + 10, ' ');
  text += "\n{\"custom_id\": \"b\", \"prompt\": \"y\"}\n";
  std::istringstream in(text);
  absl::StatusOr<std::vector<BatchLine>> lines = ReadBatchFile(in, "memory");
  ASSERT_TRUE(lines.ok()) << lines.status();
  ASSERT_EQ(lines->size(), 3u);
  EXPECT_TRUE((*lines)[0].request.ok());
  EXPECT_EQ((*lines)[1].line_number, 2);
  EXPECT_EQ((*lines)[1].custom_id, "line-2");
  ASSERT_FALSE((*lines)[1].request.ok());
  EXPECT_NE(Message((*lines)[1].request).find("limit"), std::string::npos);
  EXPECT_EQ((*lines)[2].line_number, 3);
  EXPECT_TRUE((*lines)[2].request.ok());
}

TEST(ReadBatchFile, BadLinesStayInTheBatch) {
  std::istringstream in("not json\n{\"custom_id\": \"ok\", \"prompt\": \"x\"}\n");
  absl::StatusOr<std::vector<BatchLine>> lines = ReadBatchFile(in, "memory");
  ASSERT_TRUE(lines.ok());
  ASSERT_EQ(lines->size(), 2u);
  EXPECT_FALSE((*lines)[0].request.ok());
  EXPECT_EQ((*lines)[0].custom_id, "line-1");
  EXPECT_TRUE((*lines)[1].request.ok());
}

TEST(ReadBatchFile, ReadsAFileAndNamesAMissingOne) {
  std::string path = ::testing::TempDir() + "/batch_io_test_input.jsonl";
  {
    std::ofstream out(path, std::ios::binary);
    out << "{\"custom_id\": \"f\", \"prompt\": \"x\"}\n\n{\"custom_id\": \"g\", \"prompt\": [5]}\n";
  }
  absl::StatusOr<std::vector<BatchLine>> lines = ReadBatchFile(path);
  ASSERT_TRUE(lines.ok()) << lines.status();
  ASSERT_EQ(lines->size(), 2u);
  EXPECT_EQ((*lines)[1].line_number, 3);
  std::remove(path.c_str());

  std::string missing = ::testing::TempDir() + "/no_such_batch.jsonl";
  absl::StatusOr<std::vector<BatchLine>> none = ReadBatchFile(missing);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(std::string(none.status().message()).find(missing), std::string::npos) << none.status();
}

TEST(ReadBatchFile, EmptyInputIsAnEmptyBatch) {
  std::istringstream in("\n\n");
  absl::StatusOr<std::vector<BatchLine>> lines = ReadBatchFile(in, "memory");
  ASSERT_TRUE(lines.ok());
  EXPECT_TRUE(lines->empty());
}

// ---------------------------------------------------------------------------------------------------------
// Output lines.

Result MakeResult() {
  Result result;
  result.id = "req-1";
  result.prompt_ids = {1, 2, 3};
  result.token_ids = {10, 11};
  result.logprobs = {-0.5f, -1.25f};
  result.token_strings = {"Hel", "lo"};
  result.text = "Hello";
  result.finish_reason = FinishReason::kStop;
  return result;
}

TEST(FormatResultLine, SuccessHasTheExactBatchOutputStructure) {
  BatchLine line = ParseBatchLine(R"({"custom_id": "req-1", "prompt": [1, 2, 3], "logprobs": 1})", 1);
  ASSERT_TRUE(line.request.ok());
  Result result = MakeResult();
  std::string text = FormatResultLine(line, &result, "tiny-moe", "batch_req_run7_1", 1700000000);
  EXPECT_EQ(text.find('\n'), std::string::npos);
  EXPECT_EQ(text.rfind(R"({"id":"batch_req_run7_1","custom_id":"req-1","response":)", 0), 0u) << text;

  json output = json::parse(text);
  ASSERT_TRUE(output.is_object());
  EXPECT_EQ(output.size(), 4u);
  EXPECT_EQ(output["id"], "batch_req_run7_1");
  EXPECT_EQ(output["custom_id"], "req-1");
  EXPECT_TRUE(output["error"].is_null());
  const json& response = output["response"];
  EXPECT_EQ(response.size(), 3u);
  EXPECT_EQ(response["status_code"], 200);
  EXPECT_EQ(response["request_id"], "req_run7_1");
  const json& body = response["body"];
  EXPECT_EQ(body.size(), 6u);
  EXPECT_EQ(body["id"], "cmpl-run7_1");
  EXPECT_EQ(body["object"], "text_completion");
  EXPECT_EQ(body["created"], 1700000000);
  EXPECT_EQ(body["model"], "tiny-moe");
  ASSERT_EQ(body["choices"].size(), 1u);
  const json& choice = body["choices"][0];
  EXPECT_EQ(choice.size(), 5u);
  EXPECT_EQ(choice["index"], 0);
  EXPECT_EQ(choice["text"], "Hello");
  EXPECT_EQ(choice["token_ids"], json::array({10, 11}));
  EXPECT_EQ(choice["finish_reason"], "stop");
  const json& logprobs = choice["logprobs"];
  ASSERT_TRUE(logprobs.is_object());
  EXPECT_EQ(logprobs["tokens"], json::array({"Hel", "lo"}));
  ASSERT_EQ(logprobs["token_logprobs"].size(), 2u);
  EXPECT_DOUBLE_EQ(logprobs["token_logprobs"][0].get<double>(), -0.5);
  EXPECT_DOUBLE_EQ(logprobs["token_logprobs"][1].get<double>(), -1.25);
  const json& usage = body["usage"];
  EXPECT_EQ(usage["prompt_tokens"], 3);
  EXPECT_EQ(usage["completion_tokens"], 2);
  EXPECT_EQ(usage["total_tokens"], 5);
}

TEST(FormatResultLine, LogprobsAreNullWhenNotRequestedAndLengthFinish) {
  BatchLine line = ParseBatchLine(R"({"custom_id": "q", "prompt": "x"})", 1);
  Result result = MakeResult();
  result.logprobs.clear();
  result.token_strings.clear();
  result.finish_reason = FinishReason::kLength;
  json output = json::parse(FormatResultLine(line, &result, "m", "batch_req_1"));
  const json& choice = output["response"]["body"]["choices"][0];
  EXPECT_TRUE(choice["logprobs"].is_null());
  EXPECT_EQ(choice["finish_reason"], "length");
  // Without an explicit time the current one is used.
  EXPECT_GT(output["response"]["body"]["created"].get<int64_t>(), 1600000000);
}

TEST(FormatResultLine, LogprobsKeepTheShortestFloatSpellingAndNullForInfinity) {
  BatchLine line = ParseBatchLine(R"({"custom_id": "q", "prompt": "x", "logprobs": true})", 1);
  Result result = MakeResult();
  result.logprobs = {-0.1f, -std::numeric_limits<float>::infinity()};
  std::string text = FormatResultLine(line, &result, "m", "batch_req_1", 0);
  EXPECT_NE(text.find("\"token_logprobs\":[-0.1,null]"), std::string::npos) << text;
}

TEST(FormatResultLine, InvalidUtf8InTheTextBecomesReplacementCharacters) {
  BatchLine line = ParseBatchLine(R"({"custom_id": "u", "prompt": "x", "logprobs": true})", 1);
  Result result = MakeResult();
  result.text = "ok\xff\xfe!";
  result.token_strings = {"ok\xc3", "!"};  // A token that splits a multi-byte character.
  std::string text = FormatResultLine(line, &result, "m", "batch_req_1", 0);
  json output;
  ASSERT_NO_THROW(output = json::parse(text)) << text;
  const json& choice = output["response"]["body"]["choices"][0];
  EXPECT_EQ(choice["text"], "ok\xEF\xBF\xBD\xEF\xBF\xBD!");
  EXPECT_EQ(choice["logprobs"]["tokens"][0], "ok\xEF\xBF\xBD");
}

// A line that fails validation is written as OpenAI's batch output writes a request its API rejected: an
// HTTP 400 response whose body is the error object, and a null "error".
TEST(FormatResultLine, ParseErrorIsAnHttp400Response) {
  BatchLine line = ParseBatchLine(R"({"custom_id": "e", "prompt": "x", "max_tokens": 0})", 12);
  std::string text = FormatResultLine(line, nullptr, "m", "batch_req_r_12", 0);
  EXPECT_EQ(text,
            R"({"id":"batch_req_r_12","custom_id":"e","response":{"status_code":400,"request_id":"req_r_12",)"
            R"("body":{"error":{"message":")" +
                Message(line.request) +
                R"(","type":"invalid_request_error","param":"max_tokens","code":"invalid_request"}}},)"
                R"("error":null})");
  json output = json::parse(text);
  EXPECT_NE(output["response"]["body"]["error"]["message"].get<std::string>().find("field 'max_tokens'"),
            std::string::npos);
  EXPECT_NE(Message(line.request).find("line 12 (custom_id 'e')"), std::string::npos);
}

// A line that is not JSON, or has no usable custom_id: a 400 line too (OpenAI would refuse the whole file),
// under the line-<N> custom_id; param null for the former, "custom_id" for the latter.
TEST(FormatResultLine, UnreadableLinesAre400WithTheFallbackId) {
  json not_json =
      json::parse(FormatResultLine(ParseBatchLine("{\"custom_id\": ", 3), nullptr, "m", "batch_req_r_3", 0));
  EXPECT_EQ(not_json["custom_id"], "line-3");
  EXPECT_EQ(not_json["response"]["status_code"], 400);
  EXPECT_EQ(not_json["response"]["body"]["error"]["type"], "invalid_request_error");
  EXPECT_TRUE(not_json["response"]["body"]["error"]["param"].is_null());
  EXPECT_TRUE(not_json["error"].is_null());

  json no_id = json::parse(
      FormatResultLine(ParseBatchLine(R"({"prompt": "x"})", 4), nullptr, "m", "batch_req_r_4", 0));
  EXPECT_EQ(no_id["custom_id"], "line-4");
  EXPECT_EQ(no_id["response"]["status_code"], 400);
  EXPECT_EQ(no_id["response"]["body"]["error"]["param"], "custom_id");
  EXPECT_EQ(no_id["response"]["body"]["error"]["code"], "invalid_request");
}

// A prompt longer than the context: 400 with OpenAI's code for it, context_length_exceeded, and param
// "prompt" (completions) or "messages" (chat).
TEST(FormatResultLine, PromptTooLongIsContextLengthExceeded) {
  Result result;
  result.status =
      absl::OutOfRangeError("request 'long': the prompt has 9000 tokens but the model's context is 4096");
  BatchLine completion = ParseBatchLine(R"({"custom_id": "long", "prompt": [1, 2]})", 2);
  json output = json::parse(FormatResultLine(completion, &result, "m", "batch_req_r_2", 0));
  EXPECT_TRUE(output["error"].is_null());
  EXPECT_EQ(output["response"]["status_code"], 400);
  EXPECT_EQ(output["response"]["request_id"], "req_r_2");
  const json& error = output["response"]["body"]["error"];
  EXPECT_EQ(error["type"], "invalid_request_error");
  EXPECT_EQ(error["code"], "context_length_exceeded");
  EXPECT_EQ(error["param"], "prompt");
  EXPECT_EQ(error["message"], "request 'long': the prompt has 9000 tokens but the model's context is 4096");

  BatchLine chat = ParseBatchLine(R"({"custom_id": "c", "messages": [{"role": "user", "content": "x"}]})", 5);
  ASSERT_TRUE(chat.request.ok()) << chat.request.status();
  chat.chat_request = "{}";  // as a job marks a chat line it has rendered
  output = json::parse(FormatResultLine(chat, &result, "m", "batch_req_r_5", 0));
  EXPECT_EQ(output["response"]["body"]["error"]["code"], "context_length_exceeded");
  EXPECT_EQ(output["response"]["body"]["error"]["param"], "messages");
}

// Server-side failures: an engine fault (NaN logits, a missing result) is 500, a request the KV cache cannot
// hold 503; both "server_error", ringmoe's code in "code".
TEST(FormatResultLine, EngineFaultsAre5xxServerErrors) {
  BatchLine line = ParseBatchLine(R"({"custom_id": "lost", "prompt": "x"})", 4);
  json output = json::parse(FormatResultLine(line, nullptr, "m", "batch_req_4", 0));
  EXPECT_TRUE(output["error"].is_null());
  EXPECT_EQ(output["response"]["status_code"], 500);
  EXPECT_EQ(output["response"]["request_id"], "req_4");
  EXPECT_EQ(output["response"]["body"]["error"]["type"], "server_error");
  EXPECT_EQ(output["response"]["body"]["error"]["code"], "internal_error");
  EXPECT_TRUE(output["response"]["body"]["error"]["param"].is_null());
  EXPECT_NE(output["response"]["body"]["error"]["message"].get<std::string>().find("custom_id 'lost'"),
            std::string::npos);

  Result result;
  result.status = absl::ResourceExhaustedError("needs 9000 tokens of KV cache but the cache holds 4096");
  output = json::parse(FormatResultLine(line, &result, "m", "batch_req_4", 0));
  EXPECT_EQ(output["response"]["status_code"], 503);
  EXPECT_EQ(output["response"]["body"]["error"]["type"], "server_error");
  EXPECT_EQ(output["response"]["body"]["error"]["code"], "out_of_memory");

  result.status = absl::UnimplementedError("not supported by this model");
  output = json::parse(FormatResultLine(line, &result, "m", "batch_req_4", 0));
  EXPECT_EQ(output["response"]["status_code"], 400);
  EXPECT_EQ(output["response"]["body"]["error"]["type"], "invalid_request_error");
  EXPECT_EQ(output["response"]["body"]["error"]["code"], "unsupported");
}

// A request that got no answer (cancelled, or a deadline passed) has no HTTP response: "response" null and
// the error object, as OpenAI writes its batch_cancelled and batch_expired requests.
TEST(FormatResultLine, CancelledAndTimedOutRequestsHaveNoResponse) {
  BatchLine line = ParseBatchLine(R"({"custom_id": "c", "prompt": "x"})", 6);
  Result result;
  result.status = absl::CancelledError("request 'c' cancelled before it started");
  EXPECT_EQ(FormatResultLine(line, &result, "m", "batch_req_r_6", 0),
            R"({"id":"batch_req_r_6","custom_id":"c","response":null,"error":{"code":"cancelled",)"
            R"("message":"request 'c' cancelled before it started","param":null}})");
  result.status = absl::DeadlineExceededError("too late");
  json output = json::parse(FormatResultLine(line, &result, "m", "batch_req_r_6", 0));
  EXPECT_TRUE(output["response"].is_null());
  EXPECT_EQ(output["error"]["code"], "timeout");
}

// A code given with WithErrorCode is written as is, with the HTTP status of its absl code.
TEST(FormatResultLine, AnExplicitCodeKeepsItsStatusClass) {
  BatchLine line = ParseBatchLine(R"({"custom_id": "t", "prompt": [1, 2]})", 2);
  Result result;
  result.status =
      WithErrorCode(absl::InvalidArgumentError("token 99999 >= vocab 1000"), "token_out_of_range");
  json output = json::parse(FormatResultLine(line, &result, "m", "batch_req_2", 0));
  EXPECT_EQ(output["response"]["status_code"], 400);
  EXPECT_EQ(output["response"]["body"]["error"]["code"], "token_out_of_range");
  result.status = WithErrorCode(absl::InternalError("bad"), "kernel_failed");
  output = json::parse(FormatResultLine(line, &result, "m", "batch_req_2", 0));
  EXPECT_EQ(output["response"]["status_code"], 500);
  EXPECT_EQ(output["response"]["body"]["error"]["code"], "kernel_failed");
}

TEST(ErrorCodeFor, MapsStatusCodes) {
  EXPECT_EQ(ErrorCodeFor(absl::InvalidArgumentError("x")), "invalid_request");
  EXPECT_EQ(ErrorCodeFor(absl::FailedPreconditionError("x")), "invalid_request");
  EXPECT_EQ(ErrorCodeFor(absl::OutOfRangeError("x")), "prompt_too_long");
  EXPECT_EQ(ErrorCodeFor(absl::ResourceExhaustedError("x")), "out_of_memory");
  EXPECT_EQ(ErrorCodeFor(absl::UnimplementedError("x")), "unsupported");
  EXPECT_EQ(ErrorCodeFor(absl::CancelledError("x")), "cancelled");
  EXPECT_EQ(ErrorCodeFor(absl::DeadlineExceededError("x")), "timeout");
  EXPECT_EQ(ErrorCodeFor(absl::InternalError("x")), "internal_error");
  EXPECT_EQ(ErrorCodeFor(absl::UnknownError("x")), "internal_error");
}

// The table of BATCH_FORMAT.md ("Failed requests"), row by row.
TEST(HttpErrorFor, FollowsTheDocumentedTable) {
  struct Row {
    absl::Status status;
    int status_code;
    const char* type;
    const char* code;
  };
  const Row rows[] = {
      {absl::InvalidArgumentError("x"), 400, "invalid_request_error", "invalid_request"},
      {absl::FailedPreconditionError("x"), 400, "invalid_request_error", "invalid_request"},
      {absl::OutOfRangeError("x"), 400, "invalid_request_error", "context_length_exceeded"},
      {absl::UnimplementedError("x"), 400, "invalid_request_error", "unsupported"},
      {absl::ResourceExhaustedError("x"), 503, "server_error", "out_of_memory"},
      {absl::InternalError("x"), 500, "server_error", "internal_error"},
      {absl::UnknownError("x"), 500, "server_error", "internal_error"},
      {absl::DataLossError("x"), 500, "server_error", "internal_error"},
      {absl::CancelledError("x"), 0, "", "cancelled"},
      {absl::DeadlineExceededError("x"), 0, "", "timeout"},
  };
  for (const Row& row : rows) {
    const HttpError http = HttpErrorFor(row.status);
    EXPECT_EQ(http.status_code, row.status_code) << row.status;
    EXPECT_EQ(http.type, row.type) << row.status;
    EXPECT_EQ(http.code, row.code) << row.status;
  }
}

TEST(MakeBatchRequestId, IsUniquePerLine) {
  EXPECT_EQ(MakeBatchRequestId("abc", 3), "batch_req_abc_3");
  EXPECT_NE(MakeBatchRequestId("abc", 3), MakeBatchRequestId("abc", 4));
}

}  // namespace
}  // namespace ringmoe
