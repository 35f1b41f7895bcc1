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
  // The scenario as simulated: its router's token model origin says what routed (kTrace: the
  // trace itself; kFitted: the token model fitted to it, with what it was fitted to).
  Scenario scenario;
  TraceHeader header;
  int64_t trace_batches = -1;  // -1 when the run did not reach the trace's end
  int64_t wraps = 0;           // how often the trace was restarted to cover the run
};

// Simulates the scenario with the trace in place of its router (placement from the scenario,
// so a trace recorded at one EP size replays at another).
// With grow_with_fit, a trace whose batches hold fewer tokens than one micro-batch of the
// scenario (tokens_per_gpu x data-holding ranks) is not replayed (each rank would get a share of
// a small batch, and a large run would go around it): the scenario's token model is fitted to
// the trace at the trace's batch (fit_token_model with its defaults) and the scenario runs with
// its router on the fitted model. A trace at least as large as the micro-batch is replayed as
// without the option. Throws TraceError when the fit cannot be made (fewer than two batches, or
// batches of varying size).
ReplayResult replay_trace(const Scenario& scenario, const std::filesystem::path& trace,
                          const SimulationOptions& options = {}, bool grow_with_fit = false);

// Tokens of one micro-batch over the data-holding ranks: what a trace batch is compared with.
int64_t micro_batch_tokens(const Scenario& scenario);

}  // namespace moesim
