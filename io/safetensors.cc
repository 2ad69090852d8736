#include "io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <exception>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "io/status_macros.h"
#include "nlohmann/json.hpp"

namespace ringmoe::io {
namespace {

using Json = nlohmann::json;

constexpr std::string_view kMetadataKey = "__metadata__";
// A valid header nests three deep (root, entry, shape). Rejecting deep nesting before parsing bounds the
// parser's memory on inputs such as 100 MB of '['.
constexpr int kMaxJsonDepth = 8;

// Tensor names come from the file: quote them printably and keep messages short even for hostile names.
std::string Quoted(std::string_view name) {
  constexpr size_t kMaxShown = 200;
  std::string shown = absl::CHexEscape(absl::string_view(name.data(), std::min(name.size(), kMaxShown)));
  if (name.size() > kMaxShown) absl::StrAppend(&shown, "...");
  return absl::StrCat("'", shown, "'");
}

bool NestingWithin(std::string_view text, int limit) {
  int depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (const char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limit) return false;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return true;
}

// A JSON integer that is >= 0, or nothing (floats, negatives, non-numbers).
std::optional<uint64_t> NonNegativeInteger(const Json& value) {
  if (value.is_number_unsigned()) return value.get<uint64_t>();
  if (value.is_number_integer() && value.get<int64_t>() >= 0)
    return static_cast<uint64_t>(value.get<int64_t>());
  return std::nullopt;
}

std::string Describe(const Json& value) {
  if (value.is_number_unsigned())
    return absl::StrCat(value.get<uint64_t>());  // Before: unsigned is integer too.
  if (value.is_number_integer()) return absl::StrCat(value.get<int64_t>());
  return absl::StrCat("a JSON ", value.type_name());
}

class EntryParser {
 public:
  EntryParser(const std::string& label, uint64_t data_size) : label_(label), data_size_(data_size) {}

  absl::StatusOr<TensorEntry> Parse(const std::string& name, const Json& value) const {
    auto fail = [&](const auto& what) {
      return absl::InvalidArgumentError(absl::StrCat(label_, ": tensor ", Quoted(name), ": ", what));
    };
    if (!value.is_object()) return fail(absl::StrCat("entry is ", Describe(value), ", not a JSON object"));
    TensorEntry entry;
    entry.name = name;

    const auto dtype_it = value.find("dtype");
    if (dtype_it == value.end()) return fail("missing \"dtype\"");
    if (!dtype_it->is_string())
      return fail(absl::StrCat("\"dtype\" is ", Describe(*dtype_it), ", not a string"));
    absl::StatusOr<DType> dtype = ParseSafetensorsDType(dtype_it->get_ref<const std::string&>());
    if (!dtype.ok()) return fail(dtype.status().message());
    entry.dtype = *dtype;

    const auto shape_it = value.find("shape");
    if (shape_it == value.end()) return fail("missing \"shape\"");
    if (!shape_it->is_array())
      return fail(absl::StrCat("\"shape\" is ", Describe(*shape_it), ", not an array"));
    if (shape_it->size() > static_cast<size_t>(kMaxTensorRank)) {
      return fail(absl::StrCat("\"shape\" has ", shape_it->size(), " dimensions (at most ", kMaxTensorRank,
                               " are accepted)"));
    }
    uint64_t numel = 1;
    bool numel_overflows = false;
    for (const Json& dim_json : *shape_it) {
      const std::optional<uint64_t> dim = NonNegativeInteger(dim_json);
      if (!dim.has_value()) {
        return fail(absl::StrCat("shape dimension ", Describe(dim_json), " is not a non-negative integer"));
      }
      if (*dim > static_cast<uint64_t>(kMaxTensorDim)) {
        return fail(absl::StrCat("shape dimension ", *dim, " is absurdly large (limit ", kMaxTensorDim, ")"));
      }
      entry.shape.push_back(static_cast<int64_t>(*dim));
      numel_overflows = numel_overflows || __builtin_mul_overflow(numel, *dim, &numel);
    }
    uint64_t expected_bytes = 0;
    if (numel_overflows || numel > static_cast<uint64_t>(INT64_MAX) ||
        __builtin_mul_overflow(numel, static_cast<uint64_t>(DTypeSize(entry.dtype)), &expected_bytes)) {
      return fail(absl::StrCat("shape ", FormatShape(entry.shape), " has more elements than can be stored"));
    }

    const auto offsets_it = value.find("data_offsets");
    if (offsets_it == value.end()) return fail("missing \"data_offsets\"");
    if (!offsets_it->is_array() || offsets_it->size() != 2) {
      return fail(
          absl::StrCat("\"data_offsets\" is ", Describe(*offsets_it),
                       offsets_it->is_array() ? absl::StrCat(" of ", offsets_it->size(), " elements") : "",
                       ", not [begin, end]"));
    }
    const std::optional<uint64_t> begin = NonNegativeInteger((*offsets_it)[0]);
    const std::optional<uint64_t> end = NonNegativeInteger((*offsets_it)[1]);
    if (!begin.has_value() || !end.has_value()) {
      return fail(absl::StrCat("\"data_offsets\" [", Describe((*offsets_it)[0]), ", ",
                               Describe((*offsets_it)[1]), "] are not two non-negative integers"));
    }
    if (*begin > *end) return fail(absl::StrCat("data_offsets [", *begin, ", ", *end, "] are not ascending"));
    if (*end > data_size_) {
      return fail(absl::StrCat("data_offsets end ", *end, " is past the end of the data region (", data_size_,
                               " bytes): the file is truncated or its header is wrong"));
    }
    if (*end - *begin != expected_bytes) {
      return fail(absl::StrCat("data_offsets [", *begin, ", ", *end, "] span ", *end - *begin, " bytes but ",
                               std::string(DTypeName(entry.dtype)), " ", FormatShape(entry.shape), " needs ",
                               expected_bytes));
    }
    entry.begin = *begin;
    entry.end = *end;
    return entry;
  }

 private:
  const std::string& label_;
  uint64_t data_size_;
};

absl::Status CheckNoOverlap(std::vector<TensorEntry>& tensors, const std::string& label) {
  std::sort(tensors.begin(), tensors.end(), [](const TensorEntry& a, const TensorEntry& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  const TensorEntry* furthest = nullptr;  // The non-empty tensor reaching furthest so far.
  for (const TensorEntry& entry : tensors) {
    if (entry.begin == entry.end) continue;  // Empty tensors occupy no bytes.
    if (furthest != nullptr && entry.begin < furthest->end) {
      return absl::InvalidArgumentError(absl::StrCat(label, ": tensor ", Quoted(entry.name), " (bytes [",
                                                     entry.begin, ", ", entry.end, ")) overlaps tensor ",
                                                     Quoted(furthest->name), " (bytes [", furthest->begin,
                                                     ", ", furthest->end, "))"));
    }
    if (furthest == nullptr || entry.end > furthest->end) furthest = &entry;
  }
  return absl::OkStatus();
}

absl::StatusOr<Json> ParseJson(std::string_view text, const std::string& label) {
  if (!NestingWithin(text, kMaxJsonDepth)) {
    return absl::InvalidArgumentError(
        absl::StrCat(label, ": header JSON nests deeper than ", kMaxJsonDepth, " levels"));
  }
  // nlohmann keeps the last of duplicate keys; a duplicated tensor name is a lie we want to see.
  absl::flat_hash_set<std::string> names;
  std::string duplicate;
  bool has_duplicate = false;
  auto watch_keys = [&](int depth, Json::parse_event_t event, Json& parsed) {
    if (event == Json::parse_event_t::key && depth == 1 && parsed.is_string() && !has_duplicate) {
      const std::string& key = parsed.get_ref<const std::string&>();
      if (!names.insert(key).second) {
        has_duplicate = true;
        duplicate = key;
      }
    }
    return true;
  };
  Json root;
  try {
    root = Json::parse(text.begin(), text.end(), watch_keys, /*allow_exceptions=*/false);
  } catch (const std::exception& e) {  // Only std::bad_alloc is possible with allow_exceptions=false.
    return absl::ResourceExhaustedError(absl::StrCat(label, ": parsing the header failed: ", e.what()));
  }
  if (root.is_discarded()) {
    return absl::InvalidArgumentError(
        absl::StrCat(label, ": header (", text.size(), " bytes) is not valid JSON"));
  }
  if (!root.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(label, ": header is ", Describe(root), ", not a JSON object"));
  }
  if (has_duplicate) {
    return absl::InvalidArgumentError(
        absl::StrCat(label, ": tensor ", Quoted(duplicate), " appears twice in the header"));
  }
  return root;
}

absl::StatusOr<std::map<std::string, std::string>> ParseMetadata(const Json& value,
                                                                 const std::string& label) {
  if (!value.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(label, ": \"__metadata__\" is ", Describe(value), ", not an object of strings"));
  }
  std::map<std::string, std::string> metadata;
  for (const auto& [key, item] : value.items()) {
    if (!item.is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(label, ": \"__metadata__\" entry ", Quoted(key), " is ",
                                                     Describe(item), ", not a string"));
    }
    metadata.emplace(key, item.get<std::string>());
  }
  return metadata;
}

}  // namespace

int64_t TensorEntry::numel() const {
  int64_t count = 1;
  for (const int64_t dim : shape) count *= dim;
  return count;
}

std::string FormatShape(std::span<const int64_t> shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

absl::StatusOr<SafetensorsHeader> ParseSafetensorsFile(std::span<const uint8_t> file_bytes,
                                                       std::string_view file_label_view) {
  const std::string file_label(file_label_view);
  if (file_bytes.size() < 8) {
    return absl::InvalidArgumentError(
        absl::StrCat(file_label, ": file is ", file_bytes.size(),
                     " bytes, too short for the 8-byte safetensors header length"));
  }
  uint64_t header_length = 0;
  for (int i = 7; i >= 0; --i) header_length = (header_length << 8) | file_bytes[i];  // Little-endian.
  if (header_length > kMaxSafetensorsHeaderBytes) {
    return absl::InvalidArgumentError(absl::StrCat(file_label, ": header length ", header_length,
                                                   " exceeds the limit of ", kMaxSafetensorsHeaderBytes,
                                                   " bytes (corrupt file, or not safetensors)"));
  }
  if (header_length > file_bytes.size() - 8) {
    return absl::InvalidArgumentError(absl::StrCat(file_label, ": header length ", header_length,
                                                   " runs past the end of the file (", file_bytes.size(),
                                                   " bytes): the file is truncated or not safetensors"));
  }
  SafetensorsHeader header;
  header.data_begin = 8 + header_length;
  header.data_size = file_bytes.size() - header.data_begin;

  const std::string_view text(reinterpret_cast<const char*>(file_bytes.data() + 8), header_length);
  RINGMOE_ASSIGN_OR_RETURN(const Json root, ParseJson(text, file_label));

  const EntryParser parser(file_label, header.data_size);
  for (const auto& [name, value] : root.items()) {
    if (name == kMetadataKey) {
      RINGMOE_ASSIGN_OR_RETURN(header.metadata, ParseMetadata(value, file_label));
      continue;
    }
    RINGMOE_ASSIGN_OR_RETURN(TensorEntry entry, parser.Parse(name, value));
    header.tensors.push_back(std::move(entry));
  }
  RINGMOE_RETURN_IF_ERROR(CheckNoOverlap(header.tensors, file_label));
  return header;
}

absl::StatusOr<std::vector<TensorEntry>> ParseSafetensorsHeader(std::span<const uint8_t> file_bytes,
                                                                std::string_view file_label) {
  RINGMOE_ASSIGN_OR_RETURN(SafetensorsHeader header, ParseSafetensorsFile(file_bytes, file_label));
  return std::move(header.tensors);
}

}  // namespace ringmoe::io
