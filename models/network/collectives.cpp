#include "models/network/collectives.h"

#include <algorithm>
#include <numeric>
#include <stdexcept>
#include <string>
#include <utility>

#include "models/network/network_tier.h"

namespace moesim {

ByteMatrix ByteMatrix::uniform(int size, int64_t per_pair) {
  ByteMatrix m(size);
  for (int i = 0; i < size; ++i)
    for (int j = 0; j < size; ++j)
      if (i != j) m.at(i, j) = per_pair;
  return m;
}

std::string_view to_string(CollectiveOp op) {
  switch (op) {
    case CollectiveOp::kAllToAll:
      return "alltoall";
    case CollectiveOp::kAllReduce:
      return "allreduce";
    case CollectiveOp::kAllGather:
      return "allgather";
    case CollectiveOp::kReduceScatter:
      return "reducescatter";
  }
  return "?";
}

std::string_view to_string(CollectiveAlgo algo) {
  switch (algo) {
    case CollectiveAlgo::kDirect:
      return "direct";
    case CollectiveAlgo::kPairwise:
      return "pairwise";
    case CollectiveAlgo::kHierarchical:
      return "hierarchical";
    case CollectiveAlgo::kRing:
      return "ring";
    case CollectiveAlgo::kTree:
      return "tree";
  }
  return "?";
}

CollectiveOp parse_collective_op(std::string_view name) {
  for (auto op : {CollectiveOp::kAllToAll, CollectiveOp::kAllReduce, CollectiveOp::kAllGather,
                  CollectiveOp::kReduceScatter}) {
    if (to_string(op) == name) return op;
  }
  throw std::invalid_argument("unknown collective '" + std::string(name) +
                              "' (expected alltoall, allreduce, allgather or reducescatter)");
}

CollectiveAlgo parse_collective_algo(std::string_view name) {
  for (auto a : {CollectiveAlgo::kDirect, CollectiveAlgo::kPairwise, CollectiveAlgo::kHierarchical,
                 CollectiveAlgo::kRing, CollectiveAlgo::kTree}) {
    if (to_string(a) == name) return a;
  }
  throw std::invalid_argument("unknown algorithm '" + std::string(name) +
                              "' (expected direct, pairwise, hierarchical, ring or tree)");
}

// A collective as a graph of transfers: each waits for its prerequisites to arrive, then runs
// as one flow. Zero-byte transfers (and barriers) complete at once, taking no time.
class Collectives::Run final : public FlowObserver {
 public:
  Run(Collectives& owner, std::vector<int> group, CollectiveObserver* observer, uint64_t tag)
      : owner_(owner), group_(std::move(group)), observer_(observer), tag_(tag) {}

  uint32_t add(int src, int dst, int64_t bytes) {
    transfers_.push_back({src, dst, bytes, 0});
    return static_cast<uint32_t>(transfers_.size() - 1);
  }
  // A later piece of the transfer added just before (or of that one's rider): it travels in the
  // same flow, streamed right behind, and arrives as that flow's next piece. Only the first
  // piece may wait for others; the pieces may be waited for like any transfer.
  uint32_t add_rider(int64_t bytes) {
    const Transfer& first = transfers_.back();
    transfers_.push_back({first.src, first.dst, bytes, kRider});
    return static_cast<uint32_t>(transfers_.size() - 1);
  }
  // `after` waits for `before` to arrive.
  void depend(uint32_t before, uint32_t after) {
    if (transfers_[after].waiting == kRider) {
      throw std::logic_error("collective: a piece riding in another's flow cannot wait");
    }
    edges_.emplace_back(before, after);
  }

  void start(uint32_t slot) {
    slot_ = slot;
    FlowNetwork& net = owner_.network_;
    const size_t n = group_.size();
    result_.start = net.engine().now();
    result_.end = result_.start;
    result_.gpu_finish.assign(n, result_.start);
    result_.sent_bytes.assign(n, {});
    result_.received_bytes.assign(n, {});
    // Dependencies into CSR form: transfer t's dependents are dependents_[dep_begin_[t]] up to
    // dep_begin_[t + 1]. Without any (a direct all-to-all) dep_begin_ stays empty.
    if (!edges_.empty()) {
      dep_begin_.assign(transfers_.size() + 1, 0);
      for (const auto& [before, after] : edges_) {
        ++dep_begin_[before + 1];
        ++transfers_[after].waiting;
      }
      for (size_t t = 0; t < transfers_.size(); ++t) dep_begin_[t + 1] += dep_begin_[t];
      dependents_.resize(edges_.size());
      std::vector<uint32_t> fill(dep_begin_.begin(), dep_begin_.end() - 1);
      for (const auto& [before, after] : edges_) dependents_[fill[before]++] = after;
      edges_.clear();
      edges_.shrink_to_fit();
    }

    starting_ = true;
    for (uint32_t t = 0; t < transfers_.size(); ++t) {
      if (transfers_[t].waiting == 0) launch(t);
    }
    settle();
    starting_ = false;
    if (done_ == transfers_.size()) {
      // Nothing to send (or only zero-byte transfers): report from an event, not from inside
      // the call that started it.
      net.engine().call_at(net.engine().now(), [this] { owner_.finished(slot_); });
    }
  }

  void on_flow_piece(FlowId, uint32_t tag, uint32_t piece) override {
    arrived(tag + piece);
    settle();
  }

  void on_flow_done(FlowId id, uint32_t tag) override {
    FlowNetwork& net = owner_.network_;
    const uint32_t t = tag + riders(tag);
    const auto kind = static_cast<size_t>(net.flow_kind(id));
    const int64_t bytes = net.flow_bytes(id).count();
    result_.sent_bytes[static_cast<size_t>(transfers_[t].src)][kind] += bytes;
    result_.received_bytes[static_cast<size_t>(transfers_[t].dst)][kind] += bytes;
    ++result_.flows;
    arrived(t);
    settle();
    if (done_ == transfers_.size() && !starting_) owner_.finished(slot_);  // may delete this
  }

  CollectiveObserver* observer() const { return observer_; }
  uint64_t tag() const { return tag_; }
  const CollectiveResult& result() const { return result_; }

 private:
  // 20 bytes, not 24: a large all-to-all has a million.
  struct __attribute__((packed, aligned(4))) Transfer {
    int32_t src, dst;  // group positions
    int64_t bytes;
    uint32_t waiting;  // transfers it still waits for
  };
  static_assert(sizeof(Transfer) == 20);

  static constexpr uint32_t kRider = 0xffffffffu;  // Transfer::waiting of a rider

  uint32_t riders(uint32_t t) const {
    uint32_t r = 0;
    while (t + r + 1 < transfers_.size() && transfers_[t + r + 1].waiting == kRider) ++r;
    return r;
  }

  void launch(uint32_t t) {
    const Transfer& tr = transfers_[t];
    const uint32_t r = riders(t);
    int64_t bytes = tr.bytes;
    for (uint32_t i = 1; i <= r; ++i) bytes += transfers_[t + i].bytes;
    if (bytes == 0 || tr.src == tr.dst) {
      for (uint32_t i = 0; i <= r; ++i) instant_.push_back(t + i);
      return;
    }
    FlowNetwork& net = owner_.network_;
    const int src = group_[static_cast<size_t>(tr.src)], dst = group_[static_cast<size_t>(tr.dst)];
    if (r == 0) {
      net.start_flow(src, dst, Bytes(bytes), this, t);
    } else {
      net.start_flow_in_pieces(src, dst, Bytes(bytes), r + 1, this, t);
    }
  }

  void arrived(uint32_t t) {
    ++done_;
    const Time now = owner_.network_.engine().now();
    const Transfer& tr = transfers_[t];
    if (tr.bytes > 0) {
      Time& finish = result_.gpu_finish[static_cast<size_t>(tr.dst)];
      finish = std::max(finish, now);
      result_.end = std::max(result_.end, now);
    }
    if (dep_begin_.empty()) return;
    for (uint32_t i = dep_begin_[t]; i < dep_begin_[t + 1]; ++i) {
      const uint32_t next = dependents_[i];
      if (--transfers_[next].waiting == 0) launch(next);
    }
  }

  // Completes zero-time transfers iteratively (chains of them would otherwise recurse).
  void settle() {
    while (!instant_.empty()) {
      const uint32_t t = instant_.back();
      instant_.pop_back();
      arrived(t);
    }
  }

  Collectives& owner_;
  std::vector<int> group_;
  CollectiveObserver* observer_;
  uint64_t tag_;
  uint32_t slot_ = 0;
  std::vector<Transfer> transfers_;
  std::vector<std::pair<uint32_t, uint32_t>> edges_;
  std::vector<uint32_t> dependents_;
  std::vector<uint32_t> dep_begin_;
  std::vector<uint32_t> instant_;
  size_t done_ = 0;
  bool starting_ = false;
  CollectiveResult result_;
};

namespace {

void check_group(const Topology& topo, const std::vector<int>& group) {
  if (group.empty()) throw std::invalid_argument("collective: the group is empty");
  std::vector<uint8_t> seen(static_cast<size_t>(topo.gpu_count()), 0);
  for (const int g : group) {
    if (g < 0 || g >= topo.gpu_count()) {
      throw std::invalid_argument("collective: group member " + std::to_string(g) +
                                  " is not a GPU index in [0, " + std::to_string(topo.gpu_count()) +
                                  ")");
    }
    if (seen[static_cast<size_t>(g)]++) {
      throw std::invalid_argument("collective: GPU " + std::to_string(g) +
                                  " appears twice in the group");
    }
  }
}

void check_matrix(const ByteMatrix& m, size_t n, const char* what) {
  if (m.n != static_cast<int>(n) || m.bytes.size() != n * n) {
    throw std::invalid_argument(std::string("collective: the ") + what + " matrix is " +
                                std::to_string(m.n) + " x " + std::to_string(m.n) +
                                " but the group has " + std::to_string(n) + " members");
  }
  for (const int64_t b : m.bytes) {
    if (b < 0)
      throw std::invalid_argument(std::string("collective: the ") + what +
                                  " matrix has a negative entry");
  }
}

// Piece c of `bytes` cut into `pieces` (earlier pieces take the remainder).
int64_t piece(int64_t bytes, int pieces, int c) {
  return bytes / pieces + (c < bytes % pieces ? 1 : 0);
}

void check_chunks(int chunks) {
  if (chunks < 1) {
    throw std::invalid_argument("collective: chunks must be at least 1, not " +
                                std::to_string(chunks));
  }
}

}  // namespace

Collectives::Collectives(FlowNetwork& network) : network_(network) {}
Collectives::~Collectives() = default;

size_t Collectives::running() const {
  return running_;
}

CollectiveId Collectives::launch(std::unique_ptr<Run> run) {
  uint32_t slot;
  if (!free_slots_.empty()) {
    slot = free_slots_.back();
    free_slots_.pop_back();
    runs_[slot] = std::move(run);
  } else {
    slot = static_cast<uint32_t>(runs_.size());
    runs_.push_back(std::move(run));
  }
  ++running_;
  runs_[slot]->start(slot);
  return CollectiveId{slot};
}

void Collectives::finished(uint32_t slot) {
  std::unique_ptr<Run> run = std::move(runs_[slot]);
  free_slots_.push_back(slot);
  --running_;
  if (run->observer() != nullptr) {
    run->observer()->on_collective_done(CollectiveId{slot}, run->tag(), run->result());
  }
}

CollectiveId Collectives::all_to_all(const std::vector<int>& group, const ByteMatrix& matrix,
                                     CollectiveAlgo algo, CollectiveObserver* observer,
                                     uint64_t tag, const CollectiveOptions& options) {
  const Topology& topo = network_.topology();
  check_group(topo, group);
  const int n = static_cast<int>(group.size());
  check_matrix(matrix, group.size(), "all-to-all");
  if (algo == CollectiveAlgo::kHierarchical) {
    std::vector<int> position(static_cast<size_t>(topo.gpu_count()), -1);
    for (int i = 0; i < n; ++i) position[static_cast<size_t>(group[i])] = i;
    const int per_node = topo.gpus_per_node();
    auto relay_of = [&](int node, int rank) {
      const int gpu = node * per_node + rank;
      const int p = gpu < topo.gpu_count() ? position[static_cast<size_t>(gpu)] : -1;
      if (p < 0) {
        throw std::invalid_argument("collective: hierarchical all-to-all relays through GPU " +
                                    std::to_string(gpu) + ", which is not in the group");
      }
      return p;
    };
    ByteMatrix first(n), second(n), direct(n);
    for (int i = 0; i < n; ++i) {
      for (int j = 0; j < n; ++j) {
        const int64_t b = matrix.at(i, j);
        if (b == 0 || i == j) continue;
        const int a_node = topo.node_of(group[i]);
        const int b_node = topo.node_of(group[j]);
        if (a_node == b_node) {
          direct.at(i, j) += b;
        } else if (!options.reverse) {
          const int k = relay_of(b_node, topo.local_rank(group[i]));
          first.at(i, k) += b;
          if (k != j) second.at(k, j) += b;
        } else {
          const int k = relay_of(a_node, topo.local_rank(group[j]));
          if (k != i) first.at(i, k) += b;
          second.at(k, j) += b;
        }
      }
    }
    return two_stage(group, first, second, direct, observer, tag, options);
  }
  auto run = std::make_unique<Run>(*this, group, observer, tag);
  if (algo == CollectiveAlgo::kDirect) {
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j)
        if (i != j && matrix.at(i, j) > 0) run->add(i, j, matrix.at(i, j));
  } else if (algo == CollectiveAlgo::kPairwise) {
    // Transfer (r, i) = (r - 1) * n + i sends i -> (i + r) mod n in round r.
    for (int r = 1; r < n; ++r)
      for (int i = 0; i < n; ++i) run->add(i, (i + r) % n, matrix.at(i, (i + r) % n));
    for (int r = 2; r < n; ++r) {
      for (int i = 0; i < n; ++i) {
        const auto self = static_cast<uint32_t>((r - 1) * n + i);
        run->depend(static_cast<uint32_t>((r - 2) * n + i), self);  // its own previous send
        const int sender = ((i - (r - 1)) % n + n) % n;             // who sent to i last round
        run->depend(static_cast<uint32_t>((r - 2) * n + sender), self);
      }
    }
  } else {
    throw std::invalid_argument(
        "collective: all-to-all takes direct, pairwise or hierarchical, not " +
        std::string(to_string(algo)));
  }
  return launch(std::move(run));
}

CollectiveId Collectives::two_stage(const std::vector<int>& group, const ByteMatrix& first,
                                    const ByteMatrix& second, const ByteMatrix& direct,
                                    CollectiveObserver* observer, uint64_t tag,
                                    const CollectiveOptions& options) {
  check_group(network_.topology(), group);
  check_chunks(options.chunks);
  const int n = static_cast<int>(group.size());
  const int chunks = options.chunks;
  check_matrix(first, group.size(), "first-stage");
  check_matrix(second, group.size(), "second-stage");
  const bool has_direct = !direct.bytes.empty();
  if (has_direct) check_matrix(direct, group.size(), "direct");
  auto run = std::make_unique<Run>(*this, group, observer, tag);
  // Barrier (k, c): relay k holds piece c of everything sent to it in the first stage.
  std::vector<uint32_t> barrier(static_cast<size_t>(n) * chunks);
  for (int k = 0; k < n; ++k)
    for (int c = 0; c < chunks; ++c)
      barrier[static_cast<size_t>(k) * chunks + c] = run->add(k, k, 0);
  for (int i = 0; i < n; ++i) {
    for (int k = 0; k < n; ++k) {
      const int64_t b = first.at(i, k);
      if (b == 0) continue;
      // A sender streams its pieces to a relay one after another, in one flow.
      for (int c = 0; c < chunks; ++c) {
        const uint32_t t =
            c == 0 ? run->add(i, k, piece(b, chunks, c)) : run->add_rider(piece(b, chunks, c));
        run->depend(t, barrier[static_cast<size_t>(k) * chunks + c]);
      }
    }
  }
  for (int k = 0; k < n; ++k) {
    for (int j = 0; j < n; ++j) {
      const int64_t b = second.at(k, j);
      if (b == 0) continue;
      // A relay forwards each piece as soon as it holds it: forwarded pieces do not wait for
      // one another (only a sender's first-stage pieces share one bounded buffer).
      for (int c = 0; c < chunks; ++c) {
        const uint32_t t = run->add(k, j, piece(b, chunks, c));
        run->depend(barrier[static_cast<size_t>(k) * chunks + c], t);
      }
    }
  }
  if (has_direct) {
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j)
        if (i != j && direct.at(i, j) > 0) run->add(i, j, direct.at(i, j));
  }
  return launch(std::move(run));
}

namespace {

// The rings a ring collective runs on. Within one node, or across nodes with one member each,
// a single ring in group order. Across nodes with k >= 2 members each, k rings ("channels", as
// NCCL builds them, one per NIC on a rail-optimised node) each carry 1/k of the buffer: channel
// c visits every node's members starting from its c-th, so that each node's k members enter k
// different rings and all k NICs work. The hop from a node's last member to the next node
// goes as NCCL's PXN does: over NVLink to the channel's first member of that node, then over
// its NIC to the next node's c-th member, on the same rail. Without it a hop would leave on
// one rail and arrive on another, through a spine.
struct RingPlan {
  // order[c][i]: group position of the i-th member of ring c. relay[c][i]: the group position
  // that forwards the hop into ring position i over the network, or -1 for a direct hop.
  std::vector<std::vector<int>> order, relay;
};
RingPlan plan_rings(const Topology& topology, const std::vector<int>& group);

// A ring of `steps` steps on each channel: in step s, ring position i sends its channel's piece
// (i - s) mod n to position i + 1, once it has received step s - 1 from i - 1.
void add_ring(Collectives::Run& run, const RingPlan& plan, int steps, int64_t bytes);

}  // namespace

CollectiveId Collectives::all_reduce(const std::vector<int>& group, Bytes bytes,
                                     CollectiveAlgo algo, CollectiveObserver* observer,
                                     uint64_t tag, const CollectiveOptions& options) {
  check_group(network_.topology(), group);
  if (bytes.count() < 0) throw std::invalid_argument("collective: negative size");
  const int n = static_cast<int>(group.size());
  auto run = std::make_unique<Run>(*this, group, observer, tag);
  if (algo == CollectiveAlgo::kRing) {
    add_ring(*run, plan_rings(network_.topology(), group), 2 * (n - 1), bytes.count());
  } else if (algo == CollectiveAlgo::kTree) {
    check_chunks(options.chunks);
    const int chunks = options.chunks;
    // Member p's parent is (p - 1) / 2. up(p, c): p -> parent; down(p, c): parent -> p.
    std::vector<uint32_t> up(static_cast<size_t>(n) * chunks),
        down(static_cast<size_t>(n) * chunks);
    for (int p = 1; p < n; ++p) {
      for (int c = 0; c < chunks; ++c) {
        up[static_cast<size_t>(p) * chunks + c] =
            run->add(p, (p - 1) / 2, piece(bytes.count(), chunks, c));
        down[static_cast<size_t>(p) * chunks + c] =
            run->add((p - 1) / 2, p, piece(bytes.count(), chunks, c));
      }
    }
    auto at = [&](std::vector<uint32_t>& v, int p, int c) {
      return v[static_cast<size_t>(p) * chunks + c];
    };
    for (int p = 1; p < n; ++p) {
      for (int c = 0; c < chunks; ++c) {
        if (c > 0) {
          run->depend(at(up, p, c - 1), at(up, p, c));
          run->depend(at(down, p, c - 1), at(down, p, c));
        }
        for (int child = 2 * p + 1; child <= 2 * p + 2 && child < n; ++child) {
          run->depend(at(up, child, c), at(up, p, c));  // reduce the children's piece first
        }
        const int parent = (p - 1) / 2;
        if (parent == 0) {
          for (int child = 1; child <= 2 && child < n; ++child)
            run->depend(at(up, child, c), at(down, p, c));
        } else {
          run->depend(at(down, parent, c), at(down, p, c));
        }
      }
    }
  } else {
    throw std::invalid_argument("collective: all-reduce takes ring or tree, not " +
                                std::string(to_string(algo)));
  }
  return launch(std::move(run));
}

CollectiveId Collectives::all_gather(const std::vector<int>& group, Bytes bytes,
                                     CollectiveObserver* observer, uint64_t tag) {
  check_group(network_.topology(), group);
  if (bytes.count() < 0) throw std::invalid_argument("collective: negative size");
  auto run = std::make_unique<Run>(*this, group, observer, tag);
  const int n = static_cast<int>(group.size());
  add_ring(*run, plan_rings(network_.topology(), group), n - 1, bytes.count());
  return launch(std::move(run));
}

CollectiveId Collectives::reduce_scatter(const std::vector<int>& group, Bytes bytes,
                                         CollectiveObserver* observer, uint64_t tag) {
  return all_gather(group, bytes, observer, tag);  // the same ring traffic, in reverse roles
}

namespace {

RingPlan plan_rings(const Topology& topology, const std::vector<int>& group) {
  const int n = static_cast<int>(group.size());
  // Members by node, nodes in order of first appearance, members in group order.
  std::vector<int> node_index(static_cast<size_t>(topology.node_of(topology.gpu_count() - 1)) + 1,
                              -1);
  std::vector<std::vector<int>> nodes;
  for (int p = 0; p < n; ++p) {
    int& index = node_index[static_cast<size_t>(topology.node_of(group[static_cast<size_t>(p)]))];
    if (index < 0) {
      index = static_cast<int>(nodes.size());
      nodes.emplace_back();
    }
    nodes[static_cast<size_t>(index)].push_back(p);
  }
  const size_t k = nodes.front().size();
  const bool channels = nodes.size() > 1 && k > 1 &&
                        std::all_of(nodes.begin(), nodes.end(),
                                    [&](const std::vector<int>& m) { return m.size() == k; });
  RingPlan plan;
  if (!channels) {
    plan.order.emplace_back(static_cast<size_t>(n));
    std::iota(plan.order[0].begin(), plan.order[0].end(), 0);
    plan.relay.emplace_back(static_cast<size_t>(n), -1);
    return plan;
  }
  for (size_t c = 0; c < k; ++c) {
    std::vector<int> order, relay;
    for (size_t a = 0; a < nodes.size(); ++a) {
      for (size_t j = 0; j < k; ++j) {
        order.push_back(nodes[a][(c + j) % k]);
        // The hop into a node's first member comes from the previous node (the last node's
        // from the first): relayed by the previous node's own first member of this ring.
        const size_t previous = (a + nodes.size() - 1) % nodes.size();
        relay.push_back(j == 0 ? nodes[previous][c] : -1);
      }
    }
    plan.order.push_back(std::move(order));
    plan.relay.push_back(std::move(relay));
  }
  return plan;
}

void add_ring(Collectives::Run& run, const RingPlan& plan, int steps, int64_t bytes) {
  const int channels = static_cast<int>(plan.order.size());
  for (int c = 0; c < channels; ++c) {
    const std::vector<int>& order = plan.order[static_cast<size_t>(c)];
    const std::vector<int>& relay = plan.relay[static_cast<size_t>(c)];
    const int n = static_cast<int>(order.size());
    const int64_t share = piece(bytes, channels, c);
    // The transfer that brought ring position i its piece of the previous step, and this step's.
    std::vector<uint32_t> arrived(static_cast<size_t>(n)), arriving(static_cast<size_t>(n));
    for (int s = 0; s < steps; ++s) {
      for (int i = 0; i < n; ++i) {
        const int next = (i + 1) % n;
        const int64_t size = piece(share, n, ((i - s) % n + n) % n);
        const int from = order[static_cast<size_t>(i)], to = order[static_cast<size_t>(next)];
        const int via = relay[static_cast<size_t>(next)];
        const uint32_t first = run.add(from, via >= 0 ? via : to, size);
        uint32_t last = first;
        if (via >= 0) {
          last = run.add(via, to, size);
          run.depend(first, last);
        }
        if (s > 0) run.depend(arrived[static_cast<size_t>(i)], first);
        arriving[static_cast<size_t>(next)] = last;
      }
      arrived.swap(arriving);
    }
  }
}

}  // namespace

CollectiveResult run_collective(const Topology& topology, const CollectiveSpec& spec) {
  Engine engine;
  TieredNetwork tiered(engine, topology, spec.network);
  FlowNetwork& net = tiered.get();
  Collectives collectives(net);
  struct Keep final : CollectiveObserver {
    void on_collective_done(CollectiveId, uint64_t, const CollectiveResult& r) override {
      result = r;
      done = true;
    }
    CollectiveResult result;
    bool done = false;
  } keep;
  std::vector<int> group = spec.group;
  if (group.empty()) {
    for (int g = 0; g < topology.gpu_count(); ++g) group.push_back(g);
  }
  const int n = static_cast<int>(group.size());
  switch (spec.op) {
    case CollectiveOp::kAllToAll: {
      const ByteMatrix matrix =
          spec.matrix.bytes.empty() ? ByteMatrix::uniform(n, spec.bytes.count() / n) : spec.matrix;
      collectives.all_to_all(group, matrix, spec.algo, &keep, 0, spec.options);
      break;
    }
    case CollectiveOp::kAllReduce:
      collectives.all_reduce(group, spec.bytes, spec.algo, &keep, 0, spec.options);
      break;
    case CollectiveOp::kAllGather:
    case CollectiveOp::kReduceScatter:
      if (spec.algo != CollectiveAlgo::kRing) {
        throw std::invalid_argument("collective: " + std::string(to_string(spec.op)) +
                                    " takes ring, not " + std::string(to_string(spec.algo)));
      }
      if (spec.op == CollectiveOp::kAllGather) {
        collectives.all_gather(group, spec.bytes, &keep);
      } else {
        collectives.reduce_scatter(group, spec.bytes, &keep);
      }
      break;
  }
  engine.run();
  if (!keep.done) throw std::logic_error("collective: did not complete");
  return keep.result;
}

}  // namespace moesim
