// GpuFeeder (runtime/engine/gpu_feeder.h): the thread that runs an offload step's GPU work in post order.
// Plain C++ threads, so everything here runs without a GPU: tickets, ordering, WaitFor and Drain blocking
// until their tasks have run, the first failure skipping what follows until ClearFailure, captures released
// before the waiter returns, and the destructor finishing the queue.
#include "runtime/engine/gpu_feeder.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/status.h"

namespace ringmoe {
namespace {

using std::chrono::milliseconds;

// Records the order tasks ran in (the feeder's thread writes, the test reads after a WaitFor).
class Log {
 public:
  void Add(int value) {
    std::lock_guard<std::mutex> lock(mutex_);
    values_.push_back(value);
  }
  std::vector<int> values() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return values_;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<int> values_;
};

TEST(GpuFeeder, RunsTasksInPostOrderOnItsOwnThread) {
  GpuFeeder feeder;
  Log log;
  std::vector<std::thread::id> threads(50);
  for (int i = 0; i < 50; ++i) {
    const int64_t ticket = feeder.Post([&, i] {
      threads[i] = std::this_thread::get_id();
      log.Add(i);
      return absl::OkStatus();
    });
    EXPECT_EQ(ticket, i + 1);  // tickets count from 1
  }
  ASSERT_TRUE(feeder.Drain().ok());
  std::vector<int> expected(50);
  for (int i = 0; i < 50; ++i) expected[i] = i;
  EXPECT_EQ(log.values(), expected);
  for (int i = 0; i < 50; ++i) {
    EXPECT_NE(threads[i], std::this_thread::get_id()) << i;
    EXPECT_EQ(threads[i], threads[0]) << i;  // one feeder thread runs them all
  }
}

TEST(GpuFeeder, WaitForBlocksUntilItsTaskAndAllBeforeHaveRun) {
  GpuFeeder feeder;
  std::promise<void> release_first, release_second;
  std::shared_future<void> first_released = release_first.get_future().share();
  std::shared_future<void> second_released = release_second.get_future().share();
  std::atomic<int> ran{0};
  feeder.Post([&] {
    first_released.wait();  // holds the queue up
    ran = 1;
    return absl::OkStatus();
  });
  const int64_t second = feeder.Post([&] {
    second_released.wait();
    ran = 2;
    return absl::OkStatus();
  });
  const int64_t third = feeder.Post([&] {
    ran = 3;
    return absl::OkStatus();
  });
  std::future<absl::Status> waited = std::async(std::launch::async, [&] { return feeder.WaitFor(second); });
  // While the first task is held, nothing has run and WaitFor(2) cannot return.
  EXPECT_EQ(waited.wait_for(milliseconds(100)), std::future_status::timeout);
  EXPECT_EQ(ran.load(), 0);
  // The first task done, the second held: still waiting.
  release_first.set_value();
  EXPECT_EQ(waited.wait_for(milliseconds(100)), std::future_status::timeout);
  EXPECT_EQ(ran.load(), 1);
  release_second.set_value();
  ASSERT_TRUE(waited.get().ok());
  EXPECT_GE(ran.load(), 2);  // tasks 1 and 2 have run (3 may have too)
  ASSERT_TRUE(feeder.WaitFor(third).ok());
  EXPECT_EQ(ran.load(), 3);
  // A ticket already passed returns at once.
  EXPECT_TRUE(feeder.WaitFor(1).ok());
}

TEST(GpuFeeder, DrainWaitsForEverythingPosted) {
  GpuFeeder feeder;
  EXPECT_TRUE(feeder.Drain().ok());  // nothing posted
  std::atomic<int> done{0};
  for (int i = 0; i < 5; ++i) {
    feeder.Post([&] {
      std::this_thread::sleep_for(milliseconds(5));
      ++done;
      return absl::OkStatus();
    });
  }
  ASSERT_TRUE(feeder.Drain().ok());
  EXPECT_EQ(done.load(), 5);
}

TEST(GpuFeeder, FirstFailureSkipsLaterTasksUntilCleared) {
  GpuFeeder feeder;
  Log log;
  auto ok = [&](int id) {
    return [&, id] {
      log.Add(id);
      return absl::OkStatus();
    };
  };
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  const int64_t first = feeder.Post(ok(1));
  feeder.Post([&] {
    released.wait();  // fails only once the test has seen the first task succeed
    log.Add(2);
    return absl::InternalError("copy failed");
  });
  feeder.Post(ok(3));
  const int64_t fourth = feeder.Post([&] {
    log.Add(4);
    return absl::UnavailableError("second failure");
  });
  // WaitFor reports the failures so far: none yet.
  EXPECT_TRUE(feeder.WaitFor(first).ok());
  release.set_value();
  // Later tickets finish (skipped) and report the first failure, not a later one.
  const absl::Status status = feeder.WaitFor(fourth);
  EXPECT_EQ(status, absl::InternalError("copy failed"));
  EXPECT_EQ(feeder.Drain(), absl::InternalError("copy failed"));
  EXPECT_EQ(log.values(), (std::vector<int>{1, 2}));

  // Still failed: what is posted now is skipped too.
  feeder.Post(ok(5));
  EXPECT_EQ(feeder.Drain(), absl::InternalError("copy failed"));
  EXPECT_EQ(log.values(), (std::vector<int>{1, 2}));

  // Cleared: the next step runs afresh, and tickets keep counting.
  feeder.ClearFailure();
  const int64_t next = feeder.Post(ok(6));
  EXPECT_EQ(next, 6);
  EXPECT_TRUE(feeder.WaitFor(next).ok());
  EXPECT_EQ(log.values(), (std::vector<int>{1, 2, 6}));
}

TEST(GpuFeeder, ReleasesATasksCapturesBeforeItsWaiterReturns) {
  GpuFeeder feeder;
  auto shared = std::make_shared<int>(7);
  const int64_t ticket =
      feeder.Post([shared] { return *shared == 7 ? absl::OkStatus() : absl::InternalError("?"); });
  ASSERT_TRUE(feeder.WaitFor(ticket).ok());
  // The task object (and its copy of `shared`) is gone: a step's tasks may refer to what the caller frees
  // once it has waited for them.
  EXPECT_EQ(shared.use_count(), 1);
  // Skipped tasks are released too.
  feeder.Post([] { return absl::InternalError("fail"); });
  const int64_t skipped = feeder.Post([shared] { return absl::OkStatus(); });
  EXPECT_FALSE(feeder.WaitFor(skipped).ok());
  EXPECT_EQ(shared.use_count(), 1);
}

TEST(GpuFeeder, DestructorRunsWhatIsQueuedThenJoins) {
  std::atomic<int> done{0};
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  {
    GpuFeeder feeder;
    feeder.Post([&] {
      released.wait();
      ++done;
      return absl::OkStatus();
    });
    for (int i = 0; i < 3; ++i) {
      feeder.Post([&] {
        ++done;
        return absl::OkStatus();
      });
    }
    // Nothing has run past the held task when the feeder goes out of scope.
    EXPECT_EQ(done.load(), 0);
    release.set_value();
  }
  EXPECT_EQ(done.load(), 4);
}

TEST(GpuFeeder, BusySecondsCountTheTasksTime) {
  GpuFeeder feeder;
  EXPECT_EQ(feeder.busy_seconds(), 0.0);
  std::this_thread::sleep_for(milliseconds(30));  // idle time is not busy time
  EXPECT_EQ(feeder.busy_seconds(), 0.0);
  for (int i = 0; i < 2; ++i) {
    feeder.Post([] {
      std::this_thread::sleep_for(milliseconds(20));
      return absl::OkStatus();
    });
  }
  ASSERT_TRUE(feeder.Drain().ok());
  EXPECT_GE(feeder.busy_seconds(), 0.040);
}

}  // namespace
}  // namespace ringmoe
