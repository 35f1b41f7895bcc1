// Topology: the vertex and link tables, the Boost.Graph adjacency list, shortest paths with ECMP
// from one reverse BFS per destination, the compact per-pair path cache and reachability check.
#include "topologies/topology.h"

#include <boost/pending/disjoint_sets.hpp>

#include <algorithm>
#include <array>
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
// An arena position or relay index that names nothing (a path slot not chosen yet, the root).
constexpr uint32_t kNone = std::numeric_limits<uint32_t>::max();
// Path counts saturate here; decoding stays valid (each vertex's count is at most the sum of its
// successors'), only the sampling of astronomically many paths is slightly uneven.
constexpr uint64_t kCountLimit = uint64_t{1} << 62;
// Bound on the bytes of per-destination DAGs kept at once before they are all dropped (they are
// rebuilt on demand; a 1024-GPU rail cluster needs about 30 MB for all of them).
constexpr size_t kMaxDagBytes = size_t{64} << 20;
constexpr uint32_t kMaxHops = (uint32_t{1} << 24) - 1;
// Low byte of a pair entry: the kept path count, and this flag when the kept paths lie back to
// back in one block (written together by precompute_paths) rather than behind slots.
constexpr uint32_t kCountMask = 0x7f;
constexpr uint32_t kContiguous = 0x80;

// SplitMix64's finaliser: callers may pass sequential or structured hashes.
uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Fixed chunks so that handed-out pointers never move; a position is 16 bits of chunk and 16 of
// offset, so that a cache entry holds it in 4 bytes.
template <typename T>
class Arena {
 public:
  static constexpr uint32_t kChunkBits = 16;
  static constexpr size_t kChunkSize = size_t{1} << kChunkBits;

  // n consecutive elements; a request larger than a chunk gets a chunk of its own.
  uint32_t allocate(size_t n) {
    if (chunks_.empty() || used_ + n > size_) {
      if (chunks_.size() + 1 >= (size_t{1} << (32 - kChunkBits))) {
        throw std::length_error("topology: the path cache outgrew 2^32 stored links");
      }
      size_ = std::max(kChunkSize, n);
      chunks_.push_back(std::make_unique<T[]>(size_));
      used_ = 0;
    }
    const auto position =
        static_cast<uint32_t>(((chunks_.size() - 1) << kChunkBits) | static_cast<uint32_t>(used_));
    used_ += n;
    return position;
  }
  T* at(uint32_t position) const {
    return chunks_[position >> kChunkBits].get() + (position & (kChunkSize - 1));
  }

 private:
  std::vector<std::unique_ptr<T[]>> chunks_;
  size_t used_ = 0;
  size_t size_ = 0;
};

}  // namespace

// Shortest-path structure toward one destination GPU, over the relay vertices (those that may
// carry other GPUs' traffic: every non-GPU, and GPUs when they forward), indexed by relay index.
// A source GPU that does not relay is resolved from its own few out-links at query time.
struct Topology::DestinationDag {
  // `through` is the path count of `to`, held here so that decoding reads one array.
  struct NextHop {
    LinkId link;
    uint32_t to;  // relay index, or kNone for the destination GPU when it does not relay
    uint64_t through;
  };
  uint32_t root = 0;                // the destination GPU's vertex
  std::vector<uint32_t> hop_count;  // to the destination; kUnreached
  std::vector<uint32_t> hop_begin;  // next hops of relay r: hops[hop_begin[r], hop_begin[r + 1])
  std::vector<NextHop> hops;

  size_t bytes() const {
    return hop_count.capacity() * sizeof(uint32_t) + hop_begin.capacity() * sizeof(uint32_t) +
           hops.capacity() * sizeof(NextHop) + sizeof(DestinationDag);
  }
  // Equal-cost shortest paths from relay `to` (kNone: the destination) to the destination.
  uint64_t paths_from(uint32_t to) const {
    if (to == kNone || hop_count[to] == 0) return 1;
    uint64_t total = 0;
    for (uint32_t i = hop_begin[to]; i < hop_begin[to + 1]; ++i) {
      total = std::min(kCountLimit, total + hops[i].through);
    }
    return total;
  }
};

struct Topology::PathCache {
  bool used = false;
  // Out-links of every vertex in insertion order (the graph's out-edge order), as CSR.
  std::vector<uint32_t> out_begin;
  std::vector<LinkId> out_links;
  std::vector<uint32_t> relay_of_vertex;  // kNone for a GPU that does not relay
  std::vector<uint32_t> relay_vertex;
  // Per source GPU, gpu_count entries, allocated when the source is first queried.
  std::vector<std::unique_ptr<PairEntry[]>> rows;
  std::vector<std::unique_ptr<DestinationDag>> dags;  // per destination GPU, while cached
  size_t dag_bytes = 0;
  Arena<LinkId> links;
  Arena<uint32_t> slots;
  // BFS scratch, kUnreached between uses; path counts per relay while a DAG is built; the next
  // hops of a source GPU while its paths are written.
  std::vector<uint32_t> distance;
  std::vector<uint32_t> order;
  std::vector<uint64_t> relay_paths;
  std::vector<DestinationDag::NextHop> next_hops;
  std::vector<DestinationDag::NextHop> first_hops;
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

Topology::PathCache& Topology::path_cache() const {
  if (cache_) return *cache_;
  auto cache = std::make_unique<PathCache>();
  const size_t n = kinds_.size();
  cache->out_begin.assign(n + 1, 0);
  for (const Link& l : links_) ++cache->out_begin[l.from.value + 1];
  for (size_t v = 0; v < n; ++v) cache->out_begin[v + 1] += cache->out_begin[v];
  cache->out_links.resize(links_.size());
  std::vector<uint32_t> fill(cache->out_begin.begin(), cache->out_begin.end() - 1);
  for (size_t i = 0; i < links_.size(); ++i) {
    cache->out_links[fill[links_[i].from.value]++] = LinkId{static_cast<uint32_t>(i)};
  }
  cache->relay_of_vertex.assign(n, kNone);
  for (size_t v = 0; v < n; ++v) {
    if (gpu_forwarding_ || kinds_[v] != VertexKind::kGpu) {
      cache->relay_of_vertex[v] = static_cast<uint32_t>(cache->relay_vertex.size());
      cache->relay_vertex.push_back(static_cast<uint32_t>(v));
    }
  }
  cache->rows.resize(gpus_.size());
  cache->dags.resize(gpus_.size());
  cache->distance.assign(n, kUnreached);
  cache_ = std::move(cache);
  return *cache_;
}

// One BFS from the destination over forward links (every link is duplex, so a distance from it
// is the distance to it), expanding only the root and relays; then every relay's next hops and
// path count in BFS order, so each count is a sum of counts already known.
const Topology::DestinationDag& Topology::destination_dag(int dst_gpu) const {
  PathCache& cache = *cache_;
  auto& slot = cache.dags[static_cast<size_t>(dst_gpu)];
  if (slot) return *slot;
  if (cache.dag_bytes > kMaxDagBytes) {
    for (auto& dag : cache.dags) dag.reset();
    cache.dag_bytes = 0;
  }
  const uint32_t root = gpus_[static_cast<size_t>(dst_gpu)].value;
  std::vector<uint32_t>& distance = cache.distance;
  std::vector<uint32_t>& order = cache.order;
  order.clear();
  distance[root] = 0;
  order.push_back(root);
  for (size_t head = 0; head < order.size(); ++head) {
    const uint32_t v = order[head];
    if (v != root && cache.relay_of_vertex[v] == kNone) continue;
    for (uint32_t i = cache.out_begin[v]; i < cache.out_begin[v + 1]; ++i) {
      const uint32_t w = links_[cache.out_links[i].value].to.value;
      if (distance[w] == kUnreached) {
        distance[w] = distance[v] + 1;
        order.push_back(w);
      }
    }
  }

  auto dag = std::make_unique<DestinationDag>();
  dag->root = root;
  const size_t relays = cache.relay_vertex.size();
  dag->hop_count.assign(relays, kUnreached);
  std::vector<uint64_t>& relay_paths = cache.relay_paths;
  std::vector<DestinationDag::NextHop>& next_hops = cache.next_hops;
  next_hops.clear();
  relay_paths.assign(relays, 0);
  dag->hop_begin.assign(relays + 1, 0);
  for (size_t r = 0; r < relays; ++r) {
    const uint32_t v = cache.relay_vertex[r];
    dag->hop_begin[r] = static_cast<uint32_t>(next_hops.size());
    dag->hop_count[r] = distance[v];
    if (v == root || distance[v] == kUnreached) continue;
    for (uint32_t i = cache.out_begin[v]; i < cache.out_begin[v + 1]; ++i) {
      const LinkId l = cache.out_links[i];
      const uint32_t w = links_[l.value].to.value;
      const uint32_t relay = cache.relay_of_vertex[w];
      if (distance[w] != kUnreached && distance[w] + 1 == distance[v] &&
          (w == root || relay != kNone)) {
        next_hops.push_back({l, relay, 0});
      }
    }
  }
  dag->hop_begin[relays] = static_cast<uint32_t>(next_hops.size());
  // Built in scratch and copied once, so that the DAG holds exactly its next hops.
  dag->hops.assign(next_hops.begin(), next_hops.end());
  for (const uint32_t v : order) {
    const uint32_t r = cache.relay_of_vertex[v];
    if (r == kNone) continue;
    if (v == root) {
      relay_paths[r] = 1;
      continue;
    }
    uint64_t total = 0;
    for (uint32_t i = dag->hop_begin[r]; i < dag->hop_begin[r + 1]; ++i) {
      DestinationDag::NextHop& hop = dag->hops[i];
      hop.through = hop.to == kNone ? 1 : relay_paths[hop.to];
      total = std::min(kCountLimit, total + hop.through);
    }
    relay_paths[r] = total;
  }
  for (const uint32_t v : order) distance[v] = kUnreached;
  cache.dag_bytes += dag->bytes();
  slot = std::move(dag);
  return *slot;
}

namespace {

struct SourcePaths {
  uint32_t hops = kUnreached;
  uint64_t count = 0;
};

}  // namespace

const Topology::PairEntry& Topology::pair_entry(int src_gpu, int dst_gpu, bool contiguous) const {
  check_gpu_index(src_gpu, "source");
  check_gpu_index(dst_gpu, "destination");
  PathCache& cache = path_cache();
  // The read-only fast path: after precompute_paths() no query reaches a write below.
  const auto& known_row = cache.rows[static_cast<size_t>(src_gpu)];
  if (known_row) {
    const PairEntry& known = known_row[static_cast<size_t>(dst_gpu)];
    if (known.hops_and_count != 0 || src_gpu == dst_gpu) return known;
  }
  cache.used = true;
  auto& row = cache.rows[static_cast<size_t>(src_gpu)];
  if (!row) row = std::make_unique<PairEntry[]>(gpus_.size());
  PairEntry& entry = row[static_cast<size_t>(dst_gpu)];
  if (src_gpu == dst_gpu) return entry;

  const DestinationDag& dag = destination_dag(dst_gpu);
  const uint32_t src = gpus_[static_cast<size_t>(src_gpu)].value;
  SourcePaths source;
  const uint32_t src_relay = cache.relay_of_vertex[src];
  if (src_relay != kNone) {
    source = {dag.hop_count[src_relay], dag.paths_from(src_relay)};
  } else {
    // A GPU that does not relay: its next hops are among its own out-links.
    for (uint32_t i = cache.out_begin[src]; i < cache.out_begin[src + 1]; ++i) {
      const uint32_t w = links_[cache.out_links[i].value].to.value;
      const uint32_t relay = cache.relay_of_vertex[w];
      if (w != dag.root && (relay == kNone || dag.hop_count[relay] == kUnreached)) continue;
      const uint32_t hops = w == dag.root ? 1 : dag.hop_count[relay] + 1;
      if (hops < source.hops) source = {hops, 0};
      if (hops == source.hops) {
        source.count =
            std::min(kCountLimit, source.count + dag.paths_from(w == dag.root ? kNone : relay));
      }
    }
  }
  if (source.hops == kUnreached) {
    throw std::invalid_argument("topology: GPU '" + names_[src] + "' cannot reach GPU '" +
                                names_[dag.root] + "'");
  }
  if (source.hops > kMaxHops) {
    throw std::length_error("topology: a path of " + std::to_string(source.hops) +
                            " hops is longer than the path cache holds");
  }
  const auto kept = static_cast<uint32_t>(std::min<uint64_t>(source.count, kMaxEcmpPaths));
  entry.hops_and_count = source.hops << 8 | kept;
  if (kept == 1 || contiguous) {
    if (kept > 1) entry.hops_and_count |= kContiguous;
    entry.ref = kNone;
    materialise_paths(src_gpu, dst_gpu, &entry.ref, 0, kept);
  } else {
    entry.ref = cache.slots.allocate(kept);
    std::fill_n(cache.slots.at(entry.ref), kept, kNone);
  }
  return entry;
}

// Writes the kept paths [begin, end) of a pair whose positions are still kNone into the link
// arena, or all of them into one block at positions[0] for a contiguous entry. Kept paths are
// spread evenly over the pair's path index space, rotated per pair; an index is decoded by walking
// next hops, each covering as many indices as it has paths.
void Topology::materialise_paths(int src_gpu, int dst_gpu, uint32_t* positions, uint32_t begin,
                                 uint32_t end) const {
  PathCache& cache = *cache_;
  const PairEntry& entry = cache.rows[static_cast<size_t>(src_gpu)][static_cast<size_t>(dst_gpu)];
  const DestinationDag& dag = destination_dag(dst_gpu);
  const uint32_t src = gpus_[static_cast<size_t>(src_gpu)].value;
  const uint32_t hops = entry.hops_and_count >> 8;
  const uint32_t kept = entry.hops_and_count & kCountMask;
  const bool contiguous = (entry.hops_and_count & kContiguous) != 0;
  const uint32_t src_relay = cache.relay_of_vertex[src];

  // The source's next hops, as the relays' are stored.
  std::span<const DestinationDag::NextHop> first_hops;
  if (src_relay != kNone) {
    first_hops = {dag.hops.data() + dag.hop_begin[src_relay],
                  dag.hops.data() + dag.hop_begin[src_relay + 1]};
  } else {
    cache.first_hops.clear();
    for (uint32_t i = cache.out_begin[src]; i < cache.out_begin[src + 1]; ++i) {
      const LinkId l = cache.out_links[i];
      const uint32_t w = links_[l.value].to.value;
      const uint32_t relay = cache.relay_of_vertex[w];
      const bool next = w == dag.root ? hops == 1
                                      : relay != kNone && dag.hop_count[relay] != kUnreached &&
                                            dag.hop_count[relay] + 1 == hops;
      if (!next) continue;
      const uint32_t to = w == dag.root ? kNone : relay;
      cache.first_hops.push_back({l, to, dag.paths_from(to)});
    }
    first_hops = cache.first_hops;
  }
  uint64_t total = 0;
  for (const auto& hop : first_hops) total = std::min(kCountLimit, total + hop.through);
  const uint64_t rotation = total > kept ? mix64((uint64_t{src} << 32) | dag.root) % total : 0;

  const uint32_t block = contiguous ? cache.links.allocate(size_t{kept} * hops) : kNone;
  for (uint32_t choice = begin; choice < end; ++choice) {
    if (!contiguous && positions[choice] != kNone) continue;
    const auto offset =
        static_cast<uint64_t>(static_cast<unsigned __int128>(choice) * total / kept);
    uint64_t index = (rotation + offset) % total;
    const uint32_t position = contiguous ? block : cache.links.allocate(hops);
    LinkId* step = cache.links.at(position) + (contiguous ? size_t{choice} * hops : 0);
    std::span<const DestinationDag::NextHop> next = first_hops;
    for (uint32_t h = 0; h < hops; ++h) {
      for (const auto& hop : next) {
        if (index < hop.through) {
          *step++ = hop.link;
          if (hop.to != kNone) {
            next = {dag.hops.data() + dag.hop_begin[hop.to],
                    dag.hops.data() + dag.hop_begin[hop.to + 1]};
          }
          break;
        }
        index -= hop.through;
      }
    }
    if (!contiguous) positions[choice] = position;
  }
  if (contiguous) positions[0] = block;
}

std::span<const LinkId> Topology::path(int src_gpu, int dst_gpu, uint64_t flow_hash) const {
  const PairEntry* known = nullptr;
  const auto gpus = static_cast<uint32_t>(gpus_.size());
  if (cache_ && static_cast<uint32_t>(src_gpu) < gpus && static_cast<uint32_t>(dst_gpu) < gpus) {
    const auto& row = cache_->rows[static_cast<size_t>(src_gpu)];
    if (row && row[static_cast<size_t>(dst_gpu)].hops_and_count != 0) {
      known = &row[static_cast<size_t>(dst_gpu)];
    }
  }
  const PairEntry& entry = known != nullptr ? *known : pair_entry(src_gpu, dst_gpu);
  const uint32_t count = entry.hops_and_count & kCountMask;
  const uint32_t hops = entry.hops_and_count >> 8;
  if (count == 0) return {};
  if (count == 1) return {cache_->links.at(entry.ref), hops};
  const auto choice = static_cast<uint32_t>(mix64(flow_hash) % count);
  if ((entry.hops_and_count & kContiguous) != 0) {
    return {cache_->links.at(entry.ref) + size_t{choice} * hops, hops};
  }
  uint32_t* slot = cache_->slots.at(entry.ref + choice);
  if (*slot == kNone) materialise_paths(src_gpu, dst_gpu, slot - choice, choice, choice + 1);
  return {cache_->links.at(*slot), hops};
}

Time Topology::path_latency(std::span<const LinkId> path) const {
  Time total = Time::zero();
  for (LinkId id : path) total += links_[id.value].latency;
  return total;
}

uint32_t Topology::ecmp_width(int src_gpu, int dst_gpu) const {
  return pair_entry(src_gpu, dst_gpu).hops_and_count & kCountMask;
}

// Destination by destination, so that each DAG is built once and dropped when its column is
// done; every kept path of every pair is written (back to back for pairs not queried before, as
// no slots are needed then), so later queries only read.
void Topology::precompute_paths() const {
  for (int dst = 0; dst < gpu_count(); ++dst) {
    for (int src = 0; src < gpu_count(); ++src) {
      const PairEntry& entry = pair_entry(src, dst, true);
      const uint32_t count = entry.hops_and_count & kCountMask;
      if (count <= 1 || (entry.hops_and_count & kContiguous) != 0) continue;
      materialise_paths(src, dst, cache_->slots.at(entry.ref), 0, count);
    }
    if (cache_ && cache_->dags[static_cast<size_t>(dst)]) {
      cache_->dag_bytes -= cache_->dags[static_cast<size_t>(dst)]->bytes();
      cache_->dags[static_cast<size_t>(dst)].reset();
    }
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
