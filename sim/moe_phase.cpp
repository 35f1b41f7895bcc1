#include "sim/moe_phase.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/engine.h"
#include "models/moe/parallel_plan.h"
#include "models/moe/placement.h"
#include "models/network/collectives.h"
#include "models/network/network_tier.h"
#include "models/router/router.h"
#include "sim/moe_traffic.h"
#include "sim/parallel.h"

namespace moesim {
namespace {

RouterSpec phase_router_spec(const ModelSpec& model, const MoePhaseOptions& options) {
  RouterSpec r;
  r.experts = model.routed_experts;
  r.top_k = model.top_k;
  r.layers = 1;
  r.groups = model.expert_groups;
  r.topk_group = model.topk_groups;
  r.scoring =
      model.scoring == Scoring::kSigmoid ? RouterScoring::kSigmoid : RouterScoring::kSoftmax;
  r.selection =
      model.expert_groups > 1 ? RouterSelection::kGroupLimitedTopK : RouterSelection::kTopK;
  r.renormalize = model.normalize_topk;
  r.routed_scaling = model.routed_scaling_factor;
  r.source = TokenSourceKind::kLogitSpace;
  r.tokens.hidden = model.hidden_size;
  if (options.routing == MoePhaseRouting::kIidLogits) {
    // One cluster with no centre and no offsets leaves only the isotropic part: logits
    // N(0, W^T W), and W^T W is close to I for a random N(0, 1/H) gate with E << H.
    r.tokens.clusters = 1;
    r.tokens.centre_scale = 0.0;
    r.tokens.offset_scale = 0.0;
    r.tokens.isotropic_scale = 1.0;
  }
  r.seed = options.seed;
  return r;
}

std::vector<RoutingDecision> route_all(const ModelSpec& model, const MoePhaseOptions& options,
                                       int32_t ranks) {
  Router router(phase_router_spec(model, options));
  std::vector<RoutingDecision> decisions(static_cast<size_t>(ranks));
  parallel_for(ranks, options.routing_threads, [&](int64_t rank, int32_t) {
    RoutingRequest request;
    request.layer = 0;
    request.micro_batch = 0;
    request.rank = static_cast<int32_t>(rank);
    request.ranks = ranks;
    request.tokens = options.tokens_per_gpu;
    router.route(request, decisions[static_cast<size_t>(rank)]);
  });
  return decisions;
}

// Keeps the one result of the collective a phase runs.
class PhaseObserver final : public CollectiveObserver {
 public:
  void on_collective_done(CollectiveId, uint64_t, const CollectiveResult& result) override {
    kept = result;
  }
  CollectiveResult kept;
};

void check_options(const Topology& topology, const ModelSpec& model,
                   const MoePhaseOptions& options) {
  const int32_t gpus = topology.gpu_count();
  if (gpus < 1) throw std::invalid_argument("moe phase: the topology has no GPUs");
  if (options.tokens_per_gpu < 1) {
    throw std::invalid_argument("moe phase: tokens per GPU must be at least 1, got " +
                                std::to_string(options.tokens_per_gpu));
  }
  if (options.pipeline_chunks < 1 || options.pipeline_chunks > 4096) {
    throw std::invalid_argument("moe phase: pipeline chunks must be in [1, 4096], got " +
                                std::to_string(options.pipeline_chunks));
  }
  if (model.routed_experts < 1 || model.routed_experts % gpus != 0) {
    throw std::invalid_argument("moe phase: model '" + model.name + "' has " +
                                std::to_string(model.routed_experts) +
                                " routed experts, not divisible by the " + std::to_string(gpus) +
                                " GPUs of the expert-parallel group");
  }
}

// Per GPU, the effective capacity of its NVLink link and of its NIC's network port (zero where
// it has none); per rail fat-tree leaf ("leaf<r>"), the aggregated capacity of its uplinks.
struct PhaseCapacities {
  std::vector<double> nvlink, nic, leaf_uplink;
};

PhaseCapacities phase_capacities(const Topology& topology) {
  const int32_t gpus = topology.gpu_count();
  PhaseCapacities c;
  c.nvlink.assign(static_cast<size_t>(gpus), 0.0);
  c.nic.assign(static_cast<size_t>(gpus), 0.0);
  const std::span<const Link> links = topology.links();
  std::vector<int32_t> gpu_of_nic(topology.vertex_count(), -1);
  for (size_t i = 0; i < links.size(); ++i) {
    const int g = topology.gpu_index(links[i].from);
    if (g < 0) continue;
    const double cap =
        topology.effective_capacity(LinkId{static_cast<uint32_t>(i)}).bytes_per_second();
    if (links[i].kind == LinkKind::kNvLink && c.nvlink[static_cast<size_t>(g)] == 0.0) {
      c.nvlink[static_cast<size_t>(g)] = cap;
    }
    if (topology.vertex_kind(links[i].to) == VertexKind::kNic) {
      gpu_of_nic[links[i].to.value] = g;
    }
  }
  for (size_t i = 0; i < links.size(); ++i) {
    const int32_t g = gpu_of_nic[links[i].from.value];
    if (g >= 0 && links[i].kind == LinkKind::kNetwork) {
      c.nic[static_cast<size_t>(g)] =
          topology.effective_capacity(LinkId{static_cast<uint32_t>(i)}).bytes_per_second();
    }
  }
  for (int r = 0; r < topology.gpus_per_node(); ++r) {
    const auto leaf = topology.find_vertex("leaf" + std::to_string(r));
    if (!leaf) {
      c.leaf_uplink.clear();
      break;
    }
    double up = 0.0;
    for (size_t i = 0; i < links.size(); ++i) {
      if (links[i].from == *leaf && topology.vertex_kind(links[i].to) == VertexKind::kSwitch) {
        up += topology.effective_capacity(LinkId{static_cast<uint32_t>(i)}).bytes_per_second();
      }
    }
    c.leaf_uplink.push_back(up);
  }
  return c;
}

}  // namespace

Topology without_nvlink(const Topology& topology) {
  Topology out;
  for (uint32_t v = 0; v < topology.vertex_count(); ++v) {
    out.add_vertex(topology.vertex_kind(VertexId{v}), topology.vertex_name(VertexId{v}));
  }
  const std::span<const Link> links = topology.links();
  // Links come in (a->b, b->a) pairs at even and odd ids.
  for (size_t i = 0; i < links.size(); i += 2) {
    const Link& l = links[i];
    if (l.kind == LinkKind::kNvLink) continue;
    out.add_duplex_link(l.from, l.to, l.capacity, l.latency, l.kind);
  }
  for (int k = 0; k < kLinkKinds; ++k) {
    const auto kind = static_cast<LinkKind>(k);
    out.set_efficiency(kind, topology.efficiency(kind));
  }
  out.set_gpus_per_node(topology.gpus_per_node());
  out.set_gpu_forwarding(topology.gpu_forwarding());
  try {
    out.validate();
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(
        std::string("without NVLink the GPUs are not all connected (the topology has no "
                    "network between them): ") +
        e.what());
  }
  return out;
}

MoePhaseResult run_moe_phase(const Topology& cluster, const ModelSpec& model,
                             const MoePhaseOptions& options) {
  check_options(cluster, model, options);
  const std::vector<RoutingDecision> decisions = route_all(model, options, cluster.gpu_count());
  return run_moe_phase(cluster, model, decisions, options);
}

MoePhaseResult run_moe_phase(const Topology& cluster, const ModelSpec& model,
                             std::span<const RoutingDecision> decisions,
                             const MoePhaseOptions& options) {
  check_options(cluster, model, options);
  options.kernel.validate();
  if (decisions.size() != static_cast<size_t>(cluster.gpu_count())) {
    throw std::invalid_argument("moe phase: expected one routing decision per GPU (" +
                                std::to_string(cluster.gpu_count()) + "), got " +
                                std::to_string(decisions.size()));
  }
  for (const RoutingDecision& d : decisions) {
    if (d.experts != model.routed_experts || d.counts_only) {
      throw std::invalid_argument("moe phase: a routing decision has " + std::to_string(d.experts) +
                                  " experts (the model " + std::to_string(model.routed_experts) +
                                  ") or only per-expert counts; per-token decisions are needed");
    }
  }
  const bool low_latency = options.mode == MoeCommMode::kLowLatency;
  Topology network_only;
  if (low_latency && options.low_latency_over_network) network_only = without_nvlink(cluster);
  const Topology& topology =
      low_latency && options.low_latency_over_network ? network_only : cluster;
  const bool combine = options.phase == MoePhase::kCombine;
  const int32_t gpus = topology.gpu_count();
  const int32_t nodes = topology.node_count();

  ParallelPlan plan;
  plan.ep = gpus;
  const Placement placement(plan, model, plan.ep_ranks_per_node(topology.gpus_per_node()));
  const int64_t bytes_per_token =
      (combine ? model.combine_bytes_per_token() : model.dispatch_bytes_per_token()).count();

  MoePhaseResult result;
  result.gpus = gpus;
  result.nodes = nodes;

  // DeepEP's byte counts, from the decisions (tests/validation/README.md).
  int64_t received_tokens = 0;  // (token, destination GPU) pairs
  int64_t node_pairs = 0;       // (token, destination node) pairs
  int64_t kept_pairs = 0;       // (token, expert) pairs
  std::vector<int64_t> direct_pairs(low_latency ? static_cast<size_t>(gpus) * gpus : 0);
  std::vector<int64_t> gpu_stamp(static_cast<size_t>(gpus), -1);
  std::vector<int64_t> node_stamp(static_cast<size_t>(nodes), -1);
  // Normal kernels, per GPU, in tokens: (token, node) pairs it sends over RDMA (its own node
  // included, as DeepEP stages those through the same buffer), (token, GPU) pairs it writes
  // into NVLink peers' buffers (as the forwarder on its rail: every token of its node's rail
  // bound for a GPU of its node, from any node), and tokens it copies out of its receive buffer.
  std::vector<int64_t> rdma_sent(static_cast<size_t>(gpus), 0);
  std::vector<int64_t> nvlink_written(static_cast<size_t>(gpus), 0);
  std::vector<int64_t> nvlink_received(static_cast<size_t>(gpus), 0);
  const int32_t per_node = topology.gpus_per_node();
  int64_t stamp = 0;
  for (int32_t src = 0; src < gpus; ++src) {
    const RoutingDecision& d = decisions[static_cast<size_t>(src)];
    result.tokens += d.tokens;
    for (int32_t t = 0; t < d.tokens; ++t, ++stamp) {
      const auto row = static_cast<size_t>(t) * d.slots_per_token;
      for (int32_t j = 0; j < d.slots_per_token; ++j) {
        const int32_t e = d.expert_ids[row + j];
        if (e == kNoExpert) continue;
        ++result.routed_pairs;
        if (d.dropped[row + j]) continue;
        ++kept_pairs;
        const int32_t dst = placement.home_rank(e);
        if (low_latency) ++direct_pairs[static_cast<size_t>(src) * gpus + dst];
        const int32_t node = topology.node_of(dst);
        if (gpu_stamp[static_cast<size_t>(dst)] != stamp) {
          gpu_stamp[static_cast<size_t>(dst)] = stamp;
          ++received_tokens;
          ++nvlink_received[static_cast<size_t>(dst)];
          ++nvlink_written[static_cast<size_t>(node * per_node + topology.local_rank(src))];
        }
        if (node_stamp[static_cast<size_t>(node)] != stamp) {
          node_stamp[static_cast<size_t>(node)] = stamp;
          ++node_pairs;
          ++rdma_sent[static_cast<size_t>(src)];
        }
      }
    }
  }
  if (low_latency) {
    result.deepep_rdma_bytes_per_gpu =
        static_cast<double>(kept_pairs) * static_cast<double>(bytes_per_token) / gpus;
  } else {
    result.deepep_nvlink_bytes_per_gpu =
        static_cast<double>(received_tokens) * static_cast<double>(bytes_per_token) / gpus;
    if (nodes > 1) {
      result.deepep_rdma_bytes_per_gpu =
          static_cast<double>(node_pairs) * static_cast<double>(bytes_per_token) / gpus;
    }
  }

  // The phase plays through the same collectives as a step's exchanges (sim/step_driver.cpp).
  Engine engine(options.seed);
  TieredNetwork tiered_network(engine, topology, options.network);
  FlowNetwork& network = tiered_network.get();
  Collectives collectives(network);
  PhaseObserver observer;
  std::vector<int32_t> members(static_cast<size_t>(gpus));
  for (int32_t g = 0; g < gpus; ++g) members[static_cast<size_t>(g)] = g;
  std::vector<ByteMatrix> normal_matrices;  // normal mode: its transfers, for the spine's bytes
  if (low_latency) {
    // Every pair at once; a GPU's pairs for its own experts stay local (no flow).
    ByteMatrix pairs(gpus);
    for (int32_t s = 0; s < gpus; ++s) {
      for (int32_t d = 0; d < gpus; ++d) {
        const int64_t n = direct_pairs[static_cast<size_t>(s) * gpus + d];
        if (n == 0 || s == d) continue;
        (combine ? pairs.at(d, s) : pairs.at(s, d)) += n * bytes_per_token;
      }
    }
    collectives.all_to_all(members, pairs, CollectiveAlgo::kDirect, &observer);
  } else {
    ReplicaLayout layout;
    layout.plan = &plan;
    layout.placement = &placement;
    layout.topology = &topology;
    const MoeLayerTraffic traffic =
        build_layer_traffic(layout, decisions, DispatchAlgorithm::kHierarchical);
    const ExchangeMatrices x =
        exchange_matrices(traffic, members, topology, Bytes(bytes_per_token), combine);
    CollectiveOptions chunked;
    chunked.chunks = options.pipeline_chunks;
    normal_matrices = {x.first, x.second, x.direct};
    if (x.staged) {
      collectives.two_stage(members, x.first, x.second, x.direct, &observer, 0, chunked);
    } else {
      collectives.all_to_all(members, x.direct, CollectiveAlgo::kDirect, &observer);
    }
  }
  engine.run();
  result.flow_time = observer.kept.end - observer.kept.start;
  result.flows = static_cast<int64_t>(observer.kept.flows);

  // The kernel's loads per GPU, and the cross-rail network bytes per leaf for the spine.
  std::vector<CommKernelLoad> loads(static_cast<size_t>(gpus));
  const bool over_network = low_latency && options.low_latency_over_network;
  auto on_network = [&](int32_t a, int32_t b) {
    return over_network || topology.node_of(a) != topology.node_of(b);
  };
  std::vector<double> leaf_up(static_cast<size_t>(per_node), 0.0),
      leaf_down(static_cast<size_t>(per_node), 0.0);
  auto add_network = [&](int32_t a, int32_t b, double bytes) {
    const int32_t ra = topology.local_rank(a), rb = topology.local_rank(b);
    if (ra == rb) return;
    leaf_up[static_cast<size_t>(ra)] += bytes;
    leaf_down[static_cast<size_t>(rb)] += bytes;
  };
  const auto token_bytes = static_cast<double>(bytes_per_token);
  if (low_latency) {
    // One message per (token, expert) pair, from the token's GPU (dispatch) or the expert's
    // (combine); a GPU's messages to itself are a local copy, counted as its warps' work only.
    for (int32_t s = 0; s < gpus; ++s) {
      for (int32_t d = 0; d < gpus; ++d) {
        const int64_t n = direct_pairs[static_cast<size_t>(s) * gpus + d];
        if (n == 0) continue;
        const int32_t from = combine ? d : s, to = combine ? s : d;
        CommKernelLoad& sender = loads[static_cast<size_t>(from)];
        sender.sm_messages += n;
        if (from == to) continue;
        const double bytes = static_cast<double>(n) * token_bytes;
        if (on_network(from, to)) {
          sender.nic_messages_out += n;
          loads[static_cast<size_t>(to)].nic_messages_in += n;
          add_network(from, to, bytes);
        } else {
          sender.sm_nvlink_bytes += bytes;
        }
      }
    }
  } else {
    // Every token a GPU's SMs touch: RDMA sends (with more than one node), NVLink writes and
    // copies out of the receive buffer. Combine runs the same paths backwards (same counts).
    for (int32_t g = 0; g < gpus; ++g) {
      const auto i = static_cast<size_t>(g);
      const int64_t tokens =
          (nodes > 1 ? rdma_sent[i] : 0) + nvlink_written[i] + nvlink_received[i];
      loads[i].sm_bytes = static_cast<double>(tokens) * token_bytes;
    }
    for (const ByteMatrix& m : normal_matrices) {
      for (int32_t a = 0; a < m.n; ++a)
        for (int32_t b = 0; b < m.n; ++b)
          if (a != b && m.at(a, b) > 0 && on_network(a, b))
            add_network(a, b, static_cast<double>(m.at(a, b)));
    }
  }
  double nvlink_bytes = 0.0;
  double network_bytes = 0.0;
  for (int32_t g = 0; g < gpus; ++g) {
    const GpuTraffic& traffic = network.gpu_traffic(g);
    CommKernelLoad& l = loads[static_cast<size_t>(g)];
    const auto nv = static_cast<size_t>(LinkKind::kNvLink);
    const auto net = static_cast<size_t>(LinkKind::kNetwork);
    l.nvlink_bytes_out = static_cast<double>(traffic.sent_bytes[nv]);
    l.nvlink_bytes_in = static_cast<double>(traffic.received_bytes[nv]);
    l.nic_bytes_out = static_cast<double>(traffic.sent_bytes[net]);
    l.nic_bytes_in = static_cast<double>(traffic.received_bytes[net]);
    nvlink_bytes += l.nvlink_bytes_out;
    network_bytes += l.nic_bytes_out;
  }
  result.wire_nvlink_bytes_per_gpu = nvlink_bytes / gpus;
  result.wire_network_bytes_per_gpu = network_bytes / gpus;

  const PhaseCapacities caps = phase_capacities(topology);
  std::vector<double> spine_bytes;
  if (!caps.leaf_uplink.empty()) {
    for (int32_t r = 0; r < per_node; ++r)
      spine_bytes.push_back(
          std::max(leaf_up[static_cast<size_t>(r)], leaf_down[static_cast<size_t>(r)]));
  }
  result.bounds =
      comm_bounds(options.kernel, loads, {caps.nvlink, caps.nic, spine_bytes, caps.leaf_uplink},
                  result.flow_time);
  result.phase_time = std::max(result.flow_time, result.bounds.kernel);
  return result;
}

}  // namespace moesim
