// UTF-8 helpers shared by the tokenizer: validation, code point iteration, Rust-compatible lossy decoding,
// Unicode normalisation (through utf8proc) and the GPT-2 byte <-> character table.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ringmoe::tokenizer_internal {

// Byte offset of the first byte that is not part of a well-formed UTF-8 sequence, or nullopt when `text` is
// valid (the same acceptance as Rust's str: no overlongs, no surrogates, nothing above U+10FFFF).
std::optional<size_t> FindInvalidUtf8(std::string_view text);

// Length of the well-formed UTF-8 sequence starting at text[pos] (1..4), or 0 if none starts there.
int Utf8SequenceLength(std::string_view text, size_t pos);

// Decodes the code point at text[pos] of valid UTF-8 and advances pos.
char32_t NextCodePoint(std::string_view text, size_t& pos);
void AppendUtf8(char32_t code_point, std::string& out);

// Rust's String::from_utf8_lossy: every maximal invalid subpart becomes one U+FFFD.
std::string Utf8Lossy(std::string_view bytes);
// Number of bytes at the end of `bytes` that form an incomplete but so far valid UTF-8 sequence (0..3).
size_t IncompleteUtf8Suffix(std::string_view bytes);

// Unicode properties as Rust's char methods define them.
bool IsWhiteSpace(char32_t c);  // char::is_whitespace (the White_Space property).
bool IsNumeric(char32_t c);     // char::is_numeric (general categories Nd, Nl, No).

enum class NormalizationForm { kNfc, kNfd, kNfkc, kNfkd };
// Valid UTF-8 in, normalised UTF-8 out.
std::string NormalizeUnicode(std::string_view text, NormalizationForm form);
// Rust's str::to_lowercase: utf8proc's lowercase mapping plus U+0130 -> "i\u0307" and the final-sigma rule.
std::string ToLowercase(std::string_view text);

// GPT-2's reversible map of the 256 byte values to printable characters ("Ġ" for the space byte).
class ByteLevelAlphabet {
 public:
  static const ByteLevelAlphabet& Get();
  // UTF-8 encoding of the character standing for `byte` (one or two bytes long).
  std::string_view CharFor(uint8_t byte) const { return {chars_[byte], char_lengths_[byte]}; }
  // The byte a character stands for, or -1 when the character is not in the alphabet.
  int ByteFor(char32_t c) const { return c < kTableSize ? byte_of_char_[c] : -1; }
  void Encode(std::string_view bytes, std::string& out) const;  // Appends the mapped characters.

 private:
  ByteLevelAlphabet();
  static constexpr char32_t kTableSize = 512;
  char chars_[256][2];
  size_t char_lengths_[256];
  int16_t byte_of_char_[kTableSize];
};

}  // namespace ringmoe::tokenizer_internal
