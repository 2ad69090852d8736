// Opening model files that may be hostile: only regular files are read, and JSON is checked for nesting
// before a recursive parser or printer sees it.
//
// A FIFO named as a shard or a config.json would block open(2) forever, a device (/dev/zero) would never end,
// so they are refused before they are opened (stat), and, against a swap between the stat and the open, the
// open is non-blocking and the opened file is checked again (fstat). Stateless and thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace ringmoe::io {

// What kind of file `mode` (st_mode) is, for messages: "a FIFO", "a directory", "a character device", ...
std::string_view FileKindName(unsigned mode);

// Opens `path` for reading (O_RDONLY | O_CLOEXEC, blocking) if it is a regular file after symlinks. Errors
// name the path and, for other files, their kind: NotFound, PermissionDenied, InvalidArgument (not regular).
absl::StatusOr<int> OpenRegularFileForReading(const std::string& path);

// The whole content of the regular file `path`, at most `max_bytes` (a larger file is an InvalidArgument
// naming both sizes).
absl::StatusOr<std::string> ReadRegularFile(const std::string& path, int64_t max_bytes);

// InvalidArgument naming `source` when `json` nests arrays and objects deeper than `max_depth` (brackets
// inside strings do not count). Cheap (one pass over the bytes); run it before a recursive parse, dump or
// destructor meets the text.
absl::Status CheckJsonNesting(std::string_view json, int max_depth, std::string_view source);

}  // namespace ringmoe::io
