// How unevenly one MoE exchange (step, micro-batch, MoE layer, replica) loads its routed experts
// and its GPUs: the figures that follow what the layer waits for, since the slowest GPU of an
// exchange sets its pace, where totals over layers add unrelated experts together.
#pragma once

#include <cstdint>
#include <optional>

#include "sim/moe_traffic.h"

namespace moesim {

struct ExchangeLoad {
  // The hottest routed expert's kept token-expert pairs over the mean over all routed experts.
  double expert_max_over_mean = 0.0;
  // The most expert rows one GPU of the replica computes over the mean over the replica's GPUs
  // that hold routed experts (a GPU's rows: the sum over its local experts, replicas included).
  double gpu_max_over_mean = 0.0;
  int32_t hottest_expert = -1;  // the lowest index among ties
  int64_t hottest_expert_pairs = 0;
  int32_t busiest_gpu = -1;  // global GPU index, the lowest among ties
  int64_t busiest_gpu_rows = 0;
  double mean_gpu_rows = 0.0;
};

// The exchange's load, or nothing when it keeps no token-expert pair (no ratio to speak of).
// O(routed experts + GPUs + local experts of the replica's GPUs).
std::optional<ExchangeLoad> exchange_load(const MoeLayerTraffic& traffic);

}  // namespace moesim
