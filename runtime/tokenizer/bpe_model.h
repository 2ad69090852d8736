// The BPE model of tokenizer.json ("model": {"type": "BPE"}): vocabulary, ranked merges, unknown token and
// byte fallback. Words are merged by rank with a priority queue (the library's Word::merge_all) and cached.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "runtime/tokenizer/string_map.h"
#include "runtime/tokenizer/vocab_table.h"

namespace ringmoe::tokenizer_internal {

struct BpeOptions {
  std::optional<std::string> unk_token;
  std::string continuing_subword_prefix;
  std::string end_of_word_suffix;
  bool fuse_unk = false;
  bool byte_fallback = false;
  bool ignore_merges = false;
};

// Threading: immutable after Create except for the word cache, which is sharded and locked; Tokenize is safe
// from many threads.
class BpeModel {
 public:
  // `vocab` maps token strings to ids; `merges` lists pairs of token strings, highest priority first.
  static absl::StatusOr<std::unique_ptr<BpeModel>> Create(
      const std::vector<std::pair<std::string_view, int32_t>>& vocab,
      const std::vector<std::pair<std::string_view, std::string_view>>& merges, BpeOptions options);

  // Appends the ids of `word` (one pre-tokenised piece) to `ids`.
  void Tokenize(std::string_view word, std::vector<int32_t>& ids) const;

  std::optional<int32_t> TokenToId(std::string_view token) const;
  std::optional<std::string_view> IdToToken(int32_t id) const;  // nullopt for an id the vocabulary lacks.
  int32_t max_id() const { return vocab_.max_id(); }

 private:
  static uint64_t PairKey(int32_t left, int32_t right) { return MergeTable::Key(left, right); }

  explicit BpeModel(BpeOptions options) : options_(std::move(options)) {}
  // The symbols of `word` before any merge (characters, byte fallback, unknown token).
  void InitialSymbols(std::string_view word, std::vector<int32_t>& symbols) const;
  void MergeSymbols(std::vector<int32_t>& symbols) const;
  std::optional<int32_t> LookUp(std::string_view token) const;

  BpeOptions options_;
  VocabTable vocab_;
  MergeTable merges_;
  absl::flat_hash_map<char32_t, int32_t> char_ids_;  // Single-character tokens, for the common case.
  std::array<int32_t, 256> byte_fallback_ids_{};     // <0xNN> ids, -1 when absent.
  std::optional<int32_t> unk_id_;
  bool plain_characters_ = true;  // No continuing-subword prefix nor end-of-word suffix.

  // Word cache: maps a word to its ids. Sharded to keep lock contention low across encoding threads.
  static constexpr int kCacheShards = 16;
  static constexpr size_t kCacheEntriesPerShard = 4096;
  static constexpr size_t kMaxCachedWordBytes = 64;
  struct CacheShard {
    std::mutex mutex;
    StringMap<std::vector<int32_t>> words;
  };
  mutable std::array<CacheShard, kCacheShards> cache_;
};

}  // namespace ringmoe::tokenizer_internal
