// How a model is split over the cluster: tensor, expert, data and pipeline parallel sizes and
// where each routed expert lives within an expert-parallel group (placement and hot replicas).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace moesim {

enum class PlacementKind : uint8_t {
  kContiguous,  // expert e on EP rank e / (experts / ep)
  kRoundRobin,  // expert e on EP rank e mod ep
  kExplicit,    // expert e on EP rank explicit_ep_rank[e]
};

struct ParallelPlan {
  int32_t tp = 1;
  int32_t ep = 1;
  int32_t dp = 1;
  int32_t pp = 1;
  PlacementKind placement = PlacementKind::kContiguous;
  std::vector<int32_t> explicit_ep_rank;  // kExplicit only: one EP rank per routed expert
  std::vector<int32_t> hot_experts;       // experts given extra copies, ascending, distinct
  int32_t replicas = 0;                   // extra copies of each hot expert

  int64_t world_size() const { return int64_t{tp} * ep * dp * pp; }
  // EP ranks that share a node of `gpus_per_node` GPUs (EP ranks are tp GPUs apart), at least
  // 1: the figure Placement takes to prefer a copy on the token's own node.
  int32_t ep_ranks_per_node(int32_t gpus_per_node) const {
    return gpus_per_node / tp > 1 ? gpus_per_node / tp : 1;
  }
  // The global GPU index of a rank tuple. TP varies fastest, then EP, DP, PP (Megatron's order):
  // a TP group is adjacent GPUs, within one node whenever tp divides the node size.
  int32_t gpu_of(int32_t tp_rank, int32_t ep_rank, int32_t dp_rank, int32_t pp_rank) const {
    return ((pp_rank * dp + dp_rank) * ep + ep_rank) * tp + tp_rank;
  }
};

// The plan as every output shows it: "TP2 EP4 DP1", with " PP2" appended when pp > 1.
std::string plan_label(const ParallelPlan& plan);

}  // namespace moesim
