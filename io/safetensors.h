// Parsing and validation of the safetensors header. The header is hostile input: every field is checked and
// no input, however malformed, crashes, aborts or allocates without bound (the fuzz target
// tests/fuzz/safetensors_header_fuzz.cc holds us to that).
//
// File layout: u64 little-endian header length N, N bytes of JSON, then the data region. Each JSON key is a
// tensor name mapping to {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]} with offsets relative
// to the data region; the optional "__metadata__" key maps to an object of strings.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "io/dtype.h"

namespace ringmoe::io {

struct TensorEntry {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // Byte offsets relative to the data region; end - begin == numel * DTypeSize(dtype).
  uint64_t end = 0;

  int64_t numel() const;
  uint64_t nbytes() const { return end - begin; }
};

struct SafetensorsHeader {
  std::vector<TensorEntry> tensors;             // In data-offset order (then by name for empty tensors).
  std::map<std::string, std::string> metadata;  // "__metadata__", empty when absent.
  uint64_t data_begin = 0;                      // File offset of the data region: 8 + header length.
  uint64_t data_size = 0;                       // Bytes in the data region (to the end of the file).
};

// Limits on what a header may claim; anything beyond is rejected as corrupt rather than trusted.
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100ull << 20;
inline constexpr int kMaxTensorRank = 16;
inline constexpr int64_t kMaxTensorDim = int64_t{1} << 40;

// Validates the whole header of `file_bytes` (the complete file) against the file's size. Every error message
// starts with `file_label` and, when a tensor is at fault, names the tensor.
absl::StatusOr<SafetensorsHeader> ParseSafetensorsFile(std::span<const uint8_t> file_bytes,
                                                       std::string_view file_label);

// The same validation, returning only the tensors (in data-offset order).
absl::StatusOr<std::vector<TensorEntry>> ParseSafetensorsHeader(std::span<const uint8_t> file_bytes,
                                                                std::string_view file_label);

// "[8, 64]": how shapes are written in error messages.
std::string FormatShape(std::span<const int64_t> shape);

}  // namespace ringmoe::io
