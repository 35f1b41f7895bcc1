// The network as collectives, the step and the drivers see it: flows between GPUs that share a
// Topology's links, each told to an observer when it arrives. Every network tier implements it.
#pragma once

#include <array>
#include <cstdint>

#include "core/engine.h"
#include "core/units.h"
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
  virtual void on_flow_done(FlowId id, uint32_t tag) = 0;
  // For a flow started in pieces: piece `piece` (< pieces - 1) has arrived in full; the last
  // piece is on_flow_done.
  virtual void on_flow_piece(FlowId /*id*/, uint32_t /*tag*/, uint32_t /*piece*/) {}

 protected:
  ~FlowObserver() = default;
};

// Bytes a GPU sent and received, by the kind of link that carried them: a flow whose path
// crosses a network link counts as network traffic, else as PCIe if it crosses PCIe, else NVLink.
struct GpuTraffic {
  std::array<int64_t, kLinkKinds> sent_bytes{};
  std::array<int64_t, kLinkKinds> received_bytes{};
};

// What a network did, for the run's `simulator work` figures and the benchmarks. A tier leaves
// at zero what it does not do (a tier without rate recomputations reports none).
struct NetworkStats {
  uint64_t flows_started = 0;
  uint64_t flows_delivered = 0;
  uint64_t recomputations = 0;
  // Summed over recomputations: flows and links whose rates were re-derived (the region),
  // and per-link flow entries scanned to find the region.
  uint64_t region_flows = 0;
  uint64_t active_flows = 0;  // flows on links, summed over recomputations
  uint64_t fill_passes = 0;   // a recomputation redoes its fill when its region grows
  uint64_t heap_fills = 0;    // fill passes over enough links to order them by a heap
  uint64_t region_links = 0;
  uint64_t scanned_entries = 0;
  uint64_t rate_changes = 0;
};

// How closely a network follows max-min fairness in time. With completion_tolerance = 0 it is
// exact: rates are re-derived at every instant a flow's last byte leaves. With a tolerance
// e > 0, when the first flow drains, every flow that would drain within e of its own duration
// after it (finish - now <= e * (finish - start)) drains with it, so nearly simultaneous
// completions cost one recomputation; those flows finish early by at most that fraction of
// their duration, and their freed bandwidth is handed out that much earlier.
//
// The tier (models/network/network_tier.h) picks the model: kExact, NetworkModel (the reference,
// the completion tolerance applying to it); kFast, FastNetwork (classes of flows by bottleneck
// link on virtual clocks, full fills now and then; its error against kExact is measured in
// bench/README.md).
enum class NetworkTier : uint8_t { kExact, kFast };

struct NetworkOptions {
  double completion_tolerance = 0.0;
  NetworkTier tier = NetworkTier::kExact;
};

class FlowNetwork {
 public:
  // Starts a flow of `bytes` from src_gpu to dst_gpu now; `observer` (may be null) is told
  // on_flow_done(id, tag) when it arrives. flow_hash picks among ECMP paths; without it the
  // network draws one from a per-network counter, so results are deterministic. A flow to
  // itself or of zero bytes takes only the path latency.
  virtual FlowId start_flow(int src_gpu, int dst_gpu, Bytes bytes, FlowObserver* observer,
                            uint32_t tag = 0) = 0;
  virtual FlowId start_flow(int src_gpu, int dst_gpu, Bytes bytes, FlowObserver* observer,
                            uint32_t tag, uint64_t flow_hash) = 0;
  // A flow that streams `pieces` equal pieces (the first ones a byte larger when bytes does not
  // divide) back to back: the observer hears of each piece's arrival, the last by on_flow_done.
  virtual FlowId start_flow_in_pieces(int src_gpu, int dst_gpu, Bytes bytes, uint32_t pieces,
                                      FlowObserver* observer, uint32_t tag) = 0;

  // Valid from start until on_flow_done returns.
  virtual int flow_source(FlowId id) const = 0;
  virtual int flow_destination(FlowId id) const = 0;
  virtual Bytes flow_bytes(FlowId id) const = 0;
  virtual LinkKind flow_kind(FlowId id) const = 0;

  virtual const GpuTraffic& gpu_traffic(int gpu) const = 0;
  virtual size_t active_flows() const = 0;
  virtual const NetworkStats& stats() const = 0;
  virtual Engine& engine() const = 0;
  virtual const Topology& topology() const = 0;

 protected:
  ~FlowNetwork() = default;
};

}  // namespace moesim
