// A cluster as a directed graph (Boost.Graph) of GPUs, NVSwitches, NICs and switches, plus a
// flat link table for the network model and cached GPU-to-GPU paths with ECMP.
#pragma once

#include <boost/graph/adjacency_list.hpp>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/units.h"

namespace moesim {

// The largest cluster moesim builds: beyond this, per-destination path tables and all-to-all
// flow counts outgrow a workstation, and a size this large in an input is almost surely a typo.
inline constexpr int kMaxClusterGpus = 65536;

enum class VertexKind : uint8_t { kGpu, kNvSwitch, kNic, kSwitch };
// kNetwork is the scale-out fabric (InfiniBand or RoCE RDMA); kNvLink the scale-up domain.
enum class LinkKind : uint8_t { kNvLink, kPcie, kNetwork };
inline constexpr int kLinkKinds = 3;

const char* to_string(VertexKind kind);
const char* to_string(LinkKind kind);

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

// Not safe to query path() from several threads at once: the first query of a (src, dst) pair,
// and the first choice of each of its ECMP paths, fill a cache (per destination, one reverse
// BFS finds every vertex's next hops; a pair's paths are written into a flat arena of LinkIds).
// After precompute_paths() every query is a read and concurrent queries are safe.
// Spans returned by path() stay valid for the Topology's lifetime, also across a move; a copy
// starts with an empty cache of its own.
class Topology {
 public:
  // More equal-cost paths than this between one pair are sampled (evenly, with a per-pair
  // rotation so that different pairs use different subsets); a 3-tier k=16 fat-tree has 64.
  static constexpr uint32_t kMaxEcmpPaths = 64;

  Topology();
  Topology(const Topology& other);
  Topology& operator=(const Topology& other);
  Topology(Topology&& other) noexcept;
  Topology& operator=(Topology&& other) noexcept;
  ~Topology();

  // GPUs are numbered 0.. in the order they are added. Names must be unique and non-empty.
  // Adding vertices or links after a path was queried throws std::logic_error (cached spans
  // would otherwise go stale).
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

  // Whether a GPU relays traffic between other vertices, as in a torus where GPUs are the
  // routers. Off by default: in a switched cluster a GPU only sends and receives, so no path
  // passes through a third GPU (NVLink forwarding, PXN, is modelled by collectives explicitly).
  void set_gpu_forwarding(bool enabled);
  bool gpu_forwarding() const;

  int gpu_count() const;
  VertexId gpu(int index) const;
  // The GPU index of a vertex, or -1 if it is not a GPU.
  int gpu_index(VertexId v) const;
  size_t vertex_count() const;
  VertexKind vertex_kind(VertexId v) const;
  const std::string& vertex_name(VertexId v) const;
  std::optional<VertexId> find_vertex(std::string_view name) const;
  std::span<const Link> links() const;
  const Link& link(LinkId id) const;
  // The b->a twin of a->b (every link has one).
  LinkId reverse(LinkId id) const { return LinkId{id.value ^ 1u}; }

  // Links from GPU src to GPU dst, chosen among equal-cost shortest paths (by hop count) by
  // flow_hash (ECMP). Deterministic for a given hash; computed once per (src, dst) and cached.
  // Empty for src == dst. Throws std::out_of_range for a bad index and std::invalid_argument if
  // dst cannot be reached.
  std::span<const LinkId> path(int src_gpu, int dst_gpu, uint64_t flow_hash) const;
  Time path_latency(std::span<const LinkId> path) const;
  // How many distinct equal-cost paths path() chooses among for this pair (<= kMaxEcmpPaths).
  uint32_t ecmp_width(int src_gpu, int dst_gpu) const;
  // Fills the path cache for every GPU pair, after which path() is safe to call concurrently.
  void precompute_paths() const;

  // Throws std::invalid_argument naming the first GPU that cannot reach another.
  void validate() const;

 private:
  using Graph =
      boost::adjacency_list<boost::vecS, boost::vecS, boost::directedS, boost::no_property, LinkId>;
  // 8 bytes per GPU pair: `ref` is an arena position of the pair's only path (path_count 1), of
  // its kept paths back to back (contiguous), or of its block of path_count slots, each the
  // arena position of one path once it was chosen.
  struct PairEntry {
    uint32_t ref = 0;
    uint32_t hops_and_count = 0;  // hops << 8 | contiguous flag | path_count; 0: not computed
  };
  struct DestinationDag;
  struct PathCache;

  PathCache& path_cache() const;
  // A new entry with several paths gets slots (paths written when chosen), or with `contiguous`
  // all its paths at once in one block.
  const PairEntry& pair_entry(int src_gpu, int dst_gpu, bool contiguous = false) const;
  const DestinationDag& destination_dag(int dst_gpu) const;
  void materialise_paths(int src_gpu, int dst_gpu, uint32_t* positions, uint32_t begin,
                         uint32_t end) const;
  void check_gpu_index(int gpu, const char* what) const;
  void check_mutable() const;

  // Behind a pointer: adjacency_list has no move constructor, and a moved Topology must keep its
  // cached spans (which point into cache_, not the graph) and stay cheap to return by value.
  std::unique_ptr<Graph> graph_;
  std::vector<VertexKind> kinds_;
  std::vector<std::string> names_;
  std::vector<int32_t> gpu_index_of_vertex_;
  std::vector<VertexId> gpus_;
  std::unordered_map<std::string, VertexId> vertex_by_name_;
  std::vector<Link> links_;
  std::array<double, kLinkKinds> efficiency_{1.0, 1.0, 1.0};
  int gpus_per_node_ = 1;
  bool gpu_forwarding_ = false;
  mutable std::unique_ptr<PathCache> cache_;
};

}  // namespace moesim
