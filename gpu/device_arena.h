// The device-memory budget: every device allocation of the engine goes through a DeviceArena, which enforces
// the --gpu-mem cap (so a 141 GB H200 can stand in for a 16-24 GB card). Plain cudaMalloc, never managed
// memory.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace ringmoe::gpu {

class DeviceArena;

// A block of device memory owned by its arena's accounting. Move-only; freed (and returned to the budget) on
// destruction. Must not outlive its arena.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { Reset(); }

  void* data() const { return data_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }
  int64_t size() const { return size_; }
  bool empty() const { return data_ == nullptr; }
  void Reset();

 private:
  friend class DeviceArena;
  DeviceBuffer(DeviceArena* arena, void* data, int64_t size, int64_t charged)
      : arena_(arena), data_(data), size_(size), charged_(charged) {}
  DeviceArena* arena_ = nullptr;
  void* data_ = nullptr;
  int64_t size_ = 0;
  int64_t charged_ = 0;  // What the budget was charged (size rounded up to the allocation granularity).
};

// Threading: Allocate and the counters are safe from any thread (a mutex guards the accounting). The arena
// must outlive every buffer it handed out.
class DeviceArena {
 public:
  // Allocations are charged rounded up to this, close to what cudaMalloc really takes.
  static constexpr int64_t kGranularity = 512;

  // cap_bytes <= 0: no cap of our own (the device's memory is still the limit).
  explicit DeviceArena(int64_t cap_bytes);
  DeviceArena(const DeviceArena&) = delete;
  DeviceArena& operator=(const DeviceArena&) = delete;
  ~DeviceArena() = default;

  // cudaMalloc of `bytes`. ResourceExhausted when the cap would be exceeded, naming `purpose`, the request,
  // what is in use and the cap; also when the device itself is out of memory. Unavailable without a GPU.
  absl::StatusOr<DeviceBuffer> Allocate(int64_t bytes, std::string_view purpose);

  int64_t cap_bytes() const { return cap_bytes_; }
  int64_t used_bytes() const;
  int64_t peak_bytes() const;
  int64_t available_bytes() const;  // cap - used; INT64_MAX without a cap.

 private:
  friend class DeviceBuffer;
  void Free(void* data, int64_t charged);

  const int64_t cap_bytes_;
  mutable std::mutex mutex_;
  int64_t used_bytes_ = 0;
  int64_t peak_bytes_ = 0;
};

// "1.50 GiB"-style text for messages.
std::string FormatBytes(int64_t bytes);

}  // namespace ringmoe::gpu
