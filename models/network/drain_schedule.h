// When each flow's last byte leaves its source at its current rate: a min-heap by (time, flow
// id) with every entry due at one instant taken as a batch. Knows nothing of rates or events.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/indexed_heap.h"

namespace moesim {

// The owner keeps one engine event for the head (next_ps()): a rate change re-keys an entry
// here instead of cancelling and scheduling an engine event, and simultaneous drains are taken
// in one event. Costs: set O(log n); take_due O(k log n) for k entries due, or O(n) when they
// are at least an eighth of the heap (see take_due); 12 bytes per scheduled flow and 4 per flow
// id.
class DrainSchedule {
 public:
  // Flow ids are [0, flow_ids()).
  void resize_flows(size_t flow_ids) { heap_.resize_ids(flow_ids); }
  bool scheduled(uint32_t flow) const { return heap_.contains(flow); }
  size_t size() const { return heap_.size(); }
  // When the earliest scheduled flow drains; -1 when none is.
  int64_t next_ps() const { return heap_.empty() ? -1 : heap_.top().at_ps; }

  // Schedules the flow's drain at at_ps, or moves it there.
  void set(uint32_t flow, int64_t at_ps) { heap_.set({at_ps, flow}); }

  // Takes, in (time, flow id) order, every flow whose drain is at or before now_ps, or that
  // due(at_ps, flow) accepts (a tolerance may take some early), as long as the earliest one
  // left is; calls take(flow) for each after removing it (take may schedule it again).
  template <typename Due, typename Take>
  void take_due(int64_t now_ps, Due due, Take take);

 private:
  // 12 bytes, not 16: there is one per draining flow, a million in a large all-to-all.
  struct __attribute__((packed, aligned(4))) Entry {
    int64_t at_ps;
    uint32_t flow;
  };
  static_assert(sizeof(Entry) == 12);
  struct Order {
    static bool before(const Entry& a, const Entry& b) {
      return a.at_ps < b.at_ps || (a.at_ps == b.at_ps && a.flow < b.flow);
    }
    static uint32_t id(const Entry& e) { return e.flow; }
  };

  bool take_due_batch(int64_t now_ps);

  IndexedHeap<Entry, Order> heap_;
  // take_due_batch's flows (one bit per flow id) and its walk of the heap.
  std::vector<uint64_t> due_flows_;
  std::vector<uint32_t> walk_;
};

template <typename Due, typename Take>
void DrainSchedule::take_due(int64_t now_ps, Due due, Take take) {
  // Drains due by now precede every other entry, so a large batch of them (a uniform
  // all-to-all drains all its flows at one instant) leaves as one sorted block.
  if (take_due_batch(now_ps)) {
    for (size_t w = 0; w < due_flows_.size(); ++w) {
      for (uint64_t bits = due_flows_[w]; bits != 0; bits &= bits - 1) {
        take(static_cast<uint32_t>(w * 64 + static_cast<size_t>(__builtin_ctzll(bits))));
      }
    }
  }
  while (!heap_.empty()) {
    const Entry head = heap_.top();
    if (head.at_ps > now_ps && !due(head.at_ps, head.flow)) break;
    heap_.pop();
    take(head.flow);
  }
}

// Popping k of n heap entries one by one costs k log n. The entries due now are found by a walk
// of the heap's due top (a due entry's parent is due); when they are at least an eighth of the
// heap, they are marked in a bit set over flow ids and the rest re-heapified: k + n. Every due
// entry leaves at now exactly (the timer fires at the head's time and no entry is ever earlier),
// so flow id order, the bit set's, is the order the pops would give; should the walk meet one
// that does not, nothing is changed and the pops go ahead.
inline bool DrainSchedule::take_due_batch(int64_t now_ps) {
  const std::span<const Entry> heap = heap_.entries();
  const size_t n = heap.size();
  constexpr size_t kMinBatch = 1024;
  if (n < kMinBatch || heap[0].at_ps > now_ps) return false;
  const size_t wanted = std::max(kMinBatch, n / 8);
  size_t due = 0;
  walk_.clear();
  walk_.push_back(0);
  while (!walk_.empty()) {
    const uint32_t i = walk_.back();
    walk_.pop_back();
    if (heap[i].at_ps != now_ps) return false;
    ++due;
    for (size_t c = 2 * size_t{i} + 1; c <= 2 * size_t{i} + 2 && c < n; ++c) {
      if (heap[c].at_ps <= now_ps) walk_.push_back(static_cast<uint32_t>(c));
    }
  }
  if (due < wanted) return false;  // few: popped one by one
  due_flows_.assign((heap_.ids() + 63) / 64, 0);
  heap_.remove_all_if([&](const Entry& e) {
    if (e.at_ps > now_ps) return false;
    due_flows_[e.flow / 64] |= uint64_t{1} << (e.flow % 64);
    return true;
  });
  return true;
}

}  // namespace moesim
