// Runs independent tasks on a few threads (the caller's among them) for the drivers that route
// or simulate many things at once; results stay deterministic as each task writes its own slot.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

namespace moesim {

// Calls task(index, worker) for every index in [0, count) on min(threads, count) threads,
// worker in [0, threads) naming the calling thread (for per-thread scratch). Indices are handed
// out in order; after every thread has finished, the exception of the lowest failing index is
// rethrown, so which error surfaces does not depend on timing.
template <typename Task>
void parallel_for(int64_t count, int32_t threads, Task&& task) {
  if (count <= 0) return;
  const auto workers = static_cast<int32_t>(std::clamp<int64_t>(threads, 1, count));
  std::vector<std::exception_ptr> errors(static_cast<size_t>(count));
  std::atomic<int64_t> next{0};
  auto work = [&](int32_t worker) {
    for (int64_t i = next++; i < count; i = next++) {
      try {
        task(i, worker);
      } catch (...) {
        errors[static_cast<size_t>(i)] = std::current_exception();
      }
    }
  };
  std::vector<std::thread> pool;
  for (int32_t w = 1; w < workers; ++w) pool.emplace_back(work, w);
  work(0);
  for (std::thread& t : pool) t.join();
  for (const std::exception_ptr& e : errors) {
    if (e) std::rethrow_exception(e);
  }
}

// Runs tasks [0, count) in index order while the caller goes on, for a consumer that needs
// their results one by one (a step playing its first layers while later layers route). Each
// task writes its own slot, so results do not depend on timing. `background` threads (workers
// 1..background) start at once; with `caller_helps`, a caller waiting on a task that is not done
// runs the next unclaimed tasks itself, as worker 0, rather than sleep (it must help when there
// is no background thread). Tasks are claimed in index order, so with one routing thread they
// also run in that order. After a task fails no further task is claimed: every lower task has
// been claimed already, so once those finish the lowest failing task is the lowest overall,
// and wait() and wait_all() rethrow its exception, whatever the timing.
class TaskStream {
 public:
  using Task = std::function<void(int64_t index, int32_t worker)>;
  TaskStream(int64_t count, int32_t background, bool caller_helps, Task task)
      : task_(std::move(task)),
        count_(std::max<int64_t>(count, 0)),
        caller_helps_(caller_helps || background <= 0),
        done_(static_cast<size_t>(count_), 0),
        errors_(static_cast<size_t>(count_)) {
    try {
      for (int32_t w = 1; w <= background && w <= count_; ++w) {
        threads_.emplace_back([this, w] { work(w); });
      }
    } catch (...) {
      stop_and_join();
      throw;
    }
  }
  TaskStream(const TaskStream&) = delete;
  TaskStream& operator=(const TaskStream&) = delete;
  // Hands out no more tasks and waits for the running ones (an abandoned stream, e.g. when
  // the consumer failed, must not outlive what its tasks write to).
  ~TaskStream() { stop_and_join(); }

  // Returns once task `index` has finished; rethrows the lowest failing task's exception if
  // any task has failed by then.
  void wait(int64_t index) {
    if (index < 0 || index >= count_) throw std::out_of_range("TaskStream::wait: no such task");
    std::unique_lock lock(mutex_);
    if (done_[static_cast<size_t>(index)] && !failed_) return;
    const auto t0 = std::chrono::steady_clock::now();
    while (!done_[static_cast<size_t>(index)] && !failed_) help_or_sleep(lock);
    waited_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (failed_) rethrow_lowest(lock);
  }

  // Returns once every task has finished; rethrows the lowest failing task's exception.
  void wait_all() {
    std::unique_lock lock(mutex_);
    const auto t0 = std::chrono::steady_clock::now();
    while (finished_ < count_ && !failed_) help_or_sleep(lock);
    waited_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (failed_) rethrow_lowest(lock);
  }

  // Wall seconds the caller spent in wait() and wait_all() (sleeping or running tasks).
  double waited_s() const {
    std::lock_guard lock(mutex_);
    return waited_s_;
  }
  // Whether every task has finished and none failed.
  bool finished() const {
    std::lock_guard lock(mutex_);
    return finished_ == count_ && !failed_;
  }
  std::chrono::steady_clock::time_point started() const { return started_; }
  // When the last task finished (meaningful once all have).
  std::chrono::steady_clock::time_point last_finish() const {
    std::lock_guard lock(mutex_);
    return last_finish_;
  }

 private:
  // Runs the next unclaimed task on the caller if it may, else sleeps until a task finishes.
  // While no task has failed, a task not yet done is running, claimable by the caller, or
  // left for a background thread (there is one whenever the caller may not help), so the
  // sleep ends.
  void help_or_sleep(std::unique_lock<std::mutex>& lock) {
    if (caller_helps_ && next_ < count_) {
      run_one(lock, 0);
      return;
    }
    done_cv_.wait(lock);
  }

  void work(int32_t worker) {
    std::unique_lock lock(mutex_);
    while (!stopped_ && next_ < count_) run_one(lock, worker);
  }

  void run_one(std::unique_lock<std::mutex>& lock, int32_t worker) {
    const int64_t i = next_++;
    ++running_;
    lock.unlock();
    std::exception_ptr error;
    try {
      task_(i, worker);
    } catch (...) {
      error = std::current_exception();
    }
    lock.lock();
    --running_;
    ++finished_;
    done_[static_cast<size_t>(i)] = 1;
    last_finish_ = std::chrono::steady_clock::now();
    if (error) {
      errors_[static_cast<size_t>(i)] = error;
      failed_ = stopped_ = true;
    }
    done_cv_.notify_all();
  }

  void rethrow_lowest(std::unique_lock<std::mutex>& lock) {
    done_cv_.wait(lock, [this] { return running_ == 0; });
    for (const std::exception_ptr& e : errors_) {
      if (e) std::rethrow_exception(e);
    }
  }

  void stop_and_join() {
    {
      std::lock_guard lock(mutex_);
      stopped_ = true;
    }
    for (std::thread& t : threads_) t.join();
    threads_.clear();
  }

  Task task_;
  int64_t count_;
  bool caller_helps_;
  mutable std::mutex mutex_;
  std::condition_variable done_cv_;
  int64_t next_ = 0;  // the next task to claim
  int64_t running_ = 0;
  int64_t finished_ = 0;
  bool stopped_ = false;  // no more claims (a task failed, or the stream is going away)
  bool failed_ = false;
  std::vector<uint8_t> done_;
  std::vector<std::exception_ptr> errors_;
  double waited_s_ = 0.0;
  const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_finish_ = started_;
  std::vector<std::thread> threads_;
};

}  // namespace moesim
