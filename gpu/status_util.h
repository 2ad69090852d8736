// Small absl::Status helpers shared by the gpu/ sources (absl 20220623 has no public RETURN_IF_ERROR).
#pragma once

#include "absl/status/status.h"

#define RINGMOE_GPU_RETURN_IF_ERROR(expr)                      \
  do {                                                         \
    ::absl::Status ringmoe_gpu_status_ = (expr);               \
    if (!ringmoe_gpu_status_.ok()) return ringmoe_gpu_status_; \
  } while (0)

#define RINGMOE_GPU_CONCAT_INNER(a, b) a##b
#define RINGMOE_GPU_CONCAT(a, b) RINGMOE_GPU_CONCAT_INNER(a, b)
#define RINGMOE_GPU_ASSIGN_OR_RETURN_IMPL(var, lhs, expr) \
  auto var = (expr);                                      \
  if (!var.ok()) return var.status();                     \
  lhs = std::move(var).value()
// RINGMOE_GPU_ASSIGN_OR_RETURN(auto x, MakeX());
#define RINGMOE_GPU_ASSIGN_OR_RETURN(lhs, expr) \
  RINGMOE_GPU_ASSIGN_OR_RETURN_IMPL(RINGMOE_GPU_CONCAT(ringmoe_gpu_or_, __LINE__), lhs, expr)

namespace ringmoe::gpu {

// What every entry point returns in a build without CUDA.
inline absl::Status NotBuiltWithCuda() { return absl::UnavailableError("built without CUDA"); }

}  // namespace ringmoe::gpu
