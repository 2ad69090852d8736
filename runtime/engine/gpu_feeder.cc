#include "runtime/engine/gpu_feeder.h"

#include <chrono>
#include <utility>

namespace ringmoe {

GpuFeeder::GpuFeeder() : thread_([this] { Loop(); }) {}

GpuFeeder::~GpuFeeder() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  work_ready_.notify_one();
  thread_.join();
}

int64_t GpuFeeder::Post(Task task) {
  int64_t ticket;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back(std::move(task));
    ticket = ++posted_;
  }
  work_ready_.notify_one();
  return ticket;
}

absl::Status GpuFeeder::WaitFor(int64_t ticket) {
  std::unique_lock<std::mutex> lock(mutex_);
  work_done_.wait(lock, [&] { return finished_ >= ticket; });
  return failure_;
}

absl::Status GpuFeeder::Drain() {
  int64_t last;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    last = posted_;
  }
  return WaitFor(last);
}

void GpuFeeder::ClearFailure() {
  std::lock_guard<std::mutex> lock(mutex_);
  failure_ = absl::OkStatus();
}

double GpuFeeder::busy_seconds() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return busy_seconds_;
}

void GpuFeeder::Loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    work_ready_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, and everything posted has run
    Task task = std::move(queue_.front());
    queue_.pop_front();
    const bool skip = !failure_.ok();
    lock.unlock();
    absl::Status status;
    const auto start = std::chrono::steady_clock::now();
    if (!skip) status = task();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    task = nullptr;  // Release what the task captured before the driver is told it ran.
    lock.lock();
    busy_seconds_ += seconds;
    if (!status.ok() && failure_.ok()) failure_ = std::move(status);
    ++finished_;
    work_done_.notify_all();
  }
}

}  // namespace ringmoe
