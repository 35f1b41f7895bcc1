// The discrete-event engine: a deterministic queue of timed events in integer picoseconds.
// Events at equal times run in the order they were scheduled; it knows nothing of MoE or networks.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>
#include <vector>

#include "core/event_queue.h"
#include "core/random.h"
#include "core/units.h"

namespace moesim {

// Something that reacts to its own events (htsim's EventSource). The tag lets one handler tell
// its events apart (which flow, which GPU) without a closure per event.
class EventHandler {
 public:
  virtual void on_event(uint64_t tag) = 0;

 protected:
  ~EventHandler() = default;
};

// Names one scheduled event, for cancellation. Stays unique after the event ran or was
// cancelled (a slot must be reused 2^38 times before an id repeats): cancelling a stale id is a
// harmless no-op. A default-constructed id names no event.
struct EventId {
  uint64_t value = 0;
  friend constexpr bool operator==(EventId, EventId) = default;
};

class Engine {
 public:
  struct Options {
    uint64_t seed = 0;
    // Events carry a sequence number for FIFO order at equal times; when it reaches this bound
    // the pending events are renumbered in order. Only tests set it lower than the default.
    uint64_t sequence_limit = uint64_t{1} << 38;
    // Events kept in the queue's near heap (see EventQueue); results never depend on it. Only
    // tests set it lower than the default.
    size_t near_events = EventQueue::kDefaultNearTarget;
  };

  Engine() : Engine(Options{}) {}
  explicit Engine(uint64_t seed) : Engine(Options{seed}) {}
  explicit Engine(Options options);
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  Time now() const { return now_; }
  uint64_t seed() const { return seed_; }

  // Schedules handler.on_event(tag) at absolute time `at` (>= now(), else std::logic_error).
  EventId schedule_at(Time at, EventHandler& handler, uint64_t tag = 0);
  EventId schedule_after(Time delay, EventHandler& handler, uint64_t tag = 0) {
    return schedule_at(now_ + delay, handler, tag);
  }
  // Convenience for one-off actions; slower than a handler (one std::function per event).
  EventId call_at(Time at, std::function<void()> action);
  EventId call_after(Time delay, std::function<void()> action) {
    return call_at(now_ + delay, std::move(action));
  }

  // Cancels a pending event in O(1) amortised; returns whether it was pending. Cancelling the
  // event whose handler is running, one that ran, or one already cancelled returns false.
  bool cancel(EventId id);

  // Runs events until none is left; now() is then the time of the last event run. Not
  // re-entrant: calling run or run_until from a handler throws std::logic_error.
  void run();
  // Runs every event with time <= until, then sets now() to `until`. `until` before now()
  // throws std::logic_error.
  void run_until(Time until);

  size_t pending() const { return pending_; }
  uint64_t events_run() const { return events_run_; }

  // The stream of random numbers for a named component, derived from (seed, name).
  RandomStream random_stream(std::string_view component) const {
    return RandomStream(seed_, component);
  }

  // Bytes the engine holds per pending event (heap entry plus event record), for the record.
  static constexpr size_t bytes_per_pending_event();
  // Bytes held now by the queue and the event records (vector capacities, so including growth
  // slack), excluding call_at's std::function storage; for measuring memory per pending event.
  size_t queue_bytes() const { return queue_.capacity_bytes() + slots_.capacity_bytes(); }

 private:
  static constexpr int kSlotBits = 26;
  static constexpr uint64_t kSlotMask = (uint64_t{1} << kSlotBits) - 1;
  // Ends a free list; never a slot index, since at most kSlotMask slots exist.
  static constexpr uint32_t kNoSlot = static_cast<uint32_t>(kSlotMask);
  static constexpr int kGenerationBits = 64 - kSlotBits;

  // 24 bytes. The generation (bumped on release) and the free-list link share one word so that
  // ids stay unique for 2^38 reuses of a slot without growing the record.
  struct Slot {
    EventHandler* handler;  // null once cancelled or free
    uint64_t tag;
    uint64_t generation_and_next;  // (generation << kSlotBits) | next free slot

    uint64_t generation() const { return generation_and_next >> kSlotBits; }
    uint32_t next_free() const { return static_cast<uint32_t>(generation_and_next & kSlotMask); }
  };

  // Event records in fixed chunks of 1024: growing never copies them, and the memory held is
  // at most one chunk more than the most events ever pending (a doubling vector holds up to
  // twice that).
  class SlotTable {
   public:
    static constexpr int kChunkBits = 10;
    Slot& operator[](size_t i) { return chunks_[i >> kChunkBits][i & kChunkMask]; }
    const Slot& operator[](size_t i) const { return chunks_[i >> kChunkBits][i & kChunkMask]; }
    size_t size() const { return size_; }
    size_t capacity_bytes() const {
      return (chunks_.size() << kChunkBits) * sizeof(Slot) + chunks_.capacity() * sizeof(void*);
    }
    void push_back(const Slot& slot) {
      if ((size_ & kChunkMask) == 0) chunks_.push_back(std::make_unique<Slot[]>(kChunkSize));
      (*this)[size_++] = slot;
    }

   private:
    static constexpr size_t kChunkSize = size_t{1} << kChunkBits;
    static constexpr size_t kChunkMask = kChunkSize - 1;
    std::vector<std::unique_ptr<Slot[]>> chunks_;
    size_t size_ = 0;
  };

  class FunctionEvents final : public EventHandler {
   public:
    explicit FunctionEvents(Engine& engine) : engine_(engine) {}
    void on_event(uint64_t tag) override;
    uint64_t add(std::function<void()> action);
    std::vector<std::function<void()>> actions;
    std::vector<uint32_t> free;

   private:
    Engine& engine_;
  };

  [[noreturn, gnu::cold, gnu::noinline]] void throw_past(Time at) const;
  [[gnu::noinline]] uint32_t grow_slots();
  uint32_t allocate_slot() {
    if (free_head_ == kNoSlot) return grow_slots();
    const uint32_t slot = free_head_;
    free_head_ = slots_[slot].next_free();
    return slot;
  }
  void release_slot(uint32_t slot);
  void renumber();
  void compact();
  template <typename Continue>
  void run_while(Continue keep_going);

  // Entry keys are (sequence << kSlotBits) | slot: equal times run in scheduling order.
  EventQueue queue_;
  SlotTable slots_;
  uint32_t free_head_ = kNoSlot;
  Time now_ = Time::zero();
  uint64_t seed_;
  uint64_t sequence_limit_;
  uint64_t next_sequence_ = 0;
  size_t pending_ = 0;
  size_t cancelled_in_heap_ = 0;
  uint64_t events_run_ = 0;
  bool running_ = false;  // inside run_while, to refuse re-entrant runs
  // While a handler runs, the heap's top still holds that handler's entry; the first event it
  // schedules replaces the top in one sift-down instead of a pop and a push (the hold model's
  // common case).
  bool top_is_running_ = false;
  FunctionEvents functions_{*this};
};

constexpr size_t Engine::bytes_per_pending_event() {
  return sizeof(HeapEntry) + sizeof(Slot);
}

}  // namespace moesim
