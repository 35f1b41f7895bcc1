// The near tier of the engine's event queue: a 4-ary min-heap of 16-byte (time, key) entries
// whose sibling groups each fill one 64-byte cache line, with branch-free child selection.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <new>
#include <vector>

namespace moesim {

// Allocates on 64-byte boundaries so that each group of four 16-byte siblings is one line.
template <typename T>
struct CacheLineAllocator {
  using value_type = T;
  static constexpr std::align_val_t kAlignment{64};
  CacheLineAllocator() = default;
  template <typename U>
  CacheLineAllocator(const CacheLineAllocator<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), kAlignment)); }
  void deallocate(T* p, size_t) { ::operator delete(p, kAlignment); }
  friend bool operator==(const CacheLineAllocator&, const CacheLineAllocator&) { return true; }
};

struct HeapEntry {
  int64_t time_ps;  // never negative: the engine's clock starts at 0 and never goes back
  uint64_t key;     // unique per entry; breaks ties between equal times
};

// Orders entries by (time, key) as one 128-bit unsigned number, which the compiler compares
// without branches; times are non-negative, so the unsigned view keeps their order.
inline unsigned __int128 heap_order(const HeapEntry& e) {
  return (static_cast<unsigned __int128>(static_cast<uint64_t>(e.time_ps)) << 64) | e.key;
}
inline bool heap_before(const HeapEntry& a, const HeapEntry& b) {
  return heap_order(a) < heap_order(b);
}

class EventHeap {
 public:
  bool empty() const { return size_ == 0; }
  size_t size() const { return size_; }
  size_t capacity_bytes() const { return data_.capacity() * sizeof(HeapEntry); }
  const HeapEntry& top() const { return data_[kRoot]; }

  // The root's four children (sentinels where absent): the next events to run, in some order,
  // unless earlier ones are added. Lets the engine prefetch their records a few events early.
  const HeapEntry* root_children() const { return data_.data() + kFirstChildOfRoot; }
  static constexpr HeapEntry sentinel() { return kSentinel; }

  void push(HeapEntry entry) {
    size_t i = kRoot + size_;
    if (i == data_.size()) data_.resize(data_.size() + 4, kSentinel);
    ++size_;
    while (i > kRoot) {
      const size_t parent = (i + 8) >> 2;
      if (!heap_before(entry, data_[parent])) break;
      data_[i] = data_[parent];
      i = parent;
    }
    data_[i] = entry;
  }

  // Removes the top and adds `entry` in one pass: cheaper than pop then push.
  void replace_top(HeapEntry entry) { sift_down(kRoot, entry); }

  void pop() {
    const size_t last = kRoot + size_ - 1;
    const HeapEntry moved = data_[last];
    data_[last] = kSentinel;
    --size_;
    if (size_ > 0) sift_down(kRoot, moved);
  }

  // The live entries in storage order, for bulk edits; call rebuild_from_sorted afterwards.
  HeapEntry* begin() { return data_.data() + kRoot; }
  HeapEntry* end() { return data_.data() + kRoot + size_; }

  // Replaces the contents with `sorted` (ascending by heap_before); a sorted array is a heap.
  template <typename Range>
  void assign_sorted(const Range& sorted) {
    size_ = 0;
    for (const HeapEntry& e : sorted) {
      const size_t i = kRoot + size_;
      if (i == data_.size()) data_.resize(data_.size() + 4, kSentinel);
      data_[i] = e;
      ++size_;
    }
    for (size_t i = kRoot + size_; i < data_.size(); ++i) data_[i] = kSentinel;
  }

 private:
  // The root sits at index 3 so that the children of node p, at 4p - 8 .. 4p - 5, start on a
  // multiple of four entries, i.e. on a cache line. Indices 0-2 are unused.
  static constexpr size_t kRoot = 3;
  static constexpr size_t kFirstChildOfRoot = 4 * kRoot - 8;
  // Fills storage past the last entry so every sibling group can be read whole; loses every
  // comparison with a real entry.
  static constexpr HeapEntry kSentinel{std::numeric_limits<int64_t>::max(),
                                       std::numeric_limits<uint64_t>::max()};

  // The index of the smallest of the four entries from `first`, by a branch-free tournament.
  size_t min_child(size_t first) const {
    const HeapEntry* c = data_.data() + first;
    const unsigned __int128 k0 = heap_order(c[0]), k1 = heap_order(c[1]);
    const unsigned __int128 k2 = heap_order(c[2]), k3 = heap_order(c[3]);
    const bool right01 = k1 < k0;
    const bool right23 = k3 < k2;
    const unsigned __int128 m01 = right01 ? k1 : k0;
    const unsigned __int128 m23 = right23 ? k3 : k2;
    const size_t i01 = first + right01;
    const size_t i23 = first + 2 + right23;
    // Mask arithmetic rather than ?: so the compiler cannot turn this coin toss into a branch.
    const size_t take23 = 0 - static_cast<size_t>(m23 < m01);
    return i01 + ((i23 - i01) & take23);
  }

  // Below this many entries the heap sits in the first-level caches and prefetching only costs.
  static constexpr size_t kPrefetchMinEntries = 4096;

  // Places `entry` in the hole at i, which must be the root. Bottom-up (Wegener): the hole
  // first sinks to a leaf along the smaller children, with no comparison against `entry`, then
  // `entry` rises from there. A new event usually belongs near the bottom (most entries are),
  // so the rise is short and the descent has no data-dependent exit.
  void sift_down(size_t i, HeapEntry entry) {
    const size_t end = kRoot + size_;
    const bool prefetch = size_ >= kPrefetchMinEntries;
    while (true) {
      const size_t first = 4 * i - 8;
      if (first >= end) break;
      // The sixteen grandchildren are four consecutive lines; asking for them now overlaps
      // their cache misses with this level's work instead of paying them one level at a time.
      const size_t grandchildren = 4 * first - 8;
      if (prefetch && grandchildren < end) {
        const HeapEntry* g = data_.data() + grandchildren;
        __builtin_prefetch(g);
        __builtin_prefetch(g + 4);
        __builtin_prefetch(g + 8);
        __builtin_prefetch(g + 12);
      }
      const size_t best = min_child(first);
      data_[i] = data_[best];
      i = best;
    }
    const unsigned __int128 key = heap_order(entry);
    while (i > kRoot) {
      const size_t parent = (i + 8) >> 2;
      if (!(key < heap_order(data_[parent]))) break;
      data_[i] = data_[parent];
      i = parent;
    }
    data_[i] = entry;
  }

  std::vector<HeapEntry, CacheLineAllocator<HeapEntry>> data_ =
      std::vector<HeapEntry, CacheLineAllocator<HeapEntry>>(8, kSentinel);  // root's children
  size_t size_ = 0;
};

}  // namespace moesim
