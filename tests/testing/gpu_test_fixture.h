// The fixture the GPU test files share: it skips the test (with the reason) where there is no usable GPU, and
// gives it a device arena, a stream, upload/download helpers and a random generator seeded afresh each run
// (put SCOPED_TRACE(seed_) in a test that draws from it, so that a failure prints the seed).
//
//   class MyTest : public gpu_test::GpuTest { ... };                                     // for TEST_F
//   class MyTest : public gpu_test::GpuTestBase<::testing::TestWithParam<P>> { ... };    // for TEST_P
//
// A fixture with a SetUp of its own calls the base's first and returns if it skipped or failed:
//   void SetUp() override {
//     GpuTestBase::SetUp();
//     if (IsSkipped() || HasFatalFailure()) return;
//     ...
//   }
#pragma once

#include <algorithm>
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "gpu/device.h"
#include "gpu/device_arena.h"
#include "gpu/stream.h"
#include "gtest/gtest.h"
#include "tests/testing/gpu_test_macros.h"

namespace ringmoe::gpu_test {

template <typename Base>
class GpuTestBase : public Base {
 protected:
  // arena_cap_bytes <= 0: no cap of the test's own (the device's memory is the limit).
  explicit GpuTestBase(int64_t arena_cap_bytes = 0) : arena_(arena_cap_bytes) {}

  void SetUp() override {
    SKIP_WITHOUT_GPU();
    auto stream = gpu::Stream::Create();
    ASSERT_TRUE(stream.ok()) << stream.status();
    stream_ = std::move(*stream);
    seed_ = std::random_device{}();
    random_.seed(seed_);
  }

  // Device memory for `count` elements (at least one), owned by the fixture until the test ends.
  template <typename T>
  T* Allocate(size_t count) {
    auto buffer =
        arena_.Allocate(static_cast<int64_t>(std::max<size_t>(count, 1) * sizeof(T)), "test buffer");
    EXPECT_TRUE(buffer.ok()) << buffer.status();
    buffers_.push_back(std::move(*buffer));
    return buffers_.back().template as<T>();
  }
  // Copies `values` to fresh device memory on stream_. offset > 0 places them `offset` elements past the
  // allocation's start (a misaligned tensor).
  template <typename T>
  T* Upload(const std::vector<T>& values, size_t offset = 0) {
    T* device = Allocate<T>(values.size() + offset) + offset;
    EXPECT_TRUE(gpu::CopyHostToDevice(device, values.data(), values.size() * sizeof(T), stream_).ok());
    return device;
  }
  // Copies `count` elements back on stream_ and waits for them.
  template <typename T>
  std::vector<T> Download(const T* device, size_t count) {
    std::vector<T> values(count);
    EXPECT_TRUE(gpu::CopyDeviceToHost(values.data(), device, count * sizeof(T), stream_).ok());
    EXPECT_TRUE(stream_.Synchronize().ok());
    return values;
  }

  std::vector<float> Uniform(size_t count, float scale) {
    std::uniform_real_distribution<float> dist(-scale, scale);
    std::vector<float> values(count);
    for (float& v : values) v = dist(random_);
    return values;
  }
  std::vector<float> Normal(size_t count, float std) {
    std::normal_distribution<float> dist(0.0f, std);
    std::vector<float> values(count);
    for (float& v : values) v = dist(random_);
    return values;
  }

  // Declared first, so destroyed last: every buffer, handle and ring of the test comes from it.
  gpu::DeviceArena arena_;
  gpu::Stream stream_;
  std::vector<gpu::DeviceBuffer> buffers_;
  uint32_t seed_ = 0;
  std::mt19937 random_;
};

using GpuTest = GpuTestBase<::testing::Test>;

}  // namespace ringmoe::gpu_test
