#include "runtime/tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "absl/strings/str_cat.h"
#include "runtime/tokenizer/string_map.h"

namespace ringmoe::tokenizer_internal {
namespace {

// Unicode White_Space, which is what \s means in Oniguruma and Rust (PCRE2's UCP \s adds U+180E).
constexpr std::string_view kWhiteSpaceClassBody =
    "\\t\\n\\x{0B}\\f\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}"
    "\\x{3000}";
// Unicode word characters (Alphabetic, marks, decimal numbers, connector punctuation, joiners) as in Rust.
constexpr std::string_view kWordClassBody = "\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\x{200C}\\x{200D}";

pcre2_code* Code(void* code) { return static_cast<pcre2_code*>(code); }

// Per-thread match state, grown on demand.
struct ThreadMatchState {
  pcre2_match_data* match_data = nullptr;
  pcre2_match_context* context = nullptr;
  pcre2_jit_stack* jit_stack = nullptr;
  ThreadMatchState() {
    match_data = pcre2_match_data_create(1, nullptr);
    context = pcre2_match_context_create(nullptr);
    jit_stack = pcre2_jit_stack_create(64 * 1024, 16 * 1024 * 1024, nullptr);
    pcre2_jit_stack_assign(context, nullptr, jit_stack);
  }
  ~ThreadMatchState() {
    pcre2_match_data_free(match_data);
    pcre2_match_context_free(context);
    pcre2_jit_stack_free(jit_stack);
  }
};

ThreadMatchState& MatchState() {
  thread_local ThreadMatchState state;
  return state;
}

}  // namespace

std::string TranslatePattern(std::string_view pattern) {
  std::string out;
  out.reserve(pattern.size() + 64);
  int class_depth = 0;  // Inside [...]: \s expands to the class body, outside to a whole class.
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const char next = pattern[i + 1];
      ++i;
      if (next == 's') {
        if (class_depth > 0) {
          out += kWhiteSpaceClassBody;
        } else {
          absl::StrAppend(&out, "[", ToAbsl(kWhiteSpaceClassBody), "]");
        }
      } else if (next == 'S' && class_depth == 0) {
        absl::StrAppend(&out, "[^", ToAbsl(kWhiteSpaceClassBody), "]");
      } else if (next == 'w') {
        if (class_depth > 0) {
          out += kWordClassBody;
        } else {
          absl::StrAppend(&out, "[", ToAbsl(kWordClassBody), "]");
        }
      } else if (next == 'W' && class_depth == 0) {
        absl::StrAppend(&out, "[^", ToAbsl(kWordClassBody), "]");
      } else {
        out.push_back('\\');
        out.push_back(next);
      }
      continue;
    }
    if (c == '[') {
      // POSIX classes like [:alpha:] inside a class do not open a nesting level.
      if (class_depth > 0 && i + 1 < pattern.size() && pattern[i + 1] == ':') {
        const size_t close = pattern.find(":]", i + 2);
        if (close != std::string_view::npos) {
          out.append(pattern.substr(i, close + 2 - i));
          i = close + 1;
          continue;
        }
      }
      ++class_depth;
      out.push_back(c);
      // A ']' right after '[' or '[^' is a literal.
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') out.push_back(pattern[++i]);
      if (i + 1 < pattern.size() && pattern[i + 1] == ']') out += "\\]", ++i;
      continue;
    }
    if (c == ']' && class_depth > 0) --class_depth;
    out.push_back(c);
  }
  return out;
}

std::string EscapeLiteral(std::string_view literal) {
  std::string out;
  for (char c : literal) {
    if (std::string_view("\\^$.|?*+()[]{}-/#&~ ").find(c) != std::string_view::npos) {
      // PCRE2 only needs the metacharacters escaped; escaping punctuation is always allowed.
      if (c == ' ') {
        out += "\\x20";
        continue;
      }
      out.push_back('\\');
    }
    out.push_back(c);
  }
  return out;
}

absl::StatusOr<Regex> Regex::Compile(std::string_view pattern, bool multiline) {
  const std::string translated = TranslatePattern(pattern);
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  uint32_t options = PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK;
  if (multiline) options |= PCRE2_MULTILINE;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                                   options, &error_code, &error_offset, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error_code, message, sizeof(message));
    return absl::InvalidArgumentError(absl::StrCat("cannot compile regex '", ToAbsl(pattern), "' (as PCRE2 '",
                                                   translated, "') at offset ", error_offset, ": ",
                                                   reinterpret_cast<const char*>(message)));
  }
  // JIT is an optimisation: without it (unsupported CPU) the interpreter gives the same matches.
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  return Regex(code);
}

Regex& Regex::operator=(Regex&& other) noexcept {
  if (this != &other) {
    if (code_ != nullptr) pcre2_code_free(Code(code_));
    code_ = std::exchange(other.code_, nullptr);
  }
  return *this;
}

Regex::~Regex() {
  if (code_ != nullptr) pcre2_code_free(Code(code_));
}

absl::Status Regex::FindAll(std::string_view text, std::vector<std::pair<size_t, size_t>>& matches) const {
  ThreadMatchState& state = MatchState();
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t search_from = 0;
  bool have_last_end = false;
  size_t last_end = 0;
  while (search_from <= text.size()) {
    const int rc = pcre2_match(Code(code_), subject, text.size(), search_from, PCRE2_NO_UTF_CHECK,
                               state.match_data, state.context);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(rc, message, sizeof(message));
      return absl::ResourceExhaustedError(
          absl::StrCat("regex match failed at byte ", search_from, " of a ", text.size(),
                       "-byte piece: ", reinterpret_cast<const char*>(message)));
    }
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(state.match_data);
    const size_t start = ovector[0], end = ovector[1];
    if (start == end && have_last_end && last_end == end) {
      // An empty match where the previous one ended: step over one character and search again.
      if (search_from >= text.size()) break;
      size_t step = 1;
      while (search_from + step < text.size() &&
             (static_cast<uint8_t>(text[search_from + step]) & 0xC0) == 0x80) {
        ++step;
      }
      search_from += step;
      continue;
    }
    matches.emplace_back(start, end);
    search_from = end;
    have_last_end = true;
    last_end = end;
  }
  return absl::OkStatus();
}

bool Regex::Matches(std::string_view text) const {
  ThreadMatchState& state = MatchState();
  const int rc = pcre2_match(Code(code_), reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), 0,
                             PCRE2_NO_UTF_CHECK, state.match_data, state.context);
  return rc >= 0;
}

}  // namespace ringmoe::tokenizer_internal
