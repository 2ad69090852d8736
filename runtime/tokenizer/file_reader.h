// Reads a whole file, inflating it when it is gzip-compressed (detected by its magic bytes, not its name).
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace ringmoe::tokenizer_internal {

// NotFound / DataLoss errors name the path.
absl::StatusOr<std::string> ReadFileMaybeGzip(const std::string& path);

}  // namespace ringmoe::tokenizer_internal
