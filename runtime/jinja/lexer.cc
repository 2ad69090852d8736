#include "runtime/jinja/lexer.h"

#include <algorithm>
#include <cctype>
#include <limits>

#include "runtime/jinja/error.h"
#include "runtime/jinja/text.h"

namespace ringmoe::jinja {
namespace {

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// "\r\n" and "\r" become "\n"; one trailing newline is dropped (Jinja2's keep_trailing_newline=False).
std::string NormalizeNewlines(const std::string& source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out += source[i];
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

class Lexer {
 public:
  Lexer(const std::string& source, const LexerOptions& options)
      : source_(NormalizeNewlines(source)), options_(options) {
    line_starts_.push_back(0);
    for (size_t i = 0; i < source_.size(); ++i) {
      if (source_[i] == '\n') line_starts_.push_back(i + 1);
    }
  }

  std::vector<Token> Run() {
    size_t pos = 0;
    while (pos < source_.size()) {
      const size_t tag = FindTag(pos);
      std::string text = source_.substr(pos, tag - pos);
      if (tag == source_.size()) {
        AddText(std::move(text), pos);
        break;
      }
      const char kind = source_[tag + 1];  // '{', '%' or '#'
      const char modifier = tag + 2 < source_.size() ? source_[tag + 2] : '\0';
      const bool line_starting = pos == 0 || source_[pos - 1] == '\n';
      if (modifier == '-') {
        while (!text.empty() && IsSpace(text.back())) text.pop_back();
      } else if (options_.lstrip_blocks && kind != '{' && modifier != '+') {
        const size_t line_start = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
        if ((line_start > 0 || line_starting) && line_start < text.size() &&
            std::all_of(text.begin() + line_start, text.end(), [](char c) { return IsSpace(c); })) {
          text.resize(line_start);
        }
      }
      AddText(std::move(text), pos);
      size_t inner = tag + 2 + ((modifier == '-' || modifier == '+') ? 1 : 0);
      if (kind == '#') {
        const size_t end = source_.find("#}", inner);
        if (end == std::string::npos) throw TemplateError(PositionOf(tag), "unterminated comment");
        pos = end + 2;
        AfterTagEnd(pos, end > inner && source_[end - 1] == '-', end > inner && source_[end - 1] == '+',
                    true);
        continue;
      }
      tokens_.push_back(
          Token{kind == '{' ? Token::Kind::kVariableBegin : Token::Kind::kBlockBegin, "", PositionOf(tag)});
      pos = LexInside(inner, kind == '{');
    }
    tokens_.push_back(Token{Token::Kind::kEnd, "", PositionOf(source_.size())});
    return std::move(tokens_);
  }

 private:
  Position PositionOf(size_t offset) const {
    const auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset) - 1;
    return Position{static_cast<int>(it - line_starts_.begin()) + 1, static_cast<int>(offset - *it) + 1};
  }

  size_t FindTag(size_t pos) const {
    while (true) {
      const size_t brace = source_.find('{', pos);
      if (brace == std::string::npos || brace + 1 >= source_.size()) return source_.size();
      const char next = source_[brace + 1];
      if (next == '{' || next == '%' || next == '#') return brace;
      pos = brace + 1;
    }
  }

  void AddText(std::string text, size_t offset) {
    if (!text.empty()) tokens_.push_back(Token{Token::Kind::kText, std::move(text), PositionOf(offset)});
  }

  void AfterTagEnd(size_t& pos, bool strip, bool keep, bool is_block) {
    if (strip) {
      while (pos < source_.size() && IsSpace(source_[pos])) ++pos;
    } else if (is_block && options_.trim_blocks && !keep && pos < source_.size() && source_[pos] == '\n') {
      ++pos;
    }
  }

  // Tokens inside {{ }} or {% %}; returns the position after the closing tag.
  size_t LexInside(size_t pos, bool variable) {
    std::vector<char> balance;
    while (true) {
      while (pos < source_.size() && IsSpace(source_[pos])) ++pos;
      if (pos >= source_.size())
        throw TemplateError(PositionOf(pos), variable ? "unterminated '{{'" : "unterminated '{%'");
      if (balance.empty()) {
        const std::string_view rest(source_.data() + pos, source_.size() - pos);
        const char* close = variable ? "}}" : "%}";
        for (const char* modifier : {"-", "+", ""}) {
          if (variable && modifier[0] == '+') continue;
          const std::string marker = std::string(modifier) + close;
          if (rest.substr(0, marker.size()) == marker) {
            tokens_.push_back(
                Token{variable ? Token::Kind::kVariableEnd : Token::Kind::kBlockEnd, "", PositionOf(pos)});
            pos += marker.size();
            AfterTagEnd(pos, modifier[0] == '-', modifier[0] == '+', !variable);
            return pos;
          }
        }
      }
      const char c = source_[pos];
      const Position position = PositionOf(pos);
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t end = pos;
        while (end < source_.size() &&
               (std::isalnum(static_cast<unsigned char>(source_[end])) || source_[end] == '_')) {
          ++end;
        }
        tokens_.push_back(Token{Token::Kind::kName, source_.substr(pos, end - pos), position});
        pos = end;
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        pos = LexNumber(pos);
      } else if (c == '\'' || c == '"') {
        pos = LexString(pos);
      } else {
        static const char* const kTwo[] = {"//", "**", "==", "!=", ">=", "<="};
        std::string op(1, c);
        for (const char* two : kTwo) {
          if (source_.compare(pos, 2, two) == 0) op = two;
        }
        if (op.size() == 1 && std::string_view("+-/*%~[](){}<>=.:|,").find(c) == std::string_view::npos) {
          throw TemplateError(position, std::string("unexpected character '") + c + "'");
        }
        if (c == '(' || c == '[' || c == '{') balance.push_back(c);
        if (c == ')' || c == ']' || c == '}') {
          const char open = c == ')' ? '(' : c == ']' ? '[' : '{';
          if (balance.empty() || balance.back() != open) {
            throw TemplateError(position, std::string("unexpected '") + c + "'");
          }
          balance.pop_back();
        }
        tokens_.push_back(Token{Token::Kind::kOperator, op, position});
        pos += op.size();
      }
    }
  }

  size_t LexNumber(size_t pos) {
    const Position position = PositionOf(pos);
    size_t end = pos;
    const auto digits = [&] {
      while (end < source_.size() &&
             (std::isdigit(static_cast<unsigned char>(source_[end])) || source_[end] == '_')) {
        ++end;
      }
    };
    digits();
    bool is_float = false;
    if (end + 1 < source_.size() && source_[end] == '.' &&
        std::isdigit(static_cast<unsigned char>(source_[end + 1]))) {
      is_float = true;
      ++end;
      digits();
    }
    if (end < source_.size() && (source_[end] == 'e' || source_[end] == 'E')) {
      size_t exponent = end + 1;
      if (exponent < source_.size() && (source_[exponent] == '+' || source_[exponent] == '-')) ++exponent;
      if (exponent < source_.size() && std::isdigit(static_cast<unsigned char>(source_[exponent]))) {
        is_float = true;
        end = exponent;
        digits();
      }
    }
    std::string text = source_.substr(pos, end - pos);
    text.erase(std::remove(text.begin(), text.end(), '_'), text.end());
    Token token{is_float ? Token::Kind::kFloat : Token::Kind::kInt, text, position};
    if (is_float) {
      token.float_value = std::strtod(text.c_str(), nullptr);
    } else {
      errno = 0;
      const unsigned long long value = std::strtoull(text.c_str(), nullptr, 10);
      if (errno != 0 || value > static_cast<unsigned long long>(std::numeric_limits<int64_t>::max())) {
        throw TemplateError(position, "integer literal too large: " + text);
      }
      token.int_value = static_cast<int64_t>(value);
    }
    tokens_.push_back(std::move(token));
    return end;
  }

  // Python's unicode-escape decoding of a string literal's body.
  size_t LexString(size_t pos) {
    const Position position = PositionOf(pos);
    const char quote = source_[pos];
    std::string value;
    size_t i = pos + 1;
    while (true) {
      if (i >= source_.size()) throw TemplateError(position, "unterminated string literal");
      const char c = source_[i];
      if (c == quote) break;
      if (c != '\\') {
        value += c;
        ++i;
        continue;
      }
      if (i + 1 >= source_.size()) throw TemplateError(position, "unterminated string literal");
      const char e = source_[i + 1];
      i += 2;
      const auto hex = [&](int count) -> uint32_t {
        if (i + count > source_.size()) throw TemplateError(position, "truncated \\x, \\u or \\U escape");
        uint32_t cp = 0;
        for (int k = 0; k < count; ++k) {
          const char h = source_[i + k];
          if (!std::isxdigit(static_cast<unsigned char>(h))) {
            throw TemplateError(position, "truncated \\x, \\u or \\U escape");
          }
          cp = cp * 16 + static_cast<uint32_t>(std::isdigit(static_cast<unsigned char>(h))
                                                   ? h - '0'
                                                   : (std::tolower(h) - 'a' + 10));
        }
        i += count;
        return cp;
      };
      switch (e) {
        case '\n':
          break;
        case '\\':
          value += '\\';
          break;
        case '\'':
          value += '\'';
          break;
        case '"':
          value += '"';
          break;
        case 'a':
          value += '\a';
          break;
        case 'b':
          value += '\b';
          break;
        case 'f':
          value += '\f';
          break;
        case 'n':
          value += '\n';
          break;
        case 'r':
          value += '\r';
          break;
        case 't':
          value += '\t';
          break;
        case 'v':
          value += '\v';
          break;
        case 'x':
          AppendUtf8(hex(2), value);
          break;
        case 'u':
          AppendUtf8(hex(4), value);
          break;
        case 'U': {
          const uint32_t cp = hex(8);
          if (cp > 0x10FFFF) throw TemplateError(position, "illegal Unicode character in \\U escape");
          AppendUtf8(cp, value);
          break;
        }
        default:
          if (e >= '0' && e <= '7') {
            uint32_t cp = static_cast<uint32_t>(e - '0');
            for (int k = 0; k < 2 && i < source_.size() && source_[i] >= '0' && source_[i] <= '7'; ++k, ++i) {
              cp = cp * 8 + static_cast<uint32_t>(source_[i] - '0');
            }
            AppendUtf8(cp, value);
          } else {
            value += '\\';  // Python keeps unknown escapes as they are.
            value += e;
          }
      }
    }
    tokens_.push_back(Token{Token::Kind::kString, std::move(value), position});
    return i + 1;
  }

  std::string source_;
  LexerOptions options_;
  std::vector<size_t> line_starts_;
  std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> Tokenize(const std::string& source, const LexerOptions& options) {
  return Lexer(source, options).Run();
}

}  // namespace ringmoe::jinja
