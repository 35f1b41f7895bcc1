// Report figures drawn by gnuplot: each figure is the CSV of its data, a .gp script that reads
// it and draws an SVG beside it, and a checked run of gnuplot; plus a small child-process runner.
#pragma once

#include <cstddef>
#include <filesystem>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace moesim {

// A report could not be written: a file, gnuplot missing or failing, bad figure input.
class ReportError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct ProcessResult {
  int exit_code = 0;  // the exit status, or 128 + signal when killed by one
  std::string stdout_text;
  std::string stderr_text;
};

// Runs argv[0] (searched on PATH when it has no '/') with `argv` in `working_dir`, stdin from
// /dev/null, and captures both outputs. Throws ReportError when the program cannot be started,
// naming it; a non-zero exit is returned, not thrown.
ProcessResult run_program(std::span<const std::string> argv,
                          const std::filesystem::path& working_dir);

// A CSV table: one header line, then rows; cells are RFC 4180-quoted when they need it.
struct CsvTable {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
};
// Round-trip precision (%.9g); "NaN" for a non-finite value.
std::string csv_number(double value);
// Throws ReportError on a row whose width differs from the header's or on a write failure.
void write_csv(const std::filesystem::path& file, const CsvTable& table);

// Okabe & Ito's colour-blind-safe palette, in their order (black first).
inline constexpr const char* kOkabeIto[] = {"#000000", "#E69F00", "#56B4E9", "#009E73",
                                            "#F0E442", "#0072B2", "#D55E00", "#CC79A7"};

// One figure of a report: CSV files (name -> table), the gnuplot script that reads them by
// their names (relative to the report folder) and writes `stem`.svg.
struct Figure {
  std::string stem;  // file stem: letters, digits, '_', '-' and '.'
  std::string title;
  std::string caption;  // one sentence for the page
  std::vector<std::pair<std::string, CsvTable>> data;
  std::string script;  // the .gp text, without terminal and output lines
};

// A bar chart of a CSV whose first column is the bar label and the others are series.
struct BarSeries {
  size_t column = 1;  // column in the table (>= 1)
  std::string title;
  std::string color;       // "#RRGGBB"
  bool patterned = false;  // hatched fill, to tell apart two similar colours
};
struct BarChart {
  std::string stem, title, caption;
  CsvTable table;
  std::vector<BarSeries> series;
  bool stacked = true;  // rowstacked, else clustered side by side
  std::string x_label, y_label;
  double value_scale = 1.0;  // the plot shows value * value_scale (e.g. 1e-3 for us -> ms)
};
Figure bar_figure(const BarChart& chart);

// A heat map of a long-format CSV (x, y, value): one cell per row, on a regular integer grid.
struct HeatMap {
  std::string stem, title, caption;
  CsvTable table;            // columns: x index, y index, value
  double value_scale = 1.0;  // the colour axis shows value / value_scale
  std::string x_label, y_label, value_label;
};
Figure heat_map_figure(const HeatMap& map);

// Lines of a wide CSV: the first column is x, every other column one series.
struct LineChart {
  std::string stem, title, caption;
  CsvTable table;
  bool categorical_x = false;          // x values as labels, evenly spaced, in row order
  std::vector<size_t> series_columns;  // columns drawn (>= 1); empty: every column after x
  std::string x_label, y_label;
};
Figure line_figure(const LineChart& chart);

// Points of a CSV, one per row: x and y from two columns, each coloured by a third column's
// value on a 0-to-1 scale (Viridis), e.g. a part of the y value over its whole.
struct ScatterChart {
  std::string stem, title, caption;
  CsvTable table;
  size_t x_column = 0, y_column = 1, color_column = 2;
  double y_scale = 1.0;  // the plot shows y * y_scale (e.g. 1e-3 for us -> ms)
  std::string x_label, y_label, color_label;
};
Figure scatter_figure(const ScatterChart& chart);

// The distribution of `samples`: a histogram and the empirical CDF side by side, both with the
// p50 and p99 marked. Writes <stem>_histogram.csv (bin_lo, bin_hi, count) and <stem>_cdf.csv
// (value, fraction). Throws ReportError on no samples.
struct Distribution {
  std::string stem, title, caption;
  std::string quantity;  // "step time"
  std::string unit;      // "us", appended to the CSV column names
  // The plot shows value * display_scale in display_unit (e.g. 1e-3 and "ms").
  double display_scale = 1.0;
  std::string display_unit;  // empty: `unit`
};
Figure distribution_figure(const Distribution& spec, std::span<const double> samples);
// Bins for a histogram of `count` samples: ceil(sqrt(count)) within [5, 40].
size_t histogram_bins(size_t count);

// Writes the figure's CSVs and <stem>.gp (an SVG terminal and output line prepended) into `dir`
// and runs `gnuplot` (a command name or path) there. Returns gnuplot's warnings (stderr of a
// successful run, empty when clean). Throws ReportError naming the package when gnuplot is not
// found, and quoting gnuplot's stderr when it fails or draws no SVG.
std::string render_figure(const std::filesystem::path& dir, const Figure& figure,
                          const std::string& gnuplot = "gnuplot");

// A time unit for plotting microsecond values up to `max_us`: "us", "ms" or "s", with the
// factor from microseconds.
struct TimeUnit {
  const char* name;
  double scale;
};
TimeUnit time_unit_for(double max_us);

// A string as a gnuplot single-quoted literal, control characters replaced by spaces.
std::string gnuplot_quote(const std::string& text);

}  // namespace moesim
