// MappedFile: a read-only memory map of a whole file. Checkpoints are mapped, never read into memory, so the
// page cache is shared by every reader and pages are faulted in only when a tensor is touched.
//
// A mapped file that is truncated while mapped makes a read past its new end fault (SIGBUS). Two defences:
// CheckUnchanged compares the file's size and modification time with those at Open (the engine calls it
// between steps, so a change found there ends the job with a clear error), and a SIGBUS handler, installed at
// the first Open, turns a fault inside any mapping into a message naming the file and exit status 1, for a
// change that lands in the middle of a step. (Copying the weights out of the mapping would avoid the fault
// too, but would double the host memory of the CPU path, which computes from the mapping.)
//
// Threading: immutable after Open; bytes() and CheckUnchanged may be called from any number of threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace ringmoe::io {

class MappedFile {
 public:
  // Maps `path` read-only. Errors (missing file, directory, permission, mmap failure) name the path and the
  // errno text. An empty file maps fine and has an empty bytes().
  static absl::StatusOr<MappedFile> Open(const std::string& path);

  MappedFile() = default;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  std::span<const uint8_t> bytes() const { return {data_, size_}; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // Drops this process's resident copies of the mapped pages (madvise MADV_DONTNEED): the bytes stay as they
  // are and fault back in from the page cache when read again. For callers that have copied what they need
  // (the GPU path's pinned and device weights), so that the mapping does not count twice in host memory.
  void ReleaseResidentPages() const;
  // Only the whole pages inside [data, data + bytes), which must lie in this mapping.
  void ReleaseResidentPages(const void* data, size_t bytes) const;
  // DataLoss naming the file when it was truncated, grown or written to since Open (size or mtime differ):
  // the mapped bytes are then no longer the checkpoint that was validated.
  absl::Status CheckUnchanged() const;

 private:
  MappedFile(std::string path, const uint8_t* data, size_t size, int fd, int64_t mtime_ns)
      : path_(std::move(path)), data_(data), size_(size), fd_(fd), mtime_ns_(mtime_ns) {}
  void Unmap();

  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  int fd_ = -1;  // kept open for CheckUnchanged's fstat (the same inode even if the name is replaced)
  int64_t mtime_ns_ = 0;
};

}  // namespace ringmoe::io
