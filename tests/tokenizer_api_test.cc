// Tests of the public tokenizer API: loading (files, folders, gzip, errors), the post-processor template,
// EOS/BOS from tokenizer_config.json, invalid UTF-8, thread safety, and the incremental decoder.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "ringmoe/tokenizer.h"
#include "runtime/tokenizer/file_reader.h"
#include "runtime/tokenizer/unicode_utils.h"

namespace ringmoe {
namespace {

namespace fs = std::filesystem;
using Ids = std::vector<int32_t>;

const std::string kDataDir = std::string(RINGMOE_SOURCE_DIR) + "/tests/data/tokenizers/";

// A tiny BPE tokenizer: Whitespace pre-tokenizer, <s> A </s> template, no decoder.
constexpr char kTinyTokenizer[] = R"({
  "version": "1.0",
  "added_tokens": [
    {"id": 0, "content": "<s>", "special": true, "normalized": false, "lstrip": false, "rstrip": false,
     "single_word": false},
    {"id": 1, "content": "</s>", "special": true, "normalized": false, "lstrip": false, "rstrip": false,
     "single_word": false},
    {"id": 6, "content": "[tool]", "special": false, "normalized": false, "lstrip": false, "rstrip": false,
     "single_word": false}
  ],
  "normalizer": null,
  "pre_tokenizer": {"type": "Whitespace"},
  "post_processor": {
    "type": "TemplateProcessing",
    "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
               {"SpecialToken": {"id": "</s>", "type_id": 0}}],
    "pair": [],
    "special_tokens": {"<s>": {"id": "<s>", "ids": [0], "tokens": ["<s>"]},
                       "</s>": {"id": "</s>", "ids": [1], "tokens": ["</s>"]}}
  },
  "decoder": null,
  "model": {"type": "BPE", "dropout": null, "unk_token": null, "fuse_unk": false, "byte_fallback": false,
            "vocab": {"<s>": 0, "</s>": 1, "h": 2, "i": 3, "hi": 4, "!": 5},
            "merges": MERGES}
})";

std::string TinyTokenizerJson(const std::string& merges) {
  std::string json = kTinyTokenizer;
  json.replace(json.find("MERGES"), 6, merges);
  return json;
}

// A fresh folder under the system temp directory, removed at the end of the test.
class TempFolder {
 public:
  TempFolder() {
    static std::atomic<int> counter{0};
    path_ = fs::temp_directory_path() /
            ("ringmoe_tokenizer_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(path_);
  }
  ~TempFolder() {
    std::error_code error;
    fs::remove_all(path_, error);
  }
  std::string Write(const std::string& name, const std::string& contents) const {
    const fs::path file = path_ / name;
    std::ofstream(file, std::ios::binary) << contents;
    return file.string();
  }
  std::string path() const { return path_.string(); }

 private:
  fs::path path_;
};

Tokenizer MustLoad(const std::string& path) {
  absl::StatusOr<Tokenizer> tokenizer = Tokenizer::Load(path);
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  if (!tokenizer.ok()) std::abort();
  return std::move(*tokenizer);
}

Ids MustEncode(const Tokenizer& tokenizer, std::string_view text, bool add_special_tokens) {
  absl::StatusOr<Ids> ids = tokenizer.Encode(text, add_special_tokens);
  EXPECT_TRUE(ids.ok()) << ids.status();
  return ids.ok() ? *ids : Ids{};
}

std::vector<std::string> Corpus() {
  std::ifstream in(kDataDir + "corpus.json");
  return nlohmann::json::parse(in).get<std::vector<std::string>>();
}

TEST(TokenizerApi, TemplateAddsSpecialTokensAndNoDecoderJoinsWithSpaces) {
  TempFolder folder;
  for (const std::string merges : {R"([["h", "i"]])", R"(["h i"])"}) {
    Tokenizer tokenizer = MustLoad(folder.Write("tokenizer.json", TinyTokenizerJson(merges)));
    EXPECT_EQ(MustEncode(tokenizer, "hi !", false), (Ids{4, 5}));
    EXPECT_EQ(MustEncode(tokenizer, "hi !", true), (Ids{0, 4, 5, 1}));
    EXPECT_EQ(MustEncode(tokenizer, "", true), (Ids{0, 1}));
    EXPECT_EQ(MustEncode(tokenizer, "h<s>i[tool]", false), (Ids{2, 0, 3, 6}));
    EXPECT_EQ(tokenizer.Decode(Ids{0, 4, 5, 1}, false), "<s> hi ! </s>");
    EXPECT_EQ(tokenizer.Decode(Ids{0, 4, 6, 1}, true), "hi [tool]");  // [tool] is added but not special.
    EXPECT_EQ(tokenizer.Decode(Ids{4, 99, -1}, false), "hi");         // Unknown ids are skipped.
    EXPECT_EQ(tokenizer.vocab_size(), 7);
    EXPECT_TRUE(tokenizer.IsSpecial(0));
    EXPECT_FALSE(tokenizer.IsSpecial(6));
    EXPECT_FALSE(tokenizer.IsSpecial(4));
    EXPECT_EQ(tokenizer.TokenToId("hi"), 4);
    EXPECT_EQ(tokenizer.TokenToId("[tool]"), 6);
    EXPECT_EQ(tokenizer.TokenToId("nope"), std::nullopt);
    EXPECT_EQ(tokenizer.IdToToken(4), "hi");
    EXPECT_EQ(tokenizer.IdToToken(5000), std::nullopt);
    EXPECT_TRUE(tokenizer.EosTokenIds().empty());  // No tokenizer_config.json.
    EXPECT_EQ(tokenizer.BosTokenId(), std::nullopt);
  }
}

TEST(TokenizerApi, FolderWithConfigAndGzip) {
  TempFolder folder;
  folder.Write("tokenizer.json", TinyTokenizerJson(R"([["h", "i"]])"));
  folder.Write("tokenizer_config.json", R"({"bos_token": "<s>", "eos_token": {"content": "</s>"}})");
  Tokenizer tokenizer = MustLoad(folder.path());
  EXPECT_EQ(tokenizer.EosTokenIds(), (Ids{1}));
  EXPECT_EQ(tokenizer.BosTokenId(), 0);
  folder.Write("generation_config.json", R"({"bos_token_id": 0, "eos_token_id": [1, 5]})");
  EXPECT_EQ(MustLoad(folder.path()).EosTokenIds(), (Ids{1, 5}));
  folder.Write("generation_config.json", R"({"eos_token_id": 70000})");
  EXPECT_EQ(Tokenizer::Load(folder.path()).status().code(), absl::StatusCode::kInvalidArgument);
  folder.Write("tokenizer_config.json", R"({"eos_token": "</nope>"})");
  EXPECT_EQ(Tokenizer::Load(folder.path()).status().code(), absl::StatusCode::kInvalidArgument);

  // The real gzip files: <name>.tokenizer.json.gz pairs with <name>.tokenizer_config.json.
  Tokenizer qwen3 = MustLoad(kDataDir + "qwen3.tokenizer.json.gz");
  EXPECT_EQ(qwen3.vocab_size(), 151669);
  EXPECT_EQ(qwen3.EosTokenIds(), (Ids{151645}));  // <|im_end|>
  EXPECT_EQ(qwen3.BosTokenId(), std::nullopt);
  EXPECT_EQ(qwen3.TokenToId("<|im_start|>"), 151644);
  EXPECT_TRUE(qwen3.IsSpecial(151643));
  const std::optional<int32_t> hello = qwen3.TokenToId("\xC4\xA0hello");  // "Ġhello"
  ASSERT_TRUE(hello.has_value());
  EXPECT_EQ(qwen3.TokenToString(*hello), " hello");
  EXPECT_EQ(qwen3.TokenToString(151644), "<|im_start|>");

  Tokenizer llama2 = MustLoad(kDataDir + "llama2.tokenizer.json.gz");
  EXPECT_EQ(llama2.BosTokenId(), 1);
  EXPECT_EQ(llama2.EosTokenIds(), (Ids{2}));
  EXPECT_EQ(MustEncode(llama2, "Hello", true).front(), 1);
}

TEST(TokenizerApi, LoadErrorsNameTheFile) {
  TempFolder folder;
  absl::StatusOr<Tokenizer> missing = Tokenizer::Load(folder.path() + "/nope.json");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("nope.json"), std::string::npos);

  absl::StatusOr<Tokenizer> empty_folder = Tokenizer::Load(folder.path());
  EXPECT_EQ(empty_folder.status().code(), absl::StatusCode::kNotFound);

  const std::string bad_json = folder.Write("bad.json", "{\"model\": ");
  absl::StatusOr<Tokenizer> bad = Tokenizer::Load(bad_json);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("bad.json"), std::string::npos);

  const std::string word_piece = folder.Write("wp.json", R"({"model": {"type": "WordPiece", "vocab": {}}})");
  EXPECT_EQ(Tokenizer::Load(word_piece).status().code(), absl::StatusCode::kUnimplemented);

  std::string bad_merge = TinyTokenizerJson(R"([["h", "x"]])");
  EXPECT_EQ(Tokenizer::Load(folder.Write("merge.json", bad_merge)).status().code(),
            absl::StatusCode::kInvalidArgument);

  const std::string corrupt_gz = folder.Write("corrupt.json.gz", std::string("\x1f\x8b\x08\x00garbage", 11));
  EXPECT_FALSE(Tokenizer::Load(corrupt_gz).ok());

  std::string bad_regex = TinyTokenizerJson(R"([])");
  bad_regex.replace(
      bad_regex.find(R"({"type": "Whitespace"})"), 22,
      R"({"type": "Split", "pattern": {"Regex": "(a"}, "behavior": "Isolated", "invert": false})");
  EXPECT_EQ(Tokenizer::Load(folder.Write("regex.json", bad_regex)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(TokenizerApi, CatastrophicRegexIsAnErrorNotAHang) {
  TempFolder folder;
  std::string json = TinyTokenizerJson(R"([])");
  json.replace(
      json.find(R"({"type": "Whitespace"})"), 22,
      R"({"type": "Split", "pattern": {"Regex": "(a+)+$"}, "behavior": "Isolated", "invert": false})");
  Tokenizer tokenizer = MustLoad(folder.Write("tokenizer.json", json));
  absl::StatusOr<Ids> ids = tokenizer.Encode(std::string(40, 'a') + "!", false);
  ASSERT_FALSE(ids.ok());
  EXPECT_EQ(ids.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(tokenizer.Encode("hi", false).ok());
}

TEST(TokenizerApi, InvalidUtf8IsAnErrorNamingTheOffset) {
  Tokenizer tokenizer = MustLoad(kDataDir + "qwen3.tokenizer.json.gz");
  for (const std::string& text : {std::string("ab\xFF"
                                              "cd"),
                                  std::string("ab\xC3"), std::string("ab\xED\xA0\x80")}) {
    absl::StatusOr<Ids> ids = tokenizer.Encode(text, false);
    ASSERT_FALSE(ids.ok());
    EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(ids.status().message().find("byte offset 2"), std::string::npos) << ids.status();
  }
}

TEST(TokenizerApi, ConcurrentEncodesMatchSequentialOnes) {
  const Tokenizer tokenizer = MustLoad(kDataDir + "gptoss.tokenizer.json.gz");
  const std::vector<std::string> corpus = Corpus();
  std::vector<Ids> expected;
  for (const std::string& text : corpus) expected.push_back(MustEncode(tokenizer, text, false));
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (size_t i = t; i < corpus.size() * 2; i += 3) {
        const size_t index = i % corpus.size();
        absl::StatusOr<Ids> ids = tokenizer.Encode(corpus[index], false);
        if (!ids.ok() || *ids != expected[index]) ++mismatches;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(mismatches.load(), 0);
}

TEST(TokenizerApi, MovedTokenizerStillWorks) {
  Tokenizer first = MustLoad(kDataDir + "llama2.tokenizer.json.gz");
  const Ids ids = MustEncode(first, "Hello world", false);
  Tokenizer second = std::move(first);
  EXPECT_EQ(MustEncode(second, "Hello world", false), ids);
  EXPECT_EQ(second.Decode(ids, true), "Hello world");
}

// Feeding ids one at a time gives back exactly Decode(ids), in chunks that never split a character.
void CheckIncremental(const Tokenizer& tokenizer, const Ids& ids, bool skip_special_tokens,
                      const std::string& label) {
  const std::string expected = tokenizer.Decode(ids, skip_special_tokens);
  const bool expected_has_replacement = expected.find("\xEF\xBF\xBD") != std::string::npos;
  IncrementalDecoder decoder(tokenizer, skip_special_tokens);
  std::string streamed;
  for (int32_t id : ids) {
    const std::string chunk = decoder.Append(id);
    EXPECT_EQ(tokenizer_internal::FindInvalidUtf8(chunk), std::nullopt) << label;
    if (!expected_has_replacement) {
      EXPECT_EQ(chunk.find("\xEF\xBF\xBD"), std::string::npos) << label << ": a character was split";
    }
    streamed += chunk;
  }
  streamed += decoder.Flush();
  EXPECT_EQ(streamed, expected) << label;
}

TEST(IncrementalDecoder, StreamsTheSameTextAsDecode) {
  const std::vector<std::string> corpus = Corpus();
  for (const char* name : {"qwen3", "llama2", "gptoss"}) {
    const Tokenizer tokenizer = MustLoad(kDataDir + name + ".tokenizer.json.gz");
    for (size_t i = 0; i < corpus.size(); ++i) {
      const std::string label = std::string(name) + " case " + std::to_string(i);
      const Ids ids = MustEncode(tokenizer, corpus[i], /*add_special_tokens=*/true);
      CheckIncremental(tokenizer, ids, /*skip_special_tokens=*/true, label);
      CheckIncremental(tokenizer, ids, /*skip_special_tokens=*/false, label + " (specials kept)");
    }
  }
}

TEST(IncrementalDecoder, HoldsBackIncompleteCharacters) {
  const Tokenizer tokenizer = MustLoad(kDataDir + "llama2.tokenizer.json.gz");
  // '€' (E2 82 AC) as three byte-fallback tokens: nothing comes out until the last one.
  const std::optional<int32_t> b1 = tokenizer.TokenToId("<0xE2>");
  const std::optional<int32_t> b2 = tokenizer.TokenToId("<0x82>");
  const std::optional<int32_t> b3 = tokenizer.TokenToId("<0xAC>");
  ASSERT_TRUE(b1 && b2 && b3);
  IncrementalDecoder decoder(tokenizer);
  EXPECT_EQ(decoder.Append(*b1), "");
  EXPECT_EQ(decoder.Append(*b2), "");
  EXPECT_EQ(decoder.Append(*b3), "\xE2\x82\xAC");
  // An incomplete character at the end comes out of Flush as U+FFFD.
  EXPECT_EQ(decoder.Append(*b1), "");
  EXPECT_EQ(decoder.Flush(), "\xEF\xBF\xBD");
}

}  // namespace
}  // namespace ringmoe
