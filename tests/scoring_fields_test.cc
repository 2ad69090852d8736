// logprobs with top alternatives, top_logprobs and echo: how batch lines read them and how results are
// written (runtime/frontend/scoring_fields.h, through ParseBatchLine and FormatResultLine).
#include "runtime/frontend/scoring_fields.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "runtime/frontend/batch_io.h"
#include "runtime/frontend/request_fields.h"

namespace ringmoe {
namespace {

using nlohmann::ordered_json;

std::string Message(const absl::StatusOr<Request>& request) {
  return std::string(request.status().message());
}

TEST(ScoringFields, CompletionsLogprobsCountsAlternatives) {
  for (int count : {0, 1, 5, 20}) {
    BatchLine line =
        ParseBatchLine(absl::StrCat(R"({"custom_id": "a", "prompt": "x", "logprobs": )", count, "}"), 1);
    ASSERT_TRUE(line.request.ok()) << line.request.status();
    EXPECT_TRUE(line.request->logprobs);
    EXPECT_EQ(line.request->top_logprobs, count);
  }
  BatchLine on = ParseBatchLine(R"({"custom_id": "a", "prompt": "x", "logprobs": true})", 1);
  ASSERT_TRUE(on.request.ok());
  EXPECT_TRUE(on.request->logprobs);
  EXPECT_EQ(on.request->top_logprobs, 0);
  for (const char* bad : {"21", "-1", "\"3\"", "2.5"}) {
    BatchLine line =
        ParseBatchLine(absl::StrCat(R"({"custom_id": "b", "prompt": "x", "logprobs": )", bad, "}"), 4);
    ASSERT_FALSE(line.request.ok()) << bad;
    EXPECT_NE(Message(line.request).find("line 4 (custom_id 'b'): field 'logprobs'"), std::string::npos)
        << Message(line.request);
    EXPECT_NE(Message(line.request).find("0..20"), std::string::npos) << Message(line.request);
  }
  // top_logprobs is the chat API's field: on a completions line it is unknown.
  BatchLine chat_field = ParseBatchLine(R"({"custom_id": "c", "prompt": "x", "top_logprobs": 2})", 1);
  ASSERT_TRUE(chat_field.request.ok());
  EXPECT_EQ(chat_field.unknown_fields, std::vector<std::string>{"top_logprobs"});
}

TEST(ScoringFields, ChatTakesLogprobsTrueAndTopLogprobs) {
  BatchLine line = ParseBatchLine(
      R"({"custom_id": "c", "messages": [{"role": "user", "content": "x"}], "logprobs": true, "top_logprobs": 3})",
      1);
  ASSERT_TRUE(line.request.ok()) << line.request.status();
  EXPECT_TRUE(line.request->logprobs);
  EXPECT_EQ(line.request->top_logprobs, 3);
  struct Bad {
    const char* fields;
    const char* field;
    const char* says;
  };
  for (const Bad& bad : {Bad{R"("top_logprobs": 2)", "top_logprobs", "needs \"logprobs\": true"},
                         Bad{R"("logprobs": false, "top_logprobs": 2)", "top_logprobs", "needs"},
                         Bad{R"("logprobs": true, "top_logprobs": 21)", "top_logprobs", "0..20"},
                         Bad{R"("logprobs": 3)", "logprobs", "true or false"}}) {
    BatchLine parsed =
        ParseBatchLine(absl::StrCat(R"({"custom_id": "c", "messages": [{"role": "user", "content": "x"}], )",
                                    bad.fields, "}"),
                       2);
    ASSERT_FALSE(parsed.request.ok()) << bad.fields;
    EXPECT_NE(Message(parsed.request).find(absl::StrCat("field '", bad.field, "'")), std::string::npos)
        << Message(parsed.request);
    EXPECT_NE(Message(parsed.request).find(bad.says), std::string::npos) << Message(parsed.request);
  }
  // echo is the completions API's: unknown on a chat line.
  BatchLine echo = ParseBatchLine(
      R"({"custom_id": "e", "messages": [{"role": "user", "content": "x"}], "echo": true})", 3);
  ASSERT_TRUE(echo.request.ok());
  EXPECT_FALSE(echo.request->echo);
  EXPECT_EQ(echo.unknown_fields, std::vector<std::string>{"echo"});
}

TEST(ScoringFields, EchoAllowsMaxTokensZero) {
  BatchLine scoring =
      ParseBatchLine(R"({"custom_id": "s", "prompt": "x", "echo": true, "logprobs": 0, "max_tokens": 0})", 1);
  ASSERT_TRUE(scoring.request.ok()) << scoring.request.status();
  EXPECT_TRUE(scoring.request->echo);
  EXPECT_EQ(scoring.request->max_tokens, 0);
  BatchLine completion_tokens =
      ParseBatchLine(R"({"custom_id": "s", "prompt": "x", "echo": true, "max_completion_tokens": 0})", 1);
  ASSERT_TRUE(completion_tokens.request.ok()) << completion_tokens.request.status();
  EXPECT_EQ(completion_tokens.request->max_tokens, 0);

  BatchLine without_echo = ParseBatchLine(R"({"custom_id": "s", "prompt": "x", "max_tokens": 0})", 2);
  ASSERT_FALSE(without_echo.request.ok());
  EXPECT_NE(Message(without_echo.request).find("field 'max_tokens' must be an integer >= 1"),
            std::string::npos)
      << Message(without_echo.request);
  BatchLine negative =
      ParseBatchLine(R"({"custom_id": "s", "prompt": "x", "echo": true, "max_tokens": -1})", 2);
  EXPECT_FALSE(negative.request.ok());
  BatchLine not_bool = ParseBatchLine(R"({"custom_id": "s", "prompt": "x", "echo": 1})", 3);
  ASSERT_FALSE(not_bool.request.ok());
  EXPECT_NE(Message(not_bool.request).find("field 'echo' must be true or false"), std::string::npos)
      << Message(not_bool.request);
  BatchLine off = ParseBatchLine(R"({"custom_id": "s", "prompt": "x", "echo": false})", 3);
  ASSERT_TRUE(off.request.ok());
  EXPECT_FALSE(off.request->echo);
}

// A result as the engine gives it for prompt [10, 11, 12] and completion [20, 21], with two alternatives.
Result EchoedResult() {
  Result result;
  result.prompt_ids = {10, 11, 12};
  result.prompt_text = "Héllo";
  result.prompt_logprobs = {std::numeric_limits<float>::quiet_NaN(), -1.5f, -0.25f};
  result.prompt_token_strings = {"H", "él", "lo"};
  result.prompt_top_logprobs = {
      {}, {{30, -0.5f, "a"}, {31, -1.0f, "b"}}, {{12, -0.25f, "lo"}, {32, -2.0f, "c"}}};
  result.token_ids = {20, 21};
  result.text = " world";
  result.logprobs = {-0.125f, -3.0f};
  result.token_strings = {" wor", "ld"};
  // The second token was sampled outside the top two: it is still reported.
  result.top_logprobs = {{{20, -0.125f, " wor"}, {33, -2.5f, " x"}}, {{34, -0.5f, "d"}, {35, -1.0f, "d"}}};
  return result;
}

TEST(ScoringFields, CompletionLogprobsPutTheEchoedPromptFirst) {
  Request request;
  request.logprobs = true;
  request.top_logprobs = 2;
  request.echo = true;
  const Result result = EchoedResult();
  EXPECT_EQ(CompletionText(request, result), "Héllo world");
  const ordered_json logprobs = CompletionLogprobs(request, result);
  EXPECT_EQ(logprobs["tokens"], ordered_json::array({"H", "él", "lo", " wor", "ld"}));
  EXPECT_EQ(logprobs["token_logprobs"].dump(), "[null,-1.5,-0.25,-0.125,-3.0]");
  // Characters, not bytes: "él" is two.
  EXPECT_EQ(logprobs["text_offset"], ordered_json::array({0, 1, 3, 5, 9}));
  const ordered_json& top = logprobs["top_logprobs"];
  ASSERT_EQ(top.size(), 5u);
  EXPECT_TRUE(top[0].is_null());
  // Most likely first, then the chosen token when it is not among them.
  EXPECT_EQ(top[1].dump(), R"({"a":-0.5,"b":-1.0,"él":-1.5})");
  EXPECT_EQ(top[2].dump(), R"({"lo":-0.25,"c":-2.0})");
  EXPECT_EQ(top[3].dump(), R"({" wor":-0.125," x":-2.5})");
  // Two alternatives with one text keep the more likely one's value.
  EXPECT_EQ(top[4].dump(), R"({"d":-0.5,"ld":-3.0})");
  EXPECT_EQ(ordered_json::parse(logprobs.dump()).begin().key(), "tokens");
}

TEST(ScoringFields, WithoutEchoOnlyTheCompletion) {
  Request request;
  request.logprobs = true;
  const Result result = EchoedResult();
  EXPECT_EQ(CompletionText(request, result), " world");
  const ordered_json logprobs = CompletionLogprobs(request, result);
  EXPECT_EQ(logprobs["tokens"], ordered_json::array({" wor", "ld"}));
  EXPECT_EQ(logprobs["text_offset"], ordered_json::array({0, 4}));
  EXPECT_EQ(logprobs["top_logprobs"][0].dump(), R"({" wor":-0.125," x":-2.5})");
  // logprobs off: null, even with echo.
  request.logprobs = false;
  request.echo = true;
  EXPECT_TRUE(CompletionLogprobs(request, result).is_null());
  EXPECT_EQ(CompletionText(request, result), "Héllo world");
}

TEST(ScoringFields, ScoringLineOutput) {
  BatchLine line = ParseBatchLine(
      R"({"custom_id": "s", "prompt": "Héllo", "echo": true, "logprobs": 1, "max_tokens": 0})", 1);
  ASSERT_TRUE(line.request.ok()) << line.request.status();
  Result result = EchoedResult();
  result.token_ids.clear();
  result.text.clear();
  result.logprobs.clear();
  result.token_strings.clear();
  result.top_logprobs.clear();
  result.finish_reason = FinishReason::kLength;
  const ordered_json out =
      ordered_json::parse(FormatResultLine(line, &result, "tiny", "batch_req_r_1", 1700000000));
  const ordered_json& choice = out["response"]["body"]["choices"][0];
  EXPECT_EQ(choice["text"], "Héllo");
  EXPECT_EQ(choice["token_ids"], ordered_json::array());
  EXPECT_EQ(choice["finish_reason"], "length");
  EXPECT_EQ(choice["logprobs"]["tokens"], ordered_json::array({"H", "él", "lo"}));
  EXPECT_TRUE(choice["logprobs"]["token_logprobs"][0].is_null());
  EXPECT_EQ(out["response"]["body"]["usage"]["completion_tokens"], 0);
  EXPECT_EQ(out["response"]["body"]["usage"]["prompt_tokens"], 3);
}

TEST(ScoringFields, ChatLogprobsListAlternatives) {
  BatchLine line = ParseBatchLine(
      R"({"custom_id": "c", "messages": [{"role": "user", "content": "x"}], "logprobs": true, "top_logprobs": 2})",
      1);
  ASSERT_TRUE(line.request.ok());
  const Result result = EchoedResult();
  const ordered_json out =
      ordered_json::parse(FormatResultLine(line, &result, "tiny", "batch_req_r_1", 1700000000));
  const ordered_json& content = out["response"]["body"]["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(content.size(), 2u);
  EXPECT_EQ(content[0]["token"], " wor");
  EXPECT_EQ(content[0]["logprob"], -0.125);
  EXPECT_EQ(content[0]["top_logprobs"].dump(),
            R"([{"token":" wor","logprob":-0.125,"bytes":[32,119,111,114]},)"
            R"({"token":" x","logprob":-2.5,"bytes":[32,120]}])");
  // Exactly the alternatives asked for (the chosen token is the entry itself), no echo of the prompt.
  EXPECT_EQ(content[1]["top_logprobs"].size(), 2u);
  EXPECT_EQ(out["response"]["body"]["choices"][0]["message"]["content"], " world");
  // Without top_logprobs: an empty list per token.
  BatchLine plain = ParseBatchLine(
      R"({"custom_id": "c", "messages": [{"role": "user", "content": "x"}], "logprobs": true})", 1);
  Result no_tops = result;
  no_tops.top_logprobs.clear();
  const ordered_json plain_out =
      ordered_json::parse(FormatResultLine(plain, &no_tops, "tiny", "batch_req_r_1", 1700000000));
  EXPECT_EQ(plain_out["response"]["body"]["choices"][0]["logprobs"]["content"][0]["top_logprobs"],
            ordered_json::array());
}

// A failed line's error object, in OpenAI's form (message, type, param, code), with param naming the request
// field at fault (null when the error is not one field's), as OpenAI's error objects do.
TEST(ScoringFields, ErrorLinesNameTheFieldAtFault) {
  auto error_of = [](const BatchLine& line) {
    return ordered_json::parse(FormatResultLine(line, nullptr, "tiny", "batch_req_r_1", 1700000000));
  };
  const ordered_json bad_field =
      error_of(ParseBatchLine(R"({"custom_id": "a", "prompt": "x", "logprobs": 99})", 1));
  EXPECT_TRUE(bad_field["error"].is_null());
  EXPECT_EQ(bad_field["response"]["status_code"], 400);
  const ordered_json& bad_field_error = bad_field["response"]["body"]["error"];
  EXPECT_EQ(bad_field_error["code"], "invalid_request");
  EXPECT_EQ(bad_field_error["param"], "logprobs");
  // OpenAI's key order.
  std::vector<std::string> keys;
  for (const auto& [key, value] : bad_field_error.items()) keys.push_back(key);
  EXPECT_EQ(keys, (std::vector<std::string>{"message", "type", "param", "code"}));

  const ordered_json not_json = error_of(ParseBatchLine(R"({"custom_id": )", 2));
  const ordered_json& not_json_error = not_json["response"]["body"]["error"];
  EXPECT_EQ(not_json_error["code"], "invalid_request");
  EXPECT_TRUE(not_json_error.contains("param"));
  EXPECT_TRUE(not_json_error["param"].is_null());

  std::vector<BatchLine> lines = {ParseBatchLine(R"({"custom_id": "u", "prompt": "x", "temprature": 0})", 3)};
  ApplyUnknownFieldPolicy(&lines, /*lenient=*/false, nullptr);
  const ordered_json unknown = error_of(lines[0]);
  EXPECT_EQ(unknown["response"]["body"]["error"]["param"], "temprature");

  // An engine failure is no field's, except a prompt too long (OpenAI names the prompt).
  BatchLine good = ParseBatchLine(R"({"custom_id": "g", "prompt": "x"})", 4);
  Result failed;
  failed.status = absl::InternalError("request 'g': the model's logits are NaN at generated token 1");
  ordered_json engine_error =
      ordered_json::parse(FormatResultLine(good, &failed, "tiny", "batch_req_r_4", 1700000000));
  EXPECT_EQ(engine_error["response"]["body"]["error"]["code"], "internal_error");
  EXPECT_TRUE(engine_error["response"]["body"]["error"]["param"].is_null());
  failed.status = absl::OutOfRangeError("request 'g': the prompt has 9 tokens but the model's context is 8");
  engine_error = ordered_json::parse(FormatResultLine(good, &failed, "tiny", "batch_req_r_4", 1700000000));
  EXPECT_EQ(engine_error["response"]["body"]["error"]["code"], "context_length_exceeded");
  EXPECT_EQ(engine_error["response"]["body"]["error"]["param"], "prompt");
}

}  // namespace
}  // namespace ringmoe
