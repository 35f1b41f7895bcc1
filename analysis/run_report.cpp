#include "analysis/run_report.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <iomanip>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "analysis/exchange_output.h"
#include "analysis/json_text.h"
#include "core/statistics.h"
#include "models/network/network_tier.h"
#include "sim/executor.h"

namespace moesim {
namespace {

std::string number(double v) {
  return json_number(v);
}

// {count, mean, p50, p99, stddev, min, max}; stddev is the sample standard deviation, 0 for a
// single sample; every field 0 with count 0 when there are no samples (e.g. no all-to-all).
std::string summary_json(const std::vector<double>& samples) {
  std::ostringstream o;
  if (samples.empty()) {
    o << R"({"count": 0, "mean": 0, "p50": 0, "p99": 0, "stddev": 0, "min": 0, "max": 0})";
    return o.str();
  }
  const Summary s = SampleSet(samples).summary();
  o << "{\"count\": " << s.count << ", \"mean\": " << number(s.mean)
    << ", \"p50\": " << number(s.p50) << ", \"p99\": " << number(s.p99)
    << ", \"stddev\": " << number(s.stddev.value_or(0.0)) << ", \"min\": " << number(s.min)
    << ", \"max\": " << number(s.max) << "}";
  return o.str();
}

template <typename T>
std::string array_json(const std::vector<T>& values) {
  std::string out = "[";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) out += ", ";
    out += number(static_cast<double>(values[i]));
  }
  return out + "]";
}

// Mean over GPUs of each phase's time per step.
std::vector<double> mean_over_gpus(const std::vector<std::array<double, kPhaseCount>>& per_gpu) {
  std::vector<double> mean(kPhaseCount, 0.0);
  for (const auto& g : per_gpu) {
    for (int p = 0; p < kPhaseCount; ++p) mean[p] += g[p];
  }
  for (double& v : mean) v /= std::max<size_t>(1, per_gpu.size());
  return mean;
}
std::vector<double> mean_phase_us(const SimulationResult& r) {
  return mean_over_gpus(r.gpu_phase_us);
}
// Each phase's mean time not hidden behind computation: a communication phase's exposed part,
// a compute phase's whole time. They add up to the GPU time the step cannot hide.
std::vector<double> mean_exposed_us(const SimulationResult& r) {
  std::vector<double> exposed = mean_phase_us(r);
  const std::vector<double> hidden = mean_over_gpus(r.gpu_hidden_us);
  for (int p = 0; p < kPhaseCount; ++p) exposed[p] = std::max(0.0, exposed[p] - hidden[p]);
  return exposed;
}

// {"phase": value, ...} over the communication phases.
std::string communication_json(const std::vector<double>& per_phase) {
  std::string out = "{";
  bool first = true;
  for (int p = 0; p < kPhaseCount; ++p) {
    if (!is_communication_phase(static_cast<Phase>(p))) continue;
    out += (first ? "" : ", ") + json_string(phase_name(static_cast<Phase>(p))) + ": " +
           number(per_phase[p]);
    first = false;
  }
  return out + "}";
}

}  // namespace

void write_run_json(std::ostream& out, const Scenario& scenario, const SimulationResult& r) {
  const std::vector<double> phases = mean_phase_us(r);
  out << "{\n";
  out << "  \"scenario\": " << json_string(scenario.name) << ",\n";
  out << "  \"model\": " << json_string(scenario.model.name) << ",\n";
  out << "  \"workload\": " << json_string(workload_kind_name(scenario.workload.kind)) << ",\n";
  out << "  \"schedule\": " << json_string(schedule_name(scenario.workload.schedule)) << ",\n";
  out << "  \"gpus\": " << r.gpus << ",\n";
  out << "  \"parallelism\": {\"tp\": " << scenario.parallel.tp
      << ", \"ep\": " << scenario.parallel.ep << ", \"dp\": " << scenario.parallel.dp
      << ", \"pp\": " << scenario.parallel.pp << "},\n";
  out << "  \"dispatch_algorithm\": "
      << "\"" << to_string(r.dispatch_algorithm) << "\""
      << ",\n";
  out << "  \"token_model\": {\"origin\": "
      << json_string(token_model_origin_name(scenario.router.token_model_origin))
      << ", \"summary\": " << json_string(token_model_summary(scenario.router)) << "},\n";
  out << "  \"network_model\": {\"tier\": " << json_string(network_tier_name(r.network_tier))
      << ", \"by_default\": " << (r.network_tier_by_default ? "true" : "false") << "},\n";
  // Only when on, so other runs' documents stay as they were.
  if (r.routing_reused_across_micro_batches) {
    out << "  \"routing_reused_across_micro_batches\": true,\n";
  }
  out << "  \"measured_steps\": " << r.measured_steps << ",\n";
  // Only in a run stopped early, so a complete run's document stays as it was.
  if (r.partial) {
    out << "  \"partial\": true,\n  \"steps_run\": " << r.steps_run
        << ",\n  \"steps\": " << scenario.workload.steps << ",\n";
  }
  out << "  \"step_time_us\": " << summary_json(r.step_time_us) << ",\n";
  out << "  \"dispatch_us\": " << summary_json(r.dispatch_us) << ",\n";
  out << "  \"combine_us\": " << summary_json(r.combine_us) << ",\n";
  out << "  \"expert_compute_us\": " << summary_json(r.expert_compute_us) << ",\n";
  out << "  \"attention_us\": " << summary_json(r.attention_us) << ",\n";
  out << "  \"idle_fraction\": " << number(r.idle_fraction) << ",\n";
  out << "  \"routed_pairs\": " << r.routed_pairs << ",\n";
  out << "  \"dropped_pairs\": " << r.dropped_pairs << ",\n";
  out << "  \"dropped_token_fraction\": " << number(r.dropped_token_fraction) << ",\n";
  out << "  \"expert_load\": {\"max_over_mean\": " << number(r.expert_max_over_mean)
      << ", \"max_over_mean_per_exchange\": " << summary_json(r.exchange_expert_max_over_mean)
      << ", \"summed_over_layers_max_over_mean\": "
      << number(r.expert_summed_over_layers_max_over_mean)
      << ", \"tokens_per_expert\": " << array_json(r.tokens_per_expert) << "},\n";
  out << "  \"gpu_load\": {\"max_over_mean\": " << number(r.gpu_max_over_mean)
      << ", \"max_over_mean_per_exchange\": " << summary_json(r.exchange_gpu_max_over_mean)
      << ", \"summed_over_step_max_over_mean\": " << number(r.gpu_summed_over_step_max_over_mean)
      << ", \"tokens_per_gpu\": " << array_json(r.gpu_tokens) << "},\n";
  write_exchanges_json(out, r.exchanges);
  out << ",\n";
  out << "  \"alltoall_bandwidth_gbps_per_gpu\": {\"total\": " << number(r.alltoall_gbps_per_gpu)
      << ", \"nvlink\": " << number(r.alltoall_nvlink_gbps_per_gpu)
      << ", \"network\": " << number(r.alltoall_network_gbps_per_gpu) << "},\n";
  out << "  \"tokens_per_s_per_gpu\": " << number(r.tokens_per_s_per_gpu) << ",\n";
  out << "  \"tokens_per_s_per_node\": " << number(r.tokens_per_s_per_node) << ",\n";
  out << "  \"tokens_counted\": " << json_string(throughput_tokens(scenario.workload.kind))
      << ",\n";
  // Only with prefix caching, so other documents keep their fields.
  if (scenario.workload.cached_prefix_tokens > 0) {
    const Workload& w = scenario.workload;
    out << "  \"prefix_cache\": {\"hit_rate\": " << number(w.prefix_cache_hit_rate)
        << ", \"cached_tokens_per_sequence\": " << w.cached_prefix_tokens
        << ", \"computed_tokens_per_gpu\": " << w.computed_tokens_per_gpu() << "},\n";
  }
  out << "  \"phase_us_per_gpu\": {";
  for (int p = 0; p < kPhaseCount; ++p) {
    out << (p ? ", " : "") << json_string(phase_name(static_cast<Phase>(p))) << ": "
        << number(phases[p]);
  }
  out << "},\n";
  out << "  \"exposed_us_per_gpu\": " << communication_json(mean_exposed_us(r)) << ",\n";
  out << "  \"hidden_us_per_gpu\": " << communication_json(mean_over_gpus(r.gpu_hidden_us))
      << ",\n";
  out << "  \"wall_seconds\": {\"routing\": " << number(r.routing_wall_s)
      << ", \"simulation\": " << number(r.simulation_wall_s)
      << ", \"blas_core\": " << json_string(r.blas_core) << "},\n";
  out << "  \"simulator_work\": {\"engine_events\": " << r.work.engine_events
      << ", \"flows\": " << r.work.flows
      << ", \"rate_recomputations\": " << r.work.rate_recomputations
      << ", \"region_flows\": " << r.work.region_flows
      << ", \"rate_changes\": " << r.work.rate_changes << "}\n";
  out << "}\n";
}

void print_run_table(std::ostream& out, const Scenario& scenario, const SimulationResult& r) {
  out << "moesim run: " << scenario.name;
  if (!scenario.description.empty()) out << " (" << scenario.description << ")";
  out << "\n  model " << scenario.model.name << ", " << workload_kind_name(scenario.workload.kind)
      << ", " << r.gpus << " GPUs (" << scenario.cluster.gpu.name << "), "
      << plan_label(scenario.parallel) << ", " << scenario.workload.tokens_per_gpu
      << " tokens/GPU x " << scenario.workload.micro_batches << " micro-batches, "
      << r.measured_steps << " measured steps";
  if (scenario.workload.schedule != ScheduleKind::kOneFOneB) {
    out << ", schedule " << schedule_name(scenario.workload.schedule);
  }
  if (scenario.workload.virtual_pipeline_stages > 1) {
    out << ", interleaved over " << scenario.workload.virtual_pipeline_stages << " virtual stages";
  }
  out << "\n";
  out << "  token model: " << token_model_summary(scenario.router) << "\n";
  if (r.routing_reused_across_micro_batches) {
    out << "  routing: micro-batch 0's decisions reused by every micro-batch of a step "
           "(router.reuse_routing_across_micro_batches)\n";
  }
  if (r.partial) {
    out << "  partial: stopped after " << r.steps_run << " of " << scenario.workload.steps
        << " steps (" << scenario.workload.warmup_steps << " warm-up)\n";
  }
  out << "\n";

  out << "  " << std::left << std::setw(20) << "phase" << std::right << std::setw(12) << "mean us"
      << std::setw(12) << "p50 us" << std::setw(12) << "p99 us" << std::setw(12) << "stddev"
      << std::setw(9) << "samples"
      << "\n";
  auto row = [&](const char* name, const std::vector<double>& samples) {
    out << "  " << std::left << std::setw(20) << name << std::right << std::fixed
        << std::setprecision(1);
    if (samples.empty()) {
      out << std::setw(12) << "-" << std::setw(12) << "-" << std::setw(12) << "-" << std::setw(12)
          << "-" << std::setw(9) << 0 << "\n";
      return;
    }
    const Summary s = SampleSet(samples).summary();
    out << std::setw(12) << s.mean << std::setw(12) << s.p50 << std::setw(12) << s.p99
        << std::setw(12) << s.stddev.value_or(0.0) << std::setw(9) << s.count << "\n";
  };
  row("step", r.step_time_us);
  row("dispatch (fwd)", r.dispatch_us);
  row("combine (fwd)", r.combine_us);
  row("expert compute", r.expert_compute_us);
  row("attention", r.attention_us);

  // Percentages are of the exposed time (what the step cannot hide); communication shows the
  // part of it that was exposed beside its whole time.
  const std::vector<double> phases = mean_phase_us(r);
  const std::vector<double> exposed = mean_exposed_us(r);
  const double total = std::accumulate(exposed.begin(), exposed.end(), 0.0);
  out << "\n  time per GPU per step, by phase (mean over GPUs; % of exposed time)\n";
  for (int p = 0; p < kPhaseCount; ++p) {
    if (phases[p] <= 0.0) continue;
    out << "  " << std::left << std::setw(20) << phase_name(static_cast<Phase>(p)) << std::right
        << std::setw(12) << std::setprecision(1) << phases[p] << " us" << std::setw(8)
        << std::setprecision(1) << (total > 0 ? 100.0 * exposed[p] / total : 0.0) << " %";
    if (is_communication_phase(static_cast<Phase>(p))) {
      out << "   exposed " << exposed[p] << " us, hidden " << phases[p] - exposed[p] << " us";
    }
    out << "\n";
  }
  out << std::setprecision(3);
  out << "\n  idle fraction            " << r.idle_fraction << "\n";
  out << "  dropped token fraction   " << r.dropped_token_fraction << " (" << r.dropped_pairs
      << " of " << r.routed_pairs << " token-expert pairs)\n";
  // Per exchange (what a layer waits for), then the ratio of the step's totals.
  auto load_row = [&](const char* name, const std::vector<double>& per_exchange,
                      const char* summed_name, double summed) {
    out << "  " << name;
    if (per_exchange.empty()) {
      out << "-";
    } else {
      const SampleSet s(per_exchange);
      out << s.mean() << " per exchange (p50 " << s.p50() << ", p99 " << s.p99() << ", max "
          << s.max() << ")";
    }
    out << "; " << summed_name << " " << summed << "\n";
  };
  load_row("expert load max/mean     ", r.exchange_expert_max_over_mean, "summed over layers",
           r.expert_summed_over_layers_max_over_mean);
  load_row("GPU load max/mean        ", r.exchange_gpu_max_over_mean, "summed over the step",
           r.gpu_summed_over_step_max_over_mean);
  out << std::setprecision(1);
  out << "  all-to-all per GPU       " << r.alltoall_gbps_per_gpu << " GB/s (NVLink "
      << r.alltoall_nvlink_gbps_per_gpu << ", network " << r.alltoall_network_gbps_per_gpu << "), "
      << to_string(r.dispatch_algorithm) << "\n";
  out << "  throughput               " << std::setprecision(0) << r.tokens_per_s_per_gpu
      << " tokens/s per GPU, " << r.tokens_per_s_per_node << " per node ("
      << throughput_tokens(scenario.workload.kind) << ")\n";
  if (scenario.workload.cached_prefix_tokens > 0) {
    const Workload& w = scenario.workload;
    out << "  prefix cache             " << w.cached_prefix_tokens << " of " << w.sequence_length
        << " tokens per sequence hit (rate " << std::setprecision(3) << w.prefix_cache_hit_rate
        << "): " << w.computed_tokens_per_gpu() << " of " << w.tokens_per_gpu
        << " tokens per GPU computed\n";
  }
  // Routing runs beside the simulation: both count from each step's start.
  out << std::setprecision(2) << "  wall clock               routing done after "
      << r.routing_wall_s << " s, simulation " << r.simulation_wall_s << " s (" << r.routing_wait_s
      << " s of it waiting for routing; gate GEMMs on OpenBLAS's " << r.blas_core << " kernels)\n";
  // Why this tier: the scenario's choice, or the default rule (choose_network_tier).
  std::string why = " (set by the scenario)";
  if (r.network_tier_by_default) {
    why = r.network_tier == NetworkTier::kFast ? " (the default from " : " (the default below ";
    why += std::to_string(kFastTierFromGpus) + " GPUs";
    if (r.network_tier == NetworkTier::kExact && r.gpus >= kFastTierFromGpus) {
      why = " (the default with a completion tolerance";
    }
    why += ")";
  }
  out << "  network model            " << network_tier_name(r.network_tier) << why << "\n";
  const double per_recomputation = r.work.rate_recomputations > 0
                                       ? static_cast<double>(r.work.region_flows) /
                                             static_cast<double>(r.work.rate_recomputations)
                                       : 0.0;
  out << "  simulator work           " << r.work.engine_events << " events, " << r.work.flows
      << " flows, " << r.work.rate_recomputations << " rate recomputations ("
      << std::setprecision(0) << per_recomputation << " flows each)\n";

  print_slowest_exchanges(out, r.exchanges);

  // Verdict: the phase with the most exposed time, the one bounding the step (hidden
  // communication does not lengthen it).
  int top = 0;
  for (int p = 1; p < kPhaseCount; ++p) {
    if (exposed[p] > exposed[top]) top = p;
  }
  if (total > 0) {
    out << "\n  verdict: " << (phases[top] > exposed[top] ? "exposed " : "")
        << phase_name(static_cast<Phase>(top)) << " takes the most time (" << std::setprecision(0)
        << 100.0 * exposed[top] / total << " % of exposed GPU time)\n";
  }
  out.unsetf(std::ios::floatfield);
}

}  // namespace moesim
