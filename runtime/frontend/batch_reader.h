// Reading a batch file one line at a time, so that a job of any length runs in bounded memory: `ringmoe run`
// and `ringmoe plan --input` pass over the input a few times instead of holding it.
//
//   ScanCustomIds     a first pass that finds repeated custom_ids with a set of 64-bit hashes (10 to 20 bytes
//                     a line, freed when it ends), resolving hash matches exactly by reading their lines
//                     again; it keeps only the repeated lines, and records the file's size,
//                     time and line count, so that later passes notice a file that changed under the job.
//   BatchFileReader   a later pass: each non-blank line parsed (ParseBatchLine), the later line of a repeated
//                     custom_id marked as ReadBatchFile marks it, with its index among the non-blank lines.
//   BatchLineStream   the line splitting both share with ReadBatchFile (BOM, CRLF, blank and overlong lines).
//
// Threading: each object belongs to one thread at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/frontend/batch_io.h"

namespace ringmoe {

// Reads up to `size` bytes into `buffer`: the count (0 at the end), or -1 with errno set on a read error.
using ReadBytes = std::function<int64_t(char* buffer, size_t size)>;
// read(2) from `fd` (which the caller keeps open), retried on EINTR.
ReadBytes ReadFromDescriptor(int fd);

// The non-blank lines of a batch stream, parsed, with what ReadBatchFile accepts: a UTF-8 byte-order mark,
// CRLF, a missing final newline; a line over kMaxBatchLineBytes is an error line of its own and is never held
// whole. Repeated custom_ids are not marked here.
class BatchLineStream {
 public:
  explicit BatchLineStream(ReadBytes read);

  // The next non-blank line; false at the end or on a read error (read_error() says which).
  // `custom_id_known`: whether the custom_id was read from the line (not the "line-<N>" fallback).
  bool Next(BatchLine* line, bool* custom_id_known);
  bool read_error() const { return read_errno_ != 0; }
  int read_errno() const { return read_errno_; }
  int line_number() const { return line_number_; }  // the last line read, 1-based, blank lines counted

 private:
  // The next physical line without its '\n' in text_ (empty when it was too long to keep); false at the end.
  // `length` is its full length.
  bool NextPhysicalLine(size_t* length);
  bool Refill();

  ReadBytes read_;
  std::string buffer_;
  size_t position_ = 0;
  size_t filled_ = 0;
  std::string text_;
  int line_number_ = 0;
  int read_errno_ = 0;
};

// What the first pass learned about an input file.
struct CustomIdScan {
  // Later line of a repeated custom_id (read from the line) -> the first line with that custom_id.
  absl::flat_hash_map<int, int> first_line_of_duplicate;
  // Every line whose custom_id (its fallback "line-<N>" included) is also another line's.
  absl::flat_hash_set<int> repeated_id_lines;
  int64_t non_blank_lines = 0;
  // The file as scanned, to notice a change before a later pass reads it.
  int64_t size_bytes = 0;
  int64_t modified_ns = 0;

  bool IdIsRepeated(int line_number) const { return repeated_id_lines.contains(line_number); }
};

// The first pass over `path` (a regular file). Errors: NotFound / PermissionDenied / InvalidArgument (not a
// regular file) naming the path, DataLoss for a read error.
absl::StatusOr<CustomIdScan> ScanCustomIds(const std::string& path);

// A later pass over `path`, after ScanCustomIds.
class BatchFileReader {
 public:
  // Fails as ScanCustomIds does, or with FailedPrecondition when the file is no longer what `scan` read.
  static absl::StatusOr<std::unique_ptr<BatchFileReader>> Open(const std::string& path,
                                                               const CustomIdScan& scan);
  ~BatchFileReader();
  BatchFileReader(const BatchFileReader&) = delete;
  BatchFileReader& operator=(const BatchFileReader&) = delete;

  // The next non-blank line, a repeated custom_id marked as an error on its later lines (when the line is
  // otherwise good), and its 0-based index among the non-blank lines. False at the end of the file or on an
  // error; status() tells them apart.
  bool Next(BatchLine* line, int64_t* index);
  // A read error, or a file that changed since the scan (another line count), naming the path.
  absl::Status status() const { return status_; }

 private:
  BatchFileReader(int fd, std::string path, const CustomIdScan& scan);

  int fd_;
  std::string path_;
  const CustomIdScan& scan_;
  BatchLineStream stream_;
  int64_t index_ = 0;
  absl::Status status_;
};

}  // namespace ringmoe
