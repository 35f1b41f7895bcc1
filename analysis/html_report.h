// The `--report DIR` output of run, sweep and compare: a self-contained index.html (inline CSS,
// figures as relative SVG images) with every figure's CSV and gnuplot script beside it.
#pragma once

#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "analysis/plots.h"
#include "scenarios/scenario.h"
#include "sim/simulation.h"
#include "sim/sweep.h"

namespace moesim {

struct ReportOptions {
  std::string gnuplot = "gnuplot";  // command name (searched on PATH) or path
};

// What a report wrote, names relative to its folder.
struct ReportOutput {
  std::filesystem::path index_html;
  std::vector<std::string> figures;    // the .svg files, in page order
  std::vector<std::string> csv_files;  // every CSV, figures' data and tables
  std::vector<std::string> warnings;   // gnuplot's warnings, "figure: text"
};

// `moesim run --report DIR`: phase time per GPU (stacked), tokens per expert per MoE layer
// (heat map) and max/mean load per layer, expert rows per GPU, the GPU-to-GPU dispatch matrix
// (when result.dispatch_matrix_bytes is kept) and the step / dispatch / combine distributions
// (histogram and CDF, p50 and p99 marked). Creates DIR; overwrites the report's own files.
ReportOutput write_run_report(const std::filesystem::path& dir, const Scenario& scenario,
                              const SimulationResult& result, const ReportOptions& options = {});

// A sweep's results: one row per point with a value per axis (axes in file order) and a value
// per metric. Metric names carry their unit (`_us`, `_fraction`, ...).
struct SweepReportRow {
  std::vector<std::string> axis_values;
  std::vector<double> metrics;
};
struct SweepReportTable {
  std::vector<std::string> axis_names;
  std::vector<std::string> metric_names;
  std::vector<SweepReportRow> rows;
};
// The table of a sweep's rows for its report: every metric of sim/sweep.h's list, named as the
// sweep CSV names them, 0 where a row has no value (a stddev of one measured step).
SweepReportTable sweep_report_table(std::span<const std::string> axis_names,
                                    std::span<const SweepRow> rows);

// `moesim sweep --report DIR`: sweep.csv (every point) and, for each metric and each axis, the
// metric against that axis with one line per combination of the other axes' values. Numeric
// axes in ascending order are drawn to scale, others as categories in order of appearance.
// Throws ReportError on rows of the wrong width or two rows at the same point.
ReportOutput write_sweep_report(const std::filesystem::path& dir, const Scenario& scenario,
                                const SweepReportTable& table, const ReportOptions& options = {});

// One evaluated plan of `moesim compare`.
struct ComparePlanEntry {
  std::string cluster;  // e.g. "dgx-h100:nodes=4"; may be empty with one cluster
  std::string plan;     // e.g. "TP2 x EP4 x DP1 x PP1"
  SimulationResult result;
  std::optional<double> memory_bytes_per_gpu;  // peak need per GPU
  std::optional<double> hbm_bytes_per_gpu;     // what the GPU has
};

// `moesim compare --report DIR`: the plans side by side, in the order given: compare.csv,
// phase time per plan (stacked), step time p50/p99, tokens/s per GPU, memory against HBM.
ReportOutput write_compare_report(const std::filesystem::path& dir, const Scenario& scenario,
                                  std::span<const ComparePlanEntry> plans,
                                  const ReportOptions& options = {});

}  // namespace moesim
