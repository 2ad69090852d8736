// ConfigReader: typed reads of config.json fields with defaults, reporting a wrong type or an out-of-range
// integer by key and file instead of throwing. Internal to io/ (nlohmann is a private dependency of
// ringmoe_io).
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace ringmoe::io_internal {

using nlohmann::json;

// Reads a typed field with a default, reporting wrong types by key and file instead of throwing.
class ConfigReader {
 public:
  ConfigReader(const json& root, absl::string_view source) : root_(root), source_(source) {}

  bool Has(const char* key) const { return root_.contains(key) && !root_[key].is_null(); }
  // Written in the file, possibly as null (q_lora_rank: null means "no q LoRA", absent means nothing).
  bool Present(const char* key) const { return root_.contains(key); }
  const json& root() const { return root_; }
  absl::string_view source() const { return source_; }

  template <typename T>
  T Get(const char* key, T fallback) {
    if (!Has(key)) return fallback;
    return As<T>(root_[key], key, fallback);
  }

  // The first of several spellings that is present (published vs transformers-5 keys).
  template <typename T>
  T GetAny(std::initializer_list<const char*> keys, T fallback) {
    for (const char* key : keys) {
      if (Has(key)) return As<T>(root_[key], key, fallback);
    }
    return fallback;
  }

  template <typename T>
  T As(const json& value, absl::string_view key, T fallback) {
    // nlohmann converts any number to any arithmetic type, wrapping or truncating (2^32+128 becomes 128):
    // integers must be integers and fit.
    if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
      if (!value.is_number_integer()) {
        Fail(absl::StrCat("config key '", key, "' must be an integer (it is ",
                          value.is_number() ? "a fraction" : value.type_name(), ")"));
        return fallback;
      }
      const bool fits = value.is_number_unsigned()
                            ? value.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<T>::max())
                            : value.get<int64_t>() >= static_cast<int64_t>(std::numeric_limits<T>::min()) &&
                                  value.get<int64_t>() <= static_cast<int64_t>(std::numeric_limits<T>::max());
      if (!fits) {
        Fail(absl::StrCat("config key '", key, "' is ", value.dump(), ", out of range"));
        return fallback;
      }
    }
    if constexpr (std::is_same_v<T, std::vector<int>>) {
      for (const json& item : value.is_array() ? value : json::array()) {
        if (!item.is_number_integer() || item.get<int64_t>() < INT32_MIN || item.get<int64_t>() > INT32_MAX ||
            (item.is_number_unsigned() && item.get<uint64_t>() > INT32_MAX)) {
          Fail(
              absl::StrCat("config key '", key, "' must be a list of integers (it holds ", item.dump(), ")"));
          return fallback;
        }
      }
    }
    if constexpr (std::is_floating_point_v<T>) {
      if (!value.is_number()) {
        Fail(absl::StrCat("config key '", key, "' must be a number (it is ", value.type_name(), ")"));
        return fallback;
      }
    }
    try {
      return value.get<T>();
    } catch (const json::exception&) {
      Fail(absl::StrCat("config key '", key, "' has the wrong type (", value.type_name(), ")"));
      return fallback;
    }
  }

  void Fail(std::string message) {
    if (status_.ok()) status_ = absl::InvalidArgumentError(absl::StrCat(source_, ": ", message));
  }
  const absl::Status& status() const { return status_; }

 private:
  const json& root_;
  absl::string_view source_;
  absl::Status status_;
};

}  // namespace ringmoe::io_internal
