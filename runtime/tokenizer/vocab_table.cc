#include "runtime/tokenizer/vocab_table.h"

#include <cstring>

namespace ringmoe::tokenizer_internal {
namespace {

// Equality of two short byte strings of the same length (tokens are mostly under 16 bytes; libc's memcmp call
// costs more than the comparison).
inline bool SameBytes(const char* a, const char* b, size_t length) {
  while (length >= 8) {
    uint64_t x, y;
    std::memcpy(&x, a, 8);
    std::memcpy(&y, b, 8);
    if (x != y) return false;
    a += 8, b += 8, length -= 8;
  }
  while (length > 0) {
    if (*a++ != *b++) return false;
    --length;
  }
  return true;
}

}  // namespace

uint64_t VocabTable::Hash(std::string_view key) {
  // FNV-1a over 8-byte words, then a final avalanche (splitmix64): fast for short tokens, well mixed.
  uint64_t h = 0xcbf29ce484222325ULL ^ key.size();
  size_t i = 0;
  for (; i + 8 <= key.size(); i += 8) {
    uint64_t word;
    std::memcpy(&word, key.data() + i, 8);
    h = (h ^ word) * 0x100000001b3ULL;
    h ^= h >> 29;
  }
  uint64_t tail = 0;
  std::memcpy(&tail, key.data() + i, key.size() - i);
  h = (h ^ tail) * 0x100000001b3ULL;
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ULL;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebULL;
  h ^= h >> 31;
  return h;
}

void VocabTable::Build(const std::vector<std::pair<std::string_view, int32_t>>& entries) {
  size_t capacity = 16;
  while (capacity < entries.size() * 2) capacity *= 2;
  slots_.assign(capacity, Slot{});
  mask_ = capacity - 1;
  size_t arena_size = 0;
  int32_t max_id = -1;
  for (const auto& [token, id] : entries) {
    arena_size += token.size();
    max_id = std::max(max_id, id);
  }
  arena_.clear();
  arena_.reserve(arena_size);
  id_spans_.assign(static_cast<size_t>(max_id + 1), {0, -1});
  count_ = 0;
  // Hash everything first so that each insertion's slot can be prefetched a few entries ahead.
  std::vector<uint64_t> hashes(entries.size());
  for (size_t i = 0; i < entries.size(); ++i) hashes[i] = Hash(entries[i].first);
  constexpr size_t kAhead = 16;
  for (size_t i = 0; i < entries.size(); ++i) {
    if (i + kAhead < entries.size()) Prefetch(hashes[i + kAhead]);
    Insert(entries[i].first, entries[i].second, hashes[i]);
  }
}

void VocabTable::Insert(std::string_view token, int32_t id, uint64_t hash) {
  const uint32_t tag = static_cast<uint32_t>(hash >> 32);
  size_t index = hash & mask_;
  while (true) {
    Slot& slot = slots_[index];
    if (slot.id < 0) {
      slot = Slot{tag, id, static_cast<uint32_t>(arena_.size()), static_cast<uint32_t>(token.size())};
      arena_.append(token);
      ++count_;
      break;
    }
    if (slot.tag == tag && slot.length == token.size() &&
        SameBytes(arena_.data() + slot.offset, token.data(), token.size())) {
      id_spans_[slot.id] = {0, -1};  // The old id loses this string.
      slot.id = id;
      break;
    }
    index = (index + 1) & mask_;
  }
  id_spans_[id] = {slots_[index].offset, static_cast<int32_t>(token.size())};
}

int32_t VocabTable::Find(std::string_view key, uint64_t hash) const {
  if (slots_.empty()) return -1;
  const uint32_t tag = static_cast<uint32_t>(hash >> 32);
  size_t index = hash & mask_;
  while (true) {
    const Slot& slot = slots_[index];
    if (slot.id < 0) return -1;
    if (slot.tag == tag && slot.length == key.size() &&
        SameBytes(arena_.data() + slot.offset, key.data(), key.size())) {
      return slot.id;
    }
    index = (index + 1) & mask_;
  }
}

std::string_view VocabTable::TokenOf(int32_t id, bool& present) const {
  present = id >= 0 && static_cast<size_t>(id) < id_spans_.size() && id_spans_[id].second >= 0;
  if (!present) return {};
  return std::string_view(arena_.data() + id_spans_[id].first, static_cast<size_t>(id_spans_[id].second));
}

void MergeTable::Reserve(size_t count) {
  size_t capacity = 16;
  while (capacity < count * 2) capacity *= 2;
  slots_.assign(capacity, Slot{});
  mask_ = capacity - 1;
}

void MergeTable::InsertOrAssign(uint64_t key, Target target) {
  size_t index = Hash(key) & mask_;
  while (slots_[index].key != kEmpty && slots_[index].key != key) index = (index + 1) & mask_;
  slots_[index].key = key;
  slots_[index].target = target;
}

}  // namespace ringmoe::tokenizer_internal
