// Human-friendly byte sizes for flags: "6GiB", "512MiB", "12G", "1.5GB", "4096".
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace ringmoe {

// Binary units (KiB, MiB, GiB, TiB and the short K, M, G, T) are powers of 1024; KB, MB, GB, TB powers of 1000.
absl::StatusOr<int64_t> ParseByteSize(const std::string& text);
std::string FormatByteSize(int64_t bytes);  // "6.00 GiB"

}  // namespace ringmoe
