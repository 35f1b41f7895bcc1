// What `moesim run` prints: the terminal table of a simulated scenario and its JSON document
// (step, dispatch, combine, expert-compute and attention times with mean/p50/p99/stddev; loads).
#pragma once

#include <ostream>

#include "scenarios/scenario.h"
#include "sim/simulation.h"

namespace moesim {

// Aligned table with units and a one-line verdict on where the step's time goes.
void print_run_table(std::ostream& out, const Scenario& scenario, const SimulationResult& result);

// The JSON document: step_time_us, dispatch_us, combine_us, expert_compute_us, attention_us (each
// {count, mean, p50, p99, stddev, min, max}), idle_fraction, dropped_token_fraction,
// expert_load {max_over_mean, max_over_mean_per_exchange, summed_over_layers_max_over_mean,
// tokens_per_expert}, gpu_load {max_over_mean, max_over_mean_per_exchange,
// summed_over_step_max_over_mean, tokens_per_gpu} (max_over_mean: the mean over exchanges),
// exchanges {count, then one array per field of analysis/exchange_output.h: straggler
// attribution},
// alltoall_bandwidth_gbps_per_gpu {total, nvlink, network}, phase_us_per_gpu (mean over GPUs,
// per step, every phase), exposed_us_per_gpu and hidden_us_per_gpu (the same for the
// communication phases and idle, split by whether the GPU's compute stream ran a kernel
// meanwhile; exposed + hidden = the phase's time), tokens_per_s_per_gpu, tokens_per_s_per_node
// and tokens_counted (which tokens: throughput_tokens()), prefix_cache {hit_rate,
// cached_tokens_per_sequence, computed_tokens_per_gpu} (prefill with a hit rate only), and the
// run's wall-clock split.
void write_run_json(std::ostream& out, const Scenario& scenario, const SimulationResult& result);

}  // namespace moesim
