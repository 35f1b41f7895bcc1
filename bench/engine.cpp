// The hold model on the event engine against a naive std::priority_queue of std::function:
// N pending events, each rescheduling itself after an exponential delay; events per second.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <queue>
#include <vector>

#include "core/engine.h"
#include "core/random.h"

namespace moesim {
namespace {

constexpr int64_t kMeanDelayPs = 1'000'000;
// Events per timed batch; the clock advances by batch / N mean delays per batch.
constexpr int64_t kBatchEvents = 1'000'000;

// Exponential delays drawn once, so that the timed loop measures the queue, not std::log; both
// queues read the same table in the same order.
class Delays {
 public:
  Delays() : delays_ps_(1 << 16) {
    RandomStream random(1, "hold-delays");
    for (int64_t& d : delays_ps_) {
      d = std::llround(random.exponential(static_cast<double>(kMeanDelayPs)));
    }
  }
  int64_t next() { return delays_ps_[cursor_++ & (delays_ps_.size() - 1)]; }

 private:
  std::vector<int64_t> delays_ps_;
  size_t cursor_ = 0;
};

class HoldHandler final : public EventHandler {
 public:
  explicit HoldHandler(Engine& engine) : engine_(engine) {}
  void on_event(uint64_t tag) override {
    engine_.schedule_after(Time::ps(delays_.next()), *this, tag);
  }
  Delays& delays() { return delays_; }

 private:
  Engine& engine_;
  Delays delays_;
};

void BM_EngineHold(benchmark::State& state) {
  const auto n = static_cast<int64_t>(state.range(0));
  Engine engine(1);
  HoldHandler hold(engine);
  for (int64_t i = 0; i < n; ++i) {
    engine.schedule_at(Time::ps(hold.delays().next()), hold, static_cast<uint64_t>(i));
  }
  // Warm up to the hold model's steady-state spread of pending times.
  engine.run_until(Time::ps(3 * kMeanDelayPs));
  const int64_t window_ps = std::max<int64_t>(1, kMeanDelayPs * kBatchEvents / n);
  const uint64_t start = engine.events_run();
  for (auto _ : state) {
    engine.run_until(engine.now() + Time::ps(window_ps));
  }
  state.SetItemsProcessed(static_cast<int64_t>(engine.events_run() - start));
  state.counters["pending"] = static_cast<double>(engine.pending());
  state.counters["bytes_per_event_model"] = static_cast<double>(Engine::bytes_per_pending_event());
  state.counters["bytes_per_event_real"] =
      static_cast<double>(engine.queue_bytes()) / static_cast<double>(engine.pending());
}

// The same model through call_at: one std::function per event.
struct CallAtHold {
  Engine& engine;
  Delays delays;
  void schedule() {
    engine.call_after(Time::ps(delays.next()), [this] { schedule(); });
  }
};

void BM_EngineCallAtHold(benchmark::State& state) {
  const auto n = static_cast<int64_t>(state.range(0));
  Engine engine(1);
  CallAtHold hold{engine, {}};
  for (int64_t i = 0; i < n; ++i) hold.schedule();
  engine.run_until(Time::ps(3 * kMeanDelayPs));
  const int64_t window_ps = std::max<int64_t>(1, kMeanDelayPs * kBatchEvents / n);
  const uint64_t start = engine.events_run();
  for (auto _ : state) {
    engine.run_until(engine.now() + Time::ps(window_ps));
  }
  state.SetItemsProcessed(static_cast<int64_t>(engine.events_run() - start));
}

// The naive baseline: a binary heap of (time, sequence, std::function) in std::priority_queue.
class NaiveQueue {
 public:
  struct Item {
    int64_t time_ps;
    uint64_t sequence;
    std::function<void()> action;
  };
  struct Later {
    bool operator()(const Item& a, const Item& b) const {
      return a.time_ps > b.time_ps || (a.time_ps == b.time_ps && a.sequence > b.sequence);
    }
  };
  // Exposes the container's capacity for the memory counter.
  struct Heap : std::priority_queue<Item, std::vector<Item>, Later> {
    size_t capacity() const { return c.capacity(); }
  };

  void schedule_at(int64_t time_ps, std::function<void()> action) {
    heap_.push(Item{time_ps, next_sequence_++, std::move(action)});
  }
  void run_until(int64_t limit_ps) {
    while (!heap_.empty() && heap_.top().time_ps <= limit_ps) {
      // priority_queue::top is const; moving out before pop is the usual idiom.
      Item item = std::move(const_cast<Item&>(heap_.top()));
      heap_.pop();
      now_ps_ = item.time_ps;
      ++events_run_;
      item.action();
    }
    now_ps_ = limit_ps;
  }
  int64_t now_ps() const { return now_ps_; }
  uint64_t events_run() const { return events_run_; }
  size_t pending() const { return heap_.size(); }
  size_t bytes() const { return heap_.capacity() * sizeof(Item); }

 private:
  Heap heap_;
  int64_t now_ps_ = 0;
  uint64_t next_sequence_ = 0;
  uint64_t events_run_ = 0;
};

struct NaiveHold {
  NaiveQueue& queue;
  Delays delays;
  void schedule() {
    queue.schedule_at(queue.now_ps() + delays.next(), [this] { schedule(); });
  }
};

void BM_NaivePriorityQueueHold(benchmark::State& state) {
  const auto n = static_cast<int64_t>(state.range(0));
  NaiveQueue queue;
  NaiveHold hold{queue, {}};
  for (int64_t i = 0; i < n; ++i) hold.schedule();
  queue.run_until(3 * kMeanDelayPs);
  const int64_t window_ps = std::max<int64_t>(1, kMeanDelayPs * kBatchEvents / n);
  const uint64_t start = queue.events_run();
  for (auto _ : state) {
    queue.run_until(queue.now_ps() + window_ps);
  }
  state.SetItemsProcessed(static_cast<int64_t>(queue.events_run() - start));
  state.counters["pending"] = static_cast<double>(queue.pending());
  state.counters["bytes_per_event_real"] =
      static_cast<double>(queue.bytes()) / static_cast<double>(queue.pending());
}

void Sizes(benchmark::internal::Benchmark* b) {
  b->Arg(1'000)->Arg(100'000)->Arg(1'000'000)->Unit(benchmark::kMillisecond);
}

BENCHMARK(BM_EngineHold)->Apply(Sizes);
BENCHMARK(BM_NaivePriorityQueueHold)->Apply(Sizes);
BENCHMARK(BM_EngineCallAtHold)->Apply(Sizes);

}  // namespace
}  // namespace moesim

BENCHMARK_MAIN();
