#include "runtime/tokenizer/unicode_utils.h"

#include <utf8proc.h>

#include <cstdlib>
#include <memory>

namespace ringmoe::tokenizer_internal {

int Utf8SequenceLength(std::string_view text, size_t pos) {
  const auto byte = [&](size_t i) -> uint8_t { return static_cast<uint8_t>(text[i]); };
  const size_t size = text.size();
  const uint8_t lead = byte(pos);
  if (lead < 0x80) return 1;
  if (lead < 0xC2) return 0;
  if (lead < 0xE0) return (pos + 1 < size && (byte(pos + 1) & 0xC0) == 0x80) ? 2 : 0;
  if (lead < 0xF0) {
    if (pos + 2 >= size) return 0;
    const uint8_t second = byte(pos + 1);
    const uint8_t low = lead == 0xE0 ? 0xA0 : 0x80;
    const uint8_t high = lead == 0xED ? 0x9F : 0xBF;
    if (second < low || second > high || (byte(pos + 2) & 0xC0) != 0x80) return 0;
    return 3;
  }
  if (lead < 0xF5) {
    if (pos + 3 >= size) return 0;
    const uint8_t second = byte(pos + 1);
    const uint8_t low = lead == 0xF0 ? 0x90 : 0x80;
    const uint8_t high = lead == 0xF4 ? 0x8F : 0xBF;
    if (second < low || second > high || (byte(pos + 2) & 0xC0) != 0x80 || (byte(pos + 3) & 0xC0) != 0x80) {
      return 0;
    }
    return 4;
  }
  return 0;
}

std::optional<size_t> FindInvalidUtf8(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    // Fast path over ASCII, eight bytes at a time.
    while (pos + 8 <= text.size()) {
      uint64_t word;
      __builtin_memcpy(&word, text.data() + pos, 8);
      if (word & 0x8080808080808080ULL) break;
      pos += 8;
    }
    if (pos >= text.size()) break;
    const int length = Utf8SequenceLength(text, pos);
    if (length == 0) return pos;
    pos += length;
  }
  return std::nullopt;
}

char32_t NextCodePoint(std::string_view text, size_t& pos) {
  const uint8_t lead = static_cast<uint8_t>(text[pos]);
  if (lead < 0x80) {
    ++pos;
    return lead;
  }
  int length = lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
  char32_t c = lead & (0x7F >> length);
  for (int i = 1; i < length; ++i) c = (c << 6) | (static_cast<uint8_t>(text[pos + i]) & 0x3F);
  pos += length;
  return c;
}

void AppendUtf8(char32_t c, std::string& out) {
  if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (c >> 12)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (c >> 18)));
    out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

namespace {

// Length of the longest prefix of text[pos..] that could start a valid sequence (the "maximal subpart"
// of Unicode's substitution practice); at least 1.
size_t MaximalInvalidSubpart(std::string_view text, size_t pos) {
  const auto byte = [&](size_t i) -> uint8_t { return static_cast<uint8_t>(text[i]); };
  const uint8_t lead = byte(pos);
  int needed;
  uint8_t low = 0x80, high = 0xBF;
  if (lead >= 0xC2 && lead < 0xE0) {
    needed = 1;
  } else if (lead >= 0xE0 && lead < 0xF0) {
    needed = 2;
    if (lead == 0xE0) low = 0xA0;
    if (lead == 0xED) high = 0x9F;
  } else if (lead >= 0xF0 && lead < 0xF5) {
    needed = 3;
    if (lead == 0xF0) low = 0x90;
    if (lead == 0xF4) high = 0x8F;
  } else {
    return 1;
  }
  size_t length = 1;
  for (int i = 0; i < needed && pos + length < text.size(); ++i) {
    const uint8_t next = byte(pos + length);
    const bool ok = i == 0 ? (next >= low && next <= high) : (next & 0xC0) == 0x80;
    if (!ok) break;
    ++length;
  }
  return length;
}

}  // namespace

std::string Utf8Lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  size_t pos = 0;
  while (pos < bytes.size()) {
    const int length = Utf8SequenceLength(bytes, pos);
    if (length > 0) {
      out.append(bytes.data() + pos, length);
      pos += length;
    } else {
      out.append("\xEF\xBF\xBD");
      pos += MaximalInvalidSubpart(bytes, pos);
    }
  }
  return out;
}

size_t IncompleteUtf8Suffix(std::string_view bytes) {
  // Look back at most three bytes for a lead byte whose sequence runs past the end.
  for (size_t back = 1; back <= 3 && back <= bytes.size(); ++back) {
    const size_t pos = bytes.size() - back;
    const uint8_t b = static_cast<uint8_t>(bytes[pos]);
    if ((b & 0xC0) == 0x80) continue;  // A continuation byte: keep looking for its lead.
    if (b < 0xC2 || b >= 0xF5) return 0;
    const size_t needed = b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
    if (needed <= back) return 0;  // Complete (or invalid, which is not ours to hold).
    return MaximalInvalidSubpart(bytes, pos) == back ? back : 0;
  }
  return 0;
}

bool IsWhiteSpace(char32_t c) {
  switch (c) {
    case 0x09:
    case 0x0A:
    case 0x0B:
    case 0x0C:
    case 0x0D:
    case 0x20:
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
      return true;
    default:
      return c >= 0x2000 && c <= 0x200A;
  }
}

bool IsNumeric(char32_t c) {
  const utf8proc_category_t category = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return category == UTF8PROC_CATEGORY_ND || category == UTF8PROC_CATEGORY_NL ||
         category == UTF8PROC_CATEGORY_NO;
}

std::string NormalizeUnicode(std::string_view text, NormalizationForm form) {
  int options = UTF8PROC_STABLE;
  switch (form) {
    case NormalizationForm::kNfc:
      options |= UTF8PROC_COMPOSE;
      break;
    case NormalizationForm::kNfd:
      options |= UTF8PROC_DECOMPOSE;
      break;
    case NormalizationForm::kNfkc:
      options |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
      break;
    case NormalizationForm::kNfkd:
      options |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
      break;
  }
  // ASCII is invariant under every normalisation form: skip the library call.
  bool ascii = true;
  for (char ch : text) {
    if (static_cast<uint8_t>(ch) >= 0x80) {
      ascii = false;
      break;
    }
  }
  if (ascii) return std::string(text);
  utf8proc_uint8_t* result = nullptr;
  const utf8proc_ssize_t length = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                                               static_cast<utf8proc_ssize_t>(text.size()), &result,
                                               static_cast<utf8proc_option_t>(options));
  if (length < 0) return std::string(text);  // Cannot happen on valid UTF-8; keep the text unchanged.
  std::string out(reinterpret_cast<const char*>(result), static_cast<size_t>(length));
  std::free(result);
  return out;
}

namespace {

// Unicode's Cased property, from the case mappings and categories utf8proc has (misses a few Other_Lowercase
// letters such as U+00AA).
bool IsCased(char32_t c) {
  const auto code = static_cast<utf8proc_int32_t>(c);
  const utf8proc_category_t category = utf8proc_category(code);
  return category == UTF8PROC_CATEGORY_LU || category == UTF8PROC_CATEGORY_LL ||
         category == UTF8PROC_CATEGORY_LT || utf8proc_tolower(code) != code || utf8proc_toupper(code) != code;
}

// Unicode's Case_Ignorable property: marks, format characters, modifiers, and the Word_Break MidLetter,
// MidNumLet and Single_Quote characters (which utf8proc does not expose; listed here).
bool IsCaseIgnorable(char32_t c) {
  switch (c) {
    case '\'':
    case '.':
    case ':':
    case 0xB7:
    case 0x387:
    case 0x55F:
    case 0x5F4:
    case 0x2018:
    case 0x2019:
    case 0x2024:
    case 0x2027:
    case 0xFE13:
    case 0xFE52:
    case 0xFE55:
    case 0xFF07:
    case 0xFF0E:
    case 0xFF1A:
      return true;
    default:
      break;
  }
  const utf8proc_category_t category = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return category == UTF8PROC_CATEGORY_MN || category == UTF8PROC_CATEGORY_ME ||
         category == UTF8PROC_CATEGORY_CF || category == UTF8PROC_CATEGORY_LM ||
         category == UTF8PROC_CATEGORY_SK;
}

// Unicode's Final_Sigma condition for the capital sigma at [start, end) of `text`: a cased letter before it
// and none after it, skipping case-ignorable characters (Rust's str::to_lowercase).
bool IsFinalSigma(std::string_view text, size_t start, size_t end) {
  bool cased_before = false;
  size_t pos = start;
  while (pos > 0) {
    size_t back = pos - 1;
    while (back > 0 && (static_cast<uint8_t>(text[back]) & 0xC0) == 0x80) --back;
    size_t next = back;
    const char32_t c = NextCodePoint(text, next);
    pos = back;
    if (IsCaseIgnorable(c)) continue;
    cased_before = IsCased(c);
    break;
  }
  if (!cased_before) return false;
  pos = end;
  while (pos < text.size()) {
    const char32_t c = NextCodePoint(text, pos);
    if (IsCaseIgnorable(c)) continue;
    return !IsCased(c);
  }
  return true;
}

}  // namespace

std::string ToLowercase(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t start = pos;
    const char32_t c = NextCodePoint(text, pos);
    if (c < 0x80) {
      out.push_back(static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c));
    } else if (c == 0x130) {
      out.append("i\xCC\x87");  // The one unconditional multi-character lowercase mapping (SpecialCasing).
    } else if (c == 0x3A3) {
      out.append(IsFinalSigma(text, start, pos) ? "\xCF\x82" : "\xCF\x83");  // ς or σ
    } else {
      AppendUtf8(static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c))), out);
    }
  }
  return out;
}

const ByteLevelAlphabet& ByteLevelAlphabet::Get() {
  static const ByteLevelAlphabet* const alphabet = new ByteLevelAlphabet();
  return *alphabet;
}

ByteLevelAlphabet::ByteLevelAlphabet() {
  for (auto& entry : byte_of_char_) entry = -1;
  // Printable Latin-1 bytes stand for themselves; the rest map to 256, 257, ... in byte order.
  char32_t next_extra = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    const char32_t c = printable ? static_cast<char32_t>(b) : next_extra++;
    std::string encoded;
    AppendUtf8(c, encoded);
    char_lengths_[b] = encoded.size();
    for (size_t i = 0; i < encoded.size(); ++i) chars_[b][i] = encoded[i];
    byte_of_char_[c] = static_cast<int16_t>(b);
  }
}

void ByteLevelAlphabet::Encode(std::string_view bytes, std::string& out) const {
  for (char ch : bytes) {
    const uint8_t b = static_cast<uint8_t>(ch);
    out.append(chars_[b], char_lengths_[b]);
  }
}

}  // namespace ringmoe::tokenizer_internal
