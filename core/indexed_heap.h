// A binary min-heap of entries that each carry a small integer id, with the position of every id
// kept, so that an entry can be re-keyed or removed by its id. The network's drain schedule
// (flows by drain time) and its max-min fill (links by level) are both one of these.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

namespace moesim {

// Entry: a small trivially copyable record. Order: a struct with
//   static bool before(const Entry& a, const Entry& b)  a strict total order (ties broken by id,
//                                                       so the heap's order is deterministic)
//   static uint32_t id(const Entry& e)                  in [0, ids()), unique in the heap
//
// Costs, n entries in the heap: top O(1); set (push or re-key), remove, pop O(log n) moves of
// one entry plus its position; contains / entry_of O(1); remove_all_if and the Floyd rebuild
// after it O(n). Memory: sizeof(Entry) per entry and 4 bytes per id (ids() of them, whether
// in the heap or not). The layout is the textbook one (children of i at 2i + 1, 2i + 2) and is
// visible through entries(), so that a caller may walk the heap's top (as the drain schedule
// does to find every entry due at one instant).
//
// The engine's event queue (core/event_heap.h) is not one of these: it never re-keys or removes
// an entry (cancelled events are skipped when they surface), so it keeps no positions and uses a
// 4-ary, cache-line-aligned layout instead; a 4-ary layout did not pay here (bench/README.md).
template <typename Entry, typename Order>
class IndexedHeap {
 public:
  static constexpr uint32_t kAbsent = std::numeric_limits<uint32_t>::max();

  // Ids are [0, ids()); growing keeps the entries.
  void resize_ids(size_t ids) { pos_.resize(ids, kAbsent); }
  size_t ids() const { return pos_.size(); }

  bool empty() const { return heap_.empty(); }
  size_t size() const { return heap_.size(); }
  const Entry& top() const { return heap_.front(); }
  bool contains(uint32_t id) const { return pos_[id] != kAbsent; }
  // The entry of an id in the heap.
  const Entry& entry_of(uint32_t id) const { return heap_[pos_[id]]; }
  // In storage order: heap order, children of i at 2i + 1 and 2i + 2.
  std::span<const Entry> entries() const { return heap_; }

  // Adds the entry, or re-keys the one with its id.
  [[gnu::always_inline]] inline void set(const Entry& e) {
    const uint32_t id = Order::id(e);
    uint32_t i = pos_[id];
    if (i == kAbsent) {
      i = static_cast<uint32_t>(heap_.size());
      heap_.push_back(e);
      pos_[id] = i;
      sift_up(i);
      return;
    }
    const bool rises = Order::before(e, heap_[i]);
    heap_[i] = e;
    if (rises) {
      sift_up(i);
    } else {
      sift_down(i);
    }
  }

  void pop() {
    pos_[Order::id(heap_.front())] = kAbsent;
    const Entry last = heap_.back();
    heap_.pop_back();
    if (!heap_.empty()) {
      heap_.front() = last;
      pos_[Order::id(last)] = 0;
      sift_down(0);
    }
  }

  // Removes the id's entry, if it has one.
  void remove(uint32_t id) {
    const uint32_t i = pos_[id];
    if (i == kAbsent) return;
    pos_[id] = kAbsent;
    const Entry last = heap_.back();
    heap_.pop_back();
    if (i == heap_.size()) return;
    heap_[i] = last;
    pos_[Order::id(last)] = i;
    sift_up(i);
    sift_down(pos_[Order::id(last)]);
  }

  void clear() {
    for (const Entry& e : heap_) pos_[Order::id(e)] = kAbsent;
    heap_.clear();
  }

  // Removes every entry for which removed(entry) is true, calling it once per entry in storage
  // order, and re-heapifies the rest bottom-up: O(n), where popping k entries costs k log n.
  template <typename Predicate>
  void remove_all_if(Predicate removed) {
    const size_t n = heap_.size();
    size_t kept = 0;
    for (size_t i = 0; i < n; ++i) {
      const Entry e = heap_[i];
      if (removed(e)) {
        pos_[Order::id(e)] = kAbsent;
        continue;
      }
      heap_[kept] = e;
      pos_[Order::id(e)] = static_cast<uint32_t>(kept);
      ++kept;
    }
    heap_.resize(kept);
    for (size_t i = kept / 2; i-- > 0;) sift_down(i);
  }

 private:
  void sift_up(size_t i) {
    const Entry e = heap_[i];
    while (i > 0) {
      const size_t parent = (i - 1) / 2;
      if (!Order::before(e, heap_[parent])) break;
      heap_[i] = heap_[parent];
      pos_[Order::id(heap_[i])] = static_cast<uint32_t>(i);
      i = parent;
    }
    heap_[i] = e;
    pos_[Order::id(e)] = static_cast<uint32_t>(i);
  }

  void sift_down(size_t i) {
    const Entry e = heap_[i];
    const size_t n = heap_.size();
    while (true) {
      size_t child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && Order::before(heap_[child + 1], heap_[child])) ++child;
      if (!Order::before(heap_[child], e)) break;
      heap_[i] = heap_[child];
      pos_[Order::id(heap_[i])] = static_cast<uint32_t>(i);
      i = child;
    }
    heap_[i] = e;
    pos_[Order::id(e)] = static_cast<uint32_t>(i);
  }

  std::vector<Entry> heap_;
  std::vector<uint32_t> pos_;  // by id: index in heap_, or kAbsent
};

}  // namespace moesim
