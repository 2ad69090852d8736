// Chat-template goldens (tests/golden/make_chat_goldens.py): every published template under
// tests/data/chat_templates/ renders every golden conversation byte-identical to Python's jinja2 set up as
// transformers sets it up; requests the template rejects are rejected here too, with the template's own
// message. Where a golden carries token ids (made with --with-ids), the rendered text encodes to the same
// ids.
#include <gtest/gtest.h>

#include <algorithm>
#include <ctime>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>

#include "nlohmann/json.hpp"
#include "ringmoe/tokenizer.h"
#include "runtime/chat/chat_template.h"

namespace ringmoe::chat {
namespace {

const std::string kData = std::string(RINGMOE_SOURCE_DIR) + "/tests/data/";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

nlohmann::ordered_json Manifest() {
  return nlohmann::ordered_json::parse(ReadFile(kData + "chat_goldens/manifest.json"), nullptr, false);
}

class ChatGoldenTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ChatGoldenTest, RendersEveryConversationByteIdentical) {
  nlohmann::ordered_json entry;
  for (const auto& item : Manifest()) {
    if (item["name"] == GetParam()) entry = item;
  }
  ASSERT_TRUE(entry.is_object()) << "no manifest entry for " << GetParam();
  const std::string template_file = kData + "chat_templates/" + entry["template"].get<std::string>();
  absl::StatusOr<ChatTemplate> chat =
      ChatTemplate::FromSource(ReadFile(template_file), entry["config"], template_file);
  ASSERT_TRUE(chat.ok()) << chat.status();

  std::tm fixed{};
  const auto& now = entry["now"];
  fixed.tm_year = now[0].get<int>() - 1900;
  fixed.tm_mon = now[1].get<int>() - 1;
  fixed.tm_mday = now[2].get<int>();
  fixed.tm_hour = now[3].get<int>();
  fixed.tm_min = now[4].get<int>();
  fixed.tm_sec = now[5].get<int>();
  fixed.tm_isdst = -1;
  jinja::RenderOptions options;
  options.now = std::mktime(&fixed);  // local time, as Python's naive datetime.strftime

  std::optional<Tokenizer> tokenizer;
  std::ifstream lines(kData + "chat_goldens/" + GetParam() + ".jsonl");
  std::string line;
  int cases = 0, rendered = 0, rejected = 0, with_ids = 0;
  while (std::getline(lines, line)) {
    ++cases;
    const nlohmann::ordered_json golden = nlohmann::ordered_json::parse(line);
    absl::StatusOr<std::string> text = chat->Render(golden["request"], options);
    if (golden.contains("error")) {
      ++rejected;
      ASSERT_FALSE(text.ok()) << GetParam() << " case " << cases << " should fail: " << golden["error"];
      const std::string expected = golden["error"].get<std::string>();
      const std::string prefix = "TemplateError: ";
      if (expected.rfind(prefix, 0) == 0) {  // raise_exception(): the same message
        EXPECT_NE(std::string(text.status().message()).find(expected.substr(prefix.size())),
                  std::string::npos)
            << text.status();
      }
      continue;
    }
    ASSERT_TRUE(text.ok()) << GetParam() << " case " << cases << ": " << text.status();
    ASSERT_EQ(*text, golden["text"].get<std::string>()) << GetParam() << " case " << cases << ": " << line;
    ++rendered;
    if (golden.contains("ids") && !entry["tokenizer"].is_null()) {
      if (!tokenizer) {
        absl::StatusOr<Tokenizer> loaded =
            Tokenizer::Load(kData + "tokenizers/" + entry["tokenizer"].get<std::string>());
        ASSERT_TRUE(loaded.ok()) << loaded.status();
        tokenizer = *std::move(loaded);
      }
      absl::StatusOr<std::vector<int32_t>> ids = tokenizer->Encode(*text, /*add_special_tokens=*/false);
      ASSERT_TRUE(ids.ok()) << ids.status();
      EXPECT_EQ(nlohmann::ordered_json(*ids), golden["ids"]) << GetParam() << " case " << cases;
      ++with_ids;
    }
  }
  EXPECT_GE(rendered, 150) << "the issue asks for at least 150 conversations per template";
  std::printf(
      "%s: %d cases, %d rendered identically, %d rejected as the template rejects them, %d ids checked\n",
      GetParam().c_str(), cases, rendered, rejected, with_ids);
}

std::vector<std::string> TemplateNames() {
  std::vector<std::string> names;
  for (const auto& item : Manifest()) names.push_back(item["name"].get<std::string>());
  return names;
}

INSTANTIATE_TEST_SUITE_P(PublishedTemplates, ChatGoldenTest, ::testing::ValuesIn(TemplateNames()),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

TEST(ChatGoldenManifest, CoversTheTemplatesTheIssueNames) {
  const std::vector<std::string> names = TemplateNames();
  for (const char* name :
       {"qwen3", "qwen2_5", "llama3_3", "mixtral", "deepseek_v3", "deepseek_r1", "gpt_oss", "phi3_5_moe"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), name), names.end()) << name;
  }
}

}  // namespace
}  // namespace ringmoe::chat
