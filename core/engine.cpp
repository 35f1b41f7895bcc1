#include "core/engine.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace moesim {

Engine::Engine(Options options)
    : queue_(options.near_events), seed_(options.seed), sequence_limit_(options.sequence_limit) {
  // Events poured into the near heap run within the next few thousand events; their records are
  // cache misses in a large queue, so start loading them now, many at a time.
  queue_.set_pour_hook(
      [](const void* engine, const HeapEntry& entry) {
        const auto& slots = static_cast<const Engine*>(engine)->slots_;
        __builtin_prefetch(&slots[entry.key & kSlotMask]);
      },
      this);
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
    queue_.replace_top(entry);
  } else {
    queue_.push(entry);
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
  if (cancelled_in_heap_ > 1024 && cancelled_in_heap_ * 2 > queue_.size()) compact();
  return true;
}

void Engine::renumber() {
  if (top_is_running_) {
    top_is_running_ = false;
    queue_.pop();
  }
  std::vector<HeapEntry> all = queue_.take_all();
  std::sort(all.begin(), all.end(), heap_before);
  uint64_t sequence = 0;
  for (HeapEntry& e : all) e.key = (sequence++ << kSlotBits) | (e.key & kSlotMask);
  queue_.assign_sorted(all);
  next_sequence_ = sequence;
  if (next_sequence_ >= sequence_limit_) {
    throw std::length_error("Engine: sequence_limit below the number of pending events");
  }
}

void Engine::compact() {
  if (top_is_running_) {
    top_is_running_ = false;
    queue_.pop();
  }
  std::vector<HeapEntry> all = queue_.take_all();
  size_t kept = 0;
  for (const HeapEntry& e : all) {
    const auto slot = static_cast<uint32_t>(e.key & kSlotMask);
    if (slots_[slot].handler != nullptr) {
      all[kept++] = e;
    } else {
      release_slot(slot);
    }
  }
  all.resize(kept);
  std::sort(all.begin(), all.end(), heap_before);
  queue_.assign_sorted(all);
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
        engine.queue_.pop();
      }
    }
  } guard{*this};
  while (!queue_.empty() && keep_going(queue_.top().time_ps)) {
    const HeapEntry top = queue_.top();
    const auto slot = static_cast<uint32_t>(top.key & kSlotMask);
    EventHandler* handler = slots_[slot].handler;
    const uint64_t tag = slots_[slot].tag;
    release_slot(slot);
    if (handler == nullptr) {
      // A cancelled event leaves no trace, not even on the clock.
      --cancelled_in_heap_;
      queue_.pop();
      continue;
    }
    {
      // The next few events' records are cache misses in a large queue; start loading them
      // now, a few events ahead. Sentinels' slot bits are all ones, past any real slot.
      const HeapEntry* next = queue_.root_children();
      for (int c = 0; c < 4; ++c) {
        const size_t next_slot = next[c].key & kSlotMask;
        if (next_slot < slots_.size()) __builtin_prefetch(&slots_[next_slot]);
      }
    }
    now_ = Time::ps(top.time_ps);
    --pending_;
    ++events_run_;
    top_is_running_ = true;
    handler->on_event(tag);
    if (top_is_running_) {
      top_is_running_ = false;
      queue_.pop();
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
