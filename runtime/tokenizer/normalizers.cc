#include "runtime/tokenizer/normalizers.h"

namespace ringmoe::tokenizer_internal {

void StripNormalizer::Normalize(std::string& text) const {
  size_t begin = 0, end = text.size();
  if (left_) {
    while (begin < end) {
      size_t next = begin;
      if (!IsWhiteSpace(NextCodePoint(text, next))) break;
      begin = next;
    }
  }
  if (right_) {
    while (end > begin) {
      size_t start = end - 1;
      while (start > begin && (static_cast<uint8_t>(text[start]) & 0xC0) == 0x80) --start;
      size_t pos = start;
      if (!IsWhiteSpace(NextCodePoint(text, pos))) break;
      end = start;
    }
  }
  text = text.substr(begin, end - begin);
}

void ReplaceAll(const Regex& pattern, const std::string& content, std::string& text) {
  std::vector<std::pair<size_t, size_t>> matches;
  // A failure to match (PCRE2 resource limit) leaves the text unchanged; patterns here are simple literals.
  if (!pattern.FindAll(text, matches).ok() || matches.empty()) return;
  std::string out;
  out.reserve(text.size() + matches.size() * content.size());
  size_t previous = 0;
  for (const auto& [start, end] : matches) {
    out.append(text, previous, start - previous);
    out.append(content);
    previous = end;
  }
  out.append(text, previous, std::string::npos);
  text = std::move(out);
}

void ReplaceNormalizer::Normalize(std::string& text) const { ReplaceAll(pattern_, content_, text); }

}  // namespace ringmoe::tokenizer_internal
