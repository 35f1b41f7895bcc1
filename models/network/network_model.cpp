#include "models/network/network_model.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace moesim {

namespace {

constexpr uint32_t kNotInHeap = std::numeric_limits<uint32_t>::max();
constexpr size_t kPrefetch = 8;  // flows ahead
constexpr uint8_t kFree = 0;
constexpr uint8_t kOnLinks = 1;
constexpr uint8_t kInFlight = 2;  // last byte left; arriving after the path latency
// A fill over at most this many links finds each next bottleneck by a scan, not a heap.
constexpr size_t kScannedRegionLinks = 64;

// The order in which links freeze in a fill: by level, the id breaking ties so that the order,
// and so the result, is deterministic.
inline bool freezes_before(double a_level, uint32_t a_link, double b_level, uint32_t b_link) {
  return a_level < b_level || (a_level == b_level && a_link < b_link);
}

// SplitMix64's finaliser: spreads a counter into an ECMP hash.
uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

NetworkModel::NetworkModel(Engine& engine, const Topology& topology, NetworkOptions options)
    : engine_(engine), topology_(topology), options_(options) {
  if (!(options_.completion_tolerance >= 0.0 && options_.completion_tolerance < 1.0)) {
    throw std::invalid_argument("network model: completion tolerance " +
                                std::to_string(options_.completion_tolerance) +
                                " is outside [0, 1)");
  }
  const auto links = topology.links();
  capacity_.resize(links.size());
  for (size_t i = 0; i < links.size(); ++i) {
    capacity_[i] = topology.effective_capacity(LinkId{static_cast<uint32_t>(i)}).bytes_per_second();
  }
  mark_constraining_links();
  link_flows_.resize(links.size());
  link_mark_.assign(links.size(), 0);
  residual_.assign(links.size(), 0.0);
  unfrozen_.assign(links.size(), 0);
  load_.assign(links.size(), 0.0);
  expanded_.assign(links.size(), 0);
  seeded_.assign(links.size(), 0);
  heap_pos_.assign(links.size(), kNotInHeap);
  touched_mark_.assign(links.size(), 0);
  level_now_.assign(links.size(), 0.0);
  traffic_.resize(static_cast<size_t>(topology.gpu_count()));
  threshold_ = std::numeric_limits<double>::infinity();
}

// A link can never be a bottleneck if every flow through it must also cross another link of no
// more capacity: the next link when its head is a switch or NIC with one way onward, or the
// previous one when its tail has one way in (paths are shortest, so they never turn straight
// back). Leaving such links out of the fill is exact and shortens the paths it walks (a GPU's
// PCIe link to its NIC sits behind the NIC's slower network link). Ties in capacity are broken
// by link id, so that of two such links exactly one stays and every chain ends at a kept link.
void NetworkModel::mark_constraining_links() {
  const auto links = topology_.links();
  const size_t vertices = topology_.vertex_count();
  std::vector<uint32_t> out_count(vertices, 0), in_count(vertices, 0);
  std::vector<uint32_t> some_out(vertices, 0), some_in(vertices, 0);
  for (uint32_t i = 0; i < links.size(); ++i) {
    const size_t from = links[i].from.value, to = links[i].to.value;
    ++out_count[from];
    ++in_count[to];
    // Any one other than a given link's reverse: with two links, the one that is not it.
    some_out[from] ^= i;
    some_in[to] ^= i;
  }
  auto tighter = [&](uint32_t m, uint32_t l) {
    return capacity_[m] < capacity_[l] || (capacity_[m] == capacity_[l] && m < l);
  };
  constraining_.assign(links.size(), 1);
  for (uint32_t l = 0; l < links.size(); ++l) {
    const uint32_t back = topology_.reverse(LinkId{l}).value;
    const VertexId head = links[l].to, tail = links[l].from;
    const bool head_relays = topology_.gpu_index(head) < 0;
    const bool tail_relays = topology_.gpu_index(tail) < 0;
    const bool back_exists = back < links.size() && links[back].from.value == head.value &&
                             links[back].to.value == tail.value;
    if (!back_exists) continue;
    // The one link onward from the head other than the way back: some_out xor back.
    if (head_relays && out_count[head.value] == 2) {
      const uint32_t next = some_out[head.value] ^ back;
      if (tighter(next, l)) constraining_[l] = 0;
    }
    if (tail_relays && in_count[tail.value] == 2) {
      const uint32_t previous = some_in[tail.value] ^ back;
      if (tighter(previous, l)) constraining_[l] = 0;
    }
  }
}

// Free flow slots and free positions_ blocks are kept in lists threaded through the slots
// themselves (a free slot's drain_pos_, a free block's first entry), so that a million finished
// flows cost no memory beyond their slots.
uint32_t NetworkModel::allocate_flow(uint32_t hops) {
  uint32_t f;
  if (free_flow_head_ != kNone) {
    f = free_flow_head_;
    free_flow_head_ = drain_pos_[f];
  } else {
    f = static_cast<uint32_t>(flows_.size());
    if (f >= kPieceEntry) throw std::length_error("network model: more than 2^31 flows at once");
    if (!piece_state_.empty()) piece_state_.emplace_back();
    src_.push_back(0);
    dst_.push_back(0);
    bytes_.push_back(0);
    flows_.push_back(FlowState{});
    remaining_.push_back(0.0);
    last_update_ps_.push_back(0);
    if (options_.completion_tolerance > 0.0) start_ps_.push_back(0);
    drain_pos_.push_back(kNotInHeap);
    observer_.push_back(nullptr);
    tag_.push_back(0);
  }
  flows_[f].hops = static_cast<uint8_t>(hops);
  if (hops == 0) return f;
  if (free_blocks_.size() <= hops) free_blocks_.resize(hops + 1, kNone);
  if (free_blocks_[hops] != kNone) {
    flows_[f].pos_offset = free_blocks_[hops];
    free_blocks_[hops] = positions_[flows_[f].pos_offset];
  } else {
    flows_[f].pos_offset = static_cast<uint32_t>(positions_.size());
    positions_.resize(positions_.size() + hops);
    links_.resize(links_.size() + hops);
  }
  return f;
}

FlowId NetworkModel::start_flow(int src_gpu, int dst_gpu, Bytes bytes, FlowObserver* observer,
                                uint32_t tag) {
  return start_flow(src_gpu, dst_gpu, bytes, observer, tag, mix64(flow_counter_));
}

FlowId NetworkModel::start_flow(int src_gpu, int dst_gpu, Bytes bytes, FlowObserver* observer,
                                uint32_t tag, uint64_t flow_hash) {
  return start(src_gpu, dst_gpu, bytes, observer, tag, flow_hash, 1);
}

FlowId NetworkModel::start_flow_in_pieces(int src_gpu, int dst_gpu, Bytes bytes, uint32_t pieces,
                                          FlowObserver* observer, uint32_t tag) {
  if (pieces < 1 || pieces > 0xffff) {
    throw std::invalid_argument("network model: a flow takes 1 to 65535 pieces, not " +
                                std::to_string(pieces));
  }
  return start(src_gpu, dst_gpu, bytes, observer, tag, mix64(flow_counter_), pieces);
}

FlowId NetworkModel::start(int src_gpu, int dst_gpu, Bytes bytes, FlowObserver* observer,
                           uint32_t tag, uint64_t flow_hash, uint32_t pieces) {
  const int gpus = topology_.gpu_count();
  if (src_gpu < 0 || src_gpu >= gpus || dst_gpu < 0 || dst_gpu >= gpus) {
    throw std::out_of_range("network model: flow " + std::to_string(src_gpu) + " -> " +
                            std::to_string(dst_gpu) + " names a GPU outside [0, " +
                            std::to_string(gpus) + ")");
  }
  if (bytes.count() < 0) {
    throw std::invalid_argument("network model: flow " + std::to_string(src_gpu) + " -> " +
                                std::to_string(dst_gpu) + " has a negative size");
  }
  ++flow_counter_;
  const std::span<const LinkId> path =
      src_gpu == dst_gpu ? std::span<const LinkId>() : topology_.path(src_gpu, dst_gpu, flow_hash);
  uint32_t hops = 0;
  for (const LinkId l : path) hops += constraining_[l.value];
  if (hops > kMaxHops) {
    throw std::invalid_argument("network model: the path " + std::to_string(src_gpu) + " -> " +
                                std::to_string(dst_gpu) + " has " + std::to_string(hops) +
                                " links that can constrain it; at most " +
                                std::to_string(kMaxHops) + " are supported");
  }
  const bool drains = bytes.count() > 0 && !path.empty();
  const uint32_t f = allocate_flow(drains ? hops : 0);
  if (pieces > 1 && piece_state_.empty()) piece_state_.assign(flows_.size(), PieceState{});
  if (!piece_state_.empty()) {
    piece_state_[f] = PieceState{};
    piece_state_[f].pieces = static_cast<uint16_t>(pieces);
  }
  src_[f] = src_gpu;
  dst_[f] = dst_gpu;
  bytes_[f] = bytes.count();
  {
    const int64_t latency = topology_.path_latency(path).count_ps();
    auto [it, added] = wire_of_latency_.try_emplace(latency, static_cast<uint32_t>(wires_.size()));
    if (added) wires_.push_back(Wire{latency, {}, {}, -1, {}});
    flows_[f].wire = it->second;
  }
  remaining_[f] = static_cast<double>(bytes.count());
  flows_[f].rate = 0.0;
  last_update_ps_[f] = engine_.now().count_ps();
  if (options_.completion_tolerance > 0.0) start_ps_[f] = engine_.now().count_ps();
  drain_pos_[f] = kNotInHeap;
  observer_[f] = observer;
  tag_[f] = tag;
  LinkKind kind = LinkKind::kNvLink;
  for (const LinkId l : path) {
    const LinkKind k = topology_.link(l).kind;
    if (k == LinkKind::kNetwork || (k == LinkKind::kPcie && kind == LinkKind::kNvLink)) kind = k;
  }
  flows_[f].kind = kind;
  ++stats_.flows_started;

  if (!drains) {
    traffic_[static_cast<size_t>(src_gpu)].sent_bytes[static_cast<size_t>(kind)] += bytes.count();
    flows_[f].state = kInFlight;
    send_on_wire(f);
    return FlowId{f};
  }
  if (hops == 0) {
    throw std::logic_error("network model: no link of the path " + std::to_string(src_gpu) +
                           " -> " + std::to_string(dst_gpu) + " constrains it");
  }
  flows_[f].state = kOnLinks;
  const uint32_t off = flows_[f].pos_offset;
  uint32_t k = 0;
  for (const LinkId id : path) {
    const uint32_t l = id.value;
    if (constraining_[l] == 0) continue;
    links_[off + k] = l;
    positions_[off + k] = static_cast<uint32_t>(link_flows_[l].size());
    ++k;
    link_flows_[l].push_back(f);
  }
  added_flows_.push_back(f);
  ++active_count_;
  request_recompute();
  return FlowId{f};
}

void NetworkModel::request_recompute() {
  if (recompute_pending_) return;
  recompute_pending_ = true;
  engine_.schedule_at(engine_.now(), *this, make_tag(EventKind::kRecompute, 0));
}

void NetworkModel::on_event(uint64_t tag) {
  const auto kind = static_cast<EventKind>(tag >> kKindShift);
  const auto flow = static_cast<uint32_t>(tag & ((uint64_t{1} << kKindShift) - 1));
  switch (kind) {
    case EventKind::kDrain:
      drain_due();
      break;
    case EventKind::kDeliver:
      deliver_due(flow);
      break;
    case EventKind::kRecompute:
      recompute();
      break;
  }
}

// Takes every flow whose last byte leaves now, in (time, flow id) order; the recomputation they
// request runs after this event, at the same time.
void NetworkModel::drain_due() {
  drain_timer_ = EventId{};
  drain_timer_ps_ = -1;
  const int64_t now_ps = engine_.now().count_ps();
  bool drained = false;
  const double tolerance = options_.completion_tolerance;
  auto due = [&](const DrainEntry& e) {
    if (e.at_ps <= now_ps) return true;
    return tolerance > 0.0 && static_cast<double>(e.at_ps - now_ps) <=
                                  tolerance * static_cast<double>(e.at_ps - start_ps_[e.flow]);
  };
  auto take = [&](uint32_t f) {
    if (has_pieces(f) && piece_state_[f].fired + 1 < piece_state_[f].pieces) {
      // A piece ended: the flow goes on at the same rate towards the next.
      fire_piece(f, now_ps);
      schedule_drain(f, engine_.now());
      return;
    }
    drained = true;
    drain(f);
  };
  // Drains due by now precede every other entry, so a large batch of them (a uniform
  // all-to-all drains all its flows at one instant) leaves as one sorted block.
  if (take_due_batch(now_ps)) {
    for (size_t w = 0; w < due_flows_.size(); ++w) {
      for (uint64_t bits = due_flows_[w]; bits != 0; bits &= bits - 1) {
        take(static_cast<uint32_t>(w * 64 + static_cast<size_t>(__builtin_ctzll(bits))));
      }
    }
  }
  while (!drain_heap_.empty() && due(drain_heap_.front())) {
    const uint32_t f = drain_heap_.front().flow;
    drain_pos_[f] = kNotInHeap;
    const DrainEntry last = drain_heap_.back();
    drain_heap_.pop_back();
    if (!drain_heap_.empty()) {
      drain_heap_.front() = last;
      drain_pos_[last.flow] = 0;
      drain_heap_sift_down(0);
    }
    take(f);
  }
  // Otherwise the recomputation the drains requested re-arms the timer.
  if (!drained) arm_drain_timer();
}

// Popping k of n heap entries one by one costs k log n. The entries due now are found by a walk
// of the heap's due top (a due entry's parent is due); when they are at least an eighth of the
// heap, they are marked in a bit set over flow slots and the rest re-heapified: k + n. Every due
// entry leaves at now exactly (the timer fires at the head's time and no entry is ever earlier),
// so flow id order, the bit set's, is the order the pops would give; should the walk meet one
// that does not, nothing is changed and the pops go ahead.
bool NetworkModel::take_due_batch(int64_t now_ps) {
  const size_t n = drain_heap_.size();
  constexpr size_t kMinBatch = 1024;
  if (n < kMinBatch || drain_heap_.front().at_ps > now_ps) return false;
  const size_t wanted = std::max(kMinBatch, n / 8);
  size_t due = 0;
  walk_.clear();
  walk_.push_back(0);
  while (!walk_.empty()) {
    const uint32_t i = walk_.back();
    walk_.pop_back();
    if (drain_heap_[i].at_ps != now_ps) return false;
    ++due;
    for (size_t c = 2 * size_t{i} + 1; c <= 2 * size_t{i} + 2 && c < n; ++c) {
      if (drain_heap_[c].at_ps <= now_ps) walk_.push_back(static_cast<uint32_t>(c));
    }
  }
  if (due < wanted) return false;  // few: popped one by one
  due_flows_.assign((flows_.size() + 63) / 64, 0);
  size_t kept = 0;
  for (size_t i = 0; i < n; ++i) {
    const DrainEntry e = drain_heap_[i];
    if (e.at_ps <= now_ps) {
      drain_pos_[e.flow] = kNotInHeap;
      due_flows_[e.flow / 64] |= uint64_t{1} << (e.flow % 64);
      continue;
    }
    drain_heap_[kept] = e;
    drain_pos_[e.flow] = static_cast<uint32_t>(kept);
    ++kept;
  }
  drain_heap_.resize(kept);
  for (size_t i = kept / 2; i-- > 0;) drain_heap_sift_down(i);
  return true;
}

void NetworkModel::arm_drain_timer() {
  const int64_t head_ps = drain_heap_.empty() ? -1 : drain_heap_.front().at_ps;
  if (head_ps == drain_timer_ps_) return;
  if (drain_timer_ != EventId{}) engine_.cancel(drain_timer_);
  drain_timer_ = EventId{};
  drain_timer_ps_ = head_ps;
  if (head_ps >= 0) {
    drain_timer_ = engine_.schedule_at(Time::ps(head_ps), *this, make_tag(EventKind::kDrain, 0));
  }
}

void NetworkModel::drain(uint32_t f) {
  const uint32_t hops = flows_[f].hops;
  const uint32_t off = flows_[f].pos_offset;
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
          positions_[flows_[moved].pos_offset + j] = p;
          break;
        }
      }
    }
    if (seeded_[l] == 0) {
      seeded_[l] = 1;
      seed_links_.push_back(l);
    }
    // An empty link's load is exactly zero: this also clears accumulated rounding.
    load_[l] = list.empty() ? 0.0 : load_[l] - flows_[f].rate;
  }
  // Pieces not yet ended (empty ones at the end, or drained early under a tolerance) leave now.
  while (has_pieces(f) && piece_state_[f].fired + 1 < piece_state_[f].pieces) {
    fire_piece(f, engine_.now().count_ps());
  }
  // Flows slower than the one that left keep their rates (see recompute()).
  threshold_ = std::min(threshold_, flows_[f].rate);
  flows_[f].rate = 0.0;
  remaining_[f] = 0.0;
  flows_[f].state = kInFlight;
  --active_count_;
  traffic_[static_cast<size_t>(src_[f])].sent_bytes[static_cast<size_t>(flows_[f].kind)] +=
      bytes_[f];
  send_on_wire(f);
  request_recompute();
}

// A flow whose last byte has left arrives after its path latency. Flows with the same latency
// arrive in the order they left, so one FIFO per distinct latency, with one engine event for its
// head, replaces an engine event per flow; the time a flow left is kept in last_update_ps_.
void NetworkModel::send_on_wire(uint32_t f) {
  last_update_ps_[f] = engine_.now().count_ps();
  Wire& wire = wires_[flows_[f].wire];
  wire.flows.push_back(f);
  if (wire.flows.size() == 1) arm_wire(flows_[f].wire);
}

int64_t NetworkModel::bytes_after_piece(uint32_t f, uint32_t c) const {
  const int64_t b = bytes_[f];
  const int64_t n = piece_state_[f].pieces;
  const int64_t later = n - 1 - static_cast<int64_t>(c);
  return later * (b / n) + std::max<int64_t>(0, b % n - (static_cast<int64_t>(c) + 1));
}

void NetworkModel::fire_piece(uint32_t f, int64_t now_ps) {
  PieceState& state = piece_state_[f];
  remaining_[f] = static_cast<double>(bytes_after_piece(f, state.fired));
  last_update_ps_[f] = now_ps;
  ++state.fired;
  Wire& wire = wires_[flows_[f].wire];
  wire.flows.push_back(f | kPieceEntry);
  wire.piece_left_ps.push_back(now_ps);
  if (wire.flows.size() == 1) arm_wire(flows_[f].wire);
}

void NetworkModel::arm_wire(uint32_t w) {
  Wire& wire = wires_[w];
  if (wire.flows.empty()) return;
  const uint32_t head = wire.flows.front();
  const int64_t left_ps =
      (head & kPieceEntry) != 0 ? wire.piece_left_ps.front() : last_update_ps_[head];
  const int64_t at_ps = left_ps + wire.latency_ps;
  if (wire.timer_ps == at_ps) return;
  if (wire.timer != EventId{}) engine_.cancel(wire.timer);
  wire.timer_ps = at_ps;
  wire.timer = engine_.schedule_at(Time::ps(at_ps), *this, make_tag(EventKind::kDeliver, w));
}

void NetworkModel::deliver_due(uint32_t w) {
  wires_[w].timer = EventId{};
  wires_[w].timer_ps = -1;
  const int64_t now_ps = engine_.now().count_ps();
  // Observers may start flows, which may join this very FIFO: index afresh every time.
  while (!wires_[w].flows.empty()) {
    const uint32_t head = wires_[w].flows.front();
    const bool piece = (head & kPieceEntry) != 0;
    const int64_t left_ps = piece ? wires_[w].piece_left_ps.front() : last_update_ps_[head];
    if (left_ps + wires_[w].latency_ps > now_ps) break;
    wires_[w].flows.pop_front();
    if (!piece) {
      deliver(head);
      continue;
    }
    wires_[w].piece_left_ps.pop_front();
    deliver_piece(head & ~kPieceEntry);
  }
  arm_wire(w);
}

void NetworkModel::deliver_piece(uint32_t f) {
  const uint16_t index = piece_state_[f].delivered++;
  if (observer_[f] != nullptr) observer_[f]->on_flow_piece(FlowId{f}, tag_[f], index);
}

void NetworkModel::deliver(uint32_t f) {
  traffic_[static_cast<size_t>(dst_[f])].received_bytes[static_cast<size_t>(flows_[f].kind)] +=
      bytes_[f];
  ++stats_.flows_delivered;
  // A flow of no bytes, or with no links, delivers all its pieces at once.
  while (has_pieces(f) && piece_state_[f].delivered + 1 < piece_state_[f].pieces) {
    deliver_piece(f);
  }
  if (observer_[f] != nullptr) observer_[f]->on_flow_done(FlowId{f}, tag_[f]);
  // Freed only after the observer returns, so that flows it starts take other slots.
  flows_[f].state = kFree;
  const uint32_t hops = flows_[f].hops;
  if (hops > 0) {
    positions_[flows_[f].pos_offset] = free_blocks_[hops];
    free_blocks_[hops] = flows_[f].pos_offset;
  }
  drain_pos_[f] = free_flow_head_;
  free_flow_head_ = f;
}

void NetworkModel::throw_no_bandwidth(uint32_t f) const {
  throw std::logic_error("network model: flow " + std::to_string(src_[f]) + " -> " +
                         std::to_string(dst_[f]) + " was given no bandwidth");
}

void NetworkModel::schedule_drain(uint32_t f, Time now) {
  const double rate = flows_[f].rate;
  if (!(rate > 0.0)) throw_no_bandwidth(f);
  double remaining = remaining_[f];
  if (has_pieces(f) && piece_state_[f].fired + 1 < piece_state_[f].pieces) {
    remaining -= static_cast<double>(bytes_after_piece(f, piece_state_[f].fired));
  }
  int64_t dt_ps = 0;
  if (remaining > 0.0) {
    // Rounded up to a whole picosecond; by truncation and a compare, which baseline x86-64
    // does in two instructions where std::ceil takes a dozen (this runs at every rate change).
    const double exact = remaining / rate * 1e12;
    const double limit = static_cast<double>(Time::max().count_ps() - now.count_ps());
    if (exact >= limit) {
      dt_ps = static_cast<int64_t>(limit);
    } else {
      dt_ps = static_cast<int64_t>(exact);
      if (static_cast<double>(dt_ps) < exact) ++dt_ps;
    }
    if (dt_ps < 1) dt_ps = 1;
  }
  drain_heap_set(f, now.count_ps() + dt_ps);
}

namespace {
inline bool drains_before(int64_t a_ps, uint32_t a_flow, int64_t b_ps, uint32_t b_flow) {
  return a_ps < b_ps || (a_ps == b_ps && a_flow < b_flow);
}
}  // namespace

// Inlined into its one caller, schedule_drain, which runs at every rate change.
[[gnu::always_inline]] inline void NetworkModel::drain_heap_set(uint32_t flow, int64_t at_ps) {
  uint32_t i = drain_pos_[flow];
  if (i == kNotInHeap) {
    i = static_cast<uint32_t>(drain_heap_.size());
    drain_heap_.push_back({at_ps, flow});
    drain_pos_[flow] = i;
    drain_heap_sift_up(i);
    return;
  }
  const int64_t old = drain_heap_[i].at_ps;
  drain_heap_[i].at_ps = at_ps;
  if (at_ps < old) {
    drain_heap_sift_up(i);
  } else {
    drain_heap_sift_down(i);
  }
}

void NetworkModel::drain_heap_sift_up(size_t i) {
  const DrainEntry e = drain_heap_[i];
  while (i > 0) {
    const size_t parent = (i - 1) / 2;
    if (!drains_before(e.at_ps, e.flow, drain_heap_[parent].at_ps, drain_heap_[parent].flow)) break;
    drain_heap_[i] = drain_heap_[parent];
    drain_pos_[drain_heap_[i].flow] = static_cast<uint32_t>(i);
    i = parent;
  }
  drain_heap_[i] = e;
  drain_pos_[e.flow] = static_cast<uint32_t>(i);
}

void NetworkModel::drain_heap_sift_down(size_t i) {
  const DrainEntry e = drain_heap_[i];
  const size_t n = drain_heap_.size();
  while (true) {
    size_t child = 2 * i + 1;
    if (child >= n) break;
    if (child + 1 < n && drains_before(drain_heap_[child + 1].at_ps, drain_heap_[child + 1].flow,
                                       drain_heap_[child].at_ps, drain_heap_[child].flow)) {
      ++child;
    }
    if (!drains_before(drain_heap_[child].at_ps, drain_heap_[child].flow, e.at_ps, e.flow)) break;
    drain_heap_[i] = drain_heap_[child];
    drain_pos_[drain_heap_[i].flow] = static_cast<uint32_t>(i);
    i = child;
  }
  drain_heap_[i] = e;
  drain_pos_[e.flow] = static_cast<uint32_t>(i);
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
void NetworkModel::recompute() {
  recompute_pending_ = false;
  ++stats_.recomputations;
  const Time now = engine_.now();
  if (++epoch_ == 0) {
    for (FlowState& state : flows_) state.mark = 0;
    std::fill(link_mark_.begin(), link_mark_.end(), 0);
    epoch_ = 1;
  }
  const uint32_t epoch = epoch_;
  // None of these arrays changes size here. Held in locals because the one-byte flags the fill
  // writes (expanded_, touched_mark_) may alias anything, which would make the compiler reload
  // every vector's data pointer, and a flow's hop count, after each such store.
  FlowState* const flows = flows_.data();
  const uint32_t* const path_links = links_.data();
  const double* const capacity = capacity_.data();
  double* const load = load_.data();
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
    if (flows[f].state != kOnLinks) continue;
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
    if (flows[f].state == kOnLinks && flows[f].mark != epoch) add_flow(f);
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
      FlowState& flow = flows[g];
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
        FlowState& flow = flows[ids[i]];
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
        size_t best = kNotInHeap;
        for (size_t i = 0; i < scan_links_.size();) {
          const uint32_t l = scan_links_[i];
          if (unfrozen[l] == 0) {  // all its flows froze elsewhere
            scan_links_[i] = scan_links_.back();
            scan_links_.pop_back();
            continue;
          }
          if (best == kNotInHeap ||
              freezes_before(level_now[l], l, level_now[scan_links_[best]], scan_links_[best])) {
            best = i;
          }
          ++i;
        }
        if (best == kNotInHeap) break;
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
      heap_.clear();
      for (const uint32_t l : region_links_) {
        if (unfrozen[l] > 0) {
          level_now[l] = std::max(residual[l], 0.0) / unfrozen[l];
          heap_push_or_update(l, level_now[l]);
        }
      }
      while (!heap_.empty()) {
        const HeapEntry top = heap_.front();
        if (unfrozen[top.link] == 0) {
          heap_remove(top.link);
          continue;
        }
        if (top.level != level_now[top.link]) {
          heap_[0].level = level_now[top.link];
          heap_sift_down(0);
          continue;
        }
        heap_remove(top.link);
        note_bottleneck(top.link);
        // The links this freeze touches are re-keyed once each, after all its flows are
        // frozen: many of them share their other links (the sender's PCIe, the spine uplinks).
        freeze(top.link, top.level);
        for (const uint32_t m : touched_) {
          touched_mark[m] = 0;
          if (unfrozen[m] == 0) continue;  // removed when it surfaces
          const double now_level = std::max(residual[m], 0.0) / unfrozen[m];
          level_now[m] = now_level;
          if (now_level < heap_[heap_pos_[m]].level) heap_push_or_update(m, now_level);
        }
      }
    }
    if (!grew) break;
    drain_queue();
  }
  stats_.region_flows += region_flows_.size();
  stats_.active_flows += active_count_;
  stats_.region_links += region_links_.size();

  const int64_t now_ps = now.count_ps();
  for (const uint32_t g : region_flows_) {
    FlowState& flow = flows[g];
    const double old_rate = flow.rate;
    const double level = flow.new_rate;
    if (old_rate == level && drain_pos_[g] != kNotInHeap) continue;
    if (old_rate > 0.0) {
      double remaining =
          remaining_[g] - old_rate * static_cast<double>(now_ps - last_update_ps_[g]) * 1e-12;
      remaining_[g] = remaining < 0.0 ? 0.0 : remaining;
    }
    last_update_ps_[g] = now_ps;
    flow.rate = level;
    const uint32_t* links = path_links + flow.pos_offset;
    const uint32_t hops = flow.hops;
    const double change = level - old_rate;
    for (uint32_t k = 0; k < hops; ++k) load[links[k]] += change;
    ++stats_.rate_changes;
    schedule_drain(g, now);
  }
  seed_links_.clear();
  added_flows_.clear();
  threshold_ = std::numeric_limits<double>::infinity();
  arm_drain_timer();
}

// The fill's priority queue for large regions: a binary min-heap of links in freezes_before
// order.

void NetworkModel::heap_push_or_update(uint32_t link, double level) {
  uint32_t i = heap_pos_[link];
  if (i == kNotInHeap) {
    i = static_cast<uint32_t>(heap_.size());
    heap_.push_back({level, link});
    heap_pos_[link] = i;
    heap_sift_up(i);
    return;
  }
  const double old = heap_[i].level;
  heap_[i].level = level;
  if (level < old) {
    heap_sift_up(i);
  } else {
    heap_sift_down(i);
  }
}

void NetworkModel::heap_remove(uint32_t link) {
  const uint32_t i = heap_pos_[link];
  if (i == kNotInHeap) return;
  heap_pos_[link] = kNotInHeap;
  const HeapEntry last = heap_.back();
  heap_.pop_back();
  if (i == heap_.size()) return;
  heap_[i] = last;
  heap_pos_[last.link] = i;
  heap_sift_up(i);
  heap_sift_down(heap_pos_[last.link]);
}

void NetworkModel::heap_sift_up(size_t i) {
  const HeapEntry e = heap_[i];
  while (i > 0) {
    const size_t parent = (i - 1) / 2;
    if (!freezes_before(e.level, e.link, heap_[parent].level, heap_[parent].link)) break;
    heap_[i] = heap_[parent];
    heap_pos_[heap_[i].link] = static_cast<uint32_t>(i);
    i = parent;
  }
  heap_[i] = e;
  heap_pos_[e.link] = static_cast<uint32_t>(i);
}

void NetworkModel::heap_sift_down(size_t i) {
  const HeapEntry e = heap_[i];
  const size_t n = heap_.size();
  while (true) {
    size_t child = 2 * i + 1;
    if (child >= n) break;
    if (child + 1 < n && freezes_before(heap_[child + 1].level, heap_[child + 1].link,
                                        heap_[child].level, heap_[child].link)) {
      ++child;
    }
    if (!freezes_before(heap_[child].level, heap_[child].link, e.level, e.link)) break;
    heap_[i] = heap_[child];
    heap_pos_[heap_[i].link] = static_cast<uint32_t>(i);
    i = child;
  }
  heap_[i] = e;
  heap_pos_[e.link] = static_cast<uint32_t>(i);
}

}  // namespace moesim
