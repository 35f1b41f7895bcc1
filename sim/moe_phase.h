// One DeepEP-style MoE dispatch or combine phase on a cluster, run and measured the way DeepEP's
// benchmarks measure it: routed tokens, an all-to-all on the network model, bandwidth per link.
#pragma once

#include <cstdint>
#include <span>

#include "core/units.h"
#include "models/moe/model_spec.h"
#include "models/network/collectives.h"
#include "models/network/comm_kernel.h"
#include "models/network/flow_network.h"
#include "models/router/routing_decision.h"
#include "topologies/topology.h"

namespace moesim {

enum class MoePhase : uint8_t { kDispatch, kCombine };

// kNormal: DeepEP's normal (throughput) kernels: a token crosses the network once per
// destination node, to the GPU there on the sender's rail, which forwards it over NVLink; the
// two stages are pipelined in chunks. kLowLatency: DeepEP's low-latency kernels: one message
// per (token, selected expert) straight to the expert's GPU, no de-duplication, no forwarding.
enum class MoeCommMode : uint8_t { kNormal, kLowLatency };

// Where the tokens' expert choices come from. kIidLogits: independent standard-normal logits
// per (token, expert), like DeepEP's tests (random scores), through the model's gating
// (sigmoid, group-limited top-k). kClusteredTokens: the router's default token model (Zipf-
// popular clusters), which skews expert loads as real batches do.
enum class MoePhaseRouting : uint8_t { kIidLogits, kClusteredTokens };

struct MoePhaseOptions {
  MoePhase phase = MoePhase::kDispatch;
  MoeCommMode mode = MoeCommMode::kNormal;
  int32_t tokens_per_gpu = 4096;
  // Normal mode: each transfer goes in this many equal chunks, one after another; a relay
  // forwards chunk c once chunk c of every network transfer into it has arrived.
  int32_t pipeline_chunks = kDefaultPipelineChunks;
  // Low-latency mode: send pairs inside a node through the NIC too (DeepEP's first low-latency
  // kernels, pure RDMA) instead of over NVLink (DeepEP since it let low-latency mode use NVLink).
  bool low_latency_over_network = false;
  MoePhaseRouting routing = MoePhaseRouting::kIidLogits;
  // The kernels' SMs and per-message costs (models/network/comm_kernel.h): the phase takes the
  // longer of the flow model's time and the busiest GPU's SMs or NIC.
  CommKernelSpec kernel = kDefaultCommKernel;
  uint64_t seed = 1;
  int32_t routing_threads = 2;  // results do not depend on it
  NetworkOptions network;
};

struct MoePhaseResult {
  int32_t gpus = 0;
  int32_t nodes = 0;
  // The longer of the flow model's time (first flow start to last byte delivered) and the
  // kernel's own bound (bounds.kernel).
  Time phase_time;
  Time flow_time;
  // Busy time of the busiest instance of each resource, and the one that bound the phase.
  CommBounds bounds;
  int64_t tokens = 0;
  int64_t routed_pairs = 0;
  int64_t flows = 0;
  // Bytes per GPU (mean over GPUs) as DeepEP's tests count them (tests/validation/README.md):
  // normal mode: NVLink = tokens the GPU receives (one per (token, GPU), from every source
  // including itself); RDMA = (token, destination node) pairs it sends, its own node included,
  // zero on one node. Low-latency: RDMA = (token, selected expert) pairs it sends; NVLink zero.
  double deepep_nvlink_bytes_per_gpu = 0.0;
  double deepep_rdma_bytes_per_gpu = 0.0;
  // What the flows carried, mean bytes sent per GPU, by the kind of link (a flow crossing the
  // network counts as network).
  double wire_nvlink_bytes_per_gpu = 0.0;
  double wire_network_bytes_per_gpu = 0.0;

  double time_us() const { return phase_time.to_us(); }
  // Bytes / phase time in GB/s (1e9 B/s), DeepEP's definition and the wire figures.
  double nvlink_gbps() const { return per_second(deepep_nvlink_bytes_per_gpu); }
  double rdma_gbps() const { return per_second(deepep_rdma_bytes_per_gpu); }
  double wire_nvlink_gbps() const { return per_second(wire_nvlink_bytes_per_gpu); }
  double wire_network_gbps() const { return per_second(wire_network_bytes_per_gpu); }

 private:
  double per_second(double bytes) const {
    return phase_time.count_ps() > 0 ? bytes / phase_time.to_s() * 1e-9 : 0.0;
  }
};

// Runs one phase with EP = every GPU of `topology` (contiguous expert placement, the model's
// routed experts divisible by the GPU count), one MoE layer. Throws std::invalid_argument on a
// bad option or a topology that cannot carry the mode (low latency over the network without a
// network). Deterministic for a seed.
MoePhaseResult run_moe_phase(const Topology& topology, const ModelSpec& model,
                             const MoePhaseOptions& options);
// The same with given decisions, one per GPU (its tokens_per_gpu is then not used; `routing`
// and `seed` neither).
MoePhaseResult run_moe_phase(const Topology& topology, const ModelSpec& model,
                             std::span<const RoutingDecision> decisions,
                             const MoePhaseOptions& options);

// A copy of `topology` without its NVLink links, so that every GPU pair takes a network path
// (efficiencies and node structure kept; a preset's single node keeps its NICs and leaves).
// Throws std::invalid_argument if some GPU pair then has no path.
Topology without_nvlink(const Topology& topology);

}  // namespace moesim
