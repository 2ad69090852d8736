// Pre-tokenizers of tokenizer.json ("pre_tokenizer"): cut the normalised pieces into words for the model.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "runtime/tokenizer/regex.h"

namespace ringmoe::tokenizer_internal {

// One piece of the text on its way to the model. Pieces that are added tokens carry their id and are left
// alone by every later step.
struct Piece {
  std::string text;
  int32_t added_id = -1;
  bool at_original_start =
      false;  // Begins at byte 0 of the caller's text (Metaspace prepend_scheme "first").
};
using Pieces = std::vector<Piece>;

// How matches of a pattern cut a piece (the library's SplitDelimiterBehavior).
enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

// A covering of [0, size) by ranges, each flagged as a pattern match or not.
using MatchRanges = std::vector<std::pair<std::pair<size_t, size_t>, bool>>;
// Turns the matches of a pattern into a covering (the library's Pattern::find_matches).
MatchRanges CoverWithMatches(size_t size, const std::vector<std::pair<size_t, size_t>>& matches);
// Each character for which `is_match` holds is a match of its own.
MatchRanges CoverWithCharMatches(const std::string& text, const std::function<bool(char32_t)>& is_match);
// Applies `behavior` to a covering; returns the byte ranges of the resulting pieces (empty ones included).
std::vector<std::pair<size_t, size_t>> ApplySplitBehavior(MatchRanges ranges, SplitBehavior behavior);

// Threading: immutable; PreTokenize is safe from many threads.
class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  virtual absl::Status PreTokenize(Pieces& pieces) const = 0;
};

// Split: cut by a regex (a literal string pattern is escaped into one), optionally inverted.
class SplitPreTokenizer final : public PreTokenizer {
 public:
  SplitPreTokenizer(Regex pattern, SplitBehavior behavior, bool invert)
      : pattern_(std::move(pattern)), behavior_(behavior), invert_(invert) {}
  absl::Status PreTokenize(Pieces& pieces) const override;

 private:
  Regex pattern_;
  SplitBehavior behavior_;
  bool invert_;
};

// ByteLevel: optional prefix space, optional GPT-2 regex split, then every byte becomes its printable
// stand-in.
class ByteLevelPreTokenizer final : public PreTokenizer {
 public:
  // `gpt2_regex` is required when use_regex.
  ByteLevelPreTokenizer(bool add_prefix_space, std::optional<Regex> gpt2_regex)
      : add_prefix_space_(add_prefix_space), regex_(std::move(gpt2_regex)) {}
  absl::Status PreTokenize(Pieces& pieces) const override;

 private:
  bool add_prefix_space_;
  std::optional<Regex> regex_;
};

// Digits: digits (char::is_numeric) isolated one by one, or runs of digits kept together.
class DigitsPreTokenizer final : public PreTokenizer {
 public:
  explicit DigitsPreTokenizer(bool individual_digits) : individual_digits_(individual_digits) {}
  absl::Status PreTokenize(Pieces& pieces) const override;

 private:
  bool individual_digits_;
};

enum class PrependScheme { kFirst, kAlways, kNever };

// Metaspace: spaces become `replacement` (U+2581), a replacement is prepended per the scheme, and the piece
// is optionally split before each replacement character.
class MetaspacePreTokenizer final : public PreTokenizer {
 public:
  MetaspacePreTokenizer(char32_t replacement, PrependScheme scheme, bool split);
  absl::Status PreTokenize(Pieces& pieces) const override;

 private:
  char32_t replacement_;
  std::string replacement_utf8_;
  PrependScheme scheme_;
  bool split_;
};

// Whitespace (\w+|[^\w\s]+ kept, the rest removed) and WhitespaceSplit (cut on White_Space, removed).
class WhitespacePreTokenizer final : public PreTokenizer {
 public:
  explicit WhitespacePreTokenizer(std::optional<Regex> word_regex) : word_regex_(std::move(word_regex)) {}
  absl::Status PreTokenize(Pieces& pieces) const override;

 private:
  std::optional<Regex> word_regex_;  // Empty for WhitespaceSplit.
};

class SequencePreTokenizer final : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> steps)
      : steps_(std::move(steps)) {}
  absl::Status PreTokenize(Pieces& pieces) const override;

 private:
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

// GPT-2's pre-tokenisation regex, used by ByteLevel with use_regex.
inline constexpr char kGpt2Pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

}  // namespace ringmoe::tokenizer_internal
