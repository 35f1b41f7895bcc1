// Scenario sweeps: the cross product of a scenario's sweep axes as numbered points, each run
// as its own simulation on a pool of threads, and what each point measured (the sweep's metric
// list). The CSV and table they are written as: analysis/sweep_output.h.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "scenarios/scenario.h"
#include "sim/simulation.h"

namespace moesim {

// A bad sweep request or a bad sweep CSV (shard text, header mismatch, missing point).
class SweepError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// One point of the cross product: its index and the value of each axis, in the file's order.
struct SweepPoint {
  int64_t index = 0;
  std::vector<std::pair<std::string, std::string>> axis_values;
};

// The cross product of `axes` in file order, the last axis varying fastest; point i's value of
// axis a is values[(i / (product of later axes' sizes)) mod size_a]. No axes: one point, index 0.
std::vector<SweepPoint> sweep_points(std::span<const SweepAxis> axes);

// Every `count`-th point: shard `index` (1-based) of `count` runs the points p with
// p mod count == index - 1.
struct SweepShard {
  int32_t index = 1;
  int32_t count = 1;
  bool holds(int64_t point) const { return point % count == index - 1; }
};
// Parses "I/N" (1 <= I <= N); throws SweepError naming the text otherwise.
SweepShard parse_shard(std::string_view text);

// What a sweep measures at each point, in the order of the sweep CSV's columns. The one list:
// the CSV header, `moesim sweep`'s table, its --report and the compare report read it.
enum class SweepMetric : uint8_t {
  kStepTimeMeanUs,
  kStepTimeP50Us,
  kStepTimeP99Us,
  kStepTimeStddevUs,  // absent with one measured step
  kDispatchMeanUs,    // dispatch and combine: 0 without an all-to-all
  kDispatchP99Us,
  kCombineMeanUs,
  kCombineP99Us,
  kExpertComputeMeanUs,
  kDroppedTokenFraction,
  kExpertMaxOverMean,  // the mean over exchanges (SimulationResult::expert_max_over_mean)
  kGpuMaxOverMean,
  kIdleFraction,
  kTokensPerSPerGpu,
};
inline constexpr size_t kSweepMetricCount = 14;
// The metrics' names as the sweep CSV's header shows them, in SweepMetric order; each carries
// its unit (`_us`, `_fraction`, ...).
inline constexpr std::array<std::string_view, kSweepMetricCount> kSweepMetricNames = {
    "step_time_mean_us",      "step_time_p50_us",     "step_time_p99_us",
    "step_time_stddev_us",    "dispatch_mean_us",     "dispatch_p99_us",
    "combine_mean_us",        "combine_p99_us",       "expert_compute_mean_us",
    "dropped_token_fraction", "expert_max_over_mean", "gpu_max_over_mean",
    "idle_fraction",          "tokens_per_s_per_gpu"};
std::string_view sweep_metric_name(SweepMetric metric);

// One result's metrics, indexed by SweepMetric; empty where there is no value.
struct SweepMetrics {
  std::array<std::optional<double>, kSweepMetricCount> values{};

  // The value, 0 where there is none (as figures draw it).
  double operator[](SweepMetric m) const { return values[static_cast<size_t>(m)].value_or(0.0); }
  const std::optional<double>& at(SweepMetric m) const { return values[static_cast<size_t>(m)]; }
};
SweepMetrics sweep_metrics(const SimulationResult& result);

// What one point measured, as a CSV row carries it.
struct SweepRow {
  int64_t point = 0;
  std::vector<std::string> axis_values;
  SweepMetrics metrics;
};

SweepRow sweep_row(const SweepPoint& point, const SimulationResult& result);

struct SweepOptions {
  int32_t threads = 2;  // points run at once, each a simulation with one routing thread
  SweepShard shard;
  // The first `skip_points` points of this shard are done already (a resumed sweep): not run.
  int64_t skip_points = 0;
  // Called after each point with (points done, points to run: the shard's less the skipped);
  // from worker threads, one call at a time.
  std::function<void(int64_t, int64_t)> progress;
  // Called with each finished row in point order, as soon as it and every earlier point to run
  // are done (a point that finishes early is held until then); one call at a time, from worker
  // threads. A writer that flushes each row keeps a valid prefix of the CSV on disk.
  std::function<void(const SweepRow&)> on_row;
  // When set and true, points not yet started are not started (points are the safe points: a
  // running point plays to its end) and run_sweep returns the rows done so far. May be null.
  const std::atomic<bool>* stop_requested = nullptr;
};

// Runs the shard's points of the sweep declared in `scenario_text` (read from `file_name`, for
// errors and relative paths), less the skipped ones. Rows come back ordered by point index; the
// numbers do not depend on threads or sharding. After a stop request, the rows are those of a
// prefix of the points to run (points are started in order, so the finished ones are a prefix
// once the running ones end). A point that fails throws ScenarioError or the simulation's error,
// naming the point (the lowest failing index when several fail); on_row has seen every row
// before it.
std::vector<SweepRow> run_sweep(std::string_view scenario_text, std::string_view file_name,
                                const SweepOptions& options);

}  // namespace moesim
