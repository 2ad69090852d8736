// PCRE2 (UTF + UCP, JIT) regular expressions for the patterns tokenizer.json files carry. The files are
// written for Oniguruma (the `tokenizers` library's engine) and Rust's `regex`; TranslatePattern rewrites the
// few constructs whose meaning differs in PCRE2 (\s, \S and \w, which follow Unicode's White_Space and word
// properties there).
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace ringmoe::tokenizer_internal {

// Returns the PCRE2 spelling of an Oniguruma / Rust regex pattern.
std::string TranslatePattern(std::string_view pattern);

// Escapes every regex metacharacter so that the pattern matches `literal` exactly.
std::string EscapeLiteral(std::string_view literal);

// Threading: immutable after Compile; matching is safe from many threads (match data is per thread).
class Regex {
 public:
  // `multiline`: ^ and $ match at line boundaries (Oniguruma's Ruby syntax, which tokenizer.json patterns
  // use).
  static absl::StatusOr<Regex> Compile(std::string_view pattern, bool multiline = true);

  Regex(Regex&& other) noexcept : code_(std::exchange(other.code_, nullptr)) {}
  Regex& operator=(Regex&& other) noexcept;
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  ~Regex();

  // Every non-overlapping match in valid UTF-8 `text`, left to right, as [start, end) byte offsets. Empty
  // matches right after the previous match are skipped (as the onig crate's find_iter does). Fails only when
  // PCRE2 gives up (match or JIT stack limit), naming the pattern.
  absl::Status FindAll(std::string_view text, std::vector<std::pair<size_t, size_t>>& matches) const;
  // Whether the pattern matches anywhere in `text`.
  bool Matches(std::string_view text) const;

 private:
  explicit Regex(void* code) : code_(code) {}
  void* code_;  // pcre2_code_8*, kept opaque so that this header carries no PCRE2 types.
};

}  // namespace ringmoe::tokenizer_internal
