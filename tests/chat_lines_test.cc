// /v1/chat/completions lines: parsing, rendering through the chat template into prompt ids, reasoning split,
// chat.completion output, and a mixed completions + chat file through `ringmoe run` on the tiny model.
#include "runtime/frontend/chat_lines.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "nlohmann/json.hpp"
#include "ringmoe/tokenizer.h"
#include "runtime/chat/chat_template.h"
#include "runtime/frontend/batch_io.h"
#include "tests/testing/output_lines.h"

namespace ringmoe {
namespace {

using ::ringmoe::testing::ErrorOf;
using ::ringmoe::testing::Succeeded;

namespace fs = std::filesystem;
using nlohmann::json;
using nlohmann::ordered_json;

const std::string kTinyModel = std::string(RINGMOE_SOURCE_DIR) + "/tests/data/models/tiny-qwen3-moe";

TEST(ChatLines, ParsedWithTheTemplateInputInWrittenOrder) {
  BatchLine line = ParseBatchLine(
      R"({"custom_id": "c", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m",
          "messages": [{"role": "user", "content": "Hi"}], "tools": [{"z": 1, "a": 2}], "max_completion_tokens": 5,
          "chat_template_kwargs": {"enable_thinking": false}, "temperature": 0}})",
      1);
  ASSERT_TRUE(line.request.ok()) << line.request.status();
  EXPECT_EQ(line.request->max_tokens, 5);
  EXPECT_EQ(line.chat_request,
            R"({"messages":[{"role":"user","content":"Hi"}],"tools":[{"z":1,"a":2}],)"
            R"("chat_template_kwargs":{"enable_thinking":false},"add_generation_prompt":true})");

  BatchLine short_form = ParseBatchLine(
      R"({"custom_id": "s", "messages": [{"role": "assistant", "content": "Sure"}], "continue_final_message": true})",
      2);
  ASSERT_TRUE(short_form.request.ok()) << short_form.request.status();
  EXPECT_EQ(ordered_json::parse(short_form.chat_request)["add_generation_prompt"], false);

  BatchLine completion = ParseBatchLine(R"({"custom_id": "p", "prompt": "x"})", 3);
  ASSERT_TRUE(completion.request.ok());
  EXPECT_TRUE(completion.chat_request.empty());
}

TEST(ChatLines, RenderedThroughTheTemplateIntoPromptIds) {
  absl::StatusOr<Tokenizer> tokenizer = Tokenizer::Load(kTinyModel);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  absl::StatusOr<chat::ChatTemplate> chat_template = chat::ChatTemplate::Load(kTinyModel);
  ASSERT_TRUE(chat_template.ok()) << chat_template.status();
  std::vector<BatchLine> lines;
  lines.push_back(
      ParseBatchLine(R"({"custom_id": "a", "messages": [{"role": "user", "content": "Hello there"}]})", 1));
  lines.push_back(ParseBatchLine(R"({"custom_id": "b", "prompt": "plain"})", 2));
  ASSERT_TRUE(HasChatLines(lines));
  RenderChatPrompts(&lines, &*chat_template, &*tokenizer, "");
  ASSERT_TRUE(lines[0].request.ok()) << lines[0].request.status();
  absl::StatusOr<std::string> text = chat_template->Render(ordered_json::parse(lines[0].chat_request));
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, "<|im_start|>user\nHello there<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(lines[0].request->prompt_ids, *tokenizer->Encode(*text, /*add_special_tokens=*/false));
  EXPECT_TRUE(lines[0].request->prompt_text.empty());
  EXPECT_EQ(lines[1].request->prompt_text, "plain");  // completions lines are left to the usual encoding

  // A template that raises, and no template at all: the line fails alone, naming itself.
  absl::StatusOr<chat::ChatTemplate> strict = chat::ChatTemplate::FromSource(
      "{% if messages[0].role != 'system' %}{{ raise_exception('needs a system message') }}{% endif %}",
      ordered_json::object(), "strict");
  ASSERT_TRUE(strict.ok());
  std::vector<BatchLine> rejected = {
      ParseBatchLine(R"({"custom_id": "r", "messages": [{"role": "user", "content": "x"}]})", 4)};
  RenderChatPrompts(&rejected, &*strict, &*tokenizer, "");
  ASSERT_FALSE(rejected[0].request.ok());
  EXPECT_NE(std::string(rejected[0].request.status().message()).find("line 4 (custom_id 'r')"),
            std::string::npos);
  EXPECT_NE(std::string(rejected[0].request.status().message()).find("needs a system message"),
            std::string::npos);
  std::vector<BatchLine> untemplated = {
      ParseBatchLine(R"({"custom_id": "u", "messages": [{"role": "user", "content": "x"}]})", 5)};
  RenderChatPrompts(&untemplated, nullptr, &*tokenizer, "no chat_template anywhere");
  ASSERT_FALSE(untemplated[0].request.ok());
  EXPECT_NE(std::string(untemplated[0].request.status().message()).find("no chat_template anywhere"),
            std::string::npos);
}

TEST(ChatLines, ReasoningSplitsAtTheEndOfThinking) {
  ReasoningSplit split = SplitReasoning("<think>\nplan\n</think>\n\nanswer");
  EXPECT_TRUE(split.found);
  EXPECT_EQ(split.reasoning, "\nplan\n");
  EXPECT_EQ(split.content, "\n\nanswer");
  split = SplitReasoning("continued thought</think>done");  // the template opened <think>
  EXPECT_TRUE(split.found);
  EXPECT_EQ(split.reasoning, "continued thought");
  EXPECT_EQ(split.content, "done");
  split = SplitReasoning("no thinking here");
  EXPECT_FALSE(split.found);
  EXPECT_EQ(split.content, "no thinking here");
}

TEST(ChatLines, ResultsAreChatCompletions) {
  BatchLine line = ParseBatchLine(
      R"({"custom_id": "c", "messages": [{"role": "user", "content": "x"}], "logprobs": true})", 1);
  ASSERT_TRUE(line.request.ok());
  Result result;
  result.prompt_ids = {1, 2, 3};
  result.token_ids = {7, 8};
  result.logprobs = {-0.5f, -1.25f};
  result.token_strings = {"<think>", "é"};
  result.text = "<think>hm</think>Yes";
  result.finish_reason = FinishReason::kStop;
  const json out = json::parse(FormatResultLine(line, &result, "tiny", "batch_req_run_1", 1700000000));
  const json& body = out["response"]["body"];
  EXPECT_EQ(body["object"], "chat.completion");
  EXPECT_EQ(body["id"], "chatcmpl-run_1");
  const json& choice = body["choices"][0];
  EXPECT_EQ(choice["message"]["role"], "assistant");
  EXPECT_EQ(choice["message"]["content"], "Yes");
  EXPECT_EQ(choice["message"]["reasoning_content"], "hm");
  EXPECT_EQ(choice["finish_reason"], "stop");
  EXPECT_EQ(choice["logprobs"]["content"][1]["token"], "é");
  EXPECT_EQ(choice["logprobs"]["content"][1]["bytes"], json({0xC3, 0xA9}));
  EXPECT_EQ(choice["logprobs"]["content"][0]["logprob"], -0.5);
  EXPECT_EQ(body["usage"]["prompt_tokens"], 3);
  EXPECT_EQ(body["usage"]["total_tokens"], 5);
}

TEST(ChatLines, MixedFileThroughRingmoeRun) {
  const fs::path dir = fs::temp_directory_path() / ("ringmoe_chat_lines_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  {
    std::ofstream input(dir / "in.jsonl");
    input
        << R"({"custom_id": "completion", "prompt": "Once upon", "max_tokens": 4, "temperature": 0})"
        << "\n"
        << R"({"custom_id": "chat", "method": "POST", "url": "/v1/chat/completions", "body": {"messages": )"
        << R"([{"role": "user", "content": "Tell me a story"}], "max_completion_tokens": 4, "temperature": 0}})"
        << "\n"
        << R"({"custom_id": "chat-short", "messages": [{"role": "system", "content": "Be brief."}, )"
        << R"({"role": "user", "content": "Hi é"}], "max_tokens": 3, "temperature": 0})"
        << "\n";
  }
  const std::string command =
      std::string(RINGMOE_BINARY_DIR) + "/ringmoe run --model " + kTinyModel + " --input " +
      (dir / "in.jsonl").string() + " --output " + (dir / "out.jsonl").string() +
      " --threads 2 --device cpu --cpu-dtype f32 --no-plan --quiet 2> " + (dir / "err.txt").string();
  const int status = std::system(command.c_str());
  std::ifstream err(dir / "err.txt");
  std::stringstream err_text;
  err_text << err.rdbuf();
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << err_text.str();

  absl::StatusOr<Tokenizer> tokenizer = Tokenizer::Load(kTinyModel);
  ASSERT_TRUE(tokenizer.ok());
  std::ifstream output(dir / "out.jsonl");
  int chats = 0, completions = 0;
  for (std::string text; std::getline(output, text);) {
    const json line = json::parse(text);
    ASSERT_TRUE(Succeeded(line)) << text;
    const json& body = line["response"]["body"];
    if (line["custom_id"] == "completion") {
      ++completions;
      EXPECT_EQ(body["object"], "text_completion");
      continue;
    }
    ++chats;
    EXPECT_EQ(body["object"], "chat.completion") << text;
    EXPECT_EQ(body["choices"][0]["message"]["role"], "assistant");
    EXPECT_TRUE(body["choices"][0]["message"]["content"].is_string());
    const std::string rendered =
        line["custom_id"] == "chat"
            ? "<|im_start|>user\nTell me a story<|im_end|>\n<|im_start|>assistant\n"
            : "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi é<|im_end|>\n"
              "<|im_start|>assistant\n";
    EXPECT_EQ(body["usage"]["prompt_tokens"], tokenizer->Encode(rendered, false)->size()) << text;
    EXPECT_LE(body["usage"]["completion_tokens"].get<int>(), line["custom_id"] == "chat" ? 4 : 3);
  }
  EXPECT_EQ(chats, 2);
  EXPECT_EQ(completions, 1);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace ringmoe
