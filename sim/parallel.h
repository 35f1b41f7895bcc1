// Runs independent tasks on a few threads (the caller's among them) for the drivers that route
// or simulate many things at once; results stay deterministic as each task writes its own slot.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
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

}  // namespace moesim
