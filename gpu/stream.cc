#include "gpu/stream.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "gpu/device.h"
#include "io/status_macros.h"

#if RINGMOE_HAVE_CUDA
#include <cuda_runtime.h>

#include "gpu/cuda_status.cuh"
#endif

namespace ringmoe::gpu {

Stream::Stream(Stream&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
Stream& Stream::operator=(Stream&& other) noexcept {
  if (this != &other) {
    Stream dying(std::move(*this));
    handle_ = std::exchange(other.handle_, nullptr);
  }
  return *this;
}
Event::Event(Event&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
Event& Event::operator=(Event&& other) noexcept {
  if (this != &other) {
    Event dying(std::move(*this));
    handle_ = std::exchange(other.handle_, nullptr);
  }
  return *this;
}

#if RINGMOE_HAVE_CUDA
using internal::AsCuda;

absl::StatusOr<Stream> Stream::Create(bool high_priority) {
  RINGMOE_RETURN_IF_ERROR(RequireGpu());
  int least = 0, greatest = 0;
  RINGMOE_CUDA_RETURN_IF_ERROR(cudaDeviceGetStreamPriorityRange(&least, &greatest),
                               "cudaDeviceGetStreamPriorityRange");
  cudaStream_t stream = nullptr;
  RINGMOE_CUDA_RETURN_IF_ERROR(
      cudaStreamCreateWithPriority(&stream, cudaStreamNonBlocking, high_priority ? greatest : least),
      "cudaStreamCreateWithPriority");
  return Stream(stream);
}

Stream::~Stream() {
  if (handle_ != nullptr) cudaStreamDestroy(static_cast<cudaStream_t>(handle_));
}

absl::Status Stream::WaitFor(const Event& event) const {
  RINGMOE_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(AsCuda(*this), AsCuda(event), 0), "cudaStreamWaitEvent");
  return absl::OkStatus();
}

absl::Status Stream::Synchronize() const {
  RINGMOE_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(AsCuda(*this)), "cudaStreamSynchronize");
  return absl::OkStatus();
}

absl::StatusOr<Event> Event::Create(bool timing, bool blocking_sync) {
  RINGMOE_RETURN_IF_ERROR(RequireGpu());
  cudaEvent_t event = nullptr;
  const unsigned flags =
      (timing ? cudaEventDefault : cudaEventDisableTiming) | (blocking_sync ? cudaEventBlockingSync : 0u);
  RINGMOE_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&event, flags), "cudaEventCreateWithFlags");
  return Event(event);
}

Event::~Event() {
  if (handle_ != nullptr) cudaEventDestroy(static_cast<cudaEvent_t>(handle_));
}

absl::Status Event::Record(const Stream& stream) {
  RINGMOE_CUDA_RETURN_IF_ERROR(cudaEventRecord(AsCuda(*this), AsCuda(stream)), "cudaEventRecord");
  return absl::OkStatus();
}

absl::Status Event::Synchronize() {
  RINGMOE_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(AsCuda(*this)), "cudaEventSynchronize");
  return absl::OkStatus();
}

absl::StatusOr<bool> Event::IsComplete() const {
  cudaError_t error = cudaEventQuery(AsCuda(*this));
  if (error == cudaErrorNotReady) return false;
  RINGMOE_CUDA_RETURN_IF_ERROR(error, "cudaEventQuery");
  return true;
}

absl::StatusOr<float> ElapsedMilliseconds(const Event& start, const Event& end) {
  float ms = 0;
  RINGMOE_CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms, AsCuda(start), AsCuda(end)), "cudaEventElapsedTime");
  return ms;
}

namespace {
absl::Status Copy(void* dst, const void* src, int64_t bytes, cudaMemcpyKind kind, const Stream& stream,
                  const char* what) {
  if (bytes < 0) return absl::InvalidArgumentError(absl::StrCat(what, ": negative size ", bytes));
  if (bytes == 0) return absl::OkStatus();
  RINGMOE_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst, src, static_cast<size_t>(bytes), kind, AsCuda(stream)),
                               absl::StrCat(what, " of ", bytes, " bytes"));
  return absl::OkStatus();
}
}  // namespace

absl::Status CopyHostToDevice(void* device_dst, const void* host_src, int64_t bytes, const Stream& stream) {
  return Copy(device_dst, host_src, bytes, cudaMemcpyHostToDevice, stream, "host-to-device copy");
}
absl::Status CopyDeviceToHost(void* host_dst, const void* device_src, int64_t bytes, const Stream& stream) {
  return Copy(host_dst, device_src, bytes, cudaMemcpyDeviceToHost, stream, "device-to-host copy");
}
absl::Status CopyDeviceToDevice(void* device_dst, const void* device_src, int64_t bytes,
                                const Stream& stream) {
  return Copy(device_dst, device_src, bytes, cudaMemcpyDeviceToDevice, stream, "device-to-device copy");
}
absl::Status FillDeviceBytes(void* device_dst, uint8_t value, int64_t bytes, const Stream& stream) {
  if (bytes <= 0) return absl::OkStatus();
  RINGMOE_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(device_dst, value, static_cast<size_t>(bytes), AsCuda(stream)),
                               "cudaMemsetAsync");
  return absl::OkStatus();
}

#else  // !RINGMOE_HAVE_CUDA

absl::StatusOr<Stream> Stream::Create(bool) { return NotBuiltWithCuda(); }
Stream::~Stream() = default;
absl::Status Stream::WaitFor(const Event&) const { return NotBuiltWithCuda(); }
absl::Status Stream::Synchronize() const { return NotBuiltWithCuda(); }
absl::StatusOr<Event> Event::Create(bool, bool) { return NotBuiltWithCuda(); }
Event::~Event() = default;
absl::Status Event::Record(const Stream&) { return NotBuiltWithCuda(); }
absl::Status Event::Synchronize() { return NotBuiltWithCuda(); }
absl::StatusOr<bool> Event::IsComplete() const { return NotBuiltWithCuda(); }
absl::StatusOr<float> ElapsedMilliseconds(const Event&, const Event&) { return NotBuiltWithCuda(); }
absl::Status CopyHostToDevice(void*, const void*, int64_t, const Stream&) { return NotBuiltWithCuda(); }
absl::Status CopyDeviceToHost(void*, const void*, int64_t, const Stream&) { return NotBuiltWithCuda(); }
absl::Status CopyDeviceToDevice(void*, const void*, int64_t, const Stream&) { return NotBuiltWithCuda(); }
absl::Status FillDeviceBytes(void*, uint8_t, int64_t, const Stream&) { return NotBuiltWithCuda(); }

#endif

}  // namespace ringmoe::gpu
