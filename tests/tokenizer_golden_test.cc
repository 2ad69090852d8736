// Golden test: for five real tokenizers and every corpus string, ids (with and without special tokens) and
// both decodes must be identical to the Hugging Face `tokenizers` library's
// (tests/data/tokenizers/golden_*.json.gz).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ringmoe/tokenizer.h"
#include "runtime/tokenizer/file_reader.h"

namespace ringmoe {
namespace {

const std::string kDataDir = std::string(RINGMOE_SOURCE_DIR) + "/tests/data/tokenizers/";

nlohmann::json ReadJson(const std::string& path) {
  absl::StatusOr<std::string> text = tokenizer_internal::ReadFileMaybeGzip(path);
  EXPECT_TRUE(text.ok()) << text.status();
  if (!text.ok()) return nullptr;
  return nlohmann::json::parse(*text);
}

// Shows a string with its non-printable bytes escaped, so that failures are readable.
std::string Show(const std::string& text) {
  std::string out = nlohmann::json(text).dump(-1, ' ', true, nlohmann::json::error_handler_t::replace);
  return out.size() > 300 ? out.substr(0, 300) + "..." : out;
}

class TokenizerGoldenTest : public testing::TestWithParam<std::string> {};

TEST_P(TokenizerGoldenTest, MatchesReferenceLibrary) {
  const std::string name = GetParam();
  const nlohmann::json corpus = ReadJson(kDataDir + "corpus.json");
  const nlohmann::json golden = ReadJson(kDataDir + "golden_" + name + ".json.gz");
  ASSERT_TRUE(corpus.is_array());
  ASSERT_GE(corpus.size(), 300u);
  ASSERT_EQ(golden.at("tokenizer").get<std::string>(), name);
  const nlohmann::json& cases = golden.at("cases");
  ASSERT_EQ(cases.size(), corpus.size());

  absl::StatusOr<Tokenizer> tokenizer = Tokenizer::Load(kDataDir + name + ".tokenizer.json.gz");
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();

  int failures = 0;
  for (size_t i = 0; i < corpus.size() && failures < 20; ++i) {
    const std::string text = corpus[i].get<std::string>();
    const nlohmann::json& expected = cases[i];
    const auto ids = expected.at("ids").get<std::vector<int32_t>>();
    const auto ids_special = expected.at("ids_special").get<std::vector<int32_t>>();

    absl::StatusOr<std::vector<int32_t>> got = tokenizer->Encode(text, /*add_special_tokens=*/false);
    ASSERT_TRUE(got.ok()) << "case " << i << ": " << got.status();
    absl::StatusOr<std::vector<int32_t>> got_special = tokenizer->Encode(text, /*add_special_tokens=*/true);
    ASSERT_TRUE(got_special.ok()) << "case " << i << ": " << got_special.status();
    const std::string decoded = tokenizer->Decode(ids, /*skip_special_tokens=*/false);
    const std::string decoded_special = tokenizer->Decode(ids_special, /*skip_special_tokens=*/false);

    bool ok = true;
    ok &= *got == ids;
    ok &= *got_special == ids_special;
    ok &= decoded == expected.at("decoded").get<std::string>();
    ok &= decoded_special == expected.at("decoded_special").get<std::string>();
    if (!ok) {
      ++failures;
      ADD_FAILURE() << name << " case " << i << " " << Show(text) << "\n  ids      got "
                    << nlohmann::json(*got) << "\n           want " << nlohmann::json(ids)
                    << "\n  special  got " << nlohmann::json(*got_special) << "\n           want "
                    << nlohmann::json(ids_special) << "\n  decoded  got " << Show(decoded)
                    << "\n           want " << Show(expected.at("decoded").get<std::string>())
                    << "\n  decoded_special got " << Show(decoded_special) << "\n           want "
                    << Show(expected.at("decoded_special").get<std::string>());
    }
  }
  EXPECT_EQ(failures, 0) << "(reporting stops after 20 failing cases)";
}

INSTANTIATE_TEST_SUITE_P(RealTokenizers, TokenizerGoldenTest,
                         testing::Values("qwen3", "deepseek_v3", "llama2", "llama3_1", "gptoss"),
                         [](const testing::TestParamInfo<std::string>& info) { return info.param; });

}  // namespace
}  // namespace ringmoe
