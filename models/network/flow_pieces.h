// Flows streamed in pieces: how many pieces each flow has, how many have left and arrived, and
// the bytes behind each piece boundary. Plain bookkeeping, no time.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace moesim {

// Costs O(1) per call; 6 bytes per flow id, kept only once some flow has more than one piece
// (until then every flow is one piece and nothing is stored).
class FlowPieces {
 public:
  static constexpr uint32_t kMaxPieces = 0xffff;

  // Flow ids are [0, flow_ids); flows keep their state when it grows.
  void resize_flows(size_t flow_ids) {
    if (!state_.empty()) state_.resize(flow_ids);
  }
  // A flow id (re)starts with `pieces` pieces (1 to kMaxPieces); flow_ids as for resize_flows.
  void start(uint32_t flow, uint32_t pieces, size_t flow_ids) {
    if (pieces > 1 && state_.empty()) state_.assign(flow_ids, State{});
    if (!state_.empty()) state_[flow] = State{static_cast<uint16_t>(pieces), 0, 0};
  }

  bool has_pieces(uint32_t flow) const { return !state_.empty() && state_[flow].pieces > 1; }
  // Whether a piece other than the last is still to leave / to arrive.
  bool more_to_leave(uint32_t flow) const {
    return has_pieces(flow) && state_[flow].left + 1 < state_[flow].pieces;
  }
  bool more_to_arrive(uint32_t flow) const {
    return has_pieces(flow) && state_[flow].arrived + 1 < state_[flow].pieces;
  }
  // Bytes of the flow (of `bytes` in all) after the piece now leaving.
  int64_t bytes_after_leaving_piece(uint32_t flow, int64_t bytes) const {
    return bytes_after_piece(bytes, state_[flow].pieces, state_[flow].left);
  }
  // The piece now leaving has left; returns its index.
  uint16_t note_left(uint32_t flow) { return state_[flow].left++; }
  // The next piece has arrived; returns its index.
  uint16_t note_arrived(uint32_t flow) { return state_[flow].arrived++; }

  // Bytes after piece c of a flow of `bytes` in `pieces` pieces (the first bytes % pieces
  // pieces a byte larger).
  static int64_t bytes_after_piece(int64_t bytes, int64_t pieces, uint32_t c) {
    const int64_t later = pieces - 1 - static_cast<int64_t>(c);
    return later * (bytes / pieces) +
           std::max<int64_t>(0, bytes % pieces - (static_cast<int64_t>(c) + 1));
  }

 private:
  struct State {
    uint16_t pieces = 1;
    uint16_t left = 0;     // pieces whose last byte has left
    uint16_t arrived = 0;  // pieces whose arrival the observer has heard of
  };
  std::vector<State> state_;
};

}  // namespace moesim
