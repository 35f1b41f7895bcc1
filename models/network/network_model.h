// The flow-level network model: GPU-to-GPU flows share a Topology's links by max-min fairness,
// recomputed incrementally (only the part of the network a change can reach) on the Engine.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <vector>

#include "sim/engine/engine.h"
#include "sim/engine/units.h"
#include "topologies/topology.h"

namespace moesim {

struct FlowId {
  uint32_t value = 0;
  friend constexpr auto operator<=>(FlowId, FlowId) = default;
};

// Told when a flow's last byte has arrived at its destination (drain at the max-min rate, then
// the path latency). During the call the flow's accessors are still valid.
class FlowObserver {
 public:
  virtual void on_flow_done(FlowId id, uint64_t tag) = 0;

 protected:
  ~FlowObserver() = default;
};

// Bytes a GPU sent and received, by the kind of link that carried them: a flow whose path
// crosses a network link counts as network traffic, else as PCIe if it crosses PCIe, else NVLink.
struct GpuTraffic {
  std::array<int64_t, kLinkKinds> sent_bytes{};
  std::array<int64_t, kLinkKinds> received_bytes{};
};

class NetworkModel final : public EventHandler {
 public:
  struct Stats {
    uint64_t flows_started = 0;
    uint64_t flows_delivered = 0;
    uint64_t recomputations = 0;
    // Summed over recomputations: flows and links whose rates were re-derived (the region),
    // and per-link flow entries scanned to find the region.
    uint64_t region_flows = 0;
    uint64_t region_links = 0;
    uint64_t scanned_entries = 0;
    uint64_t rate_changes = 0;
  };

  // Both must outlive the model. The topology's paths are queried lazily (and cached by it).
  NetworkModel(Engine& engine, const Topology& topology);
  NetworkModel(const NetworkModel&) = delete;
  NetworkModel& operator=(const NetworkModel&) = delete;

  // Starts a flow of `bytes` from src_gpu to dst_gpu now; `observer` (may be null) is told
  // on_flow_done(id, tag) when it arrives. flow_hash picks among ECMP paths; by default the
  // model draws it from a per-model counter, so results are deterministic. A flow to itself or
  // of zero bytes takes only the path latency.
  FlowId start_flow(int src_gpu, int dst_gpu, Bytes bytes, FlowObserver* observer,
                    uint64_t tag = 0);
  FlowId start_flow(int src_gpu, int dst_gpu, Bytes bytes, FlowObserver* observer, uint64_t tag,
                    uint64_t flow_hash);

  // Valid from start until on_flow_done returns.
  int flow_source(FlowId id) const { return src_[id.value]; }
  int flow_destination(FlowId id) const { return dst_[id.value]; }
  Bytes flow_bytes(FlowId id) const { return Bytes(bytes_[id.value]); }
  LinkKind flow_kind(FlowId id) const { return kind_[id.value]; }
  // The current max-min rate (zero before the first recomputation and after the last byte left).
  Bandwidth flow_rate(FlowId id) const { return Bandwidth::bytes_per_s(rate_[id.value]); }

  const GpuTraffic& gpu_traffic(int gpu) const { return traffic_.at(static_cast<size_t>(gpu)); }
  size_t active_flows() const { return active_count_; }
  const Stats& stats() const { return stats_; }
  Engine& engine() const { return engine_; }
  const Topology& topology() const { return topology_; }

  // Engine callback; not for callers.
  void on_event(uint64_t tag) override;

 private:
  enum class EventKind : uint64_t { kDrain = 0, kDeliver = 1, kRecompute = 2 };
  static constexpr int kKindShift = 62;
  static uint64_t make_tag(EventKind kind, uint32_t flow) {
    return (static_cast<uint64_t>(kind) << kKindShift) | flow;
  }

  uint32_t allocate_flow(uint32_t hops);
  void request_recompute();
  void drain(uint32_t flow);
  void deliver(uint32_t flow);
  void recompute();
  void schedule_drain(uint32_t flow, Time now);
  void drain_due();
  void arm_drain_timer();
  void drain_heap_set(uint32_t flow, int64_t at_ps);
  void drain_heap_sift_up(size_t i);
  void drain_heap_sift_down(size_t i);
  void heap_push_or_update(uint32_t link, double level);
  void heap_remove(uint32_t link);
  void heap_sift_up(size_t i);
  void heap_sift_down(size_t i);

  Engine& engine_;
  const Topology& topology_;

  // Flows: struct of arrays over flow slots; freed slots are reused through free_flows_.
  std::vector<int32_t> src_, dst_;
  std::vector<int64_t> bytes_;
  std::vector<const LinkId*> path_;
  std::vector<uint32_t> hops_;
  std::vector<uint32_t> pos_offset_;  // into positions_: the flow's index in each link's list
  std::vector<double> remaining_;     // bytes still to leave the source, as of last_update_ps_
  std::vector<double> rate_;          // bytes per second
  std::vector<int64_t> last_update_ps_;
  std::vector<uint32_t> drain_pos_;  // position in drain_heap_, or none before the first rate
  std::vector<FlowObserver*> observer_;
  std::vector<uint64_t> tag_;
  std::vector<LinkKind> kind_;
  std::vector<uint32_t> flow_mark_;  // == epoch_: in this recomputation's region
  std::vector<uint8_t> frozen_;
  std::vector<double> new_rate_;  // during a recomputation
  std::vector<uint8_t> state_;    // free, on its links, or in flight after its last byte
  std::vector<uint32_t> free_flows_;
  // positions_ blocks of each length are recycled by length (paths are short).
  std::vector<uint32_t> positions_;
  std::vector<std::vector<uint32_t>> free_positions_;

  // Links, indexed by LinkId.
  std::vector<double> capacity_;  // effective, bytes per second
  std::vector<std::vector<uint32_t>> link_flows_;
  std::vector<uint32_t> link_mark_;
  std::vector<double> load_;       // sum of the rates of the link's flows
  std::vector<double> residual_;   // during a recomputation
  std::vector<uint8_t> expanded_;  // during a recomputation: all its fast flows are in
  std::vector<uint32_t> csr_begin_, csr_fill_, csr_flows_;  // region flows per region link
  std::vector<uint32_t> unfrozen_;  // during a recomputation: region flows not yet frozen
  std::vector<uint32_t> heap_pos_;  // position in heap_, or kNotInHeap
  struct HeapEntry {
    double level;
    uint32_t link;
  };
  std::vector<HeapEntry> heap_;
  std::vector<uint32_t> touched_;  // during a fill step: links whose residual changed
  std::vector<uint8_t> touched_mark_;
  std::vector<double> level_now_;  // during a fill: residual over unfrozen flows, per link

  // The batch of changes awaiting the recomputation scheduled at now().
  std::vector<uint32_t> seed_links_;
  std::vector<uint32_t> added_flows_;
  double threshold_ = 0.0;
  bool recompute_pending_ = false;
  uint32_t epoch_ = 0;
  std::vector<uint32_t> region_flows_, region_links_, queue_;

  // When each flow's last byte leaves, as a min-heap by (time, flow id) owned by the model, with
  // one engine event for its head: a rate change re-keys a heap entry instead of cancelling and
  // scheduling an engine event, and simultaneous drains are taken in one event.
  struct DrainEntry {
    int64_t at_ps;
    uint32_t flow;
  };
  std::vector<DrainEntry> drain_heap_;
  EventId drain_timer_;
  int64_t drain_timer_ps_ = -1;  // when drain_timer_ fires; -1 when none is pending

  std::vector<GpuTraffic> traffic_;
  size_t active_count_ = 0;
  uint64_t flow_counter_ = 0;
  Stats stats_;
};

}  // namespace moesim
