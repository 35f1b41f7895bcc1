// Max-min fair rates of flows over capacitated links, re-derived incrementally: only the part of
// the system a batch of changes can reach is refilled. Knows nothing of time, events or GPUs.
#pragma once

#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "core/indexed_heap.h"

namespace moesim {

// What the solver did, summed over its solves.
struct MaxMinStats {
  uint64_t recomputations = 0;  // solves
  uint64_t region_flows = 0;    // flows whose rates were re-derived
  uint64_t active_flows = 0;    // flows on links at each solve
  uint64_t fill_passes = 0;     // a solve redoes its fill when its region grows
  uint64_t heap_fills = 0;      // fill passes over enough links to order them by a heap
  uint64_t region_links = 0;
  uint64_t scanned_entries = 0;  // per-link flow entries scanned to find the region
  uint64_t rate_changes = 0;
};

// Flows are ids the caller chooses in [0, flow_ids()); each is on a set of links (its
// constraining links: 1 to kMaxLinksPerFlow distinct ones) from add_flow until remove_flow.
// Changes are batched: after any number of add_flow / remove_flow calls, one solve() re-derives
// the rates of every flow they can change, and commit() applies them.
//
// Costs: add_flow / remove_flow O(links of the flow) (a removal also fixes the list position of
// one flow per link: O(its links)); solve O(region flows x their links + region links x (log
// region links or, for <= 64 links, region links)); a flow costs 32 bytes of record, 8 bytes per
// link (its link and its position in that link's list) and 4 bytes in each link's list.
class MaxMinSolver {
 public:
  static constexpr uint32_t kMaxLinksPerFlow = 255;
  // A fill over at most this many links finds each next bottleneck by a scan, not a heap.
  static constexpr size_t kScannedRegionLinks = 64;

  // Link capacities in bytes per second, each > 0.
  explicit MaxMinSolver(std::vector<double> capacities);

  size_t link_count() const { return capacity_.size(); }
  double capacity(uint32_t link) const { return capacity_[link]; }
  std::span<const double> capacities() const { return capacity_; }

  // Flow ids are [0, flow_ids()); growing keeps every flow.
  void resize_flows(size_t flow_ids);
  size_t flow_ids() const { return flows_.size(); }

  // Puts a flow that is not on links onto `links`.
  void add_flow(uint32_t flow, std::span<const uint32_t> links);
  // Takes a flow off its links; its rate becomes zero at once.
  void remove_flow(uint32_t flow);

  bool on_links(uint32_t flow) const { return flows_[flow].on_links != 0; }
  // The committed max-min rate, bytes per second (zero before the first commit after add_flow).
  double rate(uint32_t flow) const { return flows_[flow].rate; }
  std::span<const uint32_t> links_of(uint32_t flow) const {
    return {links_.data() + flows_[flow].pos_offset, flows_[flow].hops};
  }
  size_t active_flows() const { return active_count_; }
  // Sum of the committed rates of a link's flows.
  double load(uint32_t link) const { return load_[link]; }
  size_t flows_on(uint32_t link) const { return link_flows_[link].size(); }

  // Whether changes wait for a solve.
  bool pending() const { return !added_flows_.empty() || !seed_links_.empty(); }

  // Re-derives the new rates of every flow the changes since the last commit can reach (the
  // region); rates are unchanged until commit().
  void solve();
  // Applies the rates solve() derived, in region order, calling on_change(flow, old_rate) for
  // each flow whose rate changed or that had none yet (rate(flow) is then the new one).
  template <typename OnChange>
  void commit(OnChange&& on_change);
  // solve() and commit(); returns the flows whose rates changed, in commit order (valid until
  // the next call).
  std::span<const uint32_t> recompute();

  const MaxMinStats& stats() const { return stats_; }

 private:
  static constexpr uint32_t kNone = 0xffffffffu;

  // What the fill reads for every flow it meets sits together in one 32-byte record, so that
  // a flow costs it one cache line rather than one per field.
  struct alignas(32) FlowRecord {
    double rate = 0.0;      // bytes per second
    double new_rate = 0.0;  // during a solve; negative until frozen
    uint32_t mark = 0;      // == epoch_: in this solve's region
    // The flow's links at pos_offset in links_, and the flow's index in each such link's list
    // at the same offset in positions_.
    uint32_t pos_offset = 0;
    uint8_t hops = 0;
    uint8_t on_links = 0;
  };
  static_assert(sizeof(FlowRecord) == 32);

  // The fill's priority queue for large regions: links in (level, link id) order.
  struct LevelEntry {
    double level;
    uint32_t link;
  };
  struct LevelOrder {
    static bool before(const LevelEntry& a, const LevelEntry& b) {
      return a.level < b.level || (a.level == b.level && a.link < b.link);
    }
    static uint32_t id(const LevelEntry& e) { return e.link; }
  };

  std::vector<FlowRecord> flows_;
  // positions_ blocks of each length are recycled by length (paths are short); a free block's
  // first entry links to the next free one.
  std::vector<uint32_t> positions_;
  std::vector<uint32_t> links_;
  std::vector<uint32_t> free_blocks_;  // head of the free list of blocks of each length
  size_t active_count_ = 0;

  // Links.
  std::vector<double> capacity_;
  std::vector<std::vector<uint32_t>> link_flows_;
  std::vector<uint32_t> link_mark_;
  std::vector<double> load_;        // sum of the rates of the link's flows
  std::vector<double> residual_;    // during a solve
  std::vector<uint8_t> expanded_;   // during a solve: all its fast flows are in
  std::vector<uint32_t> unfrozen_;  // during a solve: region flows not yet frozen
  IndexedHeap<LevelEntry, LevelOrder> level_heap_;
  std::vector<uint32_t> scan_links_;  // during a small fill: region links yet to freeze
  std::vector<uint32_t> touched_;     // during a fill step: links whose residual changed
  std::vector<uint8_t> touched_mark_;
  std::vector<double> level_now_;  // during a fill: residual over unfrozen flows, per link

  // The batch of changes awaiting the next solve: the links flows left (an added flow's links
  // are reached through the flow).
  std::vector<uint32_t> seed_links_;
  std::vector<uint8_t> seeded_;
  std::vector<uint32_t> added_flows_;
  double threshold_ = std::numeric_limits<double>::infinity();
  uint32_t epoch_ = 0;
  std::vector<uint32_t> region_flows_, region_links_, queue_;
  std::vector<uint32_t> changed_;  // recompute()'s result

  MaxMinStats stats_;
};

template <typename OnChange>
inline void MaxMinSolver::commit(OnChange&& on_change) {
  FlowRecord* const flows = flows_.data();
  const uint32_t* const path_links = links_.data();
  double* const load = load_.data();
  for (const uint32_t g : region_flows_) {
    FlowRecord& flow = flows[g];
    const double old_rate = flow.rate;
    const double level = flow.new_rate;
    // A flow with no rate yet is always reported, whatever it is given.
    if (old_rate == level && old_rate > 0.0) continue;
    flow.rate = level;
    const uint32_t* links = path_links + flow.pos_offset;
    const uint32_t hops = flow.hops;
    const double change = level - old_rate;
    for (uint32_t k = 0; k < hops; ++k) load[links[k]] += change;
    ++stats_.rate_changes;
    on_change(g, old_rate);
  }
  seed_links_.clear();
  added_flows_.clear();
  threshold_ = std::numeric_limits<double>::infinity();
}

}  // namespace moesim
