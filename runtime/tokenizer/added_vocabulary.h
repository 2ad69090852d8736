// Added tokens ("added_tokens"): special and normal tokens matched in the text before the model runs, as the
// library's AddedVocabulary does. Tokens with normalized=false are matched on the raw text, the others on
// each normalised piece; among matches the leftmost wins, then the longest (Aho-Corasick LeftmostLongest).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "runtime/tokenizer/normalizers.h"
#include "runtime/tokenizer/pre_tokenizers.h"
#include "runtime/tokenizer/regex.h"
#include "runtime/tokenizer/string_map.h"

namespace ringmoe::tokenizer_internal {

struct AddedToken {
  std::string content;
  int32_t id = 0;
  bool special = false;
  bool lstrip = false;       // Swallow the white space on its left.
  bool rstrip = false;       // Swallow the white space on its right.
  bool single_word = false;  // Match only when not inside a word.
  bool normalized = true;    // Match on the normalised text (else on the raw text).
};

// A byte trie finding leftmost-longest, non-overlapping matches of a set of strings.
class LiteralMatcher {
 public:
  void Add(std::string_view pattern, int32_t value);
  // Calls on_match(start, end, value) for each match, scanning on from each match's end.
  template <typename OnMatch>
  void FindAll(std::string_view text, OnMatch&& on_match) const;
  bool empty() const { return nodes_.size() <= 1; }

 private:
  struct Node {
    int32_t value = -1;  // >= 0: a pattern ends here.
  };
  int32_t Child(int32_t node, uint8_t byte) const {
    auto it = edges_.find((static_cast<uint64_t>(node) << 8) | byte);
    return it == edges_.end() ? -1 : it->second;
  }
  std::vector<Node> nodes_{Node{}};
  absl::flat_hash_map<uint64_t, int32_t> edges_;
  bool first_bytes_[256] = {};
};

// Threading: immutable after Create; safe from many threads.
class AddedVocabulary {
 public:
  // `normalizer` (may be null) normalises the contents of the normalized tokens for matching.
  static absl::StatusOr<AddedVocabulary> Create(std::vector<AddedToken> tokens, const Normalizer* normalizer);

  // Cuts `text` into pieces: added tokens (with their id) and the text between them, normalising the latter
  // with `normalizer` (may be null). Empty pieces are dropped.
  void ExtractAndNormalize(std::string_view text, const Normalizer* normalizer, Pieces& pieces) const;

  const AddedToken* FindById(int32_t id) const;
  std::optional<int32_t> FindByContent(std::string_view content) const;
  // Whether `content` is the content of a special token (the library skips tokens by content when decoding).
  bool IsSpecialContent(std::string_view content) const { return special_contents_.contains(content); }
  const std::vector<AddedToken>& tokens() const { return tokens_; }

 private:
  AddedVocabulary() = default;
  // The library's find_matches: the covering of `text` by (token id or -1, start, end).
  struct Match {
    int32_t id;
    size_t start, end;
  };
  std::vector<Match> FindMatches(std::string_view text, const LiteralMatcher& matcher) const;

  std::vector<AddedToken> tokens_;
  absl::flat_hash_map<int32_t, size_t> index_by_id_;
  StringMap<int32_t> id_by_content_;
  StringMap<bool> special_contents_;
  LiteralMatcher raw_matcher_;         // Tokens with normalized == false.
  LiteralMatcher normalized_matcher_;  // Tokens with normalized == true, by their normalised content.
  // single_word: a word character at the very end / start (Rust's $ and ^, which ignore newlines).
  std::optional<Regex> word_end_;
  std::optional<Regex> word_start_;
};

template <typename OnMatch>
void LiteralMatcher::FindAll(std::string_view text, OnMatch&& on_match) const {
  if (empty()) return;
  size_t start = 0;
  while (start < text.size()) {
    if (!first_bytes_[static_cast<uint8_t>(text[start])]) {
      ++start;
      continue;
    }
    int32_t node = 0;
    int32_t best_value = -1;
    size_t best_end = 0;
    for (size_t i = start; i < text.size(); ++i) {
      node = Child(node, static_cast<uint8_t>(text[i]));
      if (node < 0) break;
      if (nodes_[node].value >= 0) {
        best_value = nodes_[node].value;
        best_end = i + 1;
      }
    }
    if (best_value >= 0) {
      on_match(start, best_end, best_value);
      start = best_end;
    } else {
      ++start;
    }
  }
}

}  // namespace ringmoe::tokenizer_internal
