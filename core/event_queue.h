// The engine's pending-event queue, a simple ladder: a small 4-ary heap of the nearest events,
// unsorted buckets of consecutive order ranges after it, and an unsorted list of the rest.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <limits>
#include <memory>
#include <utility>
#include <vector>

#include "core/event_heap.h"

namespace moesim {

// Fixed 4 KiB blocks of entries, recycled between the queue's buckets so that a bucket wastes
// at most one part-filled block (a growing std::vector would waste up to half its capacity).
class BlockPool {
 public:
  static constexpr size_t kEntries = 4096 / sizeof(HeapEntry);
  struct Block {
    HeapEntry entries[kEntries];
  };
  Block* get() {
    if (free_.empty()) {
      owned_.push_back(std::make_unique<Block>());
      return owned_.back().get();
    }
    Block* block = free_.back();
    free_.pop_back();
    return block;
  }
  void put(Block* block) { free_.push_back(block); }
  size_t bytes() const {
    return owned_.size() * sizeof(Block) + (owned_.capacity() + free_.capacity()) * sizeof(void*);
  }

 private:
  std::vector<std::unique_ptr<Block>> owned_;
  std::vector<Block*> free_;
};

// An unordered list of entries in pool blocks.
class BlockList {
 public:
  BlockList() = default;
  BlockList(BlockList&& other) noexcept
      : blocks_(std::move(other.blocks_)), size_(std::exchange(other.size_, 0)) {
    other.blocks_.clear();
  }
  BlockList& operator=(BlockList&& other) noexcept {
    blocks_ = std::move(other.blocks_);
    other.blocks_.clear();
    size_ = std::exchange(other.size_, 0);
    return *this;
  }

  size_t size() const { return size_; }
  size_t overhead_bytes() const { return blocks_.capacity() * sizeof(void*); }
  void push_back(const HeapEntry& entry, BlockPool& pool) {
    if (size_ % BlockPool::kEntries == 0) blocks_.push_back(pool.get());
    blocks_.back()->entries[size_ % BlockPool::kEntries] = entry;
    ++size_;
  }
  const HeapEntry& operator[](size_t i) const {
    return blocks_[i / BlockPool::kEntries]->entries[i % BlockPool::kEntries];
  }
  template <typename F>
  void for_each(F f) const {
    for (size_t i = 0; i < size_; ++i) f((*this)[i]);
  }
  // Calls f on every entry and empties the list, returning each block to the pool as soon as
  // it has been read (f may add to other lists, reusing those blocks).
  template <typename F>
  void drain(BlockPool& pool, F f) {
    size_t left = size_;
    for (BlockPool::Block* block : blocks_) {
      const size_t n = std::min(left, BlockPool::kEntries);
      for (size_t i = 0; i < n; ++i) f(block->entries[i]);
      left -= n;
      pool.put(block);
    }
    blocks_.clear();
    size_ = 0;
  }
  void release(BlockPool& pool) {
    for (BlockPool::Block* block : blocks_) pool.put(block);
    blocks_.clear();
    size_ = 0;
  }

 private:
  std::vector<BlockPool::Block*> blocks_;
  size_t size_ = 0;
};

// Entries ordered before threshold_ live in the heap; entries in [bounds_[j], bounds_[j+1])
// in bucket j (for the unconsumed buckets j >= next_bucket_); entries from top_start_ on in the
// top list. Scheduling an event beyond the heap is an append (after a binary search over the
// bucket bounds), so the heap stays small enough for the caches however many events are
// pending. When the heap runs dry the next bucket is poured into it; when the buckets run out
// the top list is split into new buckets of about near_target entries, at bounds estimated
// from a sample. Each entry is thus moved a small constant number of times, in sequential
// passes. When too many events land in the heap, its later part is spilled into a bucket.
// The order of events is (time, key) exactly as in one heap: where the bounds fall changes only
// the speed, never the results.
class EventQueue {
 public:
  // The heap is filled to about `near_target` entries and spilled back to that when it passes
  // twice as many. Only tests choose a small value, to exercise refills and spills.
  explicit EventQueue(size_t near_target = kDefaultNearTarget)
      : near_target_(std::max<size_t>(near_target, 1)) {}

  // Called for each entry poured from a bucket into the heap, so the owner can start loading
  // what it will need when that entry reaches the top (the engine prefetches its record).
  using PourHook = void (*)(const void* context, const HeapEntry& entry);
  void set_pour_hook(PourHook hook, const void* context) {
    pour_hook_ = hook;
    pour_context_ = context;
  }
  static constexpr size_t kDefaultNearTarget = 8192;

  bool empty() const { return near_.empty(); }  // the heap is refilled whenever it empties
  size_t size() const { return near_.size() + far_count_; }
  size_t capacity_bytes() const {
    size_t bytes = near_.capacity_bytes() + pool_.bytes() + top_.overhead_bytes() +
                   bounds_.capacity() * sizeof(Order) + buckets_.capacity() * sizeof(Bucket);
    for (const Bucket& b : buckets_) bytes += b.overhead_bytes();
    return bytes;
  }
  const HeapEntry& top() const { return near_.top(); }
  // See EventHeap::root_children: four entries, some perhaps sentinels.
  const HeapEntry* root_children() const { return near_.root_children(); }

  void push(HeapEntry entry) {
    const Order order = heap_order(entry);
    if (order < threshold_) {
      near_.push(entry);
      if (near_.size() > 2 * near_target_) spill();
    } else {
      push_far(entry, order);
    }
  }

  // Removes the top and adds `entry`.
  void replace_top(HeapEntry entry) {
    const Order order = heap_order(entry);
    if (order < threshold_) {
      near_.replace_top(entry);
    } else {
      push_far(entry, order);  // before the pop, which may move the threshold
      pop();
    }
  }

  void pop() {
    near_.pop();
    if (near_.empty()) {
      if (far_count_ > 0) {
        refill();
      } else if (threshold_ != kInfinite) {
        reset_far();  // so the next event, whatever its time, goes to the heap
      }
    }
  }

  // Removes and returns every entry, in no particular order.
  std::vector<HeapEntry> take_all() {
    std::vector<HeapEntry> all(near_.begin(), near_.end());
    const auto add = [&all](const HeapEntry& e) { all.push_back(e); };
    for (size_t j = next_bucket_; j < buckets_.size(); ++j) buckets_[j].drain(pool_, add);
    top_.drain(pool_, add);
    near_.assign_sorted(std::vector<HeapEntry>{});
    reset_far();
    return all;
  }

  // Replaces the contents with `sorted` (ascending by heap_before).
  void assign_sorted(const std::vector<HeapEntry>& sorted) {
    reset_far();
    if (sorted.size() <= near_target_) {
      near_.assign_sorted(sorted);
      return;
    }
    const auto split = sorted.begin() + static_cast<std::ptrdiff_t>(near_target_);
    near_.assign_sorted(std::vector<HeapEntry>(sorted.begin(), split));
    for (auto it = split; it != sorted.end(); ++it) top_.push_back(*it, pool_);
    far_count_ = top_.size();
    threshold_ = top_start_ = heap_order(*split);
  }

 private:
  using Order = unsigned __int128;
  using Bucket = BlockList;
  static constexpr Order kInfinite = ~Order{0};
  static constexpr size_t kMaxBuckets = 1 << 16;

  void push_far(HeapEntry entry, Order order) {
    ++far_count_;
    if (order >= top_start_) {
      top_.push_back(entry, pool_);
      return;
    }
    // threshold_ <= order < top_start_: an unconsumed bucket holds it. The last bound is
    // top_start_, so the search runs over the inner bounds only.
    const auto first = bounds_.begin() + static_cast<std::ptrdiff_t>(next_bucket_) + 1;
    const auto last = bounds_.end() - 1;
    const auto bucket =
        static_cast<size_t>(std::upper_bound(first, last, order) - first) + next_bucket_;
    buckets_[bucket].push_back(entry, pool_);
  }

  // Pours the next non-empty bucket into the empty heap, first splitting a bucket that grew
  // too large (later buckets cover wider ranges and gather more new events before their turn),
  // and turning the top list into buckets when the buckets are used up.
  void refill() {
    while (true) {
      while (next_bucket_ < buckets_.size()) {
        if (buckets_[next_bucket_].size() > 2 * near_target_ && split_bucket(next_bucket_)) {
          continue;
        }
        Bucket& bucket = buckets_[next_bucket_];
        ++next_bucket_;
        threshold_ = bounds_[next_bucket_];
        far_count_ -= bucket.size();
        bucket.drain(pool_, [this](const HeapEntry& e) {
          if (pour_hook_ != nullptr) pour_hook_(pour_context_, e);
          near_.push(e);
        });
        if (!near_.empty()) return;
      }
      if (top_.size() <= near_target_) {
        far_count_ -= top_.size();
        top_.drain(pool_, [this](const HeapEntry& e) { near_.push(e); });
        reset_far();
        return;
      }
      // The top list becomes the one unconsumed bucket, [top_start_, its largest order].
      Order max_order = 0;
      top_.for_each(
          [&max_order](const HeapEntry& e) { max_order = std::max(max_order, heap_order(e)); });
      for (Bucket& b : buckets_) b.release(pool_);  // all poured, hence empty
      buckets_.clear();
      bounds_.assign(1, top_start_);
      next_bucket_ = 0;
      buckets_.push_back(std::move(top_));
      top_ = Bucket{};
      top_start_ = max_order + 1;  // real orders never reach the all-ones sentinel
      bounds_.push_back(top_start_);
    }
  }

  // Divides bucket j into buckets of about near_target entries each, at bounds estimated from a
  // sample (any bounds are correct; good ones balance the buckets). Returns false if the sample
  // could not separate the entries, which are then poured as they are.
  bool split_bucket(size_t j) {
    Bucket entries = std::move(buckets_[j]);
    const size_t n = entries.size();
    const size_t count = std::clamp<size_t>(n / near_target_, 2, kMaxBuckets);
    const size_t sample_count = std::min(n, 8 * count + 64);
    samples_.clear();
    for (size_t i = 0; i < sample_count; ++i) {
      samples_.push_back(heap_order(entries[sample_index(n)]));
    }
    std::sort(samples_.begin(), samples_.end());
    inner_.clear();
    for (size_t k = 1; k < count; ++k) {
      const Order bound = samples_[k * sample_count / count];
      if (bound > bounds_[j] && (inner_.empty() || bound > inner_.back())) inner_.push_back(bound);
    }
    if (inner_.empty()) {
      buckets_[j] = std::move(entries);
      return false;
    }
    std::vector<Bucket> fresh(inner_.size());
    buckets_.insert(buckets_.begin() + static_cast<std::ptrdiff_t>(j) + 1,
                    std::make_move_iterator(fresh.begin()), std::make_move_iterator(fresh.end()));
    bounds_.insert(bounds_.begin() + static_cast<std::ptrdiff_t>(j) + 1, inner_.begin(),
                   inner_.end());
    entries.drain(pool_, [this, j](const HeapEntry& e) {
      const auto k = static_cast<size_t>(
          std::upper_bound(inner_.begin(), inner_.end(), heap_order(e)) - inner_.begin());
      buckets_[j + k].push_back(e, pool_);
    });
    return true;
  }

  // Keeps the near_target_ smallest entries in the heap and moves the rest into a new bucket
  // just before the unconsumed ones (or onto the top list when there are no buckets).
  void spill() {
    std::vector<HeapEntry> all(near_.begin(), near_.end());
    const auto split = all.begin() + static_cast<std::ptrdiff_t>(near_target_);
    std::nth_element(all.begin(), split, all.end(), heap_before);
    const Order split_order = heap_order(*split);
    // The excess has orders in [split_order, threshold_).
    far_count_ += static_cast<size_t>(all.end() - split);
    Bucket* destination = &top_;
    if (buckets_.empty()) {
      top_start_ = split_order;
    } else if (next_bucket_ > 0) {
      --next_bucket_;  // a poured, empty bucket whose upper bound is threshold_
      destination = &buckets_[next_bucket_];
      bounds_[next_bucket_] = split_order;
    } else {
      buckets_.insert(buckets_.begin(), Bucket{});
      bounds_.insert(bounds_.begin(), split_order);
      destination = &buckets_[0];
    }
    for (auto it = split; it != all.end(); ++it) destination->push_back(*it, pool_);
    threshold_ = split_order;
    all.resize(near_target_);
    std::sort(all.begin(), all.end(), heap_before);
    near_.assign_sorted(all);
  }

  void reset_far() {
    for (Bucket& b : buckets_) b.release(pool_);
    buckets_.clear();
    bounds_.clear();
    next_bucket_ = 0;
    top_.release(pool_);
    far_count_ = 0;
    threshold_ = top_start_ = kInfinite;
  }

  // A fixed pseudo-random walk (xorshift), so runs are reproducible.
  size_t sample_index(size_t n) {
    sample_state_ ^= sample_state_ << 13;
    sample_state_ ^= sample_state_ >> 7;
    sample_state_ ^= sample_state_ << 17;
    return static_cast<size_t>(sample_state_ % n);
  }

  size_t near_target_;
  PourHook pour_hook_ = nullptr;
  const void* pour_context_ = nullptr;
  EventHeap near_;
  BlockPool pool_;               // before the lists that hold its blocks
  Order threshold_ = kInfinite;  // the heap holds exactly the entries ordered before this
  std::vector<Bucket> buckets_;
  std::vector<Order> bounds_;  // buckets_.size() + 1 bounds once the top list has been split
  size_t next_bucket_ = 0;     // buckets before it have been poured into the heap
  Bucket top_;
  Order top_start_ = kInfinite;  // the top list holds exactly the entries from here on
  size_t far_count_ = 0;         // entries in buckets and the top list
  std::vector<Order> samples_;
  std::vector<Order> inner_;  // split_bucket's new bounds
  uint64_t sample_state_ = 0x9e3779b97f4a7c15ULL;
};

}  // namespace moesim
