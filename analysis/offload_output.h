// What a decode-with-offloaded-experts run (sim/offload.h) prints: a table for a reader, or a
// JSON document.
#pragma once

#include <ostream>

#include "scenarios/scenario.h"
#include "sim/offload.h"

namespace moesim {

void print_offload_table(std::ostream& out, const Scenario& scenario, const OffloadResult& r);
// {"scenario", "gpu", "host_link", "policy", "tokens", "tokens_per_s", "token_latency_ms"
// {mean, p50, p99}, "hit_rate", "hit_rate_per_layer", "host_link_bytes_per_token",
// "copy_stall_fraction", "host_link_utilisation", "bound", "prefetch" {...}, "copy_overlap",
// "host_overhead_per_layer_ms", "host_stall_fraction", "cpu_stall_fraction", "compute_fraction"}
void write_offload_json(std::ostream& out, const Scenario& scenario, const OffloadResult& r);

}  // namespace moesim
