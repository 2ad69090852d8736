// Macros the GPU test files share: skip (with the reason) where there is no usable GPU, assert a Status,
// and return one early.
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

// Inside a function returning absl::Status or absl::StatusOr: return the status of `expr` unless it is OK.
#define RINGMOE_TEST_RETURN_IF_ERROR(expr) \
  do {                                     \
    const absl::Status status_ = (expr);   \
    if (!status_.ok()) return status_;     \
  } while (0)
