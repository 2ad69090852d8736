// Unit tests of the tokenizer's parts: UTF-8 helpers, regex translation, normalizers, each pre-tokenizer and
// split behaviour, BPE merges / byte fallback / unknown tokens, added-token flags and decoders. Expected
// values come from the `tokenizers` library's own unit tests or are derived by hand from its rules.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "runtime/tokenizer/added_vocabulary.h"
#include "runtime/tokenizer/bpe_model.h"
#include "runtime/tokenizer/decoders.h"
#include "runtime/tokenizer/normalizers.h"
#include "runtime/tokenizer/pre_tokenizers.h"
#include "runtime/tokenizer/regex.h"
#include "runtime/tokenizer/unicode_utils.h"

namespace ringmoe::tokenizer_internal {
namespace {

using Strings = std::vector<std::string>;

Regex MustCompile(std::string_view pattern) {
  absl::StatusOr<Regex> regex = Regex::Compile(pattern);
  EXPECT_TRUE(regex.ok()) << regex.status();
  return std::move(*regex);
}

Pieces OnePiece(std::string text) {
  Pieces pieces(1);
  pieces[0].text = std::move(text);
  pieces[0].at_original_start = true;
  return pieces;
}

Strings Texts(const Pieces& pieces) {
  Strings out;
  for (const Piece& piece : pieces) out.push_back(piece.text);
  return out;
}

Strings PreTokenize(const PreTokenizer& pre_tokenizer, std::string text) {
  Pieces pieces = OnePiece(std::move(text));
  EXPECT_TRUE(pre_tokenizer.PreTokenize(pieces).ok());
  return Texts(pieces);
}

// ---------------------------------------------------------------- UTF-8 and Unicode helpers

TEST(Utf8, FindsTheFirstInvalidByte) {
  EXPECT_EQ(FindInvalidUtf8("plain ascii text, long enough for the fast path"), std::nullopt);
  EXPECT_EQ(FindInvalidUtf8("h\xC3\xA9llo \xF0\x9F\x98\x80"), std::nullopt);
  EXPECT_EQ(FindInvalidUtf8("abc\xC0\x80"), 3u);          // Overlong.
  EXPECT_EQ(FindInvalidUtf8("ab\xED\xA0\x80"), 2u);       // Surrogate.
  EXPECT_EQ(FindInvalidUtf8("a\xF4\x90\x80\x80"), 1u);    // Above U+10FFFF.
  EXPECT_EQ(FindInvalidUtf8("abcdefghij\xE2\x82"), 10u);  // Truncated at the end.
  EXPECT_EQ(FindInvalidUtf8("\x80"), 0u);                 // Lone continuation byte.
}

TEST(Utf8, LossyMatchesRustsMaximalSubpartRule) {
  // Rust's documented example: one U+FFFD for the incomplete 4-byte sequence.
  EXPECT_EQ(Utf8Lossy("Hello \xF0\x90\x80World"), "Hello \xEF\xBF\xBDWorld");
  // E0 80: 80 cannot follow E0, so each byte is its own maximal subpart.
  EXPECT_EQ(Utf8Lossy("\xE0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(Utf8Lossy("a\xFF"
                      "b"),
            "a\xEF\xBF\xBD"
            "b");
  EXPECT_EQ(Utf8Lossy("\xC3\xA9"), "\xC3\xA9");
}

TEST(Utf8, IncompleteSuffix) {
  EXPECT_EQ(IncompleteUtf8Suffix("abc"), 0u);
  EXPECT_EQ(IncompleteUtf8Suffix("ab\xE2\x82"), 2u);
  EXPECT_EQ(IncompleteUtf8Suffix("ab\xF0"), 1u);
  EXPECT_EQ(IncompleteUtf8Suffix("ab\xE2\x82\xAC"), 0u);
  EXPECT_EQ(IncompleteUtf8Suffix("ab\xE0\x80"), 0u);  // Invalid, not incomplete.
}

TEST(Unicode, NormalizationForms) {
  EXPECT_EQ(NormalizeUnicode("e\xCC\x81", NormalizationForm::kNfc), "\xC3\xA9");
  EXPECT_EQ(NormalizeUnicode("\xC3\xA9", NormalizationForm::kNfd), "e\xCC\x81");
  EXPECT_EQ(NormalizeUnicode("\xEF\xAC\x81", NormalizationForm::kNfkc), "fi");  // U+FB01 ligature.
  EXPECT_EQ(NormalizeUnicode("\xEF\xAC\x81", NormalizationForm::kNfc), "\xEF\xAC\x81");
  EXPECT_EQ(ToLowercase("HeLLo \xC3\x89"), "hello \xC3\xA9");
  EXPECT_EQ(ToLowercase("\xC4\xB0stanbul"), "i\xCC\x87stanbul");  // İ has a two-character lowercase.
  // Final sigma: ΟΔΟΣ -> οδος with ς; a lone Σ and one inside a word stay σ.
  EXPECT_EQ(ToLowercase("\xCE\x9F\xCE\x94\xCE\x9F\xCE\xA3 \xCE\xA3 \xCE\xA3\xCE\x91"),
            "\xCE\xBF\xCE\xB4\xCE\xBF\xCF\x82 \xCF\x83 \xCF\x83\xCE\xB1");
}

TEST(Unicode, ByteLevelAlphabet) {
  const ByteLevelAlphabet& alphabet = ByteLevelAlphabet::Get();
  EXPECT_EQ(alphabet.CharFor(' '), "\xC4\xA0");   // U+0120 'Ġ'
  EXPECT_EQ(alphabet.CharFor('\n'), "\xC4\x8A");  // U+010A 'Ċ'
  EXPECT_EQ(alphabet.CharFor('a'), "a");
  EXPECT_EQ(alphabet.CharFor(0xAD), "\xC5\x83");  // U+0143 'Ń'
  for (int b = 0; b < 256; ++b) {
    const std::string_view encoded = alphabet.CharFor(static_cast<uint8_t>(b));
    size_t pos = 0;
    EXPECT_EQ(alphabet.ByteFor(NextCodePoint(encoded, pos)), b);
  }
  EXPECT_EQ(alphabet.ByteFor(U'€'), -1);
}

// ---------------------------------------------------------------- Regex

TEST(Regex, WhiteSpaceFollowsTheUnicodeProperty) {
  Regex space = MustCompile("\\s");
  EXPECT_TRUE(space.Matches("\xC2\x85"));       // U+0085 NEL is White_Space (Oniguruma and Rust agree).
  EXPECT_FALSE(space.Matches("\xE1\xA0\x8E"));  // U+180E is not (PCRE2's own \s would match it).
  EXPECT_TRUE(space.Matches("\xE3\x80\x80"));   // U+3000
  Regex not_space_class = MustCompile("[^\\s\\p{L}]");
  EXPECT_TRUE(not_space_class.Matches("\xE1\xA0\x8E"));
  EXPECT_FALSE(not_space_class.Matches("\xC2\x85"));
}

TEST(Regex, FindAllSkipsEmptyMatchesAtThePreviousEnd) {
  Regex regex = MustCompile("a*");
  std::vector<std::pair<size_t, size_t>> matches;
  ASSERT_TRUE(regex.FindAll("baa", matches).ok());
  EXPECT_EQ(matches, (std::vector<std::pair<size_t, size_t>>{{0, 0}, {1, 3}}));
}

TEST(Regex, CaseInsensitiveGroupsAndLookahead) {
  Regex regex = MustCompile("(?i:'s|'t)|\\s+(?!\\S)|\\s+|\\p{L}+");
  std::vector<std::pair<size_t, size_t>> matches;
  ASSERT_TRUE(regex.FindAll("IT'S  ok", matches).ok());
  // "IT", "'S", " " (the space run minus the one before "ok"), " ok" is not one match: " " then "ok".
  EXPECT_EQ(matches, (std::vector<std::pair<size_t, size_t>>{{0, 2}, {2, 4}, {4, 5}, {5, 6}, {6, 8}}));
}

TEST(Regex, BadPatternIsAnError) { EXPECT_FALSE(Regex::Compile("(unclosed").ok()); }

TEST(Regex, EscapeLiteral) {
  Regex regex = MustCompile(EscapeLiteral("a.b*(c) d"));
  EXPECT_TRUE(regex.Matches("xa.b*(c) dx"));
  EXPECT_FALSE(regex.Matches("aXbb(c) d"));
}

// ---------------------------------------------------------------- Normalizers

TEST(Normalizers, PrependReplaceSequence) {
  std::vector<std::unique_ptr<Normalizer>> steps;
  steps.push_back(std::make_unique<PrependNormalizer>("\xE2\x96\x81"));
  steps.push_back(std::make_unique<ReplaceNormalizer>(MustCompile(EscapeLiteral(" ")), "\xE2\x96\x81"));
  SequenceNormalizer sequence(std::move(steps));
  std::string text = "Hey friend";
  sequence.Normalize(text);
  EXPECT_EQ(text,
            "\xE2\x96\x81Hey\xE2\x96\x81"
            "friend");
  std::string empty;
  sequence.Normalize(empty);
  EXPECT_EQ(empty, "");  // Prepend leaves empty pieces alone.
}

TEST(Normalizers, StripAndLowercaseAndNfc) {
  std::string text = " \t Hello\xE3\x80\x80 ";
  StripNormalizer(true, true).Normalize(text);
  EXPECT_EQ(text, "Hello");
  text = "  x  ";
  StripNormalizer(false, true).Normalize(text);
  EXPECT_EQ(text, "  x");
  LowercaseNormalizer().Normalize(text);
  EXPECT_EQ(text, "  x");
  text = "Cafe\xCC\x81";
  UnicodeNormalizer(NormalizationForm::kNfc).Normalize(text);
  EXPECT_EQ(text, "Caf\xC3\xA9");
}

TEST(Normalizers, RegexReplace) {
  std::string text = "a   b c";
  ReplaceNormalizer(MustCompile(" +"), "_").Normalize(text);
  EXPECT_EQ(text, "a_b_c");
}

// ---------------------------------------------------------------- Pre-tokenizers

struct BehaviorCase {
  SplitBehavior behavior;
  Strings expected;
};

TEST(PreTokenizers, SplitBehaviours) {
  // The library's own example ("the-final--countdown").
  const std::vector<BehaviorCase> cases = {
      {SplitBehavior::kRemoved, {"the", "final", "countdown"}},
      {SplitBehavior::kIsolated, {"the", "-", "final", "-", "-", "countdown"}},
      {SplitBehavior::kMergedWithPrevious, {"the-", "final-", "-", "countdown"}},
      {SplitBehavior::kMergedWithNext, {"the", "-final", "-", "-countdown"}},
      {SplitBehavior::kContiguous, {"the", "-", "final", "--", "countdown"}},
  };
  for (const BehaviorCase& test : cases) {
    SplitPreTokenizer split(MustCompile("-"), test.behavior, /*invert=*/false);
    EXPECT_EQ(PreTokenize(split, "the-final--countdown"), test.expected) << static_cast<int>(test.behavior);
  }
}

TEST(PreTokenizers, SplitInvert) {
  SplitPreTokenizer removed(MustCompile("-"), SplitBehavior::kRemoved, /*invert=*/true);
  EXPECT_EQ(PreTokenize(removed, "the-final--countdown"), (Strings{"-", "-", "-"}));
  SplitPreTokenizer words(MustCompile("\\p{L}+"), SplitBehavior::kMergedWithNext, /*invert=*/true);
  // Inverted, the non-letters are the "matches" and merge into the next piece.
  EXPECT_EQ(PreTokenize(words, "ab, cd!"), (Strings{"ab", ", cd", "!"}));
}

TEST(PreTokenizers, SplitLeavesAddedTokensAlone) {
  Pieces pieces = OnePiece("a-b");
  Piece& added = pieces.emplace_back();
  added.text = "-x-";
  added.added_id = 7;
  SplitPreTokenizer split(MustCompile("-"), SplitBehavior::kIsolated, false);
  ASSERT_TRUE(split.PreTokenize(pieces).ok());
  EXPECT_EQ(Texts(pieces), (Strings{"a", "-", "b", "-x-"}));
  EXPECT_EQ(pieces.back().added_id, 7);
}

TEST(PreTokenizers, ByteLevelWithGpt2Regex) {
  ByteLevelPreTokenizer byte_level(/*add_prefix_space=*/true, MustCompile(kGpt2Pattern));
  // The library's test sentence.
  EXPECT_EQ(PreTokenize(byte_level, "Hello my friend, how is your day going?"),
            (Strings{"\xC4\xA0Hello", "\xC4\xA0my",
                     "\xC4\xA0"
                     "friend",
                     ",", "\xC4\xA0how", "\xC4\xA0is", "\xC4\xA0your",
                     "\xC4\xA0"
                     "day",
                     "\xC4\xA0going", "?"}));
  // The library's tests: runs of spaces and newlines.
  ByteLevelPreTokenizer no_prefix(/*add_prefix_space=*/false, MustCompile(kGpt2Pattern));
  EXPECT_EQ(PreTokenize(no_prefix, "Hello there       dear"),
            (Strings{"Hello", "\xC4\xA0there", "\xC4\xA0\xC4\xA0\xC4\xA0\xC4\xA0\xC4\xA0\xC4\xA0",
                     "\xC4\xA0"
                     "dear"}));
  EXPECT_EQ(PreTokenize(no_prefix, "Hello there\nHello there"),
            (Strings{"Hello", "\xC4\xA0there", "\xC4\x8A", "Hello", "\xC4\xA0there"}));
  ByteLevelPreTokenizer no_regex(/*add_prefix_space=*/false, std::nullopt);
  EXPECT_EQ(PreTokenize(no_regex, "a b\n"), (Strings{"a\xC4\xA0"
                                                     "b\xC4\x8A"}));
}

TEST(PreTokenizers, Digits) {
  DigitsPreTokenizer individual(true);
  EXPECT_EQ(PreTokenize(individual, "Hey 123 friend!"), (Strings{"Hey ", "1", "2", "3", " friend!"}));
  DigitsPreTokenizer grouped(false);
  EXPECT_EQ(PreTokenize(grouped, "Hey 123 friend!"), (Strings{"Hey ", "123", " friend!"}));
  EXPECT_EQ(PreTokenize(grouped, "\xD9\xA3\xD9\xA4x"), (Strings{"\xD9\xA3\xD9\xA4", "x"}));  // Arabic-Indic.
}

TEST(PreTokenizers, Metaspace) {
  const std::string bar = "\xE2\x96\x81";
  MetaspacePreTokenizer always(U'\u2581', PrependScheme::kAlways, /*split=*/true);
  EXPECT_EQ(PreTokenize(always, "Hey friend!"), (Strings{bar + "Hey", bar + "friend!"}));
  EXPECT_EQ(PreTokenize(always, "Hey   friend!"), (Strings{bar + "Hey", bar, bar, bar + "friend!"}));
  MetaspacePreTokenizer never(U'\u2581', PrependScheme::kNever, /*split=*/false);
  EXPECT_EQ(PreTokenize(never, "Hey friend!"), (Strings{"Hey" + bar + "friend!"}));
  MetaspacePreTokenizer first(U'\u2581', PrependScheme::kFirst, /*split=*/true);
  Pieces pieces = OnePiece("a b");
  Piece& later = pieces.emplace_back();
  later.text = "c";  // Not at the start of the text: no prefix under "first".
  ASSERT_TRUE(first.PreTokenize(pieces).ok());
  EXPECT_EQ(Texts(pieces), (Strings{bar + "a", bar + "b", "c"}));
}

TEST(PreTokenizers, WhitespaceAndWhitespaceSplit) {
  WhitespacePreTokenizer whitespace(MustCompile("\\w+|[^\\w\\s]+"));
  EXPECT_EQ(PreTokenize(whitespace, "Hey man!! ok"), (Strings{"Hey", "man", "!!", "ok"}));
  WhitespacePreTokenizer split(std::nullopt);
  EXPECT_EQ(PreTokenize(split, "Hey  man!\tok"), (Strings{"Hey", "man!", "ok"}));
}

TEST(PreTokenizers, Sequence) {
  std::vector<std::unique_ptr<PreTokenizer>> steps;
  steps.push_back(std::make_unique<DigitsPreTokenizer>(true));
  steps.push_back(std::make_unique<WhitespacePreTokenizer>(std::nullopt));
  SequencePreTokenizer sequence(std::move(steps));
  EXPECT_EQ(PreTokenize(sequence, "ab 12"), (Strings{"ab", "1", "2"}));
}

// ---------------------------------------------------------------- BPE

std::unique_ptr<BpeModel> MakeBpe(const std::vector<std::pair<std::string_view, int32_t>>& vocab,
                                  const std::vector<std::pair<std::string_view, std::string_view>>& merges,
                                  BpeOptions options = {}) {
  auto model = BpeModel::Create(vocab, merges, std::move(options));
  EXPECT_TRUE(model.ok()) << model.status();
  return std::move(*model);
}

std::vector<int32_t> TokenizeWord(const BpeModel& model, std::string_view word) {
  std::vector<int32_t> ids;
  model.Tokenize(word, ids);
  return ids;
}

TEST(Bpe, MergesByRank) {
  auto model = MakeBpe({{"a", 0}, {"b", 1}, {"c", 2}, {"ab", 3}, {"bc", 4}, {"abc", 5}},
                       {{"b", "c"}, {"a", "b"}, {"ab", "c"}});
  EXPECT_EQ(TokenizeWord(*model, "abc"),
            (std::vector<int32_t>{0, 4}));  // "b c" outranks "a b"; no "a bc" merge.
  auto other = MakeBpe({{"a", 0}, {"b", 1}, {"c", 2}, {"ab", 3}, {"bc", 4}, {"abc", 5}},
                       {{"a", "b"}, {"b", "c"}, {"ab", "c"}});
  EXPECT_EQ(TokenizeWord(*other, "abc"), (std::vector<int32_t>{5}));
  EXPECT_EQ(TokenizeWord(*other, "cab"), (std::vector<int32_t>{2, 3}));
}

TEST(Bpe, EqualRanksMergeLeftmostFirst) {
  auto model = MakeBpe({{"a", 0}, {"aa", 1}}, {{"a", "a"}});
  EXPECT_EQ(TokenizeWord(*model, "aaa"), (std::vector<int32_t>{1, 0}));
  EXPECT_EQ(TokenizeWord(*model, "aaaa"), (std::vector<int32_t>{1, 1}));
}

TEST(Bpe, ByteFallbackAndUnknown) {
  BpeOptions options;
  options.byte_fallback = true;
  options.unk_token = "<unk>";
  auto model = MakeBpe({{"<unk>", 0}, {"a", 1}, {"<0xC3>", 2}, {"<0xA9>", 3}}, {}, options);
  EXPECT_EQ(TokenizeWord(*model, "a\xC3\xA9"), (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(TokenizeWord(*model, "a\xE2\x82\xAC"),
            (std::vector<int32_t>{1, 0}));  // '€' bytes are not all there: <unk>.
}

TEST(Bpe, FuseUnk) {
  BpeOptions fused;
  fused.unk_token = "<unk>";
  fused.fuse_unk = true;
  auto model = MakeBpe({{"<unk>", 0}, {"a", 1}}, {}, fused);
  EXPECT_EQ(TokenizeWord(*model, "xya"), (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(TokenizeWord(*model, "xay"), (std::vector<int32_t>{0, 1, 0}));
  BpeOptions separate;
  separate.unk_token = "<unk>";
  auto unfused = MakeBpe({{"<unk>", 0}, {"a", 1}}, {}, separate);
  EXPECT_EQ(TokenizeWord(*unfused, "xya"), (std::vector<int32_t>{0, 0, 1}));
  auto no_unk = MakeBpe({{"a", 0}}, {});
  EXPECT_EQ(TokenizeWord(*no_unk, "xa"),
            (std::vector<int32_t>{0}));  // Without an unknown token the character drops.
}

TEST(Bpe, IgnoreMerges) {
  BpeOptions options;
  options.ignore_merges = true;
  auto model = MakeBpe({{"a", 0}, {"b", 1}, {"ab", 2}, {"abab", 3}}, {{"a", "b"}}, options);
  EXPECT_EQ(TokenizeWord(*model, "abab"), (std::vector<int32_t>{3}));  // Whole word in the vocab: no merging.
  auto merging = MakeBpe({{"a", 0}, {"b", 1}, {"ab", 2}, {"abab", 3}}, {{"a", "b"}});
  EXPECT_EQ(TokenizeWord(*merging, "abab"), (std::vector<int32_t>{2, 2}));
}

TEST(Bpe, ContinuingSubwordPrefix) {
  BpeOptions options;
  options.continuing_subword_prefix = "##";
  auto model = MakeBpe({{"a", 0}, {"##b", 1}, {"ab", 2}, {"##a", 3}}, {{"a", "##b"}}, options);
  EXPECT_EQ(TokenizeWord(*model, "ab"), (std::vector<int32_t>{2}));
  EXPECT_EQ(TokenizeWord(*model, "aab"), (std::vector<int32_t>{0, 3, 1}));  // "##a ##b" has no merge.
}

TEST(Bpe, BadMergesAreErrors) {
  EXPECT_FALSE(BpeModel::Create({{"a", 0}}, {{"a", "b"}}, {}).ok());            // Missing part.
  EXPECT_FALSE(BpeModel::Create({{"a", 0}, {"b", 1}}, {{"a", "b"}}, {}).ok());  // Missing result.
}

TEST(Bpe, CachedResultsAreStable) {
  auto model = MakeBpe({{"a", 0}, {"b", 1}, {"ab", 2}}, {{"a", "b"}});
  for (int i = 0; i < 3; ++i) EXPECT_EQ(TokenizeWord(*model, "abba"), (std::vector<int32_t>{2, 1, 0}));
}

// ---------------------------------------------------------------- Added tokens

std::vector<Piece> Extract(const AddedVocabulary& vocabulary, std::string_view text,
                           const Normalizer* normalizer = nullptr) {
  Pieces pieces;
  vocabulary.ExtractAndNormalize(text, normalizer, pieces);
  return pieces;
}

AddedToken Token(std::string content, int32_t id) {
  AddedToken token;
  token.content = std::move(content);
  token.id = id;
  token.special = true;
  token.normalized = false;
  return token;
}

TEST(AddedTokens, LeftmostLongest) {
  auto vocabulary =
      AddedVocabulary::Create({Token("<a>", 10), Token("<a><b>", 11), Token("b>x", 12)}, nullptr);
  ASSERT_TRUE(vocabulary.ok());
  Pieces pieces = Extract(*vocabulary, "x<a><b>x<a>");
  EXPECT_EQ(Texts(pieces), (Strings{"x", "<a><b>", "x", "<a>"}));
  EXPECT_EQ(pieces[1].added_id, 11);
  EXPECT_EQ(pieces[3].added_id, 10);
  EXPECT_EQ(pieces[0].added_id, -1);
}

TEST(AddedTokens, LstripAndRstrip) {
  AddedToken mask = Token("<mask>", 5);
  mask.lstrip = true;
  auto left = AddedVocabulary::Create({mask}, nullptr);
  ASSERT_TRUE(left.ok());
  EXPECT_EQ(Texts(Extract(*left, "I saw a  <mask> !")), (Strings{"I saw a", "  <mask>", " !"}));
  mask.lstrip = false;
  mask.rstrip = true;
  auto right = AddedVocabulary::Create({mask}, nullptr);
  ASSERT_TRUE(right.ok());
  EXPECT_EQ(Texts(Extract(*right, "I saw a <mask> \t!")), (Strings{"I saw a ", "<mask> \t", "!"}));
}

TEST(AddedTokens, SingleWord) {
  AddedToken word = Token("ok", 3);
  word.single_word = true;
  auto vocabulary = AddedVocabulary::Create({word}, nullptr);
  ASSERT_TRUE(vocabulary.ok());
  EXPECT_EQ(Texts(Extract(*vocabulary, "bok ok okay")), (Strings{"bok ", "ok", " okay"}));
  EXPECT_EQ(Extract(*vocabulary, "bok ok okay")[1].added_id, 3);
  EXPECT_EQ(Extract(*vocabulary, "(ok)")[1].added_id, 3);
  EXPECT_EQ(Extract(*vocabulary, "x\nok")[1].added_id, 3);  // A newline ends the word before it.
  EXPECT_EQ(Extract(*vocabulary, "ok\nx")[0].added_id, 3);
  EXPECT_EQ(Extract(*vocabulary, "_ok").size(), 1u);  // '_' is a word character.
}

TEST(AddedTokens, NormalizedTokensMatchTheNormalizedText) {
  AddedToken normalized = Token("HELLO", 1);
  normalized.normalized = true;
  normalized.special = false;
  AddedToken raw = Token("WORLD", 2);
  LowercaseNormalizer lowercase;
  auto vocabulary = AddedVocabulary::Create({normalized, raw}, &lowercase);
  ASSERT_TRUE(vocabulary.ok());
  Pieces pieces = Extract(*vocabulary, "Say Hello WORLD", &lowercase);
  EXPECT_EQ(Texts(pieces), (Strings{"say ", "hello", " ", "WORLD"}));
  EXPECT_EQ(pieces[1].added_id, 1);
  EXPECT_EQ(pieces[3].added_id, 2);
  EXPECT_TRUE(pieces[0].at_original_start);
  EXPECT_FALSE(pieces[2].at_original_start);
}

// ---------------------------------------------------------------- Decoders

Strings Decode(const Decoder& decoder, Strings tokens) {
  decoder.DecodeChain(tokens);
  return tokens;
}

TEST(Decoders, ByteLevel) {
  EXPECT_EQ(Decode(ByteLevelDecoder(), {"\xC4\xA0hello", "\xC4\xA0w", "\xC4\x8A"}), (Strings{" hello w\n"}));
  EXPECT_EQ(Decode(ByteLevelDecoder(), {"\xC3\x83"}), (Strings{"\xEF\xBF\xBD"}));  // 'Ã' is byte C3 alone.
  // A token with a character outside the alphabet keeps its own UTF-8.
  EXPECT_EQ(Decode(ByteLevelDecoder(), {"<\xEF\xBD\x9C>", "a"}), (Strings{"<\xEF\xBD\x9C>a"}));
}

TEST(Decoders, ByteFallback) {
  EXPECT_EQ(Decode(ByteFallbackDecoder(), {"<0x61>", "<0xC3>", "<0xA9>", "b"}), (Strings{"a\xC3\xA9", "b"}));
  EXPECT_EQ(Decode(ByteFallbackDecoder(), {"<0xC3>", "x", "<0xE2>", "<0x82>"}),
            (Strings{"\xEF\xBF\xBD", "x", "\xEF\xBF\xBD", "\xEF\xBF\xBD"}));
  EXPECT_EQ(Decode(ByteFallbackDecoder(), {"<0xZZ>", "<0x0A"}), (Strings{"<0xZZ>", "<0x0A"}));
}

TEST(Decoders, FuseStripReplace) {
  EXPECT_EQ(Decode(FuseDecoder(), {"a", "b", "c"}), (Strings{"abc"}));
  EXPECT_EQ(Decode(StripDecoder(U' ', 1, 0), {" hello", "  x"}), (Strings{"hello", " x"}));
  EXPECT_EQ(Decode(StripDecoder(U' ', 2, 1), {"  hi  "}), (Strings{"hi "}));
  EXPECT_EQ(Decode(ReplaceDecoder(MustCompile(EscapeLiteral("\xE2\x96\x81")), " "), {"\xE2\x96\x81"
                                                                                     "a\xE2\x96\x81"}),
            (Strings{" a "}));
}

TEST(Decoders, Metaspace) {
  const std::string bar = "\xE2\x96\x81";
  EXPECT_EQ(Decode(MetaspaceDecoder(U'\u2581', PrependScheme::kAlways), {bar + "Hey", bar + "friend"}),
            (Strings{"Hey", " friend"}));
  EXPECT_EQ(Decode(MetaspaceDecoder(U'\u2581', PrependScheme::kNever), {bar + "Hey"}), (Strings{" Hey"}));
}

TEST(Decoders, SequenceLikeLlama) {
  std::vector<std::unique_ptr<Decoder>> steps;
  steps.push_back(std::make_unique<ReplaceDecoder>(MustCompile(EscapeLiteral("\xE2\x96\x81")), " "));
  steps.push_back(std::make_unique<ByteFallbackDecoder>());
  steps.push_back(std::make_unique<FuseDecoder>());
  steps.push_back(std::make_unique<StripDecoder>(U' ', 1, 0));
  SequenceDecoder sequence(std::move(steps));
  EXPECT_EQ(Decode(sequence, {"\xE2\x96\x81Hi", "<0x0A>", "\xE2\x96\x81there"}), (Strings{"Hi\n there"}));
}

}  // namespace
}  // namespace ringmoe::tokenizer_internal
