#include "models/network/maxmin_solver.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <utility>

namespace moesim {

namespace {

constexpr size_t kPrefetch = 8;  // flows ahead

// The order in which links freeze in a fill: by level, the id breaking ties so that the order,
// and so the result, is deterministic.
inline bool freezes_before(double a_level, uint32_t a_link, double b_level, uint32_t b_link) {
  return a_level < b_level || (a_level == b_level && a_link < b_link);
}

}  // namespace

MaxMinSolver::MaxMinSolver(std::vector<double> capacities) : capacity_(std::move(capacities)) {
  const size_t links = capacity_.size();
  for (size_t i = 0; i < links; ++i) {
    if (!(capacity_[i] > 0.0)) {
      throw std::invalid_argument("max-min solver: link " + std::to_string(i) + " has no capacity");
    }
  }
  link_flows_.resize(links);
  link_mark_.assign(links, 0);
  residual_.assign(links, 0.0);
  unfrozen_.assign(links, 0);
  load_.assign(links, 0.0);
  expanded_.assign(links, 0);
  seeded_.assign(links, 0);
  level_heap_.resize_ids(links);
  touched_mark_.assign(links, 0);
  level_now_.assign(links, 0.0);
}

void MaxMinSolver::resize_flows(size_t flow_ids) {
  flows_.resize(flow_ids);
}

void MaxMinSolver::add_flow(uint32_t f, std::span<const uint32_t> links) {
  const size_t hops = links.size();
  if (hops == 0 || hops > kMaxLinksPerFlow || flows_[f].on_links != 0) {
    throw std::invalid_argument(
        "max-min solver: flow " + std::to_string(f) +
        (flows_[f].on_links != 0 ? " is already on links" : " must cross 1 to 255 links"));
  }
  FlowRecord& flow = flows_[f];
  flow.hops = static_cast<uint8_t>(hops);
  flow.on_links = 1;
  flow.rate = 0.0;
  if (free_blocks_.size() <= hops) free_blocks_.resize(hops + 1, kNone);
  if (free_blocks_[hops] != kNone) {
    flow.pos_offset = free_blocks_[hops];
    free_blocks_[hops] = positions_[flow.pos_offset];
  } else {
    flow.pos_offset = static_cast<uint32_t>(positions_.size());
    positions_.resize(positions_.size() + hops);
    links_.resize(links_.size() + hops);
  }
  const uint32_t off = flow.pos_offset;
  for (size_t k = 0; k < hops; ++k) {
    const uint32_t l = links[k];
    links_[off + k] = l;
    positions_[off + k] = static_cast<uint32_t>(link_flows_[l].size());
    link_flows_[l].push_back(f);
  }
  added_flows_.push_back(f);
  ++active_count_;
}

void MaxMinSolver::remove_flow(uint32_t f) {
  FlowRecord& flow = flows_[f];
  const uint32_t hops = flow.hops;
  const uint32_t off = flow.pos_offset;
  for (uint32_t k = 0; k < hops; ++k) {
    const uint32_t l = links_[off + k];
    auto& list = link_flows_[l];
    const uint32_t p = positions_[off + k];
    const uint32_t moved = list.back();
    list[p] = moved;
    list.pop_back();
    if (moved != f) {
      const uint32_t moved_off = flows_[moved].pos_offset;
      for (uint32_t j = 0; j < flows_[moved].hops; ++j) {
        if (links_[moved_off + j] == l) {
          positions_[moved_off + j] = p;
          break;
        }
      }
    }
    if (seeded_[l] == 0) {
      seeded_[l] = 1;
      seed_links_.push_back(l);
    }
    // An empty link's load is exactly zero: this also clears accumulated rounding.
    load_[l] = list.empty() ? 0.0 : load_[l] - flow.rate;
  }
  // Flows slower than the one that left keep their rates (see solve()).
  threshold_ = std::min(threshold_, flow.rate);
  flow.rate = 0.0;
  flow.on_links = 0;
  positions_[off] = free_blocks_[hops];
  free_blocks_[hops] = off;
  --active_count_;
}

std::span<const uint32_t> MaxMinSolver::recompute() {
  solve();
  changed_.clear();
  commit([this](uint32_t flow, double) { changed_.push_back(flow); });
  return changed_;
}

// Max-min fairness by progressive filling, restricted to what the batch of changes can reach.
// Why the restriction is exact: let theta be the smallest of the rates of the flows that left
// and of a lower bound on the rates of the flows that joined (min over its links of capacity
// over flow count, which max-min always grants). Progressive filling below level theta meets
// the same link saturations with or without the changed flows (they are still growing there
// and no link on their paths saturates below their own rate), so every flow slower than theta
// keeps its rate. Among the others, a flow can move only if it shares a changed link, or a
// saturated link, with one that moves: a flow's bottleneck is a saturated link, and an
// unsaturated link constrains nobody unless the moving flows fill it. So the region grows from
// the changed links through saturated links only; unsaturated links at its edge keep their
// other flows fixed, and if the fill does saturate one of them, the region grows through it
// and the fill is redone. Each link's capacity less its fixed flows is then filled from zero.
void MaxMinSolver::solve() {
  ++stats_.recomputations;
  if (++epoch_ == 0) {
    for (FlowRecord& record : flows_) record.mark = 0;
    std::fill(link_mark_.begin(), link_mark_.end(), 0);
    epoch_ = 1;
  }
  const uint32_t epoch = epoch_;
  // None of these arrays changes size here. Held in locals because the one-byte flags the fill
  // writes (expanded_, touched_mark_) may alias anything, which would make the compiler reload
  // every vector's data pointer, and a flow's hop count, after each such store.
  FlowRecord* const flows = flows_.data();
  const uint32_t* const path_links = links_.data();
  const double* const capacity = capacity_.data();
  const double* const load = load_.data();
  double* const residual = residual_.data();
  uint32_t* const unfrozen = unfrozen_.data();
  uint8_t* const expanded = expanded_.data();
  uint32_t* const link_mark = link_mark_.data();
  uint8_t* const touched_mark = touched_mark_.data();
  double* const level_now = level_now_.data();
  const std::vector<uint32_t>* const link_flows = link_flows_.data();

  double threshold = threshold_;
  region_flows_.clear();
  region_links_.clear();
  queue_.clear();
  for (const uint32_t f : added_flows_) {
    if (flows[f].on_links == 0) continue;
    const uint32_t* links = path_links + flows[f].pos_offset;
    const uint32_t hops = flows[f].hops;
    for (uint32_t k = 0; k < hops; ++k) {
      const uint32_t l = links[k];
      threshold = std::min(threshold, capacity[l] / static_cast<double>(link_flows[l].size()));
    }
  }
  // A little below theta, so that flows tied with it within rounding are recomputed too.
  const double cut = threshold * (1.0 - 1e-9);

  auto visit = [&](uint32_t l) {
    if (link_mark[l] == epoch) return;
    link_mark[l] = epoch;
    expanded[l] = 0;
    region_links_.push_back(l);
  };
  auto add_flow = [&](uint32_t g) {
    flows[g].mark = epoch;
    region_flows_.push_back(g);
    const uint32_t* links = path_links + flows[g].pos_offset;
    const uint32_t hops = flows[g].hops;
    for (uint32_t k = 0; k < hops; ++k) {
      const uint32_t m = links[k];
      visit(m);
      if (expanded[m] == 0 && load[m] >= capacity[m] * (1.0 - 1e-9)) {
        expanded[m] = 1;
        queue_.push_back(m);
      }
    }
  };
  auto expand = [&](uint32_t l) {
    const std::vector<uint32_t>& list = link_flows[l];
    const uint32_t* const ids = list.data();
    const size_t n = list.size();
    stats_.scanned_entries += n;
    for (size_t i = 0; i < n; ++i) {
      // A link's flows are scattered over the flow table: fetch ahead to hide the misses.
      if (i + kPrefetch < n) __builtin_prefetch(&flows[ids[i + kPrefetch]]);
      const uint32_t g = ids[i];
      if (flows[g].mark != epoch && flows[g].rate >= cut) add_flow(g);
    }
  };
  auto drain_queue = [&]() {
    while (!queue_.empty()) {
      const uint32_t l = queue_.back();
      queue_.pop_back();
      expand(l);
    }
  };
  for (const uint32_t f : added_flows_) {
    if (flows[f].on_links != 0 && flows[f].mark != epoch) add_flow(f);
  }
  for (const uint32_t l : seed_links_) {
    seeded_[l] = 0;
    visit(l);
    if (expanded[l] == 0) {
      expanded[l] = 1;
      queue_.push_back(l);
    }
  }
  drain_queue();

  // Fill, and grow the region through any edge link the fill saturates, until none is.
  while (true) {
    ++stats_.fill_passes;
    // Per region link: residual capacity and unfrozen count.
    for (const uint32_t l : region_links_) {
      residual[l] = capacity[l] - load[l];
      unfrozen[l] = 0;
    }
    for (const uint32_t g : region_flows_) {
      FlowRecord& flow = flows[g];
      const uint32_t* links = path_links + flow.pos_offset;
      const uint32_t hops = flow.hops;
      const double rate = flow.rate;
      for (uint32_t k = 0; k < hops; ++k) {
        const uint32_t m = links[k];
        residual[m] += rate;
        ++unfrozen[m];
      }
      flow.new_rate = -1.0;  // not frozen yet
    }

    // Freezes the region flows of `link` not yet frozen at `level` and takes them off their
    // other links; touched_ lists those links, once each.
    auto freeze = [&](uint32_t link, double level) __attribute__((always_inline)) {
      touched_.clear();
      const std::vector<uint32_t>& list = link_flows[link];
      const uint32_t* const ids = list.data();
      const size_t n = list.size();
      for (size_t i = 0; i < n; ++i) {
        if (i + kPrefetch < n) __builtin_prefetch(&flows[ids[i + kPrefetch]]);
        FlowRecord& flow = flows[ids[i]];
        if (flow.mark != epoch || flow.new_rate >= 0.0) continue;  // fixed, or frozen
        flow.new_rate = level;
        const uint32_t* links = path_links + flow.pos_offset;
        const uint32_t hops = flow.hops;
        for (uint32_t k = 0; k < hops; ++k) {
          const uint32_t m = links[k];
          if (m == link) continue;
          residual[m] -= level;
          --unfrozen[m];
          if (touched_mark[m] == 0) {
            touched_mark[m] = 1;
            touched_.push_back(m);
          }
        }
      }
    };
    bool grew = false;
    // An unsaturated edge link that becomes a bottleneck may make its other flows yield.
    auto note_bottleneck = [&](uint32_t link) {
      if (expanded[link] != 0) return;
      expanded[link] = 1;
      queue_.push_back(link);
      grew = true;
    };
    // Links freeze in (level, link id) order, level being residual over unfrozen flows. Few
    // links (most regions of a step) are found by a scan of those left, which costs less than
    // keeping a heap of them; many by the heap below. Both give the same order.
    if (region_links_.size() <= kScannedRegionLinks) {
      scan_links_.clear();
      for (const uint32_t l : region_links_) {
        if (unfrozen[l] > 0) {
          level_now[l] = std::max(residual[l], 0.0) / unfrozen[l];
          scan_links_.push_back(l);
        }
      }
      while (true) {
        size_t best = kNone;
        for (size_t i = 0; i < scan_links_.size();) {
          const uint32_t l = scan_links_[i];
          if (unfrozen[l] == 0) {  // all its flows froze elsewhere
            scan_links_[i] = scan_links_.back();
            scan_links_.pop_back();
            continue;
          }
          if (best == kNone ||
              freezes_before(level_now[l], l, level_now[scan_links_[best]], scan_links_[best])) {
            best = i;
          }
          ++i;
        }
        if (best == kNone) break;
        const uint32_t link = scan_links_[best];
        scan_links_[best] = scan_links_.back();
        scan_links_.pop_back();
        note_bottleneck(link);
        freeze(link, level_now[link]);
        for (const uint32_t m : touched_) {
          touched_mark[m] = 0;
          if (unfrozen[m] > 0) level_now[m] = std::max(residual[m], 0.0) / unfrozen[m];
        }
      }
    } else {
      ++stats_.heap_fills;
      // Lazy keys: a link's level only rises as other links freeze (the freezing level is the
      // minimum, at most its share), so a heap entry may hold a stale, lower key and is re-keyed
      // only when it reaches the top; a key that fell by rounding is lowered at once. Every
      // entry stays at or below its link's level, so the order in which links freeze is exactly
      // that of an eagerly updated heap.
      IndexedHeap<LevelEntry, LevelOrder>& heap = level_heap_;
      heap.clear();
      for (const uint32_t l : region_links_) {
        if (unfrozen[l] > 0) {
          level_now[l] = std::max(residual[l], 0.0) / unfrozen[l];
          heap.set({level_now[l], l});
        }
      }
      while (!heap.empty()) {
        const LevelEntry top = heap.top();
        if (unfrozen[top.link] == 0) {
          heap.remove(top.link);
          continue;
        }
        if (top.level != level_now[top.link]) {
          heap.set({level_now[top.link], top.link});
          continue;
        }
        heap.remove(top.link);
        note_bottleneck(top.link);
        // The links this freeze touches are re-keyed once each, after all its flows are
        // frozen: many of them share their other links (the sender's PCIe, the spine uplinks).
        freeze(top.link, top.level);
        for (const uint32_t m : touched_) {
          touched_mark[m] = 0;
          if (unfrozen[m] == 0) continue;  // removed when it surfaces
          const double now_level = std::max(residual[m], 0.0) / unfrozen[m];
          level_now[m] = now_level;
          if (now_level < heap.entry_of(m).level) heap.set({now_level, m});
        }
      }
    }
    if (!grew) break;
    drain_queue();
  }
  stats_.region_flows += region_flows_.size();
  stats_.active_flows += active_count_;
  stats_.region_links += region_links_.size();
}

}  // namespace moesim
