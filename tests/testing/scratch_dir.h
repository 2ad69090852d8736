// Test helpers for the io/ readers' tests: a scratch directory under a chosen base (tmpfs or an on-disk
// folder, so that O_DIRECT is exercised where the filesystem allows it), and an owner of FreeAligned buffers.
// Threading: plain values, one test at a time.
#pragma once

#include <stdlib.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>

#include "io/uring_reader.h"

namespace ringmoe::testing {

// A fresh directory under `base`, removed with everything in it on destruction; path() is empty when it could
// not be made.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& base, const std::string& prefix = "ringmoe_io_test") {
    std::string pattern = base + "/" + prefix + "_XXXXXX";
    if (::mkdtemp(pattern.data()) != nullptr) path_ = pattern;
  }
  ~ScratchDir() {
    std::error_code ignored;
    if (!path_.empty()) std::filesystem::remove_all(path_, ignored);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

struct FreeAlignedDeleter {
  void operator()(uint8_t* ptr) const { io::FreeAligned(ptr); }
};
using AlignedBuffer = std::unique_ptr<uint8_t, FreeAlignedDeleter>;

}  // namespace ringmoe::testing
