// VocabTable: token string <-> id for vocabularies of hundreds of thousands of tokens. All strings live in
// one arena and the hash slots carry a hash tag, so a lookup touches one slot and at most one string; batched
// lookups prefetch their slots first. Loading a 200k-token vocabulary with 446k merges is bound by these
// lookups.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ringmoe::tokenizer_internal {

// Threading: immutable after Build; lookups are safe from many threads.
class VocabTable {
 public:
  // Later duplicates of a string overwrite earlier ones (as inserting into a hash map does).
  void Build(const std::vector<std::pair<std::string_view, int32_t>>& entries);

 private:
  void Insert(std::string_view token, int32_t id, uint64_t hash);

 public:
  static uint64_t Hash(std::string_view key);
  void Prefetch(uint64_t hash) const { __builtin_prefetch(&slots_[hash & mask_]); }
  // The id of `key` (whose Hash is `hash`), or -1.
  int32_t Find(std::string_view key, uint64_t hash) const;
  int32_t Find(std::string_view key) const { return Find(key, Hash(key)); }

  // The string of `id`; `present` is false for ids the vocabulary lacks.
  std::string_view TokenOf(int32_t id, bool& present) const;
  int32_t max_id() const { return static_cast<int32_t>(id_spans_.size()) - 1; }
  size_t size() const { return count_; }

 private:
  struct Slot {
    uint32_t tag = 0;  // High bits of the hash.
    int32_t id = -1;   // -1: empty.
    uint32_t offset = 0;
    uint32_t length = 0;
  };
  std::vector<Slot> slots_;
  uint64_t mask_ = 0;
  std::string arena_;
  std::vector<std::pair<uint32_t, int32_t>> id_spans_;  // id -> (offset, length), length -1 when absent.
  size_t count_ = 0;
};

// MergeTable: (left id, right id) -> (rank, merged id), open addressing with prefetchable slots.
// Threading: immutable after the inserts; lookups are safe from many threads.
class MergeTable {
 public:
  struct Target {
    int32_t rank;
    int32_t new_id;
  };
  static uint64_t Key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  }
  static uint64_t Hash(uint64_t key) {
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdULL;
    key ^= key >> 33;
    return key;
  }
  void Reserve(size_t count);
  void Prefetch(uint64_t key) const { __builtin_prefetch(&slots_[Hash(key) & mask_]); }
  void InsertOrAssign(uint64_t key, Target target);  // Call Reserve first.
  const Target* Find(uint64_t key) const {
    size_t index = Hash(key) & mask_;
    while (true) {
      const Slot& slot = slots_[index];
      if (slot.key == key) return &slot.target;
      if (slot.key == kEmpty) return nullptr;
      index = (index + 1) & mask_;
    }
  }

 private:
  static constexpr uint64_t kEmpty = ~0ULL;
  struct Slot {
    uint64_t key = kEmpty;
    Target target{0, 0};
  };
  std::vector<Slot> slots_{1};
  uint64_t mask_ = 0;
};

}  // namespace ringmoe::tokenizer_internal
