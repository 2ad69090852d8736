#include "runtime/tokenizer/decoders.h"

#include "runtime/tokenizer/normalizers.h"
#include "runtime/tokenizer/unicode_utils.h"

namespace ringmoe::tokenizer_internal {

void ByteLevelDecoder::DecodeChain(std::vector<std::string>& tokens) const {
  const ByteLevelAlphabet& alphabet = ByteLevelAlphabet::Get();
  std::string bytes;
  std::string token_bytes;
  for (const std::string& token : tokens) {
    token_bytes.clear();
    bool all_mapped = true;
    size_t pos = 0;
    while (pos < token.size()) {
      const int byte = alphabet.ByteFor(NextCodePoint(token, pos));
      if (byte < 0) {
        all_mapped = false;
        break;
      }
      token_bytes.push_back(static_cast<char>(byte));
    }
    bytes += all_mapped ? token_bytes : token;
  }
  tokens.assign(1, Utf8Lossy(bytes));
}

void ReplaceDecoder::DecodeChain(std::vector<std::string>& tokens) const {
  for (std::string& token : tokens) ReplaceAll(pattern_, content_, token);
}

namespace {

// "<0xNN>" -> NN, else -1.
int ParseByteToken(const std::string& token) {
  if (token.size() != 6 || token.compare(0, 3, "<0x") != 0 || token[5] != '>') return -1;
  int value = 0;
  for (int i = 3; i < 5; ++i) {
    const char c = token[i];
    int digit;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      digit = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      digit = c - 'A' + 10;
    } else {
      return -1;
    }
    value = value * 16 + digit;
  }
  return value;
}

}  // namespace

void ByteFallbackDecoder::DecodeChain(std::vector<std::string>& tokens) const {
  std::vector<std::string> out;
  out.reserve(tokens.size());
  std::string pending;
  const auto flush = [&] {
    if (pending.empty()) return;
    if (!FindInvalidUtf8(pending).has_value()) {
      out.push_back(pending);
    } else {
      for (size_t i = 0; i < pending.size(); ++i) out.emplace_back("\xEF\xBF\xBD");
    }
    pending.clear();
  };
  for (std::string& token : tokens) {
    const int byte = ParseByteToken(token);
    if (byte >= 0) {
      pending.push_back(static_cast<char>(byte));
      continue;
    }
    flush();
    out.push_back(std::move(token));
  }
  flush();
  tokens = std::move(out);
}

void FuseDecoder::DecodeChain(std::vector<std::string>& tokens) const {
  std::string joined;
  for (const std::string& token : tokens) joined += token;
  tokens.assign(1, std::move(joined));
}

void StripDecoder::DecodeChain(std::vector<std::string>& tokens) const {
  for (std::string& token : tokens) {
    std::vector<size_t> starts;  // Byte offset of each character.
    std::vector<char32_t> chars;
    size_t pos = 0;
    while (pos < token.size()) {
      starts.push_back(pos);
      chars.push_back(NextCodePoint(token, pos));
    }
    starts.push_back(token.size());
    size_t start_cut = 0;
    for (size_t i = 0; i < start_ && i < chars.size(); ++i) {
      if (chars[i] != content_) break;
      start_cut = i + 1;
    }
    size_t stop_cut = chars.size();
    for (size_t i = 0; i < stop_ && i < chars.size(); ++i) {
      const size_t index = chars.size() - i - 1;
      if (chars[index] != content_) break;
      stop_cut = index;
    }
    if (stop_cut < start_cut) stop_cut = start_cut;
    token = token.substr(starts[start_cut], starts[stop_cut] - starts[start_cut]);
  }
}

void MetaspaceDecoder::DecodeChain(std::vector<std::string>& tokens) const {
  for (size_t i = 0; i < tokens.size(); ++i) {
    std::string out;
    const std::string& token = tokens[i];
    size_t pos = 0;
    while (pos < token.size()) {
      const char32_t c = NextCodePoint(token, pos);
      if (c == replacement_) {
        if (i == 0 && scheme_ != PrependScheme::kNever) continue;
        out.push_back(' ');
      } else {
        AppendUtf8(c, out);
      }
    }
    tokens[i] = std::move(out);
  }
}

}  // namespace ringmoe::tokenizer_internal
