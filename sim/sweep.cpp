#include "sim/sweep.h"

#include <algorithm>
#include <charconv>
#include <exception>
#include <mutex>
#include <sstream>
#include <thread>

#include "core/statistics.h"
#include "sim/parallel.h"

namespace moesim {

std::vector<SweepPoint> sweep_points(std::span<const SweepAxis> axes) {
  int64_t total = 1;
  for (const SweepAxis& a : axes) {
    if (a.values.empty()) throw SweepError("sweep axis '" + a.name + "' has no values");
    total *= static_cast<int64_t>(a.values.size());
  }
  std::vector<SweepPoint> points(static_cast<size_t>(total));
  for (int64_t i = 0; i < total; ++i) {
    SweepPoint& p = points[static_cast<size_t>(i)];
    p.index = i;
    p.axis_values.resize(axes.size());
    int64_t rest = i;
    for (size_t a = axes.size(); a-- > 0;) {
      const auto n = static_cast<int64_t>(axes[a].values.size());
      p.axis_values[a] = {axes[a].name, axes[a].values[static_cast<size_t>(rest % n)]};
      rest /= n;
    }
  }
  return points;
}

SweepShard parse_shard(std::string_view text) {
  const auto bad = [&] {
    return SweepError("--shard '" + std::string(text) +
                      "': expected I/N with integers 1 <= I <= N, e.g. 2/8");
  };
  const size_t slash = text.find('/');
  if (slash == std::string_view::npos) throw bad();
  SweepShard s;
  const char* b = text.data();
  const char* e = b + text.size();
  auto r1 = std::from_chars(b, b + slash, s.index);
  auto r2 = std::from_chars(b + slash + 1, e, s.count);
  if (r1.ec != std::errc() || r1.ptr != b + slash || r2.ec != std::errc() || r2.ptr != e ||
      s.count < 1 || s.index < 1 || s.index > s.count) {
    throw bad();
  }
  return s;
}

std::string_view sweep_metric_name(SweepMetric metric) {
  return kSweepMetricNames[static_cast<size_t>(metric)];
}

SweepMetrics sweep_metrics(const SimulationResult& result) {
  SweepMetrics m;
  auto set = [&m](SweepMetric metric, std::optional<double> value) {
    m.values[static_cast<size_t>(metric)] = value;
  };
  const SampleSet steps(result.step_time_us);
  set(SweepMetric::kStepTimeMeanUs, steps.mean());
  set(SweepMetric::kStepTimeP50Us, steps.p50());
  set(SweepMetric::kStepTimeP99Us, steps.p99());
  if (steps.size() > 1) set(SweepMetric::kStepTimeStddevUs, steps.stddev());
  // 0 for a quantity without samples (no all-to-all, no experts).
  const auto mean = [](const std::vector<double>& v) {
    return v.empty() ? 0.0 : SampleSet(v).mean();
  };
  const auto p99 = [](const std::vector<double>& v) {
    return v.empty() ? 0.0 : SampleSet(v).p99();
  };
  set(SweepMetric::kDispatchMeanUs, mean(result.dispatch_us));
  set(SweepMetric::kDispatchP99Us, p99(result.dispatch_us));
  set(SweepMetric::kCombineMeanUs, mean(result.combine_us));
  set(SweepMetric::kCombineP99Us, p99(result.combine_us));
  set(SweepMetric::kExpertComputeMeanUs, mean(result.expert_compute_us));
  set(SweepMetric::kDroppedTokenFraction, result.dropped_token_fraction);
  set(SweepMetric::kExpertMaxOverMean, result.expert_max_over_mean);
  set(SweepMetric::kGpuMaxOverMean, result.gpu_max_over_mean);
  set(SweepMetric::kIdleFraction, result.idle_fraction);
  set(SweepMetric::kTokensPerSPerGpu, result.tokens_per_s_per_gpu);
  return m;
}

SweepRow sweep_row(const SweepPoint& point, const SimulationResult& result) {
  SweepRow row;
  row.point = point.index;
  for (const auto& [name, value] : point.axis_values) row.axis_values.push_back(value);
  row.metrics = sweep_metrics(result);
  return row;
}

std::vector<SweepRow> run_sweep(std::string_view scenario_text, std::string_view file_name,
                                const SweepOptions& options) {
  const Scenario base = parse_scenario(scenario_text, file_name);
  std::vector<SweepPoint> mine;
  int64_t skipped = 0;
  for (SweepPoint& p : sweep_points(base.sweep)) {
    if (!options.shard.holds(p.index)) continue;
    if (skipped < options.skip_points) {
      ++skipped;
      continue;
    }
    mine.push_back(std::move(p));
  }
  if (skipped < options.skip_points) {
    throw SweepError("cannot skip " + std::to_string(options.skip_points) +
                     " points: the shard holds " + std::to_string(skipped));
  }
  const auto count = static_cast<int64_t>(mine.size());
  std::vector<SweepRow> rows(mine.size());
  std::vector<char> finished(mine.size(), 0);
  int64_t done = 0;
  int64_t in_order = 0;  // rows [0, in_order) are finished and handed to on_row
  std::mutex finish_mutex;
  parallel_for(count, options.threads, [&](int64_t i, int32_t) {
    if (options.stop_requested != nullptr && options.stop_requested->load()) return;
    SweepRow row;
    try {
      const Scenario s = parse_scenario_at(scenario_text, file_name, mine[i].axis_values);
      SimulationOptions sim;
      sim.threads = 1;
      row = sweep_row(mine[i], simulate(s, sim));
    } catch (const std::exception& e) {
      std::string where = "sweep point " + std::to_string(mine[i].index) + " (";
      for (size_t a = 0; a < mine[i].axis_values.size(); ++a) {
        where +=
            (a ? ", " : "") + mine[i].axis_values[a].first + "=" + mine[i].axis_values[a].second;
      }
      throw SweepError(where + "): " + e.what());
    }
    const std::lock_guard lock(finish_mutex);
    rows[i] = std::move(row);
    finished[i] = 1;
    while (in_order < count && finished[in_order]) {
      if (options.on_row) options.on_row(rows[in_order]);
      ++in_order;
    }
    if (options.progress) options.progress(++done, count);
  });
  rows.resize(static_cast<size_t>(in_order));
  return rows;
}

}  // namespace moesim
