// Macros the GPU test files share: skip (with the reason) where there is no usable GPU, and assert a Status.
// To return a Status early, use RINGMOE_RETURN_IF_ERROR (io/status_macros.h).
#pragma once

#include <string>

#include "absl/status/status.h"
#include "gpu/gpu.h"
#include "gtest/gtest.h"

#define SKIP_WITHOUT_GPU()                                                                     \
  do {                                                                                         \
    std::string why_not;                                                                       \
    if (!::ringmoe::gpu::GpuAvailable(&why_not)) GTEST_SKIP() << "no usable GPU: " << why_not; \
  } while (0)

#define ASSERT_OK(expr)                                    \
  do {                                                     \
    const absl::Status status_ = (expr);                   \
    ASSERT_TRUE(status_.ok()) << #expr << ": " << status_; \
  } while (0)
