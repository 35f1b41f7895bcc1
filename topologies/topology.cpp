// Topology: the vertex and link tables, the Boost.Graph adjacency list, BFS shortest paths with
// ECMP among equal-cost paths, the per-pair path cache and the reachability check.
#include "topologies/topology.h"

#include <boost/graph/breadth_first_search.hpp>
#include <boost/graph/filtered_graph.hpp>
#include <boost/pending/disjoint_sets.hpp>

#include <algorithm>
#include <limits>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>

namespace moesim {

const char* to_string(VertexKind kind) {
  switch (kind) {
    case VertexKind::kGpu:
      return "gpu";
    case VertexKind::kNvSwitch:
      return "nvswitch";
    case VertexKind::kNic:
      return "nic";
    case VertexKind::kSwitch:
      return "switch";
  }
  return "?";
}

const char* to_string(LinkKind kind) {
  switch (kind) {
    case LinkKind::kNvLink:
      return "nvlink";
    case LinkKind::kPcie:
      return "pcie";
    case LinkKind::kNetwork:
      return "network";
  }
  return "?";
}

namespace {

constexpr uint32_t kUnreached = std::numeric_limits<uint32_t>::max();
// Path counts saturate here; decoding stays valid (each vertex's count is at most the sum of its
// successors'), only the sampling of astronomically many paths is slightly uneven.
constexpr uint64_t kCountLimit = uint64_t{1} << 62;
constexpr size_t kChunkLinks = size_t{1} << 16;
// Bound on cached BFS distances (entries of vertex_count each) before the cache is dropped.
constexpr size_t kMaxCachedDistances = size_t{1} << 24;

// SplitMix64's finaliser: callers may pass sequential or structured hashes.
uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace

struct Topology::PathCache {
  bool used = false;
  // Per source GPU, gpu_count entries, allocated when the source is first queried.
  std::vector<std::unique_ptr<PairPaths[]>> rows;
  // Path storage in fixed chunks so that spans never move.
  std::vector<std::unique_ptr<LinkId[]>> chunks;
  size_t chunk_used = 0;
  size_t chunk_size = 0;
  // Hop distance of every vertex to a destination GPU, per destination vertex.
  std::unordered_map<uint32_t, std::vector<uint32_t>> distances;
  size_t distance_entries = 0;
  // Scratch for one pair: path counts (0 = not counted yet) and each DAG vertex's next hops
  // [hop_begin[v], hop_end[v]) in `next_hops`, so decoding does not rescan wide switches.
  struct NextHop {
    LinkId link;
    uint32_t to;
  };
  std::vector<uint64_t> counts;
  std::vector<uint32_t> hop_begin;
  std::vector<uint32_t> hop_end;
  std::vector<NextHop> next_hops;
  std::vector<uint32_t> counted;

  LinkId* allocate(size_t n) {
    if (chunks.empty() || chunk_used + n > chunk_size) {
      chunk_size = std::max(kChunkLinks, n);
      chunks.push_back(std::make_unique<LinkId[]>(chunk_size));
      chunk_used = 0;
    }
    LinkId* out = chunks.back().get() + chunk_used;
    chunk_used += n;
    return out;
  }
};

Topology::Topology() : graph_(std::make_unique<Graph>()) {}
// The graph is rebuilt from the link table rather than copied: same out-edge order, and g++ 12
// reports a false maybe-uninitialized inside Boost's adjacency_list copy.
Topology::Topology(const Topology& other)
    : graph_(std::make_unique<Graph>(other.kinds_.size())),
      kinds_(other.kinds_),
      names_(other.names_),
      gpu_index_of_vertex_(other.gpu_index_of_vertex_),
      gpus_(other.gpus_),
      vertex_by_name_(other.vertex_by_name_),
      links_(other.links_),
      efficiency_(other.efficiency_),
      gpus_per_node_(other.gpus_per_node_),
      gpu_forwarding_(other.gpu_forwarding_) {
  for (size_t i = 0; i < links_.size(); ++i) {
    boost::add_edge(links_[i].from.value, links_[i].to.value, LinkId{static_cast<uint32_t>(i)},
                    *graph_);
  }
}
Topology& Topology::operator=(const Topology& other) {
  if (this != &other) {
    Topology copy(other);
    *this = std::move(copy);
  }
  return *this;
}
Topology::Topology(Topology&& other) noexcept = default;
Topology& Topology::operator=(Topology&& other) noexcept = default;
Topology::~Topology() = default;

void Topology::check_mutable() const {
  if (cache_ && cache_->used) {
    throw std::logic_error("topology: cannot change the graph after paths were queried");
  }
}

VertexId Topology::add_vertex(VertexKind kind, std::string name) {
  check_mutable();
  if (name.empty()) throw std::invalid_argument("topology: a vertex needs a non-empty name");
  if (vertex_by_name_.count(name) != 0) {
    throw std::invalid_argument("topology: duplicate vertex name '" + name + "'");
  }
  if (!graph_) graph_ = std::make_unique<Graph>();  // reuse after a move
  const VertexId id{static_cast<uint32_t>(boost::add_vertex(*graph_))};
  kinds_.push_back(kind);
  vertex_by_name_.emplace(name, id);
  names_.push_back(std::move(name));
  if (kind == VertexKind::kGpu) {
    gpu_index_of_vertex_.push_back(static_cast<int32_t>(gpus_.size()));
    gpus_.push_back(id);
  } else {
    gpu_index_of_vertex_.push_back(-1);
  }
  return id;
}

LinkId Topology::add_duplex_link(VertexId a, VertexId b, Bandwidth capacity, Time latency,
                                 LinkKind kind) {
  check_mutable();
  if (a.value >= kinds_.size() || b.value >= kinds_.size()) {
    throw std::out_of_range("topology: link endpoint is not a vertex");
  }
  if (a == b) throw std::invalid_argument("topology: self-link at '" + names_[a.value] + "'");
  if (!(capacity.bytes_per_second() > 0.0)) {
    throw std::invalid_argument("topology: link " + names_[a.value] + " <-> " + names_[b.value] +
                                " needs a positive bandwidth");
  }
  if (latency < Time::zero()) {
    throw std::invalid_argument("topology: link " + names_[a.value] + " <-> " + names_[b.value] +
                                " has a negative latency");
  }
  const LinkId forward{static_cast<uint32_t>(links_.size())};
  const LinkId backward{forward.value + 1};
  links_.push_back(Link{a, b, capacity, latency, kind});
  links_.push_back(Link{b, a, capacity, latency, kind});
  boost::add_edge(a.value, b.value, forward, *graph_);
  boost::add_edge(b.value, a.value, backward, *graph_);
  return forward;
}

void Topology::set_efficiency(LinkKind kind, double efficiency) {
  if (!(efficiency > 0.0 && efficiency <= 1.0)) {
    throw std::invalid_argument(std::string("topology: efficiency of ") + to_string(kind) +
                                " links must be in (0, 1], got " + std::to_string(efficiency));
  }
  efficiency_[static_cast<size_t>(kind)] = efficiency;
}

double Topology::efficiency(LinkKind kind) const {
  return efficiency_[static_cast<size_t>(kind)];
}

Bandwidth Topology::effective_capacity(LinkId id) const {
  const Link& l = link(id);
  return l.capacity * efficiency(l.kind);
}

void Topology::set_gpus_per_node(int gpus_per_node) {
  if (gpus_per_node < 1) {
    throw std::invalid_argument("topology: gpus_per_node must be at least 1, got " +
                                std::to_string(gpus_per_node));
  }
  gpus_per_node_ = gpus_per_node;
}

int Topology::gpus_per_node() const {
  return gpus_per_node_;
}
int Topology::node_count() const {
  return gpu_count() / gpus_per_node_;
}
int Topology::node_of(int gpu) const {
  return gpu / gpus_per_node_;
}
int Topology::local_rank(int gpu) const {
  return gpu % gpus_per_node_;
}

void Topology::set_gpu_forwarding(bool enabled) {
  check_mutable();
  gpu_forwarding_ = enabled;
}
bool Topology::gpu_forwarding() const {
  return gpu_forwarding_;
}

int Topology::gpu_count() const {
  return static_cast<int>(gpus_.size());
}

VertexId Topology::gpu(int index) const {
  check_gpu_index(index, "gpu");
  return gpus_[static_cast<size_t>(index)];
}

int Topology::gpu_index(VertexId v) const {
  return gpu_index_of_vertex_.at(v.value);
}
size_t Topology::vertex_count() const {
  return kinds_.size();
}
VertexKind Topology::vertex_kind(VertexId v) const {
  return kinds_.at(v.value);
}
const std::string& Topology::vertex_name(VertexId v) const {
  return names_.at(v.value);
}

std::optional<VertexId> Topology::find_vertex(std::string_view name) const {
  const auto it = vertex_by_name_.find(std::string(name));
  if (it == vertex_by_name_.end()) return std::nullopt;
  return it->second;
}

std::span<const Link> Topology::links() const {
  return links_;
}
const Link& Topology::link(LinkId id) const {
  return links_.at(id.value);
}

void Topology::check_gpu_index(int gpu, const char* what) const {
  if (gpu < 0 || gpu >= gpu_count()) {
    throw std::out_of_range(std::string("topology: ") + what + " GPU index " + std::to_string(gpu) +
                            " is outside [0, " + std::to_string(gpu_count()) + ")");
  }
}

namespace {

// Keeps edges out of a GPU only for the BFS root or when GPUs forward. The BFS runs from the
// destination over forward edges; every link is duplex, so a distance from the destination is
// the distance to it, and an expanded vertex is an intermediate hop of the reverse path.
template <typename Graph>
struct ForwardingFilter {
  const Graph* graph = nullptr;
  const std::vector<VertexKind>* kinds = nullptr;
  uint32_t root = 0;
  bool gpus_forward = false;
  template <typename Edge>
  bool operator()(const Edge& e) const {
    const auto s = static_cast<uint32_t>(boost::source(e, *graph));
    return gpus_forward || s == root || (*kinds)[s] != VertexKind::kGpu;
  }
};

}  // namespace

const Topology::PairPaths& Topology::pair_paths(int src_gpu, int dst_gpu) const {
  check_gpu_index(src_gpu, "source");
  check_gpu_index(dst_gpu, "destination");
  if (!cache_) cache_ = std::make_unique<PathCache>();
  PathCache& cache = *cache_;
  cache.used = true;
  if (cache.rows.empty()) cache.rows.resize(gpus_.size());
  auto& row = cache.rows[static_cast<size_t>(src_gpu)];
  if (!row) row = std::make_unique<PairPaths[]>(gpus_.size());
  PairPaths& entry = row[static_cast<size_t>(dst_gpu)];
  if (entry.path_count != 0 || src_gpu == dst_gpu) return entry;

  const uint32_t src = gpus_[static_cast<size_t>(src_gpu)].value;
  const uint32_t dst = gpus_[static_cast<size_t>(dst_gpu)].value;
  auto found = cache.distances.find(dst);
  if (found == cache.distances.end()) {
    if (cache.distance_entries + kinds_.size() > kMaxCachedDistances) {
      cache.distances.clear();
      cache.distance_entries = 0;
    }
    std::vector<uint32_t> dist(kinds_.size(), kUnreached);
    dist[dst] = 0;
    ForwardingFilter<Graph> filter{graph_.get(), &kinds_, dst, gpu_forwarding_};
    boost::filtered_graph<Graph, ForwardingFilter<Graph>> fabric(*graph_, filter);
    boost::breadth_first_search(fabric, dst,
                                boost::visitor(boost::make_bfs_visitor(
                                    boost::record_distances(dist.data(), boost::on_tree_edge()))));
    cache.distance_entries += dist.size();
    found = cache.distances.emplace(dst, std::move(dist)).first;
  }
  const std::vector<uint32_t>& dist = found->second;
  if (dist[src] == kUnreached) {
    throw std::invalid_argument("topology: GPU '" + names_[src] + "' cannot reach GPU '" +
                                names_[dst] + "'");
  }

  auto is_next_hop = [&](uint32_t v, uint32_t w) {
    return dist[w] != kUnreached && dist[w] + 1 == dist[v] &&
           (w == dst || gpu_forwarding_ || kinds_[w] != VertexKind::kGpu);
  };
  // Number of shortest paths from each DAG vertex to dst, memoised (0 = not yet counted).
  if (cache.counts.size() < kinds_.size()) {
    cache.counts.assign(kinds_.size(), 0);
    cache.hop_begin.assign(kinds_.size(), 0);
    cache.hop_end.assign(kinds_.size(), 0);
  }
  cache.next_hops.clear();
  auto count_paths = [&](auto&& self, uint32_t v) -> uint64_t {
    if (v == dst) return 1;
    if (cache.counts[v] != 0) return cache.counts[v];
    const auto begin = static_cast<uint32_t>(cache.next_hops.size());
    for (auto [e, end] = boost::out_edges(v, *graph_); e != end; ++e) {
      const auto w = static_cast<uint32_t>(boost::target(*e, *graph_));
      if (is_next_hop(v, w)) cache.next_hops.push_back({(*graph_)[*e], w});
    }
    const auto end = static_cast<uint32_t>(cache.next_hops.size());
    uint64_t total = 0;
    for (uint32_t i = begin; i < end; ++i) {
      total = std::min(kCountLimit, total + self(self, cache.next_hops[i].to));
    }
    cache.counts[v] = total;
    cache.hop_begin[v] = begin;
    cache.hop_end[v] = end;
    cache.counted.push_back(v);
    return total;
  };
  const uint64_t total_paths = count_paths(count_paths, src);
  const uint32_t hops = dist[src];
  const uint32_t kept = static_cast<uint32_t>(std::min<uint64_t>(total_paths, kMaxEcmpPaths));
  // Sampled paths are spread evenly over the path index space, rotated per pair.
  const uint64_t rotation =
      total_paths > kept ? mix64((uint64_t{src} << 32) | dst) % total_paths : 0;

  LinkId* out = cache.allocate(size_t{kept} * hops);
  for (uint32_t j = 0; j < kept; ++j) {
    const auto offset =
        static_cast<uint64_t>(static_cast<unsigned __int128>(j) * total_paths / kept);
    uint64_t index = (rotation + offset) % total_paths;
    uint32_t v = src;
    LinkId* step = out + size_t{j} * hops;
    while (v != dst) {
      for (uint32_t i = cache.hop_begin[v]; i < cache.hop_end[v]; ++i) {
        const PathCache::NextHop& next = cache.next_hops[i];
        const uint64_t through = next.to == dst ? 1 : cache.counts[next.to];
        if (index < through) {
          *step++ = next.link;
          v = next.to;
          break;
        }
        index -= through;
      }
    }
  }
  for (uint32_t v : cache.counted) cache.counts[v] = 0;
  cache.counted.clear();
  entry.first = out;
  entry.hops = hops;
  entry.path_count = kept;
  return entry;
}

std::span<const LinkId> Topology::path(int src_gpu, int dst_gpu, uint64_t flow_hash) const {
  const PairPaths& p = pair_paths(src_gpu, dst_gpu);
  if (p.path_count <= 1) return {p.first, p.hops};
  const uint64_t choice = mix64(flow_hash) % p.path_count;
  return {p.first + choice * p.hops, p.hops};
}

Time Topology::path_latency(std::span<const LinkId> path) const {
  Time total = Time::zero();
  for (LinkId id : path) total += links_[id.value].latency;
  return total;
}

uint32_t Topology::ecmp_width(int src_gpu, int dst_gpu) const {
  return pair_paths(src_gpu, dst_gpu).path_count;
}

void Topology::precompute_paths() const {
  for (int dst = 0; dst < gpu_count(); ++dst) {
    for (int src = 0; src < gpu_count(); ++src) pair_paths(src, dst);
  }
}

void Topology::validate() const {
  if (gpus_.empty()) throw std::invalid_argument("topology: no GPUs");
  if (gpu_count() % gpus_per_node_ != 0) {
    throw std::invalid_argument("topology: " + std::to_string(gpu_count()) +
                                " GPUs do not divide into nodes of " +
                                std::to_string(gpus_per_node_));
  }
  const size_t n = kinds_.size();
  std::vector<size_t> rank(n, 0);
  std::vector<size_t> parent(n, 0);
  boost::disjoint_sets<size_t*, size_t*> sets(rank.data(), parent.data());
  for (size_t v = 0; v < n; ++v) sets.make_set(v);
  auto relays = [&](VertexId v) { return gpu_forwarding_ || kinds_[v.value] != VertexKind::kGpu; };
  for (size_t i = 0; i < links_.size(); i += 2) {
    if (relays(links_[i].from) && relays(links_[i].to)) {
      sets.union_set(links_[i].from.value, links_[i].to.value);
    }
  }
  // Without forwarding, GPU a reaches GPU b through a relay component both touch, or directly.
  const size_t g = gpus_.size();
  std::vector<std::set<size_t>> touches(g);
  std::vector<std::set<size_t>> direct(g);
  for (size_t i = 0; i < g; ++i) {
    const uint32_t v = gpus_[i].value;
    if (gpu_forwarding_) {
      touches[i].insert(sets.find_set(v));
      continue;
    }
    for (auto [e, end] = boost::out_edges(v, *graph_); e != end; ++e) {
      const auto w = static_cast<uint32_t>(boost::target(*e, *graph_));
      if (kinds_[w] == VertexKind::kGpu) {
        direct[i].insert(static_cast<size_t>(gpu_index_of_vertex_[w]));
      } else {
        touches[i].insert(sets.find_set(w));
      }
    }
  }
  std::unordered_map<size_t, size_t> gpus_touching;
  for (const auto& t : touches) {
    for (size_t c : t) ++gpus_touching[c];
  }
  for (const auto& [component, count] : gpus_touching) {
    if (count == g) return;  // one relay fabric reaches every GPU
  }
  auto reaches = [&](size_t a, size_t b) {
    if (a == b || direct[a].count(b) != 0) return true;
    for (size_t c : touches[a]) {
      if (touches[b].count(c) != 0) return true;
    }
    return false;
  };
  // Report against the GPU that reaches the most others.
  size_t best = 0;
  size_t best_reach = 0;
  for (size_t a = 0; a < g; ++a) {
    size_t reach = 0;
    for (size_t b = 0; b < g; ++b) reach += reaches(a, b) ? 1 : 0;
    if (reach > best_reach) {
      best = a;
      best_reach = reach;
    }
  }
  if (best_reach == g) {
    // Every GPU reaches `best`; check all pairs for a mesh without a common fabric.
    for (size_t a = 0; a < g; ++a) {
      for (size_t b = a + 1; b < g; ++b) {
        if (!reaches(a, b)) {
          throw std::invalid_argument("topology: GPU '" + names_[gpus_[a].value] +
                                      "' cannot reach GPU '" + names_[gpus_[b].value] + "'");
        }
      }
    }
    return;
  }
  std::string unreachable;
  size_t listed = 0;
  size_t first = g;
  for (size_t a = 0; a < g; ++a) {
    if (reaches(a, best)) continue;
    if (first == g) first = a;
    if (listed < 16) {
      unreachable += (listed == 0 ? "" : ", ") + names_[gpus_[a].value];
    }
    ++listed;
  }
  if (listed > 16) unreachable += ", ... (" + std::to_string(listed) + " in all)";
  throw std::invalid_argument("topology: GPU '" + names_[gpus_[first].value] +
                              "' cannot reach GPU '" + names_[gpus_[best].value] +
                              "'; GPUs unreachable from it: " + unreachable);
}

}  // namespace moesim
