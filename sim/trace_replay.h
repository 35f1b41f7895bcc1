// Routing traces of a scenario: record the scenario's router decisions for every step,
// micro-batch, MoE layer and rank as a trace, and replay a trace on a scenario's cluster and plan.
#pragma once

#include <cstdint>
#include <filesystem>

#include "models/trace/trace_format.h"
#include "scenarios/scenario.h"
#include "sim/simulation.h"

namespace moesim {

struct RecordSummary {
  TraceHeader header;
  int64_t batches = 0;  // steps * micro_batches
  int64_t records = 0;  // batches * MoE layers
  int64_t pairs = 0;    // kept token-expert pairs written
  int64_t dropped = 0;  // pairs the router dropped (written as empty slots)
};

// Runs the scenario's router as `simulate` would and writes one trace batch per global
// micro-batch (step * micro_batches + micro_batch), one record per MoE layer, holding the
// data-holding ranks' tokens in rank order (rank r's tokens_per_gpu tokens at r*tokens_per_gpu),
// so replay on the same plan hands each rank back its own tokens. Pairs the router dropped
// are written as empty slots (kNoExpert): replay computes exactly the kept pairs, and reports
// no drops. The auxiliary-free bias is moved between steps from the kept loads, as in
// simulate. Expert-choice routing (rows of varying width) is refused. Throws TraceError or
// std::invalid_argument.
RecordSummary record_trace(const Scenario& scenario, const std::filesystem::path& trace,
                           int32_t threads = 2);

// Throws TraceError unless a trace with `header` fits the scenario's model: the same number
// of MoE layers and of routed experts (both numbers in the message).
void check_trace_fits(const TraceHeader& header, const Scenario& scenario,
                      const std::string& trace_name);

struct ReplayResult {
  SimulationResult result;
  TraceHeader header;
  int64_t trace_batches = -1;  // -1 when the run did not reach the trace's end
  int64_t wraps = 0;           // how often the trace was restarted to cover the run
};

// Simulates the scenario with the trace in place of its router (placement from the scenario,
// so a trace recorded at one EP size replays at another).
ReplayResult replay_trace(const Scenario& scenario, const std::filesystem::path& trace,
                          const SimulationOptions& options = {});

}  // namespace moesim
