// CUDA streams, events and asynchronous copies as RAII types with opaque handles (no CUDA types here).
//
// Threading: a Stream or Event is used from one host thread at a time; the GPU work it orders may of course
// run concurrently with other streams. Both are move-only and release their CUDA object on destruction.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace ringmoe::gpu {

class Event;

class Stream {
 public:
  // A stream that does not synchronise with the legacy default stream. high_priority: its kernels are
  // scheduled ahead of normal-priority streams' (the compute stream, so that copies never delay it).
  static absl::StatusOr<Stream> Create(bool high_priority = false);

  Stream() = default;
  Stream(Stream&& other) noexcept;
  Stream& operator=(Stream&& other) noexcept;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  ~Stream();

  void* handle() const { return handle_; }  // cudaStream_t
  bool valid() const { return handle_ != nullptr; }

  // Later work on this stream waits until `event` (recorded on any stream) has completed. No host wait.
  absl::Status WaitFor(const Event& event) const;
  // Blocks the calling host thread until all work queued so far has finished.
  absl::Status Synchronize() const;

 private:
  explicit Stream(void* handle) : handle_(handle) {}
  void* handle_ = nullptr;
};

class Event {
 public:
  // timing: the event can be used with ElapsedMilliseconds (slightly more expensive to record).
  // blocking_sync: Synchronize sleeps instead of spinning, so that a thread that waits long (the GPU feeder
  // waiting for a layer's copy) leaves its core to the CPU attention workers.
  static absl::StatusOr<Event> Create(bool timing = false, bool blocking_sync = false);

  Event() = default;
  Event(Event&& other) noexcept;
  Event& operator=(Event&& other) noexcept;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  ~Event();

  void* handle() const { return handle_; }  // cudaEvent_t
  bool valid() const { return handle_ != nullptr; }

  // Captures the work queued on `stream` so far; the event completes when that work has.
  absl::Status Record(const Stream& stream);
  absl::Status Synchronize();
  // True once the recorded work has finished (also true for a never-recorded event).
  absl::StatusOr<bool> IsComplete() const;

 private:
  explicit Event(void* handle) : handle_(handle) {}
  void* handle_ = nullptr;
};

// Milliseconds between two timing events that have both completed.
absl::StatusOr<float> ElapsedMilliseconds(const Event& start, const Event& end);

// Asynchronous copies on `stream`. Host pointers must be pinned (PinnedHostBuffer, HostRegistration) for the
// copy to be asynchronous and run at full PCIe speed; pageable memory works but serialises.
absl::Status CopyHostToDevice(void* device_dst, const void* host_src, int64_t bytes, const Stream& stream);
absl::Status CopyDeviceToHost(void* host_dst, const void* device_src, int64_t bytes, const Stream& stream);
absl::Status CopyDeviceToDevice(void* device_dst, const void* device_src, int64_t bytes,
                                const Stream& stream);
absl::Status FillDeviceBytes(void* device_dst, uint8_t value, int64_t bytes, const Stream& stream);

}  // namespace ringmoe::gpu
