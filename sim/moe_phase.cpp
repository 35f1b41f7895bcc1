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
  std::vector<int64_t> gpu_stamp(static_cast<size_t>(gpus), -1);
  std::vector<int64_t> node_stamp(static_cast<size_t>(nodes), -1);
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
        const int32_t node = topology.node_of(dst);
        if (gpu_stamp[static_cast<size_t>(dst)] != stamp) {
          gpu_stamp[static_cast<size_t>(dst)] = stamp;
          ++received_tokens;
        }
        if (node_stamp[static_cast<size_t>(node)] != stamp) {
          node_stamp[static_cast<size_t>(node)] = stamp;
          ++node_pairs;
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

  // The phase plays through the same traffic, collectives and kernel loads as a step's
  // exchanges (sim/cost_model.cpp): low latency one message per (token, expert) pair, every pair
  // at once (a GPU's pairs for its own experts stay local); normal mode through the relays.
  ReplicaLayout layout;
  layout.plan = &plan;
  layout.placement = &placement;
  layout.topology = &topology;
  const MoeLayerTraffic traffic = build_layer_traffic(
      layout, decisions,
      low_latency ? DispatchAlgorithm::kPerExpert : DispatchAlgorithm::kHierarchical);
  std::vector<int32_t> members(static_cast<size_t>(gpus));
  for (int32_t g = 0; g < gpus; ++g) members[static_cast<size_t>(g)] = g;
  const ExchangeMatrices x =
      exchange_matrices(traffic, members, topology, Bytes(bytes_per_token), combine);
  Engine engine(options.seed);
  TieredNetwork tiered_network(engine, topology, options.network);
  FlowNetwork& network = tiered_network.get();
  Collectives collectives(network);
  PhaseObserver observer;
  if (x.staged) {
    CollectiveOptions chunked;
    chunked.chunks = options.pipeline_chunks;
    collectives.two_stage(members, x.first, x.second, x.direct, &observer, 0, chunked);
  } else {
    collectives.all_to_all(members, x.direct, CollectiveAlgo::kDirect, &observer);
  }
  engine.run();
  result.flow_time = observer.kept.end - observer.kept.start;
  result.flows = static_cast<int64_t>(observer.kept.flows);

  // The kernel's loads per GPU, and the cross-rail network bytes per leaf for the spine.
  const bool over_network = low_latency && options.low_latency_over_network;
  std::vector<CommKernelLoad> loads = exchange_kernel_loads(
      traffic, members, topology, Bytes(bytes_per_token), combine, over_network);
  std::vector<double> leaf_up(static_cast<size_t>(per_node), 0.0),
      leaf_down(static_cast<size_t>(per_node), 0.0);
  for (const ByteMatrix* m : {&x.first, &x.second, &x.direct}) {
    for (int32_t a = 0; a < m->n; ++a) {
      for (int32_t b = 0; b < m->n; ++b) {
        const int64_t bytes = m->at(a, b);
        if (a == b || bytes == 0) continue;
        if (!over_network && topology.node_of(a) == topology.node_of(b)) continue;
        const int32_t ra = topology.local_rank(a), rb = topology.local_rank(b);
        if (ra == rb) continue;
        leaf_up[static_cast<size_t>(ra)] += static_cast<double>(bytes);
        leaf_down[static_cast<size_t>(rb)] += static_cast<double>(bytes);
      }
    }
  }
  double nvlink_bytes = 0.0;
  double network_bytes = 0.0;
  for (int32_t g = 0; g < gpus; ++g) {
    const GpuTraffic& gpu_traffic = network.gpu_traffic(g);
    CommKernelLoad& l = loads[static_cast<size_t>(g)];
    const auto nv = static_cast<size_t>(LinkKind::kNvLink);
    const auto net = static_cast<size_t>(LinkKind::kNetwork);
    l.nvlink_bytes_out = static_cast<double>(gpu_traffic.sent_bytes[nv]);
    l.nvlink_bytes_in = static_cast<double>(gpu_traffic.received_bytes[nv]);
    l.nic_bytes_out = static_cast<double>(gpu_traffic.sent_bytes[net]);
    l.nic_bytes_in = static_cast<double>(gpu_traffic.received_bytes[net]);
    nvlink_bytes += l.nvlink_bytes_out;
    network_bytes += l.nic_bytes_out;
  }
  result.wire_nvlink_bytes_per_gpu = nvlink_bytes / gpus;
  result.wire_network_bytes_per_gpu = network_bytes / gpus;

  const CommLinkCapacities caps = comm_link_capacities(topology);
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
