// `moesim run [SCENARIO]`: simulate a scenario file (the default scenario when none is given)
// and print its report as a table or JSON.
#include <unistd.h>
#include <boost/program_options.hpp>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "analysis/offload_output.h"
#include "analysis/run_report.h"
#include "cli/commands.h"
#include "cli/interrupt.h"
#include "cli/options.h"
#include "cli/progress.h"
#include "cli/report_notes.h"
#include "models/router/router.h"
#include "scenarios/scenario.h"
#include "sim/offload.h"
#include "sim/simulation.h"

namespace moesim::cli {

int run_command(int argc, char** argv) {
  namespace po = boost::program_options;
  std::string scenario_path;
  std::string format = "table";
  std::string json_path;
  std::string report_dir;
  int32_t threads = 2;
  po::options_description opts(
      "moesim run [SCENARIO] [options]\n\nSimulates SCENARIO (protobuf text; default: " +
      default_scenario_path().string() + ")");
  opts.add_options()("help,h", "show this help")(
      "format", po::value(&format)->default_value("table"), "output: table or json")(
      "json", po::value(&json_path), "also write the JSON document to this file")(
      "report", po::value(&report_dir), "write an HTML report with figures into this folder")(
      "threads", po::value(&threads)->default_value(2), "routing threads (results do not change)")(
      "no-progress", "do not print progress on stderr");
  po::variables_map vm;
  if (!parse_with_scenario(argc, argv, opts, scenario_path, vm)) return 0;
  if (format != "table" && format != "json") {
    throw std::invalid_argument("--format must be table or json, not '" + format + "'");
  }
  if (threads < 1) throw std::invalid_argument("--threads must be at least 1");

  const std::filesystem::path path =
      scenario_path.empty() ? default_scenario_path() : std::filesystem::path(scenario_path);
  const Scenario scenario = load_scenario(path);
  if (scenario.offload) {
    // Decode with offloaded experts: one GPU, its own closed-form pipeline (sim/offload.h).
    if (!report_dir.empty()) throw std::invalid_argument("--report: not for offload scenarios");
    Router router(scenario.router);
    const OffloadResult result = simulate_offload(scenario.model, scenario.cluster.gpu,
                                                  *scenario.offload, router, scenario.seed);
    if (!json_path.empty()) {
      std::ofstream file(json_path);
      if (!file) throw std::runtime_error("cannot write " + json_path);
      write_offload_json(file, scenario, result);
    }
    if (format == "json") {
      write_offload_json(std::cout, scenario, result);
    } else {
      print_offload_table(std::cout, scenario, result);
    }
    return 0;
  }
  SimulationOptions options;
  options.threads = threads;
  options.keep_traffic_matrix = !report_dir.empty();
  ProgressBar progress("simulating " + scenario.name, !vm.count("no-progress"));
  options.step_progress = [&progress](int32_t step, int32_t steps, double fraction) {
    progress.update_step(step, steps, fraction);
  };
  const InterruptStop interrupt;
  options.stop_requested = interrupt.token();
  const SimulationResult result = simulate(scenario, options);
  progress.finish();

  if (!json_path.empty()) {
    std::ofstream file(json_path);
    if (!file) throw std::runtime_error("cannot write " + json_path);
    write_run_json(file, scenario, result);
  }
  if (!report_dir.empty()) {
    write_and_announce_run_report("run", report_dir, scenario, result);
  }
  if (format == "json") {
    write_run_json(std::cout, scenario, result);
  } else {
    print_run_table(std::cout, scenario, result);
  }
  if (result.partial) {
    std::cerr << "moesim run: interrupted: " << result.steps_run << " of "
              << scenario.workload.steps << " steps simulated; the output covers those\n";
    return kInterruptedExitCode;
  }
  return 0;
}

}  // namespace moesim::cli
