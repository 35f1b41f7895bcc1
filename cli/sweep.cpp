// `moesim sweep FILE`: run the cross product of a scenario's sweep axes, one simulation per
// point, into a CSV; `moesim merge OUT SHARD...`: join the CSVs of a sharded sweep.
#include <boost/program_options.hpp>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "analysis/html_report.h"
#include "analysis/sweep_output.h"
#include "cli/commands.h"
#include "cli/interrupt.h"
#include "cli/options.h"
#include "cli/progress.h"
#include "cli/report_notes.h"
#include "scenarios/scenario.h"
#include "sim/sweep.h"

namespace moesim::cli {

int sweep_command(int argc, char** argv) {
  namespace po = boost::program_options;
  std::string scenario_path;
  std::string out_path;
  std::string shard_text = "1/1";
  std::string report_dir;
  int32_t threads = static_cast<int32_t>(std::max(1u, std::thread::hardware_concurrency()));
  po::options_description opts(
      "moesim sweep FILE [options]\n\n"
      "Runs every point of FILE's sweep axes (the cross product, axes in file order, the last\n"
      "varying fastest) as its own simulation, and writes one CSV row per point ordered by\n"
      "point index. Results do not depend on --threads or --shard");
  opts.add_options()("help,h", "show this help")(
      "out", po::value(&out_path),
      "write the CSV to this file, each point's row as soon as it and the points before it are "
      "done (default: stdout, no table)")(
      "resume",
      "with --out: keep the points already in the file (from a run that was stopped or killed) "
      "and run the rest; the file ends as an uninterrupted run writes it")(
      "threads", po::value(&threads)->default_value(threads), "points simulated at once")(
      "shard", po::value(&shard_text)->default_value("1/1"),
      "I/N: run only the points p with p mod N == I-1 (for job arrays; join with moesim merge)")(
      "report", po::value(&report_dir),
      "write an HTML report (each metric against each axis) into this folder")(
      "no-progress", "do not print progress on stderr");
  po::variables_map vm;
  if (!parse_with_scenario(argc, argv, opts, scenario_path, vm)) return 0;
  if (scenario_path.empty()) throw std::invalid_argument("a scenario file is required");
  if (threads < 1) throw std::invalid_argument("--threads must be at least 1");

  const std::string text = read_text_file(scenario_path);
  const Scenario base = parse_scenario(text, scenario_path);
  std::vector<std::string> axes;
  for (const SweepAxis& a : base.sweep) axes.push_back(a.name);
  const auto total = static_cast<int64_t>(sweep_points(base.sweep).size());

  if (vm.count("resume") && out_path.empty()) throw std::invalid_argument("--resume needs --out");

  SweepOptions options;
  options.threads = threads;
  options.shard = parse_shard(shard_text);
  std::vector<SweepPoint> points;
  for (SweepPoint& p : sweep_points(base.sweep)) {
    if (options.shard.holds(p.index)) points.push_back(std::move(p));
  }
  std::vector<SweepRow> rows;  // every row of this shard in the CSV, resumed ones first
  std::ofstream file;
  std::ostream* csv = &std::cout;
  if (!out_path.empty()) {
    std::string existing;
    if (vm.count("resume") && std::filesystem::exists(out_path)) {
      existing = read_text_file(out_path);
    }
    SweepResume resume = read_sweep_resume(existing, out_path, axes, total, points);
    if (!resume.complete_text.empty()) {
      // Drops a last line cut by a kill; the rest is a valid prefix to append to.
      std::filesystem::resize_file(out_path, resume.complete_text.size());
      file.open(out_path, std::ios::binary | std::ios::app);
      rows = std::move(resume.rows);
      options.skip_points = static_cast<int64_t>(rows.size());
      std::cerr << "moesim sweep: resuming " << out_path << ": " << rows.size() << " of "
                << points.size() << " points done\n";
    } else {
      file.open(out_path, std::ios::binary | std::ios::trunc);
    }
    if (!file) throw std::runtime_error("cannot write " + out_path);
    csv = &file;
  }
  if (options.skip_points == 0) *csv << sweep_csv_header_line(axes) << "\n" << std::flush;
  options.on_row = [csv, total](const SweepRow& row) {
    *csv << sweep_csv_row_line(row, total) << "\n" << std::flush;
  };

  ProgressBar progress("sweeping " + base.name, !vm.count("no-progress"));
  options.progress = [&progress](int64_t done, int64_t n) { progress.update(done, n); };
  const InterruptStop interrupt;
  options.stop_requested = interrupt.token();
  const std::vector<SweepRow> ran = run_sweep(text, scenario_path, options);
  progress.finish();
  rows.insert(rows.end(), ran.begin(), ran.end());
  const bool stopped = rows.size() < points.size();
  if (!report_dir.empty()) {
    const SweepReportTable table = sweep_report_table(axes, rows);
    announce_report("sweep", write_sweep_report(report_dir, base, table));
  }
  if (!out_path.empty()) {
    file.close();
    if (!file) throw std::runtime_error("error writing " + out_path);
    print_sweep_table(std::cout, axes, rows);
    std::cout << rows.size() << " of " << total << " points (shard " << options.shard.index << "/"
              << options.shard.count << ") written to " << out_path << "\n";
  }
  if (stopped) {
    std::cerr << "moesim sweep: interrupted: partial: " << rows.size() << " of " << points.size()
              << " points done"
              << (out_path.empty() ? "" : "; run again with --resume to finish " + out_path)
              << "\n";
    return kInterruptedExitCode;
  }
  return 0;
}

int merge_command(int argc, char** argv) {
  if (argc >= 2 && (std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h")) {
    std::cout << "moesim merge OUT.csv SHARD.csv...\n\nJoins the CSVs of `moesim sweep --shard` "
                 "runs into OUT.csv ordered by point index. Fails when headers differ or a point "
                 "is missing or appears twice.\n";
    return 0;
  }
  if (argc < 3) throw std::invalid_argument("usage: moesim merge OUT.csv SHARD.csv...");
  std::vector<std::pair<std::string, SweepCsv>> shards;
  for (int i = 2; i < argc; ++i) {
    std::ifstream in(argv[i], std::ios::binary);
    if (!in) throw std::runtime_error(std::string("cannot read ") + argv[i]);
    shards.emplace_back(argv[i], read_sweep_csv(in, argv[i]));
  }
  std::ostringstream merged;
  merge_sweep_csv(shards, merged);
  std::ofstream out(argv[1], std::ios::binary);
  if (!out) throw std::runtime_error(std::string("cannot write ") + argv[1]);
  out << merged.str();
  out.close();
  if (!out) throw std::runtime_error(std::string("error writing ") + argv[1]);
  return 0;
}

}  // namespace moesim::cli
