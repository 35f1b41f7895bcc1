// The MoE step on the event engine, as schedule -> operation graph -> executor: a schedule
// (sim/schedule.h, 1F1B unless told otherwise) lays the step out once as a graph of kernels and
// collectives on each GPU's streams, the step's cost model (sim/cost_model.h) prices the ops, and
// the executor (sim/executor.h) plays the graph on the engine each step; collectives wait for
// every member, so the slowest GPU sets the pace and imbalance shows as idle time.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "core/engine.h"
#include "models/network/flow_network.h"
#include "sim/cost_model.h"
#include "sim/exchange_load.h"
#include "sim/executor.h"
#include "sim/op_graph.h"
#include "sim/schedule.h"
#include "sim/step_setup.h"

namespace moesim {

// Told (collectives finished, collectives in the step) each time one of the step's collectives
// ends, so that a long step can show how far it has got; from inside the engine's events.
using StepProgress = CollectiveProgress;

// What one step measured.
struct StepMeasurement {
  Time step_time;
  // One sample per forward MoE exchange (micro-batch, layer, replica): first member's launch
  // to the last member's finish.
  std::vector<Time> dispatch, combine;
  // Per forward (micro-batch, layer): the slowest GPU's time in the phase on that layer.
  std::vector<Time> expert_compute, attention;
  // Per GPU, time in each phase (summed over the step).
  std::vector<std::array<Time, kPhaseCount>> gpu_phase_time;
  // Per GPU, the part of each communication phase's (and idle's) time that ran while the GPU's
  // compute stream ran a kernel (Execution::gpu_hidden_time).
  std::vector<std::array<Time, kPhaseCount>> gpu_hidden_time;
  // Per GPU, expert rows computed over the step's forward MoE layers.
  std::vector<int64_t> gpu_expert_tokens;
  // Every MoE exchange of the step (forward and backward): bytes by link kind, and the sum of
  // their durations (first launch to last finish), for achieved all-to-all bandwidth.
  ExchangeBytes exchange_bytes;
  Time exchange_time;
  int32_t exchanges = 0;
  // Per forward exchange, in traffic_slot order: the GPU it waited for (sim/exchange_load.h);
  // gpu -1 where the plan has no all-to-all (EP 1), so no exchange was played.
  std::vector<ExchangeStraggler> stragglers;
};

class StepDriver {
 public:
  // Lays the step out with `schedule` (1F1B when null; it need not outlive the constructor).
  StepDriver(Engine& engine, FlowNetwork& network, const StepSetup& setup,
             const Schedule* schedule = nullptr, CostOptions cost = {});
  ~StepDriver();

  // Plays one step from now() to its end and returns its measurements. `traffic` must have
  // every slot allocated; with `await_slot`, a slot is read only after await_slot returned for
  // it (a GPU reaching a layer's expert compute, or the layer's exchange starting), so routing
  // may fill later slots meanwhile. Without it every slot must be final. `progress`, when set,
  // hears of every collective that ends.
  StepMeasurement run_step(const StepTraffic& traffic, const AwaitTrafficSlot& await_slot = {},
                           const StepProgress& progress = {});

  const OpGraph& graph() const { return graph_; }

 private:
  StepSetup setup_;
  OpGraph graph_;
  StepCostModel cost_;
  Executor executor_;
  // [traffic slot] the forward exchange's dispatch and combine in graph_.
  std::vector<std::array<CollectiveIdx, 2>> forward_exchanges_;
};

}  // namespace moesim
