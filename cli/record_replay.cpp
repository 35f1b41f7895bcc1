// `moesim record`, `moesim replay` and `moesim import`: write a scenario's routing decisions as
// a trace, simulate a scenario with a trace in place of its router, and convert routing logs.
#include <boost/program_options.hpp>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "analysis/run_report.h"
#include "cli/commands.h"
#include "cli/interrupt.h"
#include "cli/options.h"
#include "cli/progress.h"
#include "cli/report_notes.h"
#include "models/trace/import_csv.h"
#include "models/trace/import_jsonl.h"
#include "models/trace/import_npy.h"
#include "scenarios/scenario.h"
#include "sim/trace_replay.h"

namespace moesim::cli {
namespace {

namespace po = boost::program_options;

}  // namespace

int record_command(int argc, char** argv) {
  std::string scenario_path;
  std::string trace_path;
  int32_t threads = 2;
  po::options_description opts(
      "moesim record SCENARIO --trace FILE [options]\n\n"
      "Runs SCENARIO's router for every step, micro-batch, MoE layer and data-holding rank and\n"
      "writes its decisions as a routing trace (one batch per micro-batch: the ranks' tokens in\n"
      "rank order). Dropped pairs are written as empty slots");
  opts.add_options()("help,h", "show this help")("trace", po::value(&trace_path),
                                                 "the trace file to write (required)")(
      "threads", po::value(&threads)->default_value(2), "routing threads (the trace is the same)");
  po::options_description hidden;
  hidden.add_options()("scenario", po::value(&scenario_path));
  po::positional_options_description positional;
  positional.add("scenario", 1);
  po::variables_map vm;
  if (!parse_command_line(argc, argv, opts, hidden, positional, vm)) return 0;
  if (scenario_path.empty()) throw std::invalid_argument("a scenario file is required");
  if (trace_path.empty()) throw std::invalid_argument("--trace FILE is required");
  if (threads < 1) throw std::invalid_argument("--threads must be at least 1");
  const Scenario scenario = load_scenario(scenario_path);
  const RecordSummary s = record_trace(scenario, trace_path, threads);
  std::cout << "recorded " << s.batches << " batches x " << s.header.layers << " MoE layers ("
            << s.header.tokens_per_batch << " tokens, top-" << s.header.top_k << " of "
            << s.header.experts << " experts) to " << trace_path << ": " << s.pairs
            << " token-expert pairs kept, " << s.dropped << " dropped\n";
  return 0;
}

int replay_command(int argc, char** argv) {
  std::string trace_path;
  std::string scenario_path;
  std::string format = "table";
  std::string report_dir;
  po::options_description opts(
      "moesim replay TRACE SCENARIO [options]\n\n"
      "Simulates SCENARIO with the routing decisions of TRACE instead of its router: micro-batch\n"
      "m uses the trace's batch m (wrapping around a shorter trace), split contiguously over\n"
      "the data-holding ranks; experts are placed by the scenario's plan, so a trace recorded\n"
      "at one EP size replays at another");
  opts.add_options()("help,h", "show this help")(
      "format", po::value(&format)->default_value("table"), "output: table or json")(
      "report", po::value(&report_dir), "write an HTML report with figures into this folder")(
      "no-progress", "do not print progress on stderr")(
      "grow-with-fit",
      "when the trace's batches are smaller than the scenario's micro-batch, fit the token "
      "model to the trace and run the scenario's router on it instead of replaying (the "
      "output says which routed)");
  po::options_description hidden;
  hidden.add_options()("trace", po::value(&trace_path))("scenario", po::value(&scenario_path));
  po::positional_options_description positional;
  positional.add("trace", 1).add("scenario", 1);
  po::variables_map vm;
  if (!parse_command_line(argc, argv, opts, hidden, positional, vm)) return 0;
  if (trace_path.empty() || scenario_path.empty()) {
    throw std::invalid_argument("usage: moesim replay TRACE SCENARIO [--format table|json]");
  }
  if (format != "table" && format != "json") {
    throw std::invalid_argument("--format must be table or json, not '" + format + "'");
  }
  const Scenario scenario = load_scenario(scenario_path);
  ProgressBar progress("replaying " + trace_path, !vm.count("no-progress"));
  SimulationOptions options;
  options.step_progress = [&progress](int32_t step, int32_t steps, double fraction) {
    progress.update_step(step, steps, fraction);
  };
  options.keep_traffic_matrix = !report_dir.empty();
  const InterruptStop interrupt;
  options.stop_requested = interrupt.token();
  const ReplayResult r = replay_trace(scenario, trace_path, options, vm.count("grow-with-fit") > 0);
  progress.finish();
  const bool grown = r.scenario.router.token_model_origin == TokenModelOrigin::kFitted;
  if (!grown && r.header.tokens_per_batch > 0 &&
      r.header.tokens_per_batch < micro_batch_tokens(scenario)) {
    std::cerr << "moesim replay: note: the trace's batches hold " << r.header.tokens_per_batch
              << " tokens, the scenario's micro-batch " << micro_batch_tokens(scenario)
              << ": each rank got its share of the smaller batch; --grow-with-fit runs a token "
                 "model fitted to the trace at the scenario's size instead\n";
  }
  if (r.wraps > 0) {
    std::cerr << "moesim replay: note: the trace holds " << r.trace_batches
              << " batches; the run's micro-batches went around it " << r.wraps << " time(s)\n";
  }
  if (!report_dir.empty()) {
    write_and_announce_run_report("replay", report_dir, r.scenario, r.result);
  }
  if (format == "json") {
    write_run_json(std::cout, r.scenario, r.result);
  } else {
    std::cout << "trace: " << trace_path << " (" << r.header.source << ")\n";
    std::cout << "routing: "
              << (grown ? "token model fitted to the trace (--grow-with-fit)" : "the trace")
              << "\n";
    print_run_table(std::cout, r.scenario, r.result);
  }
  if (r.result.partial) {
    std::cerr << "moesim replay: interrupted: " << r.result.steps_run << " of "
              << scenario.workload.steps << " steps simulated; the output covers those\n";
    return kInterruptedExitCode;
  }
  return 0;
}

int import_command(int argc, char** argv) {
  std::string kind;
  std::vector<std::string> inputs;
  std::string out_path;
  ImportOptions options;
  po::options_description opts(
      "moesim import {csv|jsonl|npy} INPUT... --out TRACE [options]\n\n"
      "Converts a routing log to a trace. csv and jsonl take one file; npy takes layer_<L>.npy\n"
      "files in layer order, or one folder holding them (formats: README.md)");
  opts.add_options()("help,h", "show this help")("out", po::value(&out_path),
                                                 "the trace file to write (required)")(
      "experts", po::value(&options.experts)->default_value(0),
      "routed experts (0: from the input's metadata, else max id + 1)")(
      "tokens-per-batch", po::value(&options.tokens_per_batch)->default_value(0),
      "tokens of a layer per trace batch (0: one batch, unless the input numbers its batches)")(
      "source", po::value(&options.source), "text added to the trace header's source");
  po::options_description hidden;
  hidden.add_options()("kind", po::value(&kind))("input", po::value(&inputs));
  po::positional_options_description positional;
  positional.add("kind", 1).add("input", -1);
  po::variables_map vm;
  if (!parse_command_line(argc, argv, opts, hidden, positional, vm)) return 0;
  if (kind != "csv" && kind != "jsonl" && kind != "npy") {
    throw std::invalid_argument("the input kind must be csv, jsonl or npy, not '" + kind + "'");
  }
  if (inputs.empty()) throw std::invalid_argument("no input given");
  if (out_path.empty()) throw std::invalid_argument("--out TRACE is required");
  if (options.experts < 0 || options.tokens_per_batch < 0) {
    throw std::invalid_argument("--experts and --tokens-per-batch must be >= 0");
  }
  if (kind != "npy" && inputs.size() != 1) {
    throw std::invalid_argument(kind + " import takes one input file, got " +
                                std::to_string(inputs.size()));
  }
  ImportResult result;
  if (kind == "csv") {
    result = import_csv(inputs[0], options, out_path);
  } else if (kind == "jsonl") {
    result = import_jsonl(inputs[0], options, out_path);
  } else {
    std::vector<std::filesystem::path> files;
    if (inputs.size() == 1 && std::filesystem::is_directory(inputs[0])) {
      files = npy_layer_files(inputs[0]);
    } else {
      files.assign(inputs.begin(), inputs.end());
    }
    result = import_npy(files, options, out_path);
  }
  for (const std::string& w : result.warnings) std::cerr << "moesim import: warning: " << w << "\n";
  std::cout << "wrote " << out_path << ": " << result.header.layers << " MoE layer(s), "
            << result.header.experts << " experts, top-" << result.header.top_k << ", "
            << result.tokens_per_layer << " tokens per layer in " << result.batches << " batch(es)"
            << (result.header.has_weights ? ", with weights" : "") << "\n";
  return 0;
}

}  // namespace moesim::cli
