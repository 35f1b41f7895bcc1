// A whole run of a scenario: build the cluster, route every step's tokens (in parallel where
// the source allows, beside the step's simulation), play each step on the engine, and gather
// what the report needs.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "models/network/flow_network.h"
#include "models/router/routing_decision.h"
#include "scenarios/scenario.h"
#include "sim/cost_model.h"
#include "sim/exchange_load.h"
#include "sim/moe_traffic.h"
#include "sim/step_driver.h"

namespace moesim {

struct SimulationOptions {
  // Routing threads, the simulating thread among them: threads - 1 route in the background
  // while the step plays its first layers, and the simulating thread routes the next layers
  // itself when it has to wait for one. A source that is not thread safe is asked by one
  // thread in order (in the background when threads > 1). Results do not depend on it.
  int32_t threads = 2;
  // Play a step while its later layers route, and route the next step as soon as this one is
  // routed (false: route each whole step, then play it, as the program did before; the
  // results are the same).
  bool overlap_routing = true;
  // Called after each step with (steps done, steps in all); may be empty.
  std::function<void(int32_t, int32_t)> progress;
  // Called as a step plays, each time one of its collectives ends, with (the step's index,
  // steps in all, the fraction of the step's collectives ended); may be empty. A run of one
  // long step shows its progress through this.
  std::function<void(int32_t, int32_t, double)> step_progress;
  // Keep the GPU-to-GPU dispatch bytes of the measured steps' forward layers (GPU^2 numbers).
  bool keep_traffic_matrix = false;
  // When set and true before a step starts, the run ends there (steps are the safe points: the
  // step's engine run is not cut) and the result holds the steps played so far. May be null.
  const std::atomic<bool>* stop_requested = nullptr;
  // How the step's ops are priced (the share of SMs communication takes while it overlaps
  // computation); the defaults are the documented ones.
  CostOptions cost;
};

// Everything measured over the steps after warm-up. Times are in microseconds for reporting.
struct SimulationResult {
  std::string scenario_name;
  int32_t gpus = 0;
  int32_t measured_steps = 0;
  // Steps played, warm-up included; fewer than the scenario's when a stop request ended the run
  // early (`partial`), the measurements then covering the steps played.
  int32_t steps_run = 0;
  bool partial = false;
  DispatchAlgorithm dispatch_algorithm = DispatchAlgorithm::kDirect;
  // The network tier the run used, and whether the scenario left it to the default rule.
  NetworkTier network_tier = NetworkTier::kExact;
  bool network_tier_by_default = true;
  // router.reuse_routing_across_micro_batches: every micro-batch of a step took micro-batch 0's
  // routing decisions.
  bool routing_reused_across_micro_batches = false;
  // Samples: one per measured step; per forward exchange (micro-batch, MoE layer, replica);
  // per forward (micro-batch, layer) the slowest GPU's time.
  std::vector<double> step_time_us, dispatch_us, combine_us, expert_compute_us, attention_us;
  // Per GPU, microseconds in each phase, averaged over measured steps.
  std::vector<std::array<double, kPhaseCount>> gpu_phase_us;
  // Per GPU, of each communication phase's (and idle's) microseconds, those hidden behind the
  // GPU's computation (sim/executor.h); exposed = gpu_phase_us - gpu_hidden_us. Averaged alike.
  std::vector<std::array<double, kPhaseCount>> gpu_hidden_us;
  double idle_fraction = 0.0;
  int64_t routed_pairs = 0;
  int64_t dropped_pairs = 0;
  double dropped_token_fraction = 0.0;
  // Kept token-expert pairs per routed expert, summed over measured steps, micro-batches,
  // layers and replicas; and per MoE layer.
  std::vector<int64_t> tokens_per_expert;
  std::vector<std::vector<int64_t>> tokens_per_expert_by_layer;
  // Per exchange (measured step, micro-batch, MoE layer, replica, in that order; those that
  // keep no token-expert pair left out): its hottest routed expert's pairs over the mean over
  // routed experts, and its busiest GPU's expert rows over the mean over the replica's GPUs
  // (sim/exchange_load.h). A layer waits for its slowest GPU, so these follow what costs time.
  std::vector<double> exchange_expert_max_over_mean, exchange_gpu_max_over_mean;
  // The same exchanges where an all-to-all was played (EP > 1), in the same order, with the GPU
  // each waited for and its time (sim/exchange_load.h): straggler attribution.
  std::vector<ExchangeRecord> exchanges;
  // The headline load figures: the means of the per-exchange ones (0 without exchanges).
  double expert_max_over_mean = 0.0;
  double gpu_max_over_mean = 0.0;
  // Expert rows computed per GPU over measured steps (forward).
  std::vector<int64_t> gpu_tokens;
  // The same ratios of the totals: tokens_per_expert (expert e of every layer added together,
  // unrelated experts) and gpu_tokens (a GPU's rows over the whole step); they hide imbalance
  // that moves from layer to layer.
  double expert_summed_over_layers_max_over_mean = 0.0;
  double gpu_summed_over_step_max_over_mean = 0.0;
  // Achieved all-to-all bandwidth per GPU: exchange bytes / exchange time / GPUs in exchanges.
  double alltoall_gbps_per_gpu = 0.0;
  double alltoall_nvlink_gbps_per_gpu = 0.0;
  double alltoall_network_gbps_per_gpu = 0.0;
  // Tokens per second per GPU: global tokens per step / mean step time / GPUs, the tokens
  // counted as DeepSeek counts them (throughput_tokens()); and per node (x GPUs per node).
  double tokens_per_s_per_gpu = 0.0;
  double tokens_per_s_per_node = 0.0;
  std::vector<int64_t> dispatch_matrix_bytes;  // gpus x gpus when kept
  // Wall clock of the run, seconds summed over steps: from the start of a step's routing (while
  // the previous step still plays, when routed ahead) until its last (micro-batch, layer,
  // replica) was routed; the step's simulation, from its start to its end (so it covers the
  // routing it overlaps); and how long the simulation stood waiting for routing (asleep, or
  // routing the slot it needed itself).
  double routing_wall_s = 0.0;
  double simulation_wall_s = 0.0;
  double routing_wait_s = 0.0;
  // The OpenBLAS kernel family the gate GEMMs ran on (blas_core_name): wall times depend on it.
  std::string blas_core;
  // What the simulation did, in the simulator's own terms, for a reader asking where the wall
  // time went; the same for a given scenario and seed. The network model's rate
  // recomputations, the flows they re-derived (their regions) and the rates that changed are
  // what its cost follows (bench/README.md, "Network model").
  struct Work {
    uint64_t engine_events = 0;
    uint64_t flows = 0;
    uint64_t rate_recomputations = 0;
    uint64_t region_flows = 0;
    uint64_t rate_changes = 0;
  };
  Work work;
};

// The tokens tokens_per_s_per_gpu counts, for reports, as DeepSeek counts them: "tokens trained"
// (training), "input tokens, KV-cache hits included" (prefill: a hit is served, not computed),
// "output tokens" (decode: one per sequence per step).
std::string_view throughput_tokens(WorkloadKind kind);

// Runs `scenario`; routing comes from `source` (a Router for the scenario or a trace).
SimulationResult simulate(const Scenario& scenario, RoutingSource& source,
                          const SimulationOptions& options = {});
// Runs `scenario` with the router model it describes.
SimulationResult simulate(const Scenario& scenario, const SimulationOptions& options = {});

// The cluster a scenario describes (preset or file), efficiencies included.
Topology build_topology(const ClusterSpec& cluster);

}  // namespace moesim
