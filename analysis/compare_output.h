// What `moesim compare` prints: the verdict, the ranked tables, JSON and CSV of a comparison
// that sim/compare.h computed, and with several models each one's best plan, size and cost.
#pragma once

#include <optional>
#include <ostream>
#include <span>
#include <string>

#include "scenarios/scenario.h"
#include "sim/compare.h"

namespace moesim {

// "fastest: <cluster> <plan>, p50 X ms, N.NNx faster than the next plan that fits ..." .
std::string compare_verdict(std::span<const ClusterComparison> comparisons);

// US dollars per million tokens at `gpu_hour_usd` per GPU-hour and `tokens_per_s_per_gpu`
// (the step's tokens: trained, prefilled, or decoded, one per sequence per step):
// gpu_hour_usd / 3600 / tokens_per_s_per_gpu * 1e6. Infinite at zero throughput.
double usd_per_million_tokens(double gpu_hour_usd, double tokens_per_s_per_gpu);

// One model's standing on one cluster: its best plan and what a token costs.
struct ModelOutcome {
  const ClusterComparison* comparison = nullptr;
  const PlanOutcome* best = nullptr;  // the fastest plan (step p50) that fits in HBM, else the
  bool fits = false;                  // fastest overall (then fits is false)
  // Matrix FLOPs per token: 2 x ModelSpec::active_matmul_params(), x3 when training.
  double gflop_per_token = 0.0;
  Bytes weights;  // the whole model's weights in its format (ModelSpec::weights)
  std::optional<double> usd_per_million_tokens;  // with a GPU-hour price
};
ModelOutcome model_outcome(const ClusterComparison& comparison, WorkloadKind kind,
                           std::optional<double> gpu_hour_usd);

// With several models: per cluster, which model gives the most tokens/s per GPU on this
// workload (one whose best plan fits before any that does not), by how much, and why: the
// per-step time each other model spends more or less in compute, all-to-all, TP collectives
// and the rest, largest first, with the compute per token and weight sizes behind them.
std::string model_verdict(std::span<const ClusterComparison> comparisons, WorkloadKind kind,
                          std::optional<double> gpu_hour_usd);

// Ranked tables (one per cluster, side by side in one table when several; with several models
// a model column, a table of each model's best plan and model_verdict), JSON, or CSV.
// `gpu_hour_usd` adds the cost per million tokens (and the best-plan table with one model).
void print_compare_table(std::ostream& out, const Scenario& scenario,
                         std::span<const ClusterComparison> comparisons,
                         std::optional<double> gpu_hour_usd = std::nullopt);
void write_compare_json(std::ostream& out, const Scenario& scenario,
                        std::span<const ClusterComparison> comparisons,
                        std::optional<double> gpu_hour_usd = std::nullopt);
void write_compare_csv(std::ostream& out, std::span<const ClusterComparison> comparisons,
                       std::optional<double> gpu_hour_usd = std::nullopt);

}  // namespace moesim
