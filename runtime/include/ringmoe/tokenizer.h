/// @file
/// ringmoe tokenizer: Hugging Face tokenizer.json, encoded and decoded exactly as the `tokenizers` library
/// does.
///
/// @code
///   auto tokenizer = ringmoe::Tokenizer::Load("models/qwen3");  // folder, tokenizer.json or .json.gz
///   auto ids = tokenizer->Encode("Hello world", /*add_special_tokens=*/true);
///   std::string text = tokenizer->Decode(*ids, /*skip_special_tokens=*/true);
/// @endcode
///
/// Supported: BPE models (byte-level and SentencePiece-style with byte fallback), the common normalizers,
/// pre-tokenizers, post-processors and decoders, added tokens with their flags. runtime/tokenizer/README.md
/// lists exactly what is and is not covered.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace ringmoe {

namespace tokenizer_internal {
struct TokenizerImpl;
}

/// Threading: immutable after Load; Encode, Decode and every other const method are safe to call from many
/// threads at once (the internal word cache is sharded and locked). Moving is cheap (one pointer).
class Tokenizer {
 public:
  /// `path` is a tokenizer.json, a gzip-compressed tokenizer.json.gz, or a model folder holding
  /// tokenizer.json (and optionally tokenizer_config.json and generation_config.json, which supply the
  /// EOS/BOS tokens).
  static absl::StatusOr<Tokenizer> Load(const std::string& path);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  /// InvalidArgument naming the byte offset when `text` is not valid UTF-8.
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text, bool add_special_tokens) const;
  /// Unknown ids are skipped (as the reference library does); invalid byte sequences become U+FFFD.
  std::string Decode(std::span<const int32_t> ids, bool skip_special_tokens) const;

  /// The token's text piece as decoded alone (for logprobs.tokens); empty for an unknown id.
  std::string TokenToString(int32_t id) const;
  /// The raw vocabulary string of the token (e.g. "Ġhello"), without decoding; nullopt for an unknown id.
  std::optional<std::string> IdToToken(int32_t id) const;
  std::optional<int32_t> TokenToId(std::string_view token) const;

  int vocab_size() const;  ///< Highest id + 1, added tokens included.
  /// tokenizer_config.json's eos_token (a string or {"content": ...}) when present, then the ids of
  /// generation_config.json's eos_token_id (a number or a list) when that file is beside tokenizer.json,
  /// without duplicates; empty when neither says.
  std::vector<int32_t> EosTokenIds() const;
  std::optional<int32_t> BosTokenId() const;
  /// Whether the token's string is a special added token's content (what skip_special_tokens skips).
  bool IsSpecial(int32_t id) const;

 private:
  friend class IncrementalDecoder;
  explicit Tokenizer(std::unique_ptr<tokenizer_internal::TokenizerImpl> impl);
  std::unique_ptr<tokenizer_internal::TokenizerImpl> impl_;
};

/// Incremental detokenisation for streaming and stop strings: feed ids one by one, get only the newly
/// completed text. Never returns a broken multi-byte UTF-8 character at a token boundary; incomplete bytes
/// are held back until completed (or until Flush). The concatenation of every Append and the final Flush
/// equals tokenizer.Decode(all ids, skip_special_tokens) for the decoders whose output is a concatenation of
/// per-token pieces (byte-level, byte-fallback); for SentencePiece-style decoders the leading-space rule of
/// the first token is applied once, as Decode does. Threading: one instance per stream; it only reads the
/// tokenizer, which must outlive it.
class IncrementalDecoder {
 public:
  explicit IncrementalDecoder(const Tokenizer& tokenizer, bool skip_special_tokens = true);
  std::string Append(int32_t id);  ///< Newly completed text.
  std::string Flush();             ///< Whatever is held back (invalid bytes become U+FFFD).

 private:
  /// The text the pending ids add, given the decode of the whole window.
  std::string PendingText(const std::string& window_text) const;

  const Tokenizer* tokenizer_;
  bool skip_special_tokens_;
  std::vector<int32_t> window_;  ///< Context ids (already returned) followed by the pending ids.
  size_t context_size_ = 0;      ///< How many ids of window_ are context.
  std::string context_text_;     ///< Decode of the context ids alone: already returned.
};

}  // namespace ringmoe
