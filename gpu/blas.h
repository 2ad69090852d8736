// A cuBLAS handle whose workspace comes from a DeviceArena, so that cuBLAS allocates nothing behind the
// --gpu-mem budget's back.
//
// Threading: one host thread and one stream at a time: Bind() before each batch of GEMMs on a stream. Give
// each concurrently running stream its own handle (the workspace is not shareable between streams).
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "gpu/device_arena.h"
#include "gpu/stream.h"

namespace ringmoe::gpu {

class BlasHandle {
 public:
  static constexpr int64_t kDefaultWorkspaceBytes = int64_t{32} << 20;

  static absl::StatusOr<BlasHandle> Create(DeviceArena& arena,
                                           int64_t workspace_bytes = kDefaultWorkspaceBytes);

  BlasHandle() = default;
  BlasHandle(BlasHandle&& other) noexcept;
  BlasHandle& operator=(BlasHandle&& other) noexcept;
  BlasHandle(const BlasHandle&) = delete;
  BlasHandle& operator=(const BlasHandle&) = delete;
  ~BlasHandle();

  // Directs later cuBLAS calls to `stream` (and re-attaches the workspace, which cublasSetStream drops).
  absl::Status Bind(const Stream& stream);
  void* handle() const { return handle_; }  // cublasHandle_t

 private:
  void* handle_ = nullptr;
  DeviceBuffer workspace_;
  void* bound_stream_ = nullptr;
};

}  // namespace ringmoe::gpu
