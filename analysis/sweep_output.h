// A sweep's rows as output: the CSV (write, read, merge of shards) and the table `moesim sweep
// --out` prints. The rows and their metric list come from sim/sweep.h.
#pragma once

#include <cstdint>
#include <istream>
#include <ostream>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "sim/sweep.h"

namespace moesim {

// The CSV: a header line "point,points,<axis names...>,<kSweepMetricNames...>" then one line
// per row (an empty field where a metric has no value). `points` is the sweep's total point count
// (so merge can tell a missing point). Numbers are written in the shortest form that reads back to
// the same double.
std::vector<std::string> sweep_csv_header(std::span<const std::string> axis_names);
void write_sweep_csv(std::ostream& out, std::span<const std::string> axis_names,
                     int64_t total_points, std::span<const SweepRow> rows);
// The CSV's lines one at a time, without the line break (what write_sweep_csv writes, for a
// writer that appends each row as it finishes).
std::string sweep_csv_header_line(std::span<const std::string> axis_names);
std::string sweep_csv_row_line(const SweepRow& row, int64_t total_points);

// A sweep CSV as text lines: its header line and its data lines keyed by point index.
struct SweepCsv {
  std::string header;
  int64_t total_points = 0;
  std::vector<std::pair<int64_t, std::string>> rows;
};
// Reads a sweep CSV; throws SweepError naming `name` and the line for a malformed one.
SweepCsv read_sweep_csv(std::istream& in, const std::string& name);

// What `moesim sweep --resume` finds in a sweep CSV that a run wrote row by row: the text of its
// complete lines (a line cut by a kill, without its line break, is left out) and the rows they
// hold. An empty text holds nothing (start afresh).
struct SweepResume {
  std::string complete_text;
  std::vector<SweepRow> rows;  // as read back (numbers round-trip exactly)
};
// Reads `text` (the file `name`) for resuming the sweep with these axes, total points and
// points to run (the shard's, in order). Throws SweepError naming the file when its header
// differs from this sweep's (saying which axis or metric columns differ), its rows are from a
// sweep of another point count, or they are not the first points of `points` in order with
// their axis values.
SweepResume read_sweep_resume(const std::string& text, const std::string& name,
                              std::span<const std::string> axis_names, int64_t total_points,
                              std::span<const SweepPoint> points);

// Joins shard CSVs into one ordered by point index. Throws SweepError when headers or total
// point counts differ, a point appears twice, or a point in 0..points-1 is missing (naming the
// files and points).
void merge_sweep_csv(std::span<const std::pair<std::string, SweepCsv>> shards, std::ostream& out);

// The table `moesim sweep --out FILE` prints: point, axis values, step p50/p99, dispatch and
// combine means (ms), dropped, load max/mean, idle and tokens/s per GPU, right-aligned.
void print_sweep_table(std::ostream& out, const std::vector<std::string>& axes,
                       const std::vector<SweepRow>& rows);

}  // namespace moesim
