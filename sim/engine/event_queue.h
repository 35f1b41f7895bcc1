// The engine's pending-event queue in two tiers: a small 4-ary heap of the nearest events and
// an unsorted list of later ones, split at a threshold that moves forward as time does.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "sim/engine/event_heap.h"

namespace moesim {

// Entries ordered before `threshold_` live in the heap, the rest in the far list. A new event
// usually lies beyond the threshold, so scheduling it is an append; the heap stays small enough
// for the caches however many events are pending. When the heap runs dry the far list is
// partitioned at a new threshold (an O(far) sequential scan, once per about near_target
// events); when too many events land below the threshold the heap's later half is spilled.
// The order of events is (time, key) exactly as in a single heap: the split is only a matter of
// speed, so where the threshold falls never changes results.
class EventQueue {
 public:
  // The heap is refilled to about `near_target` entries and spilled back to that when it passes
  // twice as many. Only tests choose a small value, to exercise refills and spills.
  explicit EventQueue(size_t near_target = kDefaultNearTarget)
      : near_target_(std::max<size_t>(near_target, 1)) {}
  static constexpr size_t kDefaultNearTarget = 32768;

  bool empty() const { return near_.empty(); }  // the far list is empty whenever the heap is
  size_t size() const { return near_.size() + far_.size(); }
  size_t capacity_bytes() const {
    return near_.capacity_bytes() + far_.capacity() * sizeof(HeapEntry);
  }
  const HeapEntry& top() const { return near_.top(); }
  // See EventHeap::root_children: four entries, some perhaps sentinels.
  const HeapEntry* root_children() const { return near_.root_children(); }

  void push(HeapEntry entry) {
    if (heap_order(entry) >= threshold_) {
      far_.push_back(entry);
    } else {
      near_.push(entry);
      if (near_.size() > 2 * near_target_) spill();
    }
  }

  // Removes the top and adds `entry`.
  void replace_top(HeapEntry entry) {
    if (heap_order(entry) >= threshold_) {
      far_.push_back(entry);
      pop();
    } else {
      near_.replace_top(entry);
    }
  }

  void pop() {
    near_.pop();
    if (near_.empty()) refill();
  }

  // Removes and returns every entry, in no particular order.
  std::vector<HeapEntry> take_all() {
    std::vector<HeapEntry> all(near_.begin(), near_.end());
    all.insert(all.end(), far_.begin(), far_.end());
    near_.assign_sorted(std::vector<HeapEntry>{});
    far_.clear();
    threshold_ = kInfinite;
    return all;
  }

  // Replaces the contents with `sorted` (ascending by heap_before).
  void assign_sorted(const std::vector<HeapEntry>& sorted) {
    far_.clear();
    if (sorted.size() <= near_target_) {
      near_.assign_sorted(sorted);
      threshold_ = kInfinite;
      return;
    }
    const auto split = sorted.begin() + static_cast<std::ptrdiff_t>(near_target_);
    near_.assign_sorted(std::vector<HeapEntry>(sorted.begin(), split));
    far_.assign(split, sorted.end());
    threshold_ = heap_order(*split);
  }

 private:
  using Order = unsigned __int128;
  static constexpr Order kInfinite = ~Order{0};
  static constexpr size_t kSamples = 255;

  // Moves the entries before a new threshold from the far list into the (empty) heap.
  void refill() {
    if (far_.empty()) {
      threshold_ = kInfinite;
      return;
    }
    if (far_.size() <= near_target_) {
      threshold_ = kInfinite;
    } else {
      // A threshold near the near_target_-th smallest entry, estimated from a sample. Any
      // threshold is correct; a good one keeps refills rare and the heap small.
      samples_.clear();
      for (size_t i = 0; i < kSamples; ++i) {
        samples_.push_back(heap_order(far_[next_sample_index()]));
      }
      const size_t rank = std::max<size_t>(1, kSamples * near_target_ / far_.size());
      std::nth_element(samples_.begin(), samples_.begin() + static_cast<std::ptrdiff_t>(rank),
                       samples_.end());
      threshold_ = samples_[rank];
    }
    size_t kept = 0;
    for (const HeapEntry& e : far_) {
      if (heap_order(e) < threshold_) {
        near_.push(e);
      } else {
        far_[kept++] = e;
      }
    }
    far_.resize(kept);
    if (near_.empty()) {
      // An unlucky sample (every sampled entry the smallest): take everything instead.
      for (const HeapEntry& e : far_) near_.push(e);
      far_.clear();
      threshold_ = kInfinite;
    }
  }

  // Keeps the near_target_ smallest entries in the heap and moves the rest to the far list.
  void spill() {
    std::vector<HeapEntry> all(near_.begin(), near_.end());
    const auto split = all.begin() + static_cast<std::ptrdiff_t>(near_target_);
    std::nth_element(all.begin(), split, all.end(), heap_before);
    threshold_ = heap_order(*split);
    far_.insert(far_.end(), split, all.end());
    all.resize(near_target_);
    std::sort(all.begin(), all.end(), heap_before);
    near_.assign_sorted(all);
  }

  // A fixed pseudo-random walk over the far list (xorshift), so runs are reproducible.
  size_t next_sample_index() {
    sample_state_ ^= sample_state_ << 13;
    sample_state_ ^= sample_state_ >> 7;
    sample_state_ ^= sample_state_ << 17;
    return static_cast<size_t>(sample_state_ % far_.size());
  }

  size_t near_target_;
  EventHeap near_;
  std::vector<HeapEntry> far_;
  Order threshold_ = kInfinite;
  std::vector<Order> samples_;
  uint64_t sample_state_ = 0x9e3779b97f4a7c15ULL;
};

}  // namespace moesim
