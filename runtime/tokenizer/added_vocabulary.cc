#include "runtime/tokenizer/added_vocabulary.h"

#include "runtime/tokenizer/unicode_utils.h"

namespace ringmoe::tokenizer_internal {

void LiteralMatcher::Add(std::string_view pattern, int32_t value) {
  if (pattern.empty()) return;
  int32_t node = 0;
  for (char ch : pattern) {
    const uint64_t key = (static_cast<uint64_t>(node) << 8) | static_cast<uint8_t>(ch);
    auto it = edges_.find(key);
    if (it == edges_.end()) {
      nodes_.emplace_back();
      it = edges_.emplace(key, static_cast<int32_t>(nodes_.size() - 1)).first;
    }
    node = it->second;
  }
  // The first of equal patterns wins, as in the automaton.
  if (nodes_[node].value < 0) nodes_[node].value = value;
  first_bytes_[static_cast<uint8_t>(pattern[0])] = true;
}

absl::StatusOr<AddedVocabulary> AddedVocabulary::Create(std::vector<AddedToken> tokens,
                                                        const Normalizer* normalizer) {
  AddedVocabulary vocabulary;
  // The library matches special tokens first, then the others, each group in file order (the order only
  // matters for identical patterns).
  std::vector<size_t> order;
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i].special) order.push_back(i);
  }
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (!tokens[i].special) order.push_back(i);
  }
  for (size_t i = 0; i < tokens.size(); ++i) {
    vocabulary.index_by_id_[tokens[i].id] = i;
    vocabulary.id_by_content_[tokens[i].content] = tokens[i].id;
    if (tokens[i].special && !tokens[i].content.empty())
      vocabulary.special_contents_[tokens[i].content] = true;
  }
  for (size_t i : order) {
    const AddedToken& token = tokens[i];
    if (token.content.empty()) continue;
    if (!token.normalized) {
      vocabulary.raw_matcher_.Add(token.content, token.id);
    } else {
      std::string content = token.content;
      if (normalizer != nullptr) normalizer->Normalize(content);
      vocabulary.normalized_matcher_.Add(content, token.id);
    }
  }
  vocabulary.tokens_ = std::move(tokens);
  auto word_end = Regex::Compile("\\w\\z", /*multiline=*/false);
  auto word_start = Regex::Compile("\\A\\w", /*multiline=*/false);
  if (!word_end.ok()) return word_end.status();
  if (!word_start.ok()) return word_start.status();
  vocabulary.word_end_.emplace(std::move(*word_end));
  vocabulary.word_start_.emplace(std::move(*word_start));
  return vocabulary;
}

const AddedToken* AddedVocabulary::FindById(int32_t id) const {
  auto it = index_by_id_.find(id);
  return it == index_by_id_.end() ? nullptr : &tokens_[it->second];
}

std::optional<int32_t> AddedVocabulary::FindByContent(std::string_view content) const {
  auto it = id_by_content_.find(content);
  if (it == id_by_content_.end()) return std::nullopt;
  return it->second;
}

std::vector<AddedVocabulary::Match> AddedVocabulary::FindMatches(std::string_view text,
                                                                 const LiteralMatcher& matcher) const {
  std::vector<Match> splits;
  if (text.empty()) return splits;
  size_t start_offset = 0;
  matcher.FindAll(text, [&](size_t match_start, size_t match_end, int32_t id) {
    size_t start = match_start, stop = match_end;
    const AddedToken& token = *FindById(id);
    if (token.single_word) {
      const bool start_space = start == 0 || !word_end_->Matches(text.substr(0, start));
      const bool stop_space = stop == text.size() || !word_start_->Matches(text.substr(stop));
      if (!start_space || !stop_space) return;  // Not a single word: not a match.
    }
    if (token.lstrip) {
      // Where the run of white space that ends at `start` begins.
      size_t new_start = start;
      while (new_start > 0) {
        size_t back = new_start - 1;
        while (back > 0 && (static_cast<uint8_t>(text[back]) & 0xC0) == 0x80) --back;
        size_t pos = back;
        if (!IsWhiteSpace(NextCodePoint(text, pos))) break;
        new_start = back;
      }
      start = std::max(new_start, start_offset);
    }
    if (token.rstrip) {
      while (stop < text.size()) {
        size_t pos = stop;
        if (!IsWhiteSpace(NextCodePoint(text, pos))) break;
        stop = pos;
      }
    }
    if (start_offset < start) splits.push_back(Match{-1, start_offset, start});
    splits.push_back(Match{id, start, stop});
    start_offset = stop;
  });
  if (start_offset != text.size()) splits.push_back(Match{-1, start_offset, text.size()});
  return splits;
}

void AddedVocabulary::ExtractAndNormalize(std::string_view text, const Normalizer* normalizer,
                                          Pieces& pieces) const {
  pieces.clear();
  // 1. Tokens matched on the raw text.
  for (const Match& raw : FindMatches(text, raw_matcher_)) {
    if (raw.end <= raw.start && raw.id < 0) continue;
    if (raw.id >= 0) {
      Piece& piece = pieces.emplace_back();
      piece.text.assign(text.substr(raw.start, raw.end - raw.start));
      piece.added_id = raw.id;
      continue;
    }
    // 2. Normalise the text between them, then match the normalized tokens on it.
    std::string normalized(text.substr(raw.start, raw.end - raw.start));
    if (normalizer != nullptr) normalizer->Normalize(normalized);
    if (normalized_matcher_.empty()) {
      if (normalized.empty()) continue;
      Piece& piece = pieces.emplace_back();
      piece.text = std::move(normalized);
      piece.at_original_start = raw.start == 0;
      continue;
    }
    for (const Match& match : FindMatches(normalized, normalized_matcher_)) {
      if (match.end <= match.start) continue;
      Piece& piece = pieces.emplace_back();
      piece.text.assign(normalized, match.start, match.end - match.start);
      piece.added_id = match.id;
      piece.at_original_start = raw.start == 0 && match.start == 0;
    }
  }
}

}  // namespace ringmoe::tokenizer_internal
