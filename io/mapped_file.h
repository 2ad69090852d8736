// MappedFile: a read-only memory map of a whole file. Checkpoints are mapped, never read into memory, so the
// page cache is shared by every reader and pages are faulted in only when a tensor is touched.
//
// Threading: immutable after Open; bytes() may be read from any number of threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

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

 private:
  MappedFile(std::string path, const uint8_t* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}
  void Unmap();

  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace ringmoe::io
