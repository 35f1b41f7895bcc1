#include "sim/trace_replay.h"

#include <algorithm>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "models/router/router.h"
#include "models/router/token_model_fit.h"
#include "models/trace/trace_routing_source.h"
#include "models/trace/trace_sample.h"
#include "models/trace/trace_writer.h"
#include "sim/parallel.h"

namespace moesim {

RecordSummary record_trace(const Scenario& scenario, const std::filesystem::path& trace,
                           int32_t threads) {
  if (scenario.router.selection == RouterSelection::kExpertChoice) {
    throw std::invalid_argument(
        "record: expert-choice routing gives tokens varying numbers of experts, which a trace "
        "(a fixed top_k per token) cannot hold; record a top-k router");
  }
  Router router(scenario.router);
  const ParallelPlan& plan = scenario.parallel;
  const Workload& workload = scenario.workload;
  const int32_t ranks = plan.tp * plan.ep * plan.dp;
  const int32_t tokens = workload.computed_tokens_per_gpu();  // what a step routes
  const int32_t k = router.top_k();
  const int32_t layers = scenario.model.moe_layer_count();
  const int32_t experts = router.experts();

  RecordSummary summary;
  summary.header.layers = layers;
  summary.header.experts = experts;
  summary.header.top_k = k;
  summary.header.tokens_per_batch = ranks * tokens;
  summary.header.has_weights = true;
  summary.header.source = "moesim record: scenario " + scenario.name + ", seed " +
                          std::to_string(scenario.seed) + ", " + std::to_string(ranks) +
                          " ranks x " + std::to_string(tokens) + " tokens per batch";
  TraceWriter writer(trace, summary.header);

  std::vector<RoutingDecision> decisions(static_cast<size_t>(ranks));
  TraceRecord record;
  for (int32_t step = 0; step < workload.steps; ++step) {
    std::vector<std::vector<int32_t>> load(static_cast<size_t>(layers),
                                           std::vector<int32_t>(experts, 0));
    for (int32_t mb = 0; mb < workload.micro_batches; ++mb) {
      const int64_t batch = int64_t{step} * workload.micro_batches + mb;
      for (int32_t layer = 0; layer < layers; ++layer) {
        // The requests simulate's step router makes: rank a + tp * (b + ep * d) of tp*ep*dp.
        parallel_for(ranks, threads, [&](int64_t r, int32_t) {
          RoutingRequest request;
          request.layer = layer;
          request.micro_batch = batch;
          request.rank = static_cast<int32_t>(r);
          request.ranks = ranks;
          request.tokens = tokens;
          router.route(request, decisions[static_cast<size_t>(r)]);
        });
        record.batch = batch;
        record.layer = layer;
        record.tokens = ranks * tokens;
        record.expert_ids.clear();
        record.weights.clear();
        record.expert_counts.clear();
        for (const RoutingDecision& d : decisions) {
          if (d.tokens != tokens || d.slots_per_token != k || d.counts_only) {
            throw std::logic_error("record: the router returned " + std::to_string(d.tokens) +
                                   " tokens x " + std::to_string(d.slots_per_token) +
                                   " slots, expected " + std::to_string(tokens) + " x " +
                                   std::to_string(k));
          }
          for (size_t i = 0; i < d.expert_ids.size(); ++i) {
            const bool kept = !d.dropped[i] && d.expert_ids[i] != kNoExpert;
            record.expert_ids.push_back(kept ? d.expert_ids[i] : kNoExpert);
            record.weights.push_back(kept ? d.weights[i] : 0.0f);
            if (kept) ++summary.pairs;
          }
          summary.dropped += d.dropped_pairs;
          for (int32_t e = 0; e < experts; ++e) load[layer][e] += d.tokens_per_expert[e];
        }
        writer.append(record);
        ++summary.records;
      }
      ++summary.batches;
    }
    if (scenario.router.selection_bias) {
      for (int32_t layer = 0; layer < layers; ++layer) router.update_bias(layer, load[layer]);
    }
  }
  writer.close();
  return summary;
}

void check_trace_fits(const TraceHeader& header, const Scenario& scenario,
                      const std::string& trace_name) {
  const int32_t moe_layers = scenario.model.moe_layer_count();
  if (header.layers != moe_layers) {
    throw TraceError(trace_name + ": the trace has " + std::to_string(header.layers) +
                     " MoE layers per batch, scenario " + scenario.name + "'s model " +
                     scenario.model.name + " has " + std::to_string(moe_layers));
  }
  if (header.experts != scenario.model.routed_experts) {
    throw TraceError(trace_name + ": the trace has " + std::to_string(header.experts) +
                     " routed experts, scenario " + scenario.name + "'s model " +
                     scenario.model.name + " has " + std::to_string(scenario.model.routed_experts));
  }
}

int64_t micro_batch_tokens(const Scenario& scenario) {
  const ParallelPlan& plan = scenario.parallel;
  return int64_t{plan.tp} * plan.ep * plan.dp * scenario.workload.computed_tokens_per_gpu();
}

ReplayResult replay_trace(const Scenario& scenario, const std::filesystem::path& trace,
                          const SimulationOptions& options, bool grow_with_fit) {
  TraceRoutingSource source(trace);
  check_trace_fits(source.header(), scenario, trace.string());
  ReplayResult r;
  r.header = source.header();
  r.scenario = scenario;
  const int64_t wanted = micro_batch_tokens(scenario);
  if (grow_with_fit && r.header.tokens_per_batch < wanted) {
    const int32_t B = r.header.tokens_per_batch;
    if (B <= 0) {
      throw TraceError(trace.string() +
                       ": batches of varying size; fit the token model with "
                       "`moesim fit --tokens-per-batch N` and run the scenario with it instead");
    }
    const TraceSample sample = read_trace_sample(trace);
    if (sample.trace_batches < 2) {
      throw TraceError(trace.string() +
                       ": one batch; --grow-with-fit needs two or more (or fit "
                       "with `moesim fit --tokens-per-batch N` and run the scenario with it)");
    }
    TokenModelFitOptions fit_options;
    fit_options.tokens_per_batch = B;
    const TokenModelFit fit = fit_token_model(sample.sample, fit_options);
    TokenModel& t = r.scenario.router.tokens;
    const TokenModel keep = t;
    t = fit.model;
    t.hidden = keep.hidden;
    t.sequence_tokens = keep.sequence_tokens;
    r.scenario.router.token_model_origin = TokenModelOrigin::kFitted;
    char loss[32];
    std::snprintf(loss, sizeof(loss), "%.4f", fit.loss);
    r.scenario.router.token_model_fitted_to =
        trace.string() + " by replay --grow-with-fit: its batches of " + std::to_string(B) +
        " tokens are smaller than the scenario's micro-batch of " + std::to_string(wanted) +
        "; fit loss " + loss;
    r.result = simulate(r.scenario, options);
    return r;
  }
  r.scenario.router.token_model_origin = TokenModelOrigin::kTrace;
  r.scenario.router.token_model_fitted_to = trace.string();
  r.result = simulate(scenario, source, options);
  r.trace_batches = source.trace_batches();
  r.wraps = source.wraps();
  return r;
}

}  // namespace moesim
