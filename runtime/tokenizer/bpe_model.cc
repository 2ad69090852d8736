#include "runtime/tokenizer/bpe_model.h"

#include <algorithm>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/tokenizer/string_map.h"
#include "runtime/tokenizer/unicode_utils.h"

namespace ringmoe::tokenizer_internal {

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::Create(
    const std::vector<std::pair<std::string_view, int32_t>>& vocab,
    const std::vector<std::pair<std::string_view, std::string_view>>& merges, BpeOptions options) {
  auto model = std::unique_ptr<BpeModel>(new BpeModel(std::move(options)));
  for (const auto& [token, id] : vocab) {
    if (id < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("vocab entry '", ToAbsl(token), "' has negative id ", id));
    }
  }
  model->vocab_.Build(vocab);
  for (const auto& [token, id] : vocab) {
    size_t pos = 0;
    if (!token.empty() && Utf8SequenceLength(token, 0) == static_cast<int>(token.size())) {
      const char32_t c = NextCodePoint(token, pos);
      if (model->vocab_.Find(token) == id) model->char_ids_[c] = id;
    }
  }
  const BpeOptions& opts = model->options_;
  model->plain_characters_ = opts.continuing_subword_prefix.empty() && opts.end_of_word_suffix.empty();
  model->byte_fallback_ids_.fill(-1);
  for (int b = 0; b < 256; ++b) {
    if (auto id = model->LookUp(absl::StrFormat("<0x%02X>", b))) model->byte_fallback_ids_[b] = *id;
  }
  if (opts.unk_token.has_value()) model->unk_id_ = model->LookUp(*opts.unk_token);

  // Merges are resolved in batches whose hash slots are prefetched first: loading is bound by memory latency.
  const std::string& prefix = opts.continuing_subword_prefix;
  const VocabTable& table = model->vocab_;
  model->merges_.Reserve(merges.size());
  constexpr size_t kBatch = 32;
  uint64_t left_hash[kBatch], right_hash[kBatch], merged_hash[kBatch];
  int32_t left_id[kBatch], right_id[kBatch];
  std::string merged[kBatch];
  for (size_t base = 0; base < merges.size(); base += kBatch) {
    const size_t count = std::min(kBatch, merges.size() - base);
    for (size_t j = 0; j < count; ++j) {
      left_hash[j] = VocabTable::Hash(merges[base + j].first);
      right_hash[j] = VocabTable::Hash(merges[base + j].second);
      table.Prefetch(left_hash[j]);
      table.Prefetch(right_hash[j]);
    }
    for (size_t j = 0; j < count; ++j) {
      const auto& [left, right] = merges[base + j];
      left_id[j] = table.Find(left, left_hash[j]);
      right_id[j] = table.Find(right, right_hash[j]);
      if (left_id[j] < 0 || right_id[j] < 0) {
        return absl::InvalidArgumentError(absl::StrCat("merge ", base + j, " ('", ToAbsl(left), "' '",
                                                       ToAbsl(right),
                                                       "') uses a token missing from the vocab"));
      }
      std::string_view right_part = right;
      if (!prefix.empty() && right_part.substr(0, prefix.size()) == prefix)
        right_part.remove_prefix(prefix.size());
      merged[j].assign(left);
      merged[j].append(right_part);
      merged_hash[j] = VocabTable::Hash(merged[j]);
      table.Prefetch(merged_hash[j]);
      model->merges_.Prefetch(PairKey(left_id[j], right_id[j]));
    }
    for (size_t j = 0; j < count; ++j) {
      const int32_t new_id = table.Find(merged[j], merged_hash[j]);
      if (new_id < 0) {
        const auto& [left, right] = merges[base + j];
        return absl::InvalidArgumentError(absl::StrCat("merge ", base + j, " ('", ToAbsl(left), "' '",
                                                       ToAbsl(right), "') makes '", merged[j],
                                                       "', missing from the vocab"));
      }
      // Later duplicates overwrite earlier ones, as collecting into the library's HashMap does.
      model->merges_.InsertOrAssign(PairKey(left_id[j], right_id[j]),
                                    MergeTable::Target{static_cast<int32_t>(base + j), new_id});
    }
  }
  return model;
}

std::optional<int32_t> BpeModel::LookUp(std::string_view token) const {
  const int32_t id = vocab_.Find(token);
  if (id < 0) return std::nullopt;
  return id;
}

std::optional<int32_t> BpeModel::TokenToId(std::string_view token) const { return LookUp(token); }

std::optional<std::string_view> BpeModel::IdToToken(int32_t id) const {
  bool present = false;
  std::string_view token = vocab_.TokenOf(id, present);
  if (!present) return std::nullopt;
  return token;
}

void BpeModel::InitialSymbols(std::string_view word, std::vector<int32_t>& symbols) const {
  // Pending unknown token: (id, whether one is pending). Lengths do not matter since offsets are not kept.
  bool unk_pending = false;
  std::string decorated;
  size_t pos = 0;
  while (pos < word.size()) {
    const size_t start = pos;
    const char32_t c = NextCodePoint(word, pos);
    std::optional<int32_t> id;
    std::string_view piece = word.substr(start, pos - start);
    if (plain_characters_) {
      auto it = char_ids_.find(c);
      if (it != char_ids_.end()) id = it->second;
    } else {
      decorated.clear();
      if (start != 0) decorated += options_.continuing_subword_prefix;
      decorated.append(piece);
      if (pos == word.size()) decorated += options_.end_of_word_suffix;
      piece = decorated;
      id = LookUp(decorated);
    }
    if (id.has_value()) {
      if (unk_pending) {
        symbols.push_back(*unk_id_);
        unk_pending = false;
      }
      symbols.push_back(*id);
      continue;
    }
    if (options_.byte_fallback) {
      bool all_bytes = true;
      for (char ch : piece) all_bytes = all_bytes && byte_fallback_ids_[static_cast<uint8_t>(ch)] >= 0;
      if (all_bytes) {
        for (char ch : piece) symbols.push_back(byte_fallback_ids_[static_cast<uint8_t>(ch)]);
        continue;
      }
    }
    if (unk_id_.has_value()) {
      if (unk_pending && !options_.fuse_unk) symbols.push_back(*unk_id_);
      unk_pending = true;
    }
    // Without an unknown token the character is dropped, as in the library.
  }
  if (unk_pending) symbols.push_back(*unk_id_);
}

namespace {

// A doubly linked list over a word's symbols (the library's Word); merged-away symbols are not alive.
struct Symbol {
  int32_t id;
  int prev, next;
  bool alive;
};
struct Candidate {
  int32_t rank;
  int pos;
  int32_t new_id;
  bool operator<(
      const Candidate& other) const {  // Max-heap order puts the lowest rank, then leftmost, first.
    return rank != other.rank ? rank > other.rank : pos > other.pos;
  }
};
// Per-thread buffers, so that merging a word allocates nothing once they have grown.
struct MergeScratch {
  std::vector<Symbol> list;
  std::vector<Candidate> heap;
  std::vector<int32_t> symbols;
};
MergeScratch& Scratch() {
  thread_local MergeScratch scratch;
  return scratch;
}

}  // namespace

void BpeModel::MergeSymbols(std::vector<int32_t>& symbols) const {
  const int n = static_cast<int>(symbols.size());
  if (n < 2) return;
  MergeScratch& scratch = Scratch();
  std::vector<Symbol>& list = scratch.list;
  std::vector<Candidate>& heap = scratch.heap;
  list.resize(n);
  heap.clear();
  for (int i = 0; i < n; ++i) list[i] = Symbol{symbols[i], i - 1, i + 1 < n ? i + 1 : -1, true};
  const auto push = [&heap](Candidate candidate) {
    heap.push_back(candidate);
    std::push_heap(heap.begin(), heap.end());
  };
  // The merge table is large and these first lookups are independent: prefetch them all, then probe.
  for (int i = 0; i + 1 < n; ++i) merges_.Prefetch(PairKey(list[i].id, list[i + 1].id));
  for (int i = 0; i + 1 < n; ++i) {
    if (const auto* merge = merges_.Find(PairKey(list[i].id, list[i + 1].id))) {
      heap.push_back(Candidate{merge->rank, i, merge->new_id});
    }
  }
  std::make_heap(heap.begin(), heap.end());
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end());
    const Candidate top = heap.back();
    heap.pop_back();
    Symbol& current = list[top.pos];
    if (!current.alive || current.next == -1) continue;
    const int next_pos = current.next;
    // Skip entries made stale by an earlier merge.
    const auto* merge = merges_.Find(PairKey(current.id, list[next_pos].id));
    if (merge == nullptr || merge->new_id != top.new_id) continue;
    current.id = top.new_id;
    list[next_pos].alive = false;
    current.next = list[next_pos].next;
    if (current.next != -1) list[current.next].prev = top.pos;
    if (current.prev != -1) {
      if (const auto* left = merges_.Find(PairKey(list[current.prev].id, current.id))) {
        push(Candidate{left->rank, current.prev, left->new_id});
      }
    }
    if (current.next != -1) {
      if (const auto* right = merges_.Find(PairKey(current.id, list[current.next].id))) {
        push(Candidate{right->rank, top.pos, right->new_id});
      }
    }
  }
  symbols.clear();
  for (int i = 0; i != -1; i = list[i].next) symbols.push_back(list[i].id);
}

void BpeModel::Tokenize(std::string_view word, std::vector<int32_t>& ids) const {
  if (word.empty()) return;
  if (options_.ignore_merges) {
    if (auto id = LookUp(word)) {
      ids.push_back(*id);
      return;
    }
  }
  const bool cacheable = word.size() <= kMaxCachedWordBytes;
  CacheShard* shard = nullptr;
  if (cacheable) {
    shard = &cache_[StringViewHash{}(word) % kCacheShards];
    std::lock_guard<std::mutex> lock(shard->mutex);
    auto it = shard->words.find(word);
    if (it != shard->words.end()) {
      ids.insert(ids.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t>& symbols = Scratch().symbols;
  symbols.clear();
  InitialSymbols(word, symbols);
  MergeSymbols(symbols);
  ids.insert(ids.end(), symbols.begin(), symbols.end());
  if (cacheable) {
    std::lock_guard<std::mutex> lock(shard->mutex);
    if (shard->words.size() >= kCacheEntriesPerShard) shard->words.clear();
    shard->words.emplace(word, symbols);
  }
}

}  // namespace ringmoe::tokenizer_internal
