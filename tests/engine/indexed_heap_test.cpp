// core/indexed_heap.h against a std::set and a std::priority_queue on random operations,
// re-keys (both ways) and removals included.
#include "core/indexed_heap.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <functional>
#include <queue>
#include <random>
#include <set>
#include <utility>
#include <vector>

namespace moesim {
namespace {

struct Item {
  int64_t key;
  uint32_t id;
};
struct ItemOrder {
  static bool before(const Item& a, const Item& b) {
    return a.key < b.key || (a.key == b.key && a.id < b.id);
  }
  static uint32_t id(const Item& e) { return e.id; }
};
using Heap = IndexedHeap<Item, ItemOrder>;
using Key = std::pair<int64_t, uint32_t>;

TEST_CASE("indexed heap pops what a priority queue pops", "[indexed_heap]") {
  std::mt19937_64 rng(7);
  Heap heap;
  heap.resize_ids(5000);
  std::priority_queue<Key, std::vector<Key>, std::greater<>> reference;
  for (uint32_t id = 0; id < 5000; ++id) {
    const auto key = static_cast<int64_t>(rng() % 100);  // many ties, broken by id
    heap.set({key, id});
    reference.push({key, id});
  }
  CHECK(heap.size() == 5000);
  while (!reference.empty()) {
    REQUIRE_FALSE(heap.empty());
    CHECK(heap.top().key == reference.top().first);
    CHECK(heap.top().id == reference.top().second);
    CHECK(heap.contains(reference.top().second));
    heap.pop();
    CHECK_FALSE(heap.contains(reference.top().second));
    reference.pop();
  }
  CHECK(heap.empty());
}

TEST_CASE("indexed heap follows re-keys and removals", "[indexed_heap]") {
  std::mt19937_64 rng(11);
  constexpr uint32_t kIds = 300;
  Heap heap;
  heap.resize_ids(kIds);
  std::set<Key> reference;
  std::vector<int64_t> key_of(kIds, -1);
  for (int step = 0; step < 200000; ++step) {
    const auto id = static_cast<uint32_t>(rng() % kIds);
    const int op = static_cast<int>(rng() % 10);
    if (op < 6) {  // add, or move up or down
      const auto key = static_cast<int64_t>(rng() % 1000);
      if (key_of[id] >= 0) reference.erase({key_of[id], id});
      heap.set({key, id});
      reference.insert({key, id});
      key_of[id] = key;
    } else if (op < 8) {
      heap.remove(id);  // also when absent: nothing happens
      if (key_of[id] >= 0) reference.erase({key_of[id], id});
      key_of[id] = -1;
    } else if (!reference.empty()) {
      const Key top = *reference.begin();
      REQUIRE(heap.top().key == top.first);
      REQUIRE(heap.top().id == top.second);
      heap.pop();
      reference.erase(reference.begin());
      key_of[top.second] = -1;
    }
    REQUIRE(heap.size() == reference.size());
    if (!reference.empty()) {
      REQUIRE(heap.top().key == reference.begin()->first);
      REQUIRE(heap.top().id == reference.begin()->second);
    }
    if (step % 1000 == 0) {
      for (uint32_t i = 0; i < kIds; ++i) {
        REQUIRE(heap.contains(i) == (key_of[i] >= 0));
        if (key_of[i] >= 0) REQUIRE(heap.entry_of(i).key == key_of[i]);
      }
    }
  }
}

TEST_CASE("indexed heap removes in bulk and stays a heap", "[indexed_heap]") {
  std::mt19937_64 rng(3);
  Heap heap;
  heap.resize_ids(2000);
  std::vector<Key> kept;
  size_t calls = 0;
  for (uint32_t id = 0; id < 2000; ++id) heap.set({static_cast<int64_t>(rng() % 50), id});
  heap.remove_all_if([&](const Item& e) {
    ++calls;
    if (e.key % 3 == 0) return true;
    kept.push_back({e.key, e.id});
    return false;
  });
  CHECK(calls == 2000);
  CHECK(heap.size() == kept.size());
  std::sort(kept.begin(), kept.end());
  for (const Key& k : kept) {
    REQUIRE(heap.top().key == k.first);
    REQUIRE(heap.top().id == k.second);
    heap.pop();
  }
  CHECK(heap.empty());
  // Every id is free again: none is left marked as present.
  for (uint32_t id = 0; id < 2000; ++id) CHECK_FALSE(heap.contains(id));
}

TEST_CASE("indexed heap clear frees every id", "[indexed_heap]") {
  Heap heap;
  heap.resize_ids(10);
  for (uint32_t id = 0; id < 10; id += 2) heap.set({int64_t{10} - id, id});
  CHECK(heap.top().id == 8);
  heap.clear();
  CHECK(heap.empty());
  for (uint32_t id = 0; id < 10; ++id) CHECK_FALSE(heap.contains(id));
  heap.resize_ids(20);  // growing keeps what is there
  heap.set({5, 15});
  heap.set({4, 3});
  heap.resize_ids(40);
  CHECK(heap.top().id == 3);
  CHECK(heap.entry_of(15).key == 5);
}

}  // namespace
}  // namespace moesim
