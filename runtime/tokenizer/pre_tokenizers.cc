#include "runtime/tokenizer/pre_tokenizers.h"

#include "runtime/tokenizer/unicode_utils.h"

namespace ringmoe::tokenizer_internal {
namespace {

// Runs `split` on every piece that is not an added token; drops the empty pieces it returns.
template <typename SplitFn>
absl::Status SplitEach(Pieces& pieces, SplitFn&& split) {
  Pieces out;
  out.reserve(pieces.size() * 2);
  std::vector<std::pair<size_t, size_t>> ranges;
  for (Piece& piece : pieces) {
    if (piece.added_id >= 0) {
      out.push_back(std::move(piece));
      continue;
    }
    ranges.clear();
    absl::Status status = split(piece.text, ranges);
    if (!status.ok()) return status;
    for (const auto& [start, end] : ranges) {
      if (start == end) continue;
      Piece& sub = out.emplace_back();
      sub.text.assign(piece.text, start, end - start);
      sub.at_original_start = piece.at_original_start && start == 0;
    }
  }
  pieces = std::move(out);
  return absl::OkStatus();
}

}  // namespace

MatchRanges CoverWithMatches(size_t size, const std::vector<std::pair<size_t, size_t>>& matches) {
  MatchRanges ranges;
  if (size == 0) {
    ranges.push_back({{0, 0}, false});
    return ranges;
  }
  size_t previous = 0;
  for (const auto& [start, end] : matches) {
    if (previous != start) ranges.push_back({{previous, start}, false});
    ranges.push_back({{start, end}, true});
    previous = end;
  }
  if (previous != size) ranges.push_back({{previous, size}, false});
  return ranges;
}

MatchRanges CoverWithCharMatches(const std::string& text, const std::function<bool(char32_t)>& is_match) {
  MatchRanges ranges;
  if (text.empty()) {
    ranges.push_back({{0, 0}, false});
    return ranges;
  }
  size_t last_offset = 0, pos = 0;
  while (pos < text.size()) {
    const size_t start = pos;
    const char32_t c = NextCodePoint(text, pos);
    if (is_match(c)) {
      if (last_offset < start) ranges.push_back({{last_offset, start}, false});
      ranges.push_back({{start, pos}, true});
      last_offset = pos;
    }
  }
  if (pos > last_offset) ranges.push_back({{last_offset, pos}, false});
  return ranges;
}

std::vector<std::pair<size_t, size_t>> ApplySplitBehavior(MatchRanges ranges, SplitBehavior behavior) {
  // Each entry: the range, and whether it is removed.
  MatchRanges split;
  switch (behavior) {
    case SplitBehavior::kIsolated:
      for (auto& entry : ranges) split.push_back({entry.first, false});
      break;
    case SplitBehavior::kRemoved:
      split = std::move(ranges);
      break;
    case SplitBehavior::kContiguous: {
      bool previous_match = false;
      for (const auto& [offsets, is_match] : ranges) {
        if (is_match == previous_match && !split.empty()) {
          split.back().first.second = offsets.second;
        } else {
          split.push_back({offsets, false});
        }
        previous_match = is_match;
      }
      break;
    }
    case SplitBehavior::kMergedWithPrevious: {
      bool previous_match = false;
      for (const auto& [offsets, is_match] : ranges) {
        if (is_match && !previous_match && !split.empty()) {
          split.back().first.second = offsets.second;
        } else {
          split.push_back({offsets, false});
        }
        previous_match = is_match;
      }
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      bool previous_match = false;
      for (auto it = ranges.rbegin(); it != ranges.rend(); ++it) {
        const auto& [offsets, is_match] = *it;
        if (is_match && !previous_match && !split.empty()) {
          split.back().first.first = offsets.first;
        } else {
          split.push_back({offsets, false});
        }
        previous_match = is_match;
      }
      std::reverse(split.begin(), split.end());
      break;
    }
  }
  std::vector<std::pair<size_t, size_t>> out;
  out.reserve(split.size());
  for (const auto& [offsets, removed] : split) {
    if (!removed) out.push_back(offsets);
  }
  return out;
}

absl::Status SplitPreTokenizer::PreTokenize(Pieces& pieces) const {
  std::vector<std::pair<size_t, size_t>> matches;
  return SplitEach(pieces, [&](const std::string& text, std::vector<std::pair<size_t, size_t>>& out) {
    matches.clear();
    absl::Status status = pattern_.FindAll(text, matches);
    if (!status.ok()) return status;
    MatchRanges ranges = CoverWithMatches(text.size(), matches);
    if (invert_) {
      for (auto& entry : ranges) entry.second = !entry.second;
    }
    out = ApplySplitBehavior(std::move(ranges), behavior_);
    return absl::OkStatus();
  });
}

absl::Status ByteLevelPreTokenizer::PreTokenize(Pieces& pieces) const {
  if (add_prefix_space_) {
    for (Piece& piece : pieces) {
      if (piece.added_id < 0 && !piece.text.empty() && piece.text[0] != ' ') piece.text.insert(0, " ");
    }
  }
  if (regex_.has_value()) {
    std::vector<std::pair<size_t, size_t>> matches;
    absl::Status status =
        SplitEach(pieces, [&](const std::string& text, std::vector<std::pair<size_t, size_t>>& out) {
          matches.clear();
          absl::Status find_status = regex_->FindAll(text, matches);
          if (!find_status.ok()) return find_status;
          out = ApplySplitBehavior(CoverWithMatches(text.size(), matches), SplitBehavior::kIsolated);
          return absl::OkStatus();
        });
    if (!status.ok()) return status;
  }
  const ByteLevelAlphabet& alphabet = ByteLevelAlphabet::Get();
  std::string mapped;
  for (Piece& piece : pieces) {
    if (piece.added_id >= 0) continue;
    mapped.clear();
    alphabet.Encode(piece.text, mapped);
    piece.text.swap(mapped);
  }
  return absl::OkStatus();
}

absl::Status DigitsPreTokenizer::PreTokenize(Pieces& pieces) const {
  const SplitBehavior behavior = individual_digits_ ? SplitBehavior::kIsolated : SplitBehavior::kContiguous;
  return SplitEach(pieces, [&](const std::string& text, std::vector<std::pair<size_t, size_t>>& out) {
    out = ApplySplitBehavior(CoverWithCharMatches(text, IsNumeric), behavior);
    return absl::OkStatus();
  });
}

MetaspacePreTokenizer::MetaspacePreTokenizer(char32_t replacement, PrependScheme scheme, bool split)
    : replacement_(replacement), scheme_(scheme), split_(split) {
  AppendUtf8(replacement, replacement_utf8_);
}

absl::Status MetaspacePreTokenizer::PreTokenize(Pieces& pieces) const {
  for (Piece& piece : pieces) {
    if (piece.added_id >= 0) continue;
    std::string replaced;
    replaced.reserve(piece.text.size() + 8);
    for (char c : piece.text) {
      if (c == ' ') {
        replaced += replacement_utf8_;
      } else {
        replaced.push_back(c);
      }
    }
    const bool starts_with_replacement =
        replaced.compare(0, replacement_utf8_.size(), replacement_utf8_) == 0;
    if (!starts_with_replacement && (scheme_ == PrependScheme::kAlways ||
                                     (scheme_ == PrependScheme::kFirst && piece.at_original_start))) {
      replaced.insert(0, replacement_utf8_);
    }
    piece.text = std::move(replaced);
  }
  if (!split_) return absl::OkStatus();
  return SplitEach(pieces, [&](const std::string& text, std::vector<std::pair<size_t, size_t>>& out) {
    out = ApplySplitBehavior(CoverWithCharMatches(text, [&](char32_t c) { return c == replacement_; }),
                             SplitBehavior::kMergedWithNext);
    return absl::OkStatus();
  });
}

absl::Status WhitespacePreTokenizer::PreTokenize(Pieces& pieces) const {
  if (word_regex_.has_value()) {
    std::vector<std::pair<size_t, size_t>> matches;
    return SplitEach(pieces, [&](const std::string& text, std::vector<std::pair<size_t, size_t>>& out) {
      matches.clear();
      absl::Status status = word_regex_->FindAll(text, matches);
      if (!status.ok()) return status;
      MatchRanges ranges = CoverWithMatches(text.size(), matches);
      for (auto& entry : ranges) entry.second = !entry.second;  // Keep the words, remove the rest.
      out = ApplySplitBehavior(std::move(ranges), SplitBehavior::kRemoved);
      return absl::OkStatus();
    });
  }
  return SplitEach(pieces, [&](const std::string& text, std::vector<std::pair<size_t, size_t>>& out) {
    out = ApplySplitBehavior(CoverWithCharMatches(text, IsWhiteSpace), SplitBehavior::kRemoved);
    return absl::OkStatus();
  });
}

absl::Status SequencePreTokenizer::PreTokenize(Pieces& pieces) const {
  for (const auto& step : steps_) {
    absl::Status status = step->PreTokenize(pieces);
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

}  // namespace ringmoe::tokenizer_internal
