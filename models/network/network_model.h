// The exact network tier, the reference the others are measured against: GPU-to-GPU flows share
// a Topology's links by max-min fairness, recomputed incrementally (only the part of the network
// a change can reach) on the Engine.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <span>
#include <unordered_map>
#include <vector>

#include "core/engine.h"
#include "models/network/flow_network.h"
#include "core/units.h"
#include "topologies/topology.h"

namespace moesim {

// How closely the model follows max-min fairness in time. With completion_tolerance = 0 the
// model is exact: rates are re-derived at every instant a flow's last byte leaves. With a
// tolerance e > 0, when the first flow drains, every flow that would drain within e of its own
// duration after it (finish - now <= e * (finish - start)) drains with it, so nearly
// simultaneous completions cost one recomputation; those flows finish early by at most that
// fraction of their duration, and their freed bandwidth is handed out that much earlier.
struct NetworkOptions {
  double completion_tolerance = 0.0;
};

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
  LinkKind flow_kind(FlowId id) const override { return flows_[id.value].kind; }
  // The current max-min rate (zero before the first recomputation and after the last byte left).
  Bandwidth flow_rate(FlowId id) const { return Bandwidth::bytes_per_s(flows_[id.value].rate); }

  const GpuTraffic& gpu_traffic(int gpu) const override {
    return traffic_.at(static_cast<size_t>(gpu));
  }
  size_t active_flows() const override { return active_count_; }
  const Stats& stats() const override { return stats_; }
  Engine& engine() const override { return engine_; }
  const Topology& topology() const override { return topology_; }

  // Engine callback; not for callers.
  void on_event(uint64_t tag) override;

 private:
  enum class EventKind : uint64_t { kDrain = 0, kDeliver = 1, kRecompute = 2 };
  static constexpr uint32_t kPieceEntry = 0x80000000u;  // a wires_ FIFO entry for a piece
  struct PieceState {
    uint16_t pieces = 1;
    uint16_t fired = 0;      // pieces whose last byte has left
    uint16_t delivered = 0;  // pieces whose arrival the observer has heard of
  };
  static constexpr int kKindShift = 62;
  static uint64_t make_tag(EventKind kind, uint32_t flow) {
    return (static_cast<uint64_t>(kind) << kKindShift) | flow;
  }

  void mark_constraining_links();
  static constexpr uint32_t kNone = 0xffffffffu;
  static constexpr uint32_t kMaxHops = 255;

  uint32_t allocate_flow(uint32_t hops);
  FlowId start(int src_gpu, int dst_gpu, Bytes bytes, FlowObserver* observer, uint32_t tag,
               uint64_t flow_hash, uint32_t pieces);
  bool has_pieces(uint32_t flow) const {
    return !piece_state_.empty() && piece_state_[flow].pieces > 1;
  }
  // Bytes of the flow after its piece c.
  int64_t bytes_after_piece(uint32_t flow, uint32_t c) const;
  void fire_piece(uint32_t flow, int64_t now_ps);
  void send_on_wire(uint32_t flow);
  void arm_wire(uint32_t wire);
  void deliver_due(uint32_t wire);
  void request_recompute();
  void drain(uint32_t flow);
  void deliver(uint32_t flow);
  void deliver_piece(uint32_t flow);  // the next piece's arrival, to the observer
  void recompute();
  void schedule_drain(uint32_t flow, Time now);
  // Out of line and cold: the string building would otherwise give schedule_drain, which runs
  // at every rate change, a stack frame it does not need.
  [[noreturn, gnu::cold, gnu::noinline]] void throw_no_bandwidth(uint32_t flow) const;
  void drain_due();
  void arm_drain_timer();
  bool take_due_batch(int64_t now_ps);
  void drain_heap_set(uint32_t flow, int64_t at_ps);
  void drain_heap_sift_up(size_t i);
  void drain_heap_sift_down(size_t i);
  void heap_push_or_update(uint32_t link, double level);
  void heap_remove(uint32_t link);
  void heap_sift_up(size_t i);
  void heap_sift_down(size_t i);

  Engine& engine_;
  const Topology& topology_;
  NetworkOptions options_;

  // Flows: arrays over flow slots; freed slots are reused (see allocate_flow). What the rate
  // recomputation reads for every flow it meets sits together in one 32-byte record, so that a
  // flow costs it one cache line rather than one per field.
  struct alignas(32) FlowState {
    double rate = 0.0;      // bytes per second
    double new_rate = 0.0;  // during a recomputation; negative until frozen
    uint32_t mark = 0;      // == epoch_: in this recomputation's region
    // The path's links that can constrain it (see mark_constraining_links), at pos_offset in
    // links_, and the flow's index in each such link's list at the same offset in positions_.
    uint32_t pos_offset = 0;
    uint32_t wire = 0;  // the wires_ FIFO of its path's latency
    uint8_t hops = 0;
    uint8_t state = 0;  // free, on its links, or in flight after its last byte
    LinkKind kind = LinkKind::kNvLink;
  };
  static_assert(sizeof(FlowState) == 32);
  std::vector<FlowState> flows_;
  std::vector<int32_t> src_, dst_;
  std::vector<int64_t> bytes_;
  std::vector<double> remaining_;        // bytes still to leave the source, as of last_update_ps_
  std::vector<int64_t> last_update_ps_;  // in flight: when its last byte left
  std::vector<int64_t> start_ps_;        // only with a completion tolerance
  std::vector<uint32_t> drain_pos_;      // position in drain_heap_, or none before the first rate
  std::vector<FlowObserver*> observer_;
  std::vector<uint32_t> tag_;
  // Only once a flow in pieces has been started: then one entry per flow slot.
  std::vector<PieceState> piece_state_;
  uint32_t free_flow_head_ = kNone;
  // positions_ blocks of each length are recycled by length (paths are short).
  std::vector<uint32_t> positions_;
  std::vector<uint32_t> links_;
  std::vector<uint32_t> free_blocks_;  // head of the free list of blocks of each length

  // Links, indexed by LinkId.
  std::vector<double> capacity_;  // effective, bytes per second
  std::vector<uint8_t> constraining_;
  std::vector<std::vector<uint32_t>> link_flows_;
  std::vector<uint32_t> link_mark_;
  std::vector<double> load_;        // sum of the rates of the link's flows
  std::vector<double> residual_;    // during a recomputation
  std::vector<uint8_t> expanded_;   // during a recomputation: all its fast flows are in
  std::vector<uint32_t> unfrozen_;  // during a recomputation: region flows not yet frozen
  std::vector<uint32_t> heap_pos_;  // position in heap_, or kNotInHeap
  struct HeapEntry {
    double level;
    uint32_t link;
  };
  std::vector<HeapEntry> heap_;
  std::vector<uint32_t> scan_links_;  // during a small fill: region links yet to freeze
  std::vector<uint32_t> touched_;     // during a fill step: links whose residual changed
  std::vector<uint8_t> touched_mark_;
  std::vector<double> level_now_;  // during a fill: residual over unfrozen flows, per link

  // The batch of changes awaiting the recomputation scheduled at now(): the links flows left
  // (an added flow's links are reached through the flow).
  std::vector<uint32_t> seed_links_;
  std::vector<uint8_t> seeded_;
  std::vector<uint32_t> added_flows_;
  double threshold_ = 0.0;
  bool recompute_pending_ = false;
  uint32_t epoch_ = 0;
  std::vector<uint32_t> region_flows_, region_links_, queue_;

  // When each flow's last byte leaves, as a min-heap by (time, flow id) owned by the model, with
  // one engine event for its head: a rate change re-keys a heap entry instead of cancelling and
  // scheduling an engine event, and simultaneous drains are taken in one event.
  // 12 bytes, not 16: there is one per draining flow, a million in a large all-to-all.
  struct __attribute__((packed, aligned(4))) DrainEntry {
    int64_t at_ps;
    uint32_t flow;
  };
  static_assert(sizeof(DrainEntry) == 12);
  std::vector<DrainEntry> drain_heap_;
  // take_due_batch's flows (one bit per flow slot) and its walk of the heap.
  std::vector<uint64_t> due_flows_;
  std::vector<uint32_t> walk_;
  EventId drain_timer_;
  int64_t drain_timer_ps_ = -1;  // when drain_timer_ fires; -1 when none is pending

  // Flows in flight after their last byte left, one FIFO per distinct path latency.
  // An entry is a flow (its last byte left at its last_update_ps_) or, with kPieceEntry set, a
  // piece of one, which left at the head of piece_left_ps.
  struct Wire {
    int64_t latency_ps;
    std::deque<uint32_t> flows;
    EventId timer;
    int64_t timer_ps;
    std::deque<int64_t> piece_left_ps;
  };
  std::vector<Wire> wires_;
  std::unordered_map<int64_t, uint32_t> wire_of_latency_;

  std::vector<GpuTraffic> traffic_;
  size_t active_count_ = 0;
  uint64_t flow_counter_ = 0;
  Stats stats_;
};

}  // namespace moesim
