// How unevenly one MoE exchange (step, micro-batch, MoE layer, replica) loads its routed experts
// and its GPUs, and which GPU it waited for (straggler attribution): the figures that follow what
// the layer waits for, since the slowest GPU of an exchange sets its pace, where totals over
// layers add unrelated experts together.
#pragma once

#include <cstdint>
#include <optional>

#include "core/units.h"
#include "models/moe/placement.h"
#include "sim/executor.h"
#include "sim/moe_traffic.h"
#include "sim/op_graph.h"

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

// The GPU a forward exchange waited for, read from the executor's record of its dispatch and
// combine. The straggler is the combine's last-arriving member: the combine launches when its
// last member arrives (sim/executor.h), so that arrival is what the exchange's end waited for,
// whatever delayed it. The end of each GPU's expert kernel would name the same GPU under a
// schedule that runs nothing between the expert FFN and the combine (1F1B), but would miss a
// GPU held up by something else on its way to the combine under one that overlaps.
struct ExchangeStraggler {
  int32_t micro_batch = -1, moe_layer = -1, replica = -1;
  int32_t gpu = -1;  // global GPU index; the lowest among members arriving at the same time
  int64_t rows = 0;  // expert rows it computed in this exchange (its local experts' sum)
  // Its local expert with the most rows, as a routed expert index (the lowest among ties), and
  // those rows; -1 and 0 when it holds no routed expert.
  int32_t hottest_expert = -1;
  int64_t hottest_expert_rows = 0;
  Time time;           // dispatch launch to combine finish
  Time alltoall_time;  // dispatch's plus combine's launch-to-finish; the rest of `time` is the
                       // straggler's computation (and any wait) between them
};

// The straggler of the forward exchange whose dispatch and combine are `dispatch` and `combine`
// in `graph`, played as `played` records, over `traffic` (the same slot). `tp`: GPUs per EP
// rank, to find a GPU's local experts in `placement`. O(members + the straggler's experts).
ExchangeStraggler exchange_straggler(const OpGraph& graph, const Execution& played,
                                     CollectiveIdx dispatch, CollectiveIdx combine,
                                     const MoeLayerTraffic& traffic, const Placement& placement,
                                     int32_t tp);

// One measured forward exchange: where it is, its load and its straggler.
struct ExchangeRecord {
  int32_t step = 0;  // in the run, from 0, warm-up steps counted
  ExchangeLoad load;
  ExchangeStraggler straggler;
  // The straggler's rows over the mean over the replica's GPUs (load.mean_gpu_rows); 0 when
  // no GPU computed a row.
  double straggler_rows_over_mean() const {
    return load.mean_gpu_rows > 0 ? static_cast<double>(straggler.rows) / load.mean_gpu_rows : 0.0;
  }
};

}  // namespace moesim
