// Flows in flight after their last byte left, arriving after their path's latency: one FIFO per
// distinct latency, since flows of equal latency arrive in the order they left. No time of its
// own: the owner keeps one timer per wire, for its head.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <unordered_map>
#include <vector>

namespace moesim {

// An entry is a whole flow or one piece of one. A whole flow's leaving time is not stored here:
// the owner has it already (a million flows in flight cost 4 bytes each, not 12), and passes
// flow_left_ps(flow) to the calls that need it. A piece's leaving time is stored.
// Costs: wire_for O(1) expected; push and pop O(1); 4 bytes per flow in flight, 12 per piece.
class LatencyWires {
 public:
  struct Arrival {
    uint32_t flow;
    bool piece;
  };

  // The wire of flows with this path latency, added the first time it is asked for.
  uint32_t wire_for(int64_t latency_ps) {
    auto [it, added] =
        wire_of_latency_.try_emplace(latency_ps, static_cast<uint32_t>(wires_.size()));
    if (added) wires_.push_back(Wire{latency_ps, {}, {}});
    return it->second;
  }
  size_t wire_count() const { return wires_.size(); }
  int64_t latency_ps(uint32_t wire) const { return wires_[wire].latency_ps; }
  bool empty(uint32_t wire) const { return wires_[wire].entries.empty(); }

  // Queue a whole flow, or a piece of one that left at left_ps. Return true when it is the only
  // entry, i.e. the wire's head changed.
  bool push_flow(uint32_t wire, uint32_t flow) {
    wires_[wire].entries.push_back(flow);
    return wires_[wire].entries.size() == 1;
  }
  bool push_piece(uint32_t wire, uint32_t flow, int64_t left_ps) {
    Wire& w = wires_[wire];
    w.entries.push_back(flow | kPieceEntry);
    w.piece_left_ps.push_back(left_ps);
    return w.entries.size() == 1;
  }

  // When the head arrives; -1 when the wire is empty.
  template <typename FlowLeftPs>
  int64_t head_arrival_ps(uint32_t wire, FlowLeftPs flow_left_ps) const {
    const Wire& w = wires_[wire];
    if (w.entries.empty()) return -1;
    return left_ps(w, flow_left_ps) + w.latency_ps;
  }

  // Takes the head if it has arrived by now_ps.
  template <typename FlowLeftPs>
  bool pop_arrived(uint32_t wire, int64_t now_ps, FlowLeftPs flow_left_ps, Arrival& out) {
    Wire& w = wires_[wire];
    if (w.entries.empty() || left_ps(w, flow_left_ps) + w.latency_ps > now_ps) return false;
    const uint32_t head = w.entries.front();
    w.entries.pop_front();
    out.piece = (head & kPieceEntry) != 0;
    out.flow = head & ~kPieceEntry;
    if (out.piece) w.piece_left_ps.pop_front();
    return true;
  }

  // Flow ids must stay below this (the top bit marks a piece).
  static constexpr uint32_t kMaxFlows = 0x80000000u;

 private:
  static constexpr uint32_t kPieceEntry = 0x80000000u;
  struct Wire {
    int64_t latency_ps;
    std::deque<uint32_t> entries;       // flow ids, kPieceEntry set for a piece
    std::deque<int64_t> piece_left_ps;  // for the piece entries, in order
  };
  template <typename FlowLeftPs>
  static int64_t left_ps(const Wire& w, FlowLeftPs flow_left_ps) {
    const uint32_t head = w.entries.front();
    return (head & kPieceEntry) != 0 ? w.piece_left_ps.front() : flow_left_ps(head);
  }

  std::vector<Wire> wires_;
  std::unordered_map<int64_t, uint32_t> wire_of_latency_;
};

}  // namespace moesim
