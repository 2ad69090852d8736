// Hash maps keyed by std::string that accept std::string_view lookups without a copy. (This Abseil build's
// absl::string_view is not std::string_view, so the default heterogeneous lookup does not take it.)
#pragma once

#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/strings/string_view.h"

namespace ringmoe::tokenizer_internal {

inline absl::string_view ToAbsl(std::string_view text) { return absl::string_view(text.data(), text.size()); }

struct StringViewHash {
  using is_transparent = void;
  size_t operator()(std::string_view text) const { return absl::Hash<absl::string_view>{}(ToAbsl(text)); }
};
struct StringViewEq {
  using is_transparent = void;
  bool operator()(std::string_view a, std::string_view b) const { return a == b; }
};

template <typename Value>
using StringMap = absl::flat_hash_map<std::string, Value, StringViewHash, StringViewEq>;

}  // namespace ringmoe::tokenizer_internal
