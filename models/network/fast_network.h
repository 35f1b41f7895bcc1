// The fast network tier: flows grouped by bottleneck link into classes that each drain on the
// link's own virtual clock, so that a finish or a start costs O(log) and not a re-derivation of
// every coupled flow's rate; a full max-min fill re-groups the flows now and then.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "core/engine.h"
#include "core/indexed_heap.h"
#include "core/units.h"
#include "models/network/flow_network.h"
#include "models/network/flow_paths.h"
#include "models/network/flow_pieces.h"
#include "models/network/latency_wires.h"
#include "topologies/topology.h"

namespace moesim {

// How it works. A full fill (progressive filling, exact max-min at that instant) puts every
// flow in the class of the link it froze at; the class holds that link's share S (its members'
// rate sum) and its members drain at S / n each. A member's finish is a fixed key on the class's
// virtual clock (bytes drained per member since the fill), as in fair queueing: a level change
// is one update per class, not per flow.
//
// Between fills the exact model would re-derive rates at every finish; this tier makes the
// first-order change only: a finishing member's share stays with its class (the others speed
// up), and the rate it held on its other links is handed to those links' classes. A starting
// flow joins the class of the link that would give it the least, taking that link's unused
// capacity, and its rate is taken from the classes of its other links. What this leaves out
// (a class's faster members loading their other links, bottlenecks moving) is caught by the
// next fill, which runs once the starts and finishes since the last fill reach
// kRefillFraction of the flows then active, or when a start finds nothing to take. A fill
// re-derives max-min only on the components (links coupled by active flows) with a start or
// finish since the last one: another component shares no link with them, so its rates from the
// last fill are still its max-min rates, and its classes are left as they are. In a training
// step the EP groups' exchanges are separate components (a rail's traffic stays at its leaf),
// and most fills are of one exchange when a relay's forwarded piece finds its links full. The
// error against the exact tier is measured in bench/README.md ("Network tiers").
//
// Costs: a start or finish O(hops + log n) (n: the class's members, plus one re-key per class
// touched in a heap of classes); a fill O(F x hops + L log L), F the flows of the components it
// fills and L the links they cross (never the whole fabric's: per-link arrays are reset
// through lists); the fills of one exchange sum to about (1 / kRefillFraction) x its flows x
// hops. A fill reads its flows class by class from the members, which carry their path blocks,
// and appends their blocks to the path pool in that order (compacted once 3/4 of it is left
// behind; a fill of every flow writes a fresh pool instead), so it never reads the flows' own
// records; it counts each link's flows as it copies and labels components as it freezes. Routes are
// looked up when an instant's starts are taken, destination by destination (the topology's
// per-destination path table then stays in cache). Memory per active flow ~130 bytes (its record,
// member, path block and the fill's copies); at a million flows the fills are bound by cache
// misses, not instructions (bench/README.md, "Network tiers").
class FastNetwork final : public FlowNetwork, public EventHandler {
 public:
  // Changes since the last fill, as a fraction of the flows active at it, that trigger a fill.
  static constexpr double kRefillFraction = 0.05;

  FastNetwork(Engine& engine, const Topology& topology, NetworkOptions options = {});
  FastNetwork(const FastNetwork&) = delete;
  FastNetwork& operator=(const FastNetwork&) = delete;

  FlowId start_flow(int src_gpu, int dst_gpu, Bytes bytes, FlowObserver* observer,
                    uint32_t tag = 0) override;
  FlowId start_flow(int src_gpu, int dst_gpu, Bytes bytes, FlowObserver* observer, uint32_t tag,
                    uint64_t flow_hash) override;
  FlowId start_flow_in_pieces(int src_gpu, int dst_gpu, Bytes bytes, uint32_t pieces,
                              FlowObserver* observer, uint32_t tag) override;

  int flow_source(FlowId id) const override { return flows_[id.value].src; }
  int flow_destination(FlowId id) const override { return flows_[id.value].dst; }
  Bytes flow_bytes(FlowId id) const override { return Bytes(flows_[id.value].bytes); }
  LinkKind flow_kind(FlowId id) const override { return flows_[id.value].kind; }

  const GpuTraffic& gpu_traffic(int gpu) const override {
    return traffic_.at(static_cast<size_t>(gpu));
  }
  size_t active_flows() const override {
    return active_count_ + starting_.size() + unrouted_.size();
  }
  const NetworkStats& stats() const override { return stats_; }
  Engine& engine() const override { return engine_; }
  const Topology& topology() const override { return topology_; }

  void on_event(uint64_t tag) override;

 private:
  enum class EventKind : uint64_t { kDrain = 0, kDeliver = 1, kStarts = 2 };
  static constexpr int kKindShift = 62;
  static uint64_t make_tag(EventKind kind, uint32_t index) {
    return (static_cast<uint64_t>(kind) << kKindShift) | index;
  }
  static constexpr uint32_t kNone = 0xffffffffu;

  struct Flow {
    int32_t src = 0, dst = 0;
    int64_t bytes = 0;
    int64_t left_ps = 0;         // in flight: when its last byte left; before routing: its hash
    int64_t after_boundary = 0;  // bytes to send after its next piece boundary
    double key = 0.0;            // in a class: the class's virtual bytes at its next piece boundary
    FlowObserver* observer = nullptr;
    uint32_t tag = 0;   // a free slot's: the next free slot
    uint32_t path = 0;  // until its first fill or insert: its block in path_pool_
    uint16_t wire = 0;
    LinkKind kind = LinkKind::kNvLink;
  };
  struct Member {  // 16 bytes: the path's block rides along so a fill need not read the flow
    double key;
    uint32_t flow;
    uint32_t path;
  };
  struct MemberAfter {  // std heap order: the smallest key (then flow) on top
    bool operator()(const Member& a, const Member& b) const {
      return a.key > b.key || (a.key == b.key && a.flow > b.flow);
    }
  };
  struct Class {
    double share = 0.0;  // S: bytes/s of the link its members hold together
    double level = 0.0;  // S / members, bytes/s per member
    double virt = 0.0;   // bytes drained per member by clock_ps
    int64_t clock_ps = 0;
    std::vector<Member> members;  // a heap by MemberAfter
  };
  struct Due {
    int64_t at_ps;
    uint32_t link;
  };
  struct DueOrder {
    static bool before(const Due& a, const Due& b) {
      return a.at_ps < b.at_ps || (a.at_ps == b.at_ps && a.link < b.link);
    }
    static uint32_t id(const Due& d) { return d.link; }
  };

  uint32_t allocate_flow();
  FlowId start(int src_gpu, int dst_gpu, Bytes bytes, FlowObserver* observer, uint32_t tag,
               uint64_t flow_hash, uint32_t pieces);
  // A path block: its hop count, then its links.
  uint32_t hops_at(uint32_t block) const { return path_pool_[block]; }
  const uint32_t* links_at(uint32_t block) const { return path_pool_.data() + block + 1; }

  void set_wire(uint32_t flow, const FlowRoute& route);
  void route_starts();
  void take_starts();
  void fill();
  bool insert(uint32_t flow, int64_t now_ps);
  bool fill_due() const;
  void advance(uint32_t link, int64_t now_ps);
  uint32_t uf_find(uint32_t link);
  uint32_t new_component();
  void mark_dirty(uint32_t component);
  void join_component(const uint32_t* links, uint32_t hops);
  void compact_paths();
  void set_share(uint32_t link, double share, int64_t now_ps);
  void absorb_idle(uint32_t link, int64_t now_ps);
  void rekey(uint32_t link);
  void drain_due();
  void finish(uint32_t flow, uint32_t block, uint32_t cls, double rate, int64_t now_ps);
  double next_piece_bytes(uint32_t flow);
  void arm_drain_timer();
  void send_on_wire(uint32_t flow, int64_t now_ps);
  void leave_piece(uint32_t flow, int64_t now_ps);
  void arm_wire(uint32_t wire);
  void deliver_due(uint32_t wire);
  void deliver(uint32_t flow);
  void deliver_piece(uint32_t flow);

  Engine& engine_;
  const Topology& topology_;
  NetworkOptions options_;
  std::vector<uint8_t> constraining_;
  std::vector<double> capacity_;  // bytes/s per link
  std::vector<uint32_t> scratch_path_;

  std::vector<Flow> flows_;
  // Path blocks (hop count, then links) in the last fill's order, then those of flows started
  // since; rewritten by each fill. A member holds its flow's block.
  std::vector<uint32_t> path_pool_;
  size_t live_words_ = 0;  // of path_pool_: the blocks of flows routed and not finished
  uint32_t max_hops_ = 0;  // of every path routed so far
  uint32_t free_flow_head_ = kNone;
  size_t active_count_ = 0;         // flows on links (in classes)
  std::vector<uint32_t> unrouted_;  // flows started at this instant, not yet routed
  std::vector<uint32_t> starting_;  // flows started at this instant, routed, not yet in classes
  std::vector<uint32_t> route_order_;
  bool starts_pending_ = false;

  // Per link.
  std::vector<Class> classes_;
  std::vector<double> idle_;  // capacity no class holds and no flow crossing it uses
  // Components: the links that active flows couple (a flow's links are in one component), as
  // labelled by the last fill and merged by inserts since; a link in none carries no flow and
  // is wholly idle. A component with a start or finish since the last fill is dirty: the next
  // fill takes only the dirty ones' flows.
  std::vector<uint32_t> comp_of_;  // per link, kNone for none
  std::vector<std::vector<uint32_t>> comp_links_;
  std::vector<uint8_t> comp_dirty_;
  std::vector<uint32_t> dirty_comps_, free_comps_;
  std::vector<uint32_t> uf_parent_;  // the fill's union-find over the links it touches
  IndexedHeap<Due, DueOrder> due_;
  EventId drain_timer_;
  int64_t drain_timer_ps_ = -1;

  size_t changes_since_fill_ = 0;
  size_t active_at_fill_ = 0;

  // Fill scratch, per link (written only on the links a fill touches; link_count_ is zero on
  // every link between fills), and the links the fill's flows cross.
  std::vector<uint32_t> link_start_, link_flows_, link_count_, link_cursor_, touched_;
  std::vector<uint32_t> dst_cursor_;                 // route_starts' counting sort by destination
  std::vector<std::pair<uint32_t, uint32_t>> done_;  // drain_due's, of one class
  std::vector<double> residual_, fill_key_;
  std::vector<uint32_t> fill_flow_, fill_block_, fill_pool_;
  std::vector<uint64_t> fill_frozen_;  // one bit per fill position: a million flows in 128 KB
  std::vector<std::pair<double, uint32_t>> level_order_, level_heap_;

  LatencyWires wires_;
  struct WireTimer {
    EventId event;
    int64_t at_ps = -1;
  };
  std::vector<WireTimer> wire_timers_;
  FlowPieces pieces_;

  std::vector<GpuTraffic> traffic_;
  uint64_t flow_counter_ = 0;
  NetworkStats stats_;
};

}  // namespace moesim
