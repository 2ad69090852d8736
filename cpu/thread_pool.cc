#include "cpu/thread_pool.h"

#include <hwloc.h>
#include <omp.h>

#include <atomic>
#include <mutex>

#include "oneapi/tbb/blocked_range.h"
#include "oneapi/tbb/parallel_for.h"
#include "oneapi/tbb/task_arena.h"
#include "oneapi/tbb/task_scheduler_observer.h"

namespace ringmoe::cpu {
namespace {

struct Topology {
  hwloc_topology_t topology = nullptr;
  int cores = 1;
  Topology() {
    if (hwloc_topology_init(&topology) != 0 || hwloc_topology_load(topology) != 0) return;
    int count = hwloc_get_nbobjs_by_type(topology, HWLOC_OBJ_CORE);
    cores = count > 0 ? count : 1;
  }
  ~Topology() {
    if (topology != nullptr) hwloc_topology_destroy(topology);
  }
};

Topology& SharedTopology() {
  static Topology topology;
  return topology;
}

// Prepares each arena thread: oneDNN calls made on it stay single-threaded (its OpenMP pool must not spawn a
// team per TBB thread), and, when the pool owns every core, the thread is pinned to one core so attention
// threads do not migrate and thrash caches.
class WorkerSetup : public tbb::task_scheduler_observer {
 public:
  WorkerSetup(tbb::task_arena& arena, int cores, bool pin)
      : tbb::task_scheduler_observer(arena), cores_(cores), pin_(pin) {
    observe(true);
  }
  ~WorkerSetup() override { observe(false); }
  void on_scheduler_entry(bool) override {
    omp_set_num_threads(1);
    if (!pin_) return;
    Topology& shared = SharedTopology();
    if (shared.topology == nullptr) return;
    int slot = tbb::this_task_arena::current_thread_index();
    if (slot < 0) return;
    hwloc_obj_t core = hwloc_get_obj_by_type(shared.topology, HWLOC_OBJ_CORE, slot % cores_);
    if (core != nullptr) hwloc_set_cpubind(shared.topology, core->cpuset, HWLOC_CPUBIND_THREAD);
  }

 private:
  int cores_;
  bool pin_;
};

}  // namespace

struct CpuWorkers::State {
  int threads;
  tbb::task_arena arena;
  std::unique_ptr<WorkerSetup> setup;
  explicit State(int n) : threads(n), arena(n) {}
};

CpuWorkers::CpuWorkers(int threads) {
  int cores = PhysicalCoreCount();
  int n = threads > 0 ? threads : cores;
  state_ = std::make_unique<State>(n);
  state_->arena.initialize();
  // Pin only when we own every core; a caller who asked for fewer threads shares the machine.
  state_->setup = std::make_unique<WorkerSetup>(state_->arena, cores, n == cores && n > 1);
  omp_set_num_threads(1);  // the calling thread runs slices too
}

CpuWorkers::~CpuWorkers() = default;

int CpuWorkers::threads() const { return state_->threads; }

void CpuWorkers::ParallelFor(int64_t count, int64_t grain, const std::function<void(int64_t, int64_t)>& body) {
  if (count <= 0) return;
  if (state_->threads == 1 || count <= grain) {
    body(0, count);
    return;
  }
  state_->arena.execute([&] {
    tbb::parallel_for(tbb::blocked_range<int64_t>(0, count, grain > 0 ? grain : 1),
                      [&](const tbb::blocked_range<int64_t>& range) { body(range.begin(), range.end()); });
  });
}

int PhysicalCoreCount() { return SharedTopology().cores; }

}  // namespace ringmoe::cpu
