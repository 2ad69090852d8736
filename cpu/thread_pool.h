// CpuWorkers: the engine's CPU thread pool, a TBB arena. All CPU parallelism goes through it: oneDNN is kept
// single-threaded on every thread (its OpenMP pool would otherwise spin against TBB's) and large matmuls are
// split into slices on this pool instead (cpu/linear.h).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

namespace ringmoe::cpu {

// Threading: ParallelFor may be called from one driving thread at a time (the scheduler thread); the body
// runs on the pool's threads and must only touch its own slice of the output.
class CpuWorkers {
 public:
  // threads <= 0: every core hwloc reports.
  explicit CpuWorkers(int threads);
  ~CpuWorkers();
  CpuWorkers(const CpuWorkers&) = delete;
  CpuWorkers& operator=(const CpuWorkers&) = delete;

  int threads() const;
  // body(begin, end) over [0, count) in chunks of at least grain.
  void ParallelFor(int64_t count, int64_t grain, const std::function<void(int64_t, int64_t)>& body);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Number of physical cores (hwloc), at least 1.
int PhysicalCoreCount();

}  // namespace ringmoe::cpu
