// A cluster as a directed graph (Boost.Graph) of GPUs, NVSwitches, NICs and switches, plus a
// flat link table for the network model and cached GPU-to-GPU paths with ECMP.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "sim/engine/units.h"

namespace moesim {

enum class VertexKind : uint8_t { kGpu, kNvSwitch, kNic, kSwitch };
// kNetwork is the scale-out fabric (InfiniBand or RoCE RDMA); kNvLink the scale-up domain.
enum class LinkKind : uint8_t { kNvLink, kPcie, kNetwork };
inline constexpr int kLinkKinds = 3;

struct VertexId {
  uint32_t value = 0;
  friend constexpr auto operator<=>(VertexId, VertexId) = default;
};
struct LinkId {
  uint32_t value = 0;
  friend constexpr auto operator<=>(LinkId, LinkId) = default;
};

// One direction of a physical link. Every physical link is full duplex: two Link entries.
struct Link {
  VertexId from;
  VertexId to;
  Bandwidth capacity;  // nominal
  Time latency;
  LinkKind kind;
};

class Topology {
 public:
  // GPUs are numbered 0.. in the order they are added.
  VertexId add_vertex(VertexKind kind, std::string name);
  // Adds both directions; returns the a->b id (b->a is the next id).
  LinkId add_duplex_link(VertexId a, VertexId b, Bandwidth capacity, Time latency, LinkKind kind);

  // Achievable over nominal bandwidth for a link kind (protocol overhead); 1.0 until set.
  void set_efficiency(LinkKind kind, double efficiency);
  double efficiency(LinkKind kind) const;
  Bandwidth effective_capacity(LinkId id) const;

  // The scale-up domain structure used by hierarchical collectives: GPUs [n*g, (n+1)*g) share
  // node n. Builders set it; a generic graph has one GPU per node unless its file says otherwise.
  void set_gpus_per_node(int gpus_per_node);
  int gpus_per_node() const;
  int node_count() const;
  int node_of(int gpu) const;
  int local_rank(int gpu) const;

  int gpu_count() const;
  VertexId gpu(int index) const;
  size_t vertex_count() const;
  VertexKind vertex_kind(VertexId v) const;
  const std::string& vertex_name(VertexId v) const;
  std::span<const Link> links() const;
  const Link& link(LinkId id) const;

  // Links from GPU src to GPU dst, chosen among equal-cost shortest paths by flow_hash (ECMP).
  // Deterministic for a given hash; computed once per (src, dst) and cached.
  std::span<const LinkId> path(int src_gpu, int dst_gpu, uint64_t flow_hash) const;
  Time path_latency(std::span<const LinkId> path) const;

  // Throws std::invalid_argument naming the first GPU that cannot reach another.
  void validate() const;

  // Implementation-defined members (the Boost.Graph adjacency list, the path cache) follow.
  // ... owned by topologies/.
};

}  // namespace moesim
