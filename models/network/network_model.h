// The exact network tier, the reference the others are measured against: GPU-to-GPU flows share
// a Topology's links by max-min fairness (MaxMinSolver), recomputed incrementally on the Engine.
#pragma once

#include <cstdint>
#include <vector>

#include "core/engine.h"
#include "core/units.h"
#include "models/network/drain_schedule.h"
#include "models/network/flow_network.h"
#include "models/network/flow_pieces.h"
#include "models/network/latency_wires.h"
#include "models/network/maxmin_solver.h"
#include "topologies/topology.h"

namespace moesim {

// A composition of engine-free parts, driven by engine events: the solver holds the flows on
// their links and their rates; the drain schedule when each flow's last byte leaves at its rate
// (one engine event for its head); the latency wires the flows in flight after that (one
// event per wire for its head); the pieces of flows streamed in pieces. A start or a drain
// changes the solver and asks for one recomputation at the current instant, so that every
// change of an instant is solved together.
class NetworkModel final : public FlowNetwork, public EventHandler {
 public:
  using Stats = NetworkStats;

  // Both must outlive the model. The topology's paths are queried lazily (and cached by it).
  NetworkModel(Engine& engine, const Topology& topology, NetworkOptions options = {});
  NetworkModel(const NetworkModel&) = delete;
  NetworkModel& operator=(const NetworkModel&) = delete;

  FlowId start_flow(int src_gpu, int dst_gpu, Bytes bytes, FlowObserver* observer,
                    uint32_t tag = 0) override;
  FlowId start_flow(int src_gpu, int dst_gpu, Bytes bytes, FlowObserver* observer, uint32_t tag,
                    uint64_t flow_hash) override;
  // Rates do not change between pieces, so a piece costs no recomputation, where a flow per
  // piece would cost two (one leaving, the next starting).
  FlowId start_flow_in_pieces(int src_gpu, int dst_gpu, Bytes bytes, uint32_t pieces,
                              FlowObserver* observer, uint32_t tag) override;

  int flow_source(FlowId id) const override { return src_[id.value]; }
  int flow_destination(FlowId id) const override { return dst_[id.value]; }
  Bytes flow_bytes(FlowId id) const override { return Bytes(bytes_[id.value]); }
  LinkKind flow_kind(FlowId id) const override { return info_[id.value].kind; }
  // The current max-min rate (zero before the first recomputation and after the last byte left).
  Bandwidth flow_rate(FlowId id) const { return Bandwidth::bytes_per_s(solver_.rate(id.value)); }

  const GpuTraffic& gpu_traffic(int gpu) const override {
    return traffic_.at(static_cast<size_t>(gpu));
  }
  size_t active_flows() const override { return solver_.active_flows(); }
  const Stats& stats() const override;
  Engine& engine() const override { return engine_; }
  const Topology& topology() const override { return topology_; }

  // Engine callback; not for callers.
  void on_event(uint64_t tag) override;

 private:
  enum class EventKind : uint64_t { kDrain = 0, kDeliver = 1, kRecompute = 2 };
  static constexpr int kKindShift = 62;
  static uint64_t make_tag(EventKind kind, uint32_t index) {
    return (static_cast<uint64_t>(kind) << kKindShift) | index;
  }
  static constexpr uint32_t kNone = 0xffffffffu;

  uint32_t allocate_flow();
  FlowId start(int src_gpu, int dst_gpu, Bytes bytes, FlowObserver* observer, uint32_t tag,
               uint64_t flow_hash, uint32_t pieces);
  void request_recompute();
  void recompute();
  void schedule_drain(uint32_t flow, Time now);
  // Out of line and cold: the string building would otherwise give schedule_drain, which runs
  // at every rate change, a stack frame it does not need.
  [[noreturn, gnu::cold, gnu::noinline]] void throw_no_bandwidth(uint32_t flow) const;
  void drain_due();
  void arm_drain_timer();
  void drain(uint32_t flow);
  void leave_piece(uint32_t flow, int64_t now_ps);
  void send_on_wire(uint32_t flow);
  void arm_wire(uint32_t wire);
  void deliver_due(uint32_t wire);
  void deliver(uint32_t flow);
  void deliver_piece(uint32_t flow);  // the next piece's arrival, to the observer

  Engine& engine_;
  const Topology& topology_;
  NetworkOptions options_;
  std::vector<uint8_t> constraining_;  // per link: can it ever be a flow's bottleneck
  std::vector<uint32_t> path_links_;   // start's constraining links of a path

  MaxMinSolver solver_;
  DrainSchedule drains_;
  EventId drain_timer_;
  int64_t drain_timer_ps_ = -1;  // when drain_timer_ fires; -1 when none is pending
  LatencyWires wires_;
  struct WireTimer {
    EventId event;
    int64_t at_ps = -1;  // -1 when none is pending
  };
  std::vector<WireTimer> wire_timers_;
  FlowPieces pieces_;
  bool recompute_pending_ = false;

  // Flows: arrays over flow slots, shared by the parts; freed slots are reused (see
  // allocate_flow).
  std::vector<int32_t> src_, dst_;
  std::vector<int64_t> bytes_;
  std::vector<double> remaining_;  // bytes still to leave the source, as of last_update_ps_
  // On links: when remaining_ was last brought up to date; in flight: when its last byte left.
  std::vector<int64_t> last_update_ps_;
  std::vector<int64_t> start_ps_;  // only with a completion tolerance
  std::vector<FlowObserver*> observer_;
  std::vector<uint32_t> tag_;  // a free slot's holds the next free slot
  // 4 bytes: a million flows at once is an ordinary all-to-all.
  struct FlowInfo {
    uint16_t wire = 0;  // the wire of its path's latency
    LinkKind kind = LinkKind::kNvLink;
  };
  static_assert(sizeof(FlowInfo) == 4);
  std::vector<FlowInfo> info_;
  uint32_t free_flow_head_ = kNone;

  std::vector<GpuTraffic> traffic_;
  uint64_t flow_counter_ = 0;
  mutable Stats stats_;
};

}  // namespace moesim
