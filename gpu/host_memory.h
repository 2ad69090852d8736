// Page-locked ("pinned") host memory, which copies need to run asynchronously at full PCIe speed: new buffers
// (cudaHostAlloc) and registration of existing memory such as a checkpoint's mapping (cudaHostRegister).
//
// Pinning counts against RLIMIT_MEMLOCK for unprivileged users; when it fails the error names the limit
// (`ulimit -l`). Threading: the objects are move-only values; use each from one thread at a time.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace ringmoe::gpu {

// cudaHostRegister is done in pieces of at most this, as large single registrations are slow or fail.
inline constexpr int64_t kMaxHostRegisterChunkBytes = int64_t{1} << 30;

// Whether kernels can read `host` (pinned memory) through the same pointer, over the bus: with unified
// addressing, cudaHostAlloc memory is mapped. Lets a small transfer skip the copy engines, which a long
// ring fill may keep busy. False without a GPU or for pageable memory.
bool DeviceReadsHostDirectly(const void* host);

class PinnedHostBuffer {
 public:
  // cudaHostAlloc of `bytes` (portable, so any context may copy from it). `purpose` names it in errors.
  // alignment > 0 (a power of two): data() is a multiple of it. cudaHostAlloc does not promise page
  // alignment for small sizes (on the H100 box a 96 KiB buffer came back off a 4 KiB boundary), and
  // O_DIRECT reads need it, so the allocation is padded and data() rounded up.
  static absl::StatusOr<PinnedHostBuffer> Allocate(int64_t bytes, std::string_view purpose,
                                                   int64_t alignment = 0);

  PinnedHostBuffer() = default;
  PinnedHostBuffer(PinnedHostBuffer&& other) noexcept;
  PinnedHostBuffer& operator=(PinnedHostBuffer&& other) noexcept;
  PinnedHostBuffer(const PinnedHostBuffer&) = delete;
  PinnedHostBuffer& operator=(const PinnedHostBuffer&) = delete;
  ~PinnedHostBuffer();

  void* data() const { return data_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }
  int64_t size() const { return size_; }

 private:
  PinnedHostBuffer(void* base, void* data, int64_t size) : base_(base), data_(data), size_(size) {}
  void* base_ = nullptr;  // what cudaHostAlloc returned (data_ rounded up from it)
  void* data_ = nullptr;
  int64_t size_ = 0;
};

// A host address range.
struct HostSpan {
  const void* data = nullptr;
  int64_t bytes = 0;
};

// Pins [data, data + bytes) of memory the caller owns, in chunks of at most kMaxHostRegisterChunkBytes, and
// unpins it on destruction (which must come before the memory is freed or unmapped).
//
// One cudaMemcpy may not span two registered chunks (CUDA fails it with cudaErrorInvalidValue): cut copies
// with Split() - e.g. when building a section's HostChunks out of a registered checkpoint mapping.
class HostRegistration {
 public:
  // read_only: the memory is mapped read-only (an mmap of a checkpoint opened O_RDONLY); the device only
  // reads it. On failure, what was registered so far is undone and the error names the memlock limit.
  static absl::StatusOr<HostRegistration> Register(const void* data, int64_t bytes, std::string_view purpose,
                                                   bool read_only = true);

  HostRegistration() = default;
  HostRegistration(HostRegistration&& other) noexcept;
  HostRegistration& operator=(HostRegistration&& other) noexcept;
  HostRegistration(const HostRegistration&) = delete;
  HostRegistration& operator=(const HostRegistration&) = delete;
  ~HostRegistration();

  int64_t bytes() const { return bytes_; }
  int chunk_count() const { return static_cast<int>(chunks_.size()); }

  // [data, data + bytes), which must lie inside the registration, cut at the chunk boundaries: each span can
  // be one copy. Empty when the range is not inside the registration.
  std::vector<HostSpan> Split(const void* data, int64_t bytes) const;

 private:
  std::vector<HostSpan> chunks_;  // Each registered chunk, in address order.
  int64_t bytes_ = 0;
};

// "RLIMIT_MEMLOCK (ulimit -l): soft 8.00 MiB, hard unlimited" for error messages.
std::string MemlockLimitText();

}  // namespace ringmoe::gpu
