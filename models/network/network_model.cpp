#include "models/network/network_model.h"

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>

#include "models/network/flow_paths.h"

namespace moesim {

namespace {

static_assert(MaxMinSolver::kMaxLinksPerFlow == kMaxConstrainingLinks);

std::vector<double> effective_capacities(const Topology& topology) {
  std::vector<double> capacity(topology.links().size());
  for (size_t i = 0; i < capacity.size(); ++i) {
    capacity[i] = topology.effective_capacity(LinkId{static_cast<uint32_t>(i)}).bytes_per_second();
  }
  return capacity;
}

}  // namespace

NetworkModel::NetworkModel(Engine& engine, const Topology& topology, NetworkOptions options)
    : engine_(engine),
      topology_(topology),
      options_(options),
      solver_(effective_capacities(topology)) {
  if (!(options_.completion_tolerance >= 0.0 && options_.completion_tolerance < 1.0)) {
    throw std::invalid_argument("network model: completion tolerance " +
                                std::to_string(options_.completion_tolerance) +
                                " is outside [0, 1)");
  }
  constraining_ = constraining_links(topology_, solver_.capacities());
  traffic_.resize(static_cast<size_t>(topology.gpu_count()));
}

// Free flow slots are kept in a list threaded through the slots themselves (a free slot's
// tag_), so that a million finished flows cost no memory beyond their slots.
uint32_t NetworkModel::allocate_flow() {
  if (free_flow_head_ != kNone) {
    const uint32_t f = free_flow_head_;
    free_flow_head_ = tag_[f];
    return f;
  }
  const auto f = static_cast<uint32_t>(src_.size());
  if (f >= LatencyWires::kMaxFlows) {
    throw std::length_error("network model: more than 2^31 flows at once");
  }
  const size_t slots = size_t{f} + 1;
  src_.push_back(0);
  dst_.push_back(0);
  bytes_.push_back(0);
  remaining_.push_back(0.0);
  last_update_ps_.push_back(0);
  if (options_.completion_tolerance > 0.0) start_ps_.push_back(0);
  observer_.push_back(nullptr);
  tag_.push_back(0);
  info_.push_back(FlowInfo{});
  solver_.resize_flows(slots);
  drains_.resize_flows(slots);
  pieces_.resize_flows(slots);
  return f;
}

FlowId NetworkModel::start_flow(int src_gpu, int dst_gpu, Bytes bytes, FlowObserver* observer,
                                uint32_t tag) {
  return start_flow(src_gpu, dst_gpu, bytes, observer, tag, ecmp_hash(flow_counter_));
}

FlowId NetworkModel::start_flow(int src_gpu, int dst_gpu, Bytes bytes, FlowObserver* observer,
                                uint32_t tag, uint64_t flow_hash) {
  return start(src_gpu, dst_gpu, bytes, observer, tag, flow_hash, 1);
}

FlowId NetworkModel::start_flow_in_pieces(int src_gpu, int dst_gpu, Bytes bytes, uint32_t pieces,
                                          FlowObserver* observer, uint32_t tag) {
  if (pieces < 1 || pieces > FlowPieces::kMaxPieces) {
    throw std::invalid_argument("network model: a flow takes 1 to 65535 pieces, not " +
                                std::to_string(pieces));
  }
  return start(src_gpu, dst_gpu, bytes, observer, tag, ecmp_hash(flow_counter_), pieces);
}

FlowId NetworkModel::start(int src_gpu, int dst_gpu, Bytes bytes, FlowObserver* observer,
                           uint32_t tag, uint64_t flow_hash, uint32_t pieces) {
  check_flow_request("network model", topology_, src_gpu, dst_gpu, bytes);
  ++flow_counter_;
  const FlowRoute route = route_flow("network model", topology_, constraining_, src_gpu, dst_gpu,
                                     flow_hash, bytes.count() > 0, path_links_);
  const bool drains = bytes.count() > 0 && !route.empty;
  const uint32_t f = allocate_flow();
  pieces_.start(f, pieces, src_.size());
  src_[f] = src_gpu;
  dst_[f] = dst_gpu;
  bytes_[f] = bytes.count();
  {
    const uint32_t wire = wires_.wire_for(route.latency.count_ps());
    if (wire > std::numeric_limits<uint16_t>::max()) {
      throw std::length_error("network model: more than 65536 distinct path latencies");
    }
    if (wire == wire_timers_.size()) wire_timers_.emplace_back();
    info_[f].wire = static_cast<uint16_t>(wire);
  }
  remaining_[f] = static_cast<double>(bytes.count());
  last_update_ps_[f] = engine_.now().count_ps();
  if (options_.completion_tolerance > 0.0) start_ps_[f] = engine_.now().count_ps();
  observer_[f] = observer;
  tag_[f] = tag;
  const LinkKind kind = route.kind;
  info_[f].kind = kind;
  ++stats_.flows_started;

  if (!drains) {
    traffic_[static_cast<size_t>(src_gpu)].sent_bytes[static_cast<size_t>(kind)] += bytes.count();
    send_on_wire(f);
    return FlowId{f};
  }
  solver_.add_flow(f, path_links_);
  request_recompute();
  return FlowId{f};
}

const NetworkStats& NetworkModel::stats() const {
  const MaxMinStats& s = solver_.stats();
  stats_.recomputations = s.recomputations;
  stats_.region_flows = s.region_flows;
  stats_.active_flows = s.active_flows;
  stats_.fill_passes = s.fill_passes;
  stats_.heap_fills = s.heap_fills;
  stats_.region_links = s.region_links;
  stats_.scanned_entries = s.scanned_entries;
  stats_.rate_changes = s.rate_changes;
  return stats_;
}

void NetworkModel::request_recompute() {
  if (recompute_pending_) return;
  recompute_pending_ = true;
  engine_.schedule_at(engine_.now(), *this, make_tag(EventKind::kRecompute, 0));
}

void NetworkModel::on_event(uint64_t tag) {
  const auto kind = static_cast<EventKind>(tag >> kKindShift);
  const auto index = static_cast<uint32_t>(tag & ((uint64_t{1} << kKindShift) - 1));
  switch (kind) {
    case EventKind::kDrain:
      drain_due();
      break;
    case EventKind::kDeliver:
      deliver_due(index);
      break;
    case EventKind::kRecompute:
      recompute();
      break;
  }
}

// The solver re-derives the rates the instant's changes reach; each flow whose rate changed
// brings its remaining bytes up to date at the old rate and is re-timed at the new one.
void NetworkModel::recompute() {
  recompute_pending_ = false;
  const Time now = engine_.now();
  const int64_t now_ps = now.count_ps();
  solver_.solve();
  solver_.commit([&](uint32_t g, double old_rate) {
    if (old_rate > 0.0) {
      double remaining =
          remaining_[g] - old_rate * static_cast<double>(now_ps - last_update_ps_[g]) * 1e-12;
      remaining_[g] = remaining < 0.0 ? 0.0 : remaining;
    }
    last_update_ps_[g] = now_ps;
    schedule_drain(g, now);
  });
  arm_drain_timer();
}

// Takes every flow whose last byte leaves now, in (time, flow id) order; the recomputation they
// request runs after this event, at the same time.
void NetworkModel::drain_due() {
  drain_timer_ = EventId{};
  drain_timer_ps_ = -1;
  const int64_t now_ps = engine_.now().count_ps();
  bool drained = false;
  const double tolerance = options_.completion_tolerance;
  auto due = [&](int64_t at_ps, uint32_t flow) {
    return tolerance > 0.0 && static_cast<double>(at_ps - now_ps) <=
                                  tolerance * static_cast<double>(at_ps - start_ps_[flow]);
  };
  drains_.take_due(now_ps, due, [&](uint32_t f) {
    if (pieces_.more_to_leave(f)) {
      // A piece ended: the flow goes on at the same rate towards the next.
      leave_piece(f, now_ps);
      schedule_drain(f, engine_.now());
      return;
    }
    drained = true;
    drain(f);
  });
  // Otherwise the recomputation the drains requested re-arms the timer.
  if (!drained) arm_drain_timer();
}

void NetworkModel::arm_drain_timer() {
  const int64_t head_ps = drains_.next_ps();
  if (head_ps == drain_timer_ps_) return;
  if (drain_timer_ != EventId{}) engine_.cancel(drain_timer_);
  drain_timer_ = EventId{};
  drain_timer_ps_ = head_ps;
  if (head_ps >= 0) {
    drain_timer_ = engine_.schedule_at(Time::ps(head_ps), *this, make_tag(EventKind::kDrain, 0));
  }
}

void NetworkModel::drain(uint32_t f) {
  solver_.remove_flow(f);
  // Pieces not yet ended (empty ones at the end, or drained early under a tolerance) leave now.
  while (pieces_.more_to_leave(f)) leave_piece(f, engine_.now().count_ps());
  remaining_[f] = 0.0;
  traffic_[static_cast<size_t>(src_[f])].sent_bytes[static_cast<size_t>(info_[f].kind)] +=
      bytes_[f];
  send_on_wire(f);
  request_recompute();
}

// A flow whose last byte has left arrives after its path latency; the time it left is kept in
// last_update_ps_.
void NetworkModel::send_on_wire(uint32_t f) {
  last_update_ps_[f] = engine_.now().count_ps();
  if (wires_.push_flow(info_[f].wire, f)) arm_wire(info_[f].wire);
}

void NetworkModel::leave_piece(uint32_t f, int64_t now_ps) {
  remaining_[f] = static_cast<double>(pieces_.bytes_after_leaving_piece(f, bytes_[f]));
  last_update_ps_[f] = now_ps;
  pieces_.note_left(f);
  if (wires_.push_piece(info_[f].wire, f, now_ps)) arm_wire(info_[f].wire);
}

void NetworkModel::arm_wire(uint32_t w) {
  const int64_t at_ps =
      wires_.head_arrival_ps(w, [this](uint32_t flow) { return last_update_ps_[flow]; });
  if (at_ps < 0) return;
  WireTimer& timer = wire_timers_[w];
  if (timer.at_ps == at_ps) return;
  if (timer.event != EventId{}) engine_.cancel(timer.event);
  timer.at_ps = at_ps;
  timer.event = engine_.schedule_at(Time::ps(at_ps), *this, make_tag(EventKind::kDeliver, w));
}

void NetworkModel::deliver_due(uint32_t w) {
  wire_timers_[w] = WireTimer{};
  const int64_t now_ps = engine_.now().count_ps();
  const auto left_ps = [this](uint32_t flow) { return last_update_ps_[flow]; };
  // Observers may start flows, which may join this very wire.
  LatencyWires::Arrival arrival;
  while (wires_.pop_arrived(w, now_ps, left_ps, arrival)) {
    if (arrival.piece) {
      deliver_piece(arrival.flow);
    } else {
      deliver(arrival.flow);
    }
  }
  arm_wire(w);
}

void NetworkModel::deliver_piece(uint32_t f) {
  const uint16_t index = pieces_.note_arrived(f);
  if (observer_[f] != nullptr) observer_[f]->on_flow_piece(FlowId{f}, tag_[f], index);
}

void NetworkModel::deliver(uint32_t f) {
  traffic_[static_cast<size_t>(dst_[f])].received_bytes[static_cast<size_t>(info_[f].kind)] +=
      bytes_[f];
  ++stats_.flows_delivered;
  // A flow of no bytes, or with no links, delivers all its pieces at once.
  while (pieces_.more_to_arrive(f)) deliver_piece(f);
  if (observer_[f] != nullptr) observer_[f]->on_flow_done(FlowId{f}, tag_[f]);
  // Freed only after the observer returns, so that flows it starts take other slots.
  tag_[f] = free_flow_head_;
  free_flow_head_ = f;
}

void NetworkModel::throw_no_bandwidth(uint32_t f) const {
  throw std::logic_error("network model: flow " + std::to_string(src_[f]) + " -> " +
                         std::to_string(dst_[f]) + " was given no bandwidth");
}

void NetworkModel::schedule_drain(uint32_t f, Time now) {
  const double rate = solver_.rate(f);
  if (!(rate > 0.0)) throw_no_bandwidth(f);
  double remaining = remaining_[f];
  if (pieces_.more_to_leave(f)) {
    remaining -= static_cast<double>(pieces_.bytes_after_leaving_piece(f, bytes_[f]));
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
  drains_.set(f, now.count_ps() + dt_ps);
}

}  // namespace moesim
