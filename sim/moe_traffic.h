// Turns one MoE layer's routing decisions into what the step plays: the dispatch transfers
// (GPU to GPU, token counts, direct or through a same-rail relay) and each GPU's expert work.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "models/moe/parallel_plan.h"
#include "models/moe/placement.h"
#include "models/network/collectives.h"
#include "models/network/comm_kernel.h"
#include "models/router/routing_decision.h"
#include "topologies/topology.h"

namespace moesim {

// How dispatch crosses nodes. kDirect sends every (token, destination GPU) pair straight to
// its GPU. kHierarchical is DeepEP's normal mode: a token bound for several GPUs of another node
// crosses the network once, to the GPU of that node on the sender's rail (same local rank),
// which forwards it over NVLink to each destination GPU there. kPerExpert is DeepEP's
// low-latency mode: one message per (token, selected expert) straight to the expert's GPU, no
// de-duplication of a token bound for several experts of one GPU, no forwarding.
enum class DispatchAlgorithm : uint8_t { kDirect, kHierarchical, kPerExpert };
// "direct", "hierarchical", "per-expert (low latency)": for reports.
std::string_view to_string(DispatchAlgorithm algorithm);

// Token counts moved from one GPU to another in one stage of a dispatch.
struct TokenTransfer {
  int32_t src_gpu = 0;
  int32_t dst_gpu = 0;
  int64_t tokens = 0;
};

// One MoE layer of one micro-batch for one data-parallel replica (all its EP groups' TP
// columns). Combine is the reverse: stage 2 transfers reversed first, then stage 1 reversed.
struct MoeLayerTraffic {
  // Stage 1 starts at once; a stage-2 transfer leaves its relay when the relay has received
  // every stage-1 transfer addressed to it. kDirect has no stage 2.
  std::vector<TokenTransfer> stage1;
  std::vector<TokenTransfer> stage2;
  // Per GPU (global index) the rows each of its local experts computes, in Placement's local
  // expert order; empty for GPUs outside this replica.
  std::vector<std::vector<int32_t>> tokens_per_local_expert;
  // Per routed expert, the kept token-expert pairs (over the replica's ranks).
  std::vector<int64_t> tokens_per_expert;
  int64_t routed_pairs = 0;
  int64_t dropped_pairs = 0;
  int64_t tokens = 0;  // tokens routed (over the replica's data-holding ranks)
  // The communication kernel's own work per GPU (global index, zero outside the replica), for
  // its SM and message bounds (models/network/comm_kernel.h; exchange_kernel_loads below).
  // kDirect and kHierarchical (DeepEP's normal kernels), in tokens, every token the GPU's SMs
  // copy: (token, node) pairs it sends over RDMA when the replica spans nodes under
  // kHierarchical (its own node included, staged through the same buffer), (token, GPU) pairs
  // it writes into a GPU's buffer over NVLink (a sender for its own node, itself included; the
  // GPU on the sender's rail for another node) and (token, GPU) pairs it receives, its own
  // tokens included. kPerExpert: empty.
  std::vector<int64_t> sm_tokens;
  // kPerExpert: the (token, expert) pairs a GPU sends to itself (a local copy, no flow, but one
  // message of its warps each). Empty otherwise.
  std::vector<int64_t> local_pairs;
};

// Which GPUs form the replica, and how tokens are held.
struct ReplicaLayout {
  const ParallelPlan* plan = nullptr;
  const Placement* placement = nullptr;
  const Topology* topology = nullptr;
  int32_t dp_rank = 0;
  int32_t pp_rank = 0;  // the pipeline stage that holds this layer
};

// Builds the traffic of one layer from the decisions of the replica's data-holding ranks,
// indexed by tp + TP * ep (each GPU routes its own sequence-parallel share of tokens). With
// TP > 1 every TP rank of an EP rank holds the TP group's tokens after the all-gather, and
// sends them to the same TP rank of each destination EP rank (each expert shard needs the whole
// hidden state). A token goes once to each GPU it is bound for, however many of that GPU's
// experts it chose. Count-only decisions spread each expert's count evenly over its serving
// ranks and have no per-token destinations: their transfers are direct.
MoeLayerTraffic build_layer_traffic(const ReplicaLayout& layout,
                                    std::span<const RoutingDecision> decisions,
                                    DispatchAlgorithm algorithm);

// The same, one rank's decisions at a time, so that a caller can route every rank into one
// reused decision: add() takes them in EP-rank, then TP-rank order (as build_layer_traffic's
// index does), each once; finish() returns the traffic. (A layer's decisions for 256 ranks of
// 4096 tokens and top-8 are ~64 MB; one rank's are 1/256 of that.)
class LayerTrafficBuilder {
 public:
  LayerTrafficBuilder(const ReplicaLayout& layout, DispatchAlgorithm algorithm);
  void add(int32_t ep_rank, int32_t tp_rank, const RoutingDecision& decision);
  MoeLayerTraffic finish();

 private:
  int32_t gpu_of(int32_t tp_rank, int32_t ep_rank) const {
    return gpu_table_[static_cast<size_t>(tp_rank) * ep_ + ep_rank];
  }

  ReplicaLayout layout_;
  DispatchAlgorithm algorithm_;
  int32_t tp_, ep_, gpus_, experts_;
  MoeLayerTraffic traffic_;
  std::vector<int32_t> gpu_table_;
  std::vector<int32_t> sole_rank_, sole_local_;  // experts with one copy: rank, local index
  std::vector<int64_t> sole_tokens_;
  // Dense token counts over the GPUs of the nodes the replica spans (relays are on a
  // destination's node), local_ x local_, not the cluster's gpus x gpus: at 2,048 GPUs the
  // latter is 2 x 32 MiB to clear and scan per (micro-batch, layer, replica), which took most
  // of a DeepSeek-V3 pre-training run's wall time. local_of_[gpu] is a GPU's index there (-1
  // off the replica's nodes), global_of_ the way back; both keep the global order.
  std::vector<int64_t> stage1_, stage2_;
  int32_t local_ = 0;
  std::vector<int32_t> local_of_, global_of_;
  // Per-token de-duplication stamps: destination EP ranks and destination nodes.
  std::vector<int64_t> rank_stamp_, node_stamp_;
  std::vector<int32_t> dest_ranks_;
  std::vector<int32_t> node_of_, rail_of_;
  std::vector<int64_t> sm_tokens_, local_pairs_;  // dense per GPU
  bool rdma_staged_ = false;  // kHierarchical over more than one node: count RDMA sends
  int64_t stamp_ = 0;
  int64_t token_base_ = 0;  // the current EP rank's tokens before this decision's
  int32_t next_ = 0;        // decisions added
  bool finished_ = false;
};

// A layer's exchange as byte matrices over `members` (global GPU ids; matrix indices are
// positions in it) for the network model's two-stage collective: transfers that cross nodes
// go to their relay (first), relays forward (second), same-node transfers go at once (direct).
// A combine reverses every transfer and the order of the stages: outputs go to the relays over
// NVLink first, the relays' reductions then cross the network. `staged` is false when the plan
// has no relays, so every byte is in `direct`.
struct ExchangeMatrices {
  ByteMatrix first, second, direct;
  bool staged = false;
};
ExchangeMatrices exchange_matrices(const MoeLayerTraffic& traffic, std::span<const int32_t> members,
                                   const Topology& topology, Bytes bytes_per_token, bool combine);

// The communication kernel's loads (models/network/comm_kernel.h) of the same exchange, one per
// member (positions in `members`), from the traffic's kernel counts and transfers: normal
// kernels (kDirect, kHierarchical) their SMs' copies (sm_tokens), low-latency (kPerExpert) one
// message per (token, expert) pair on the sender's warps (the expert's GPU in a combine), its
// NVLink messages copied by those warps, the others through both ends' NICs (every pair between
// distinct GPUs with `all_through_nic`, DeepEP's pure-RDMA low-latency kernels). The link byte
// fields are the transfers' own (NVLink within a node, the NIC across nodes); a caller that ran
// the exchange may replace them by what its flows carried.
std::vector<CommKernelLoad> exchange_kernel_loads(const MoeLayerTraffic& traffic,
                                                  std::span<const int32_t> members,
                                                  const Topology& topology, Bytes bytes_per_token,
                                                  bool combine, bool all_through_nic = false);

}  // namespace moesim
