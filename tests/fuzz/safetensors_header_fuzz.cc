// libFuzzer target for the safetensors header parser: no input may crash, hang, leak or trip a sanitizer,
// and every header it accepts must satisfy the invariants Checkpoint relies on.
//
// Each input is tried twice: as a whole file, and as header JSON framed with its correct length and a data
// region, so that mutations reach the entry validation instead of all dying at the length check.
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "io/dtype.h"
#include "io/safetensors.h"

namespace {

constexpr size_t kFramedDataBytes = 4096;

void CheckAccepted(const ringmoe::io::SafetensorsHeader& header, size_t file_size) {
  if (header.data_begin + header.data_size != file_size) __builtin_trap();
  uint64_t previous_end = 0;
  for (const ringmoe::io::TensorEntry& entry : header.tensors) {
    if (entry.begin > entry.end || entry.end > header.data_size) __builtin_trap();
    if (entry.nbytes() != static_cast<uint64_t>(entry.numel()) * ringmoe::io::DTypeSize(entry.dtype)) {
      __builtin_trap();
    }
    if (entry.nbytes() > 0) {
      if (entry.begin < previous_end) __builtin_trap();  // Sorted by offset and not overlapping.
      previous_end = entry.end;
    }
  }
}

void Parse(std::span<const uint8_t> file) {
  absl::StatusOr<ringmoe::io::SafetensorsHeader> header = ringmoe::io::ParseSafetensorsFile(file, "fuzz");
  if (header.ok()) {
    CheckAccepted(*header, file.size());
    // The list-only entry point must agree.
    absl::StatusOr<std::vector<ringmoe::io::TensorEntry>> entries =
        ringmoe::io::ParseSafetensorsHeader(file, "fuzz");
    if (!entries.ok() || entries->size() != header->tensors.size()) __builtin_trap();
  } else if (header.status().message().empty()) {
    __builtin_trap();  // Every error must say something.
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Parse({data, size});

  std::vector<uint8_t> framed(8 + size + kFramedDataBytes, 0);
  for (int i = 0; i < 8; ++i)
    framed[i] = static_cast<uint8_t>((static_cast<uint64_t>(size) >> (8 * i)) & 0xff);
  if (size > 0) std::memcpy(framed.data() + 8, data, size);
  Parse(framed);
  return 0;
}
