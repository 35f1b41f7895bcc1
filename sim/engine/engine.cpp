#include "sim/engine/engine.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace moesim {

Engine::Engine(Options options) : seed_(options.seed), sequence_limit_(options.sequence_limit) {
  if (sequence_limit_ < 2 || sequence_limit_ > (uint64_t{1} << (64 - kSlotBits))) {
    throw std::invalid_argument("Engine: sequence_limit out of range");
  }
}

uint32_t Engine::grow_slots() {
  if (slots_.size() >= kNoSlot) {
    throw std::length_error("Engine: more than 2^26 - 1 events pending at once");
  }
  // Generations start at 1 so that a default EventId (value 0) names no event.
  slots_.push_back(Slot{nullptr, 0, (uint64_t{1} << kSlotBits) | kNoSlot});
  return static_cast<uint32_t>(slots_.size() - 1);
}

void Engine::release_slot(uint32_t slot) {
  Slot& s = slots_[slot];
  s.handler = nullptr;
  // The generation field wraps after 2^38 reuses; it skips 0 to keep EventId{} invalid.
  uint64_t generation = (s.generation() + 1) & ((uint64_t{1} << kGenerationBits) - 1);
  if (generation == 0) generation = 1;
  s.generation_and_next = (generation << kSlotBits) | free_head_;
  free_head_ = slot;
}

void Engine::throw_past(Time at) const {
  throw std::logic_error("Engine: event scheduled in the past (at " +
                         std::to_string(at.count_ps()) + " ps, now " +
                         std::to_string(now_.count_ps()) + " ps)");
}

EventId Engine::schedule_at(Time at, EventHandler& handler, uint64_t tag) {
  if (at < now_) throw_past(at);
  if (next_sequence_ >= sequence_limit_) renumber();
  const uint32_t slot = allocate_slot();
  Slot& s = slots_[slot];
  s.handler = &handler;
  s.tag = tag;
  const HeapEntry entry{at.count_ps(), (next_sequence_++ << kSlotBits) | slot};
  if (top_is_running_) {
    top_is_running_ = false;
    heap_.replace_top(entry);
  } else {
    heap_.push(entry);
  }
  ++pending_;
  return EventId{(s.generation() << kSlotBits) | slot};
}

EventId Engine::call_at(Time at, std::function<void()> action) {
  if (at < now_) throw_past(at);  // before storing the action, which would otherwise never be freed
  const uint64_t index = functions_.add(std::move(action));
  return schedule_at(at, functions_, index);
}

uint64_t Engine::FunctionEvents::add(std::function<void()> action) {
  if (!free.empty()) {
    const uint32_t index = free.back();
    free.pop_back();
    actions[index] = std::move(action);
    return index;
  }
  actions.push_back(std::move(action));
  return actions.size() - 1;
}

void Engine::FunctionEvents::on_event(uint64_t tag) {
  // Moved out first: the action may schedule more actions and grow the vector.
  std::function<void()> action = std::move(actions[tag]);
  actions[tag] = nullptr;
  free.push_back(static_cast<uint32_t>(tag));
  action();
}

bool Engine::cancel(EventId id) {
  const auto slot = static_cast<uint32_t>(id.value & kSlotMask);
  if (slot >= slots_.size()) return false;
  Slot& s = slots_[slot];
  if (s.generation() != (id.value >> kSlotBits) || s.handler == nullptr) return false;
  if (s.handler == &functions_) {
    functions_.actions[s.tag] = nullptr;
    functions_.free.push_back(static_cast<uint32_t>(s.tag));
  }
  // The heap entry stays (lazy deletion); its slot is released when it reaches the top.
  s.handler = nullptr;
  --pending_;
  ++cancelled_in_heap_;
  if (cancelled_in_heap_ > 1024 && cancelled_in_heap_ * 2 > heap_.size()) compact();
  return true;
}

void Engine::renumber() {
  if (top_is_running_) {
    top_is_running_ = false;
    heap_.pop();
  }
  std::sort(heap_.begin(), heap_.end(), heap_before);  // a sorted array is a valid heap
  uint64_t sequence = 0;
  for (HeapEntry& e : heap_) e.key = (sequence++ << kSlotBits) | (e.key & kSlotMask);
  next_sequence_ = sequence;
  if (next_sequence_ >= sequence_limit_) {
    throw std::length_error("Engine: sequence_limit below the number of pending events");
  }
}

void Engine::compact() {
  if (top_is_running_) {
    top_is_running_ = false;
    heap_.pop();
  }
  std::vector<HeapEntry> kept;
  kept.reserve(heap_.size() - cancelled_in_heap_);
  for (const HeapEntry& e : heap_) {
    const auto slot = static_cast<uint32_t>(e.key & kSlotMask);
    if (slots_[slot].handler != nullptr) {
      kept.push_back(e);
    } else {
      release_slot(slot);
    }
  }
  std::sort(kept.begin(), kept.end(), heap_before);
  heap_.assign_sorted(kept);
  cancelled_in_heap_ = 0;
}

template <typename Continue>
void Engine::run_while(Continue keep_going) {
  if (running_) throw std::logic_error("Engine: run or run_until called from inside a handler");
  running_ = true;
  // Clears the flags even when a handler throws, so the engine stays usable for inspection.
  struct Guard {
    Engine& engine;
    ~Guard() {
      engine.running_ = false;
      if (engine.top_is_running_) {
        engine.top_is_running_ = false;
        engine.heap_.pop();
      }
    }
  } guard{*this};
  while (!heap_.empty() && keep_going(heap_.top().time_ps)) {
    const HeapEntry top = heap_.top();
    const auto slot = static_cast<uint32_t>(top.key & kSlotMask);
    EventHandler* handler = slots_[slot].handler;
    const uint64_t tag = slots_[slot].tag;
    release_slot(slot);
    if (handler == nullptr) {
      // A cancelled event leaves no trace, not even on the clock.
      --cancelled_in_heap_;
      heap_.pop();
      continue;
    }
    if (heap_.size() > 1) {
      // The likely next event's record is a cache miss in a large queue; start loading it
      // while this handler runs.
      __builtin_prefetch(&slots_[heap_.runner_up().key & kSlotMask]);
    }
    now_ = Time::ps(top.time_ps);
    --pending_;
    ++events_run_;
    top_is_running_ = true;
    handler->on_event(tag);
    if (top_is_running_) {
      top_is_running_ = false;
      heap_.pop();
    }
  }
}

void Engine::run() {
  run_while([](int64_t) { return true; });
}

void Engine::run_until(Time until) {
  if (until < now_) {
    throw std::logic_error("Engine: run_until(" + std::to_string(until.count_ps()) +
                           " ps) is before now (" + std::to_string(now_.count_ps()) + " ps)");
  }
  const int64_t limit = until.count_ps();
  run_while([limit](int64_t t) { return t <= limit; });
  now_ = until;
}

}  // namespace moesim
