// runtime/chat: where a chat template is found, what it sees, and `ringmoe tokenize --chat`.
#include "runtime/chat/chat_template.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "nlohmann/json.hpp"

namespace ringmoe::chat {
namespace {

namespace fs = std::filesystem;

class ChatTemplateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ringmoe_chat_template_test_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  void Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name, std::ios::binary) << text;
  }

  fs::path dir_;
};

const nlohmann::ordered_json kRequest = {
    {"messages", {{{"role", "user"}, {"content", "Hi"}}, {{"role", "assistant"}, {"content", "Yo "}}}}};

TEST_F(ChatTemplateTest, ReadsTheConfigStringAndAddedTokenSpecialTokens) {
  Write("tokenizer_config.json",
        R"({"bos_token": {"__type": "AddedToken", "content": "<B>"}, "eos_token": "<E>",
      "chat_template": "{{ bos_token }}{% for m in messages %}[{{ m.role }}:{{ m.content }}]{% endfor %}{{ eos_token }}"})");
  absl::StatusOr<ChatTemplate> chat = ChatTemplate::Load(dir_.string());
  ASSERT_TRUE(chat.ok()) << chat.status();
  EXPECT_EQ(*chat->Render(kRequest), "<B>[user:Hi][assistant:Yo ]<E>");
}

TEST_F(ChatTemplateTest, PicksTheDefaultOfANamedListAndPrefersChatTemplateJinja) {
  Write("tokenizer_config.json", R"({"chat_template": [{"name": "tool_use", "template": "T"},
                                                        {"name": "default", "template": "D"}]})");
  absl::StatusOr<ChatTemplate> chat = ChatTemplate::Load(dir_.string());
  ASSERT_TRUE(chat.ok()) << chat.status();
  EXPECT_EQ(*chat->Render(kRequest), "D");
  Write("chat_template.jinja", "J{{ messages | length }}\n");
  chat = ChatTemplate::Load(dir_.string());
  ASSERT_TRUE(chat.ok()) << chat.status();
  EXPECT_EQ(*chat->Render(kRequest), "J2");
  Write("other.jinja", "O");
  chat = ChatTemplate::Load(dir_.string(), (dir_ / "other.jinja").string());
  ASSERT_TRUE(chat.ok()) << chat.status();
  EXPECT_EQ(*chat->Render(kRequest), "O");
}

TEST_F(ChatTemplateTest, PrefixedTokenizerFilesFindPrefixedCompanions) {
  Write("m.tokenizer_config.json", R"({"chat_template": "prefixed"})");
  absl::StatusOr<ChatTemplate> chat = ChatTemplate::Load((dir_ / "m.tokenizer.json.gz").string());
  ASSERT_TRUE(chat.ok()) << chat.status();
  EXPECT_EQ(*chat->Render(kRequest), "prefixed");
}

TEST_F(ChatTemplateTest, MissingTemplatesAndBadTemplatesAreClearErrors) {
  Write("tokenizer_config.json", R"({"eos_token": "</s>"})");
  absl::StatusOr<ChatTemplate> chat = ChatTemplate::Load(dir_.string());
  ASSERT_FALSE(chat.ok());
  EXPECT_NE(std::string(chat.status().message()).find("--chat-template"), std::string::npos);
  Write("chat_template.jinja", "line 1\n{% for m in messages %}{{ m | nosuch }}{% endfor %}");
  chat = ChatTemplate::Load(dir_.string());
  ASSERT_FALSE(chat.ok());
  EXPECT_NE(std::string(chat.status().message()).find("chat_template.jinja:2:"), std::string::npos)
      << chat.status();
}

TEST_F(ChatTemplateTest, RequestFieldsKwargsAndPrefill) {
  absl::StatusOr<ChatTemplate> chat = ChatTemplate::FromSource(
      "{% for m in messages %}<{{ m.role }}>{{ m.content }}</{{ m.role }}>{% endfor %}"
      "{% if add_generation_prompt %}<assistant>{% endif %}{{ tools is none }}{{ enable_thinking }}",
      nlohmann::ordered_json::object(), "inline");
  ASSERT_TRUE(chat.ok()) << chat.status();
  nlohmann::ordered_json request = kRequest;
  request["chat_template_kwargs"] = {{"enable_thinking", false}};
  EXPECT_EQ(*chat->Render(request), "<user>Hi</user><assistant>Yo </assistant>TrueFalse");
  request["continue_final_message"] = true;
  EXPECT_EQ(*chat->Render(request), "<user>Hi</user><assistant>Yo ");  // cut after the assistant's own text
  request["add_generation_prompt"] = true;
  EXPECT_FALSE(chat->Render(request).ok());
  EXPECT_FALSE(chat->Render(nlohmann::ordered_json{{"messages", "hi"}}).ok());
}

TEST_F(ChatTemplateTest, TokenizeCommandRendersLinesAndIds) {
  // The Qwen3 tokenizer; its tokenizer_config.json's own template is replaced by --chat-template.
  const std::string tokenizer =
      std::string(RINGMOE_SOURCE_DIR) + "/tests/data/tokenizers/qwen3.tokenizer.json.gz";
  Write("t.jinja", "{% for m in messages %}{{ m.content }}{% endfor %}");
  Write("in.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": \"ab\"}]}\n[1]\n");
  const std::string command = std::string(RINGMOE_BINARY_DIR) + "/ringmoe tokenize --tokenizer " + tokenizer +
                              " --chat --chat-template " + (dir_ / "t.jinja").string() + " < " +
                              (dir_ / "in.jsonl").string() + " > " + (dir_ / "out.txt").string() +
                              " 2>/dev/null";
  EXPECT_NE(std::system(command.c_str()), 0);  // the second line is not a request
  std::ifstream out(dir_ / "out.txt");
  std::string first, second;
  std::getline(out, first);
  std::getline(out, second);
  EXPECT_EQ(first, "\"ab\"");
  EXPECT_EQ(second, "null");

  Write("one.jsonl",
        "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"add_generation_prompt\": true}\n");
  const std::string ids = std::string(RINGMOE_BINARY_DIR) + "/ringmoe tokenize --tokenizer " + tokenizer +
                          " --chat --ids < " + (dir_ / "one.jsonl").string() + " > " +
                          (dir_ / "ids.txt").string();
  ASSERT_EQ(std::system(ids.c_str()), 0);
  std::ifstream ids_out(dir_ / "ids.txt");
  std::string line;
  std::getline(ids_out, line);
  // <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n in Qwen3's vocabulary
  EXPECT_EQ(line, "[151644,872,198,13048,151645,198,151644,77091,198]");
}

}  // namespace
}  // namespace ringmoe::chat
