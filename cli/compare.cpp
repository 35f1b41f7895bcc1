// `moesim compare SCENARIO [--cluster SPEC ...]`: every TP x EP x DP plan of the scenario's
// model on each cluster, simulated on the same global token batch, ranked, with memory per GPU.
#include <boost/program_options.hpp>
#include <iostream>
#include <string>
#include <vector>

#include "analysis/compare_output.h"
#include "analysis/html_report.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "cli/progress.h"
#include "cli/report_notes.h"
#include "scenarios/scenario.h"
#include "sim/compare.h"

namespace moesim::cli {

int compare_command(int argc, char** argv) {
  namespace po = boost::program_options;
  std::string scenario_path;
  std::vector<std::string> cluster_texts;
  std::string format = "table";
  std::string report_dir;
  int32_t threads = 2;
  po::options_description opts(
      "moesim compare SCENARIO [options]\n\n"
      "Simulates every parallelism plan of SCENARIO's model (TP dividing the node's GPUs and the\n"
      "attention heads, EP dividing the routed experts, DP the rest, PP as in the scenario) on\n"
      "the same global token batch, and ranks them by step time (p50). Memory per GPU marks\n"
      "plans that do not fit in HBM");
  opts.add_options()("help,h", "show this help")(
      "cluster", po::value(&cluster_texts),
      "a cluster to compare, repeatable: PRESET[:nodes=N][:nic=GBPS][:oversub=X][:gpu=GPU], "
      "e.g. dgx-h100:nodes=4:nic=400 or nvl72 (default: the scenario's cluster)")(
      "format", po::value(&format)->default_value("table"), "output: table, json or csv")(
      "threads", po::value(&threads)->default_value(2), "plans simulated at once")(
      "report", po::value(&report_dir), "write an HTML report of the plans into this folder")(
      "no-progress", "do not print progress on stderr");
  po::variables_map vm;
  if (!parse_with_scenario(argc, argv, opts, scenario_path, vm)) return 0;
  if (scenario_path.empty()) throw std::invalid_argument("a scenario file is required");
  if (format != "table" && format != "json" && format != "csv") {
    throw std::invalid_argument("--format must be table, json or csv, not '" + format + "'");
  }
  if (threads < 1) throw std::invalid_argument("--threads must be at least 1");

  const std::string text = read_text_file(scenario_path);
  const Scenario scenario = parse_scenario(text, scenario_path);
  std::vector<ClusterChoice> clusters;
  for (const std::string& text : cluster_texts) clusters.push_back(parse_cluster_choice(text));
  ProgressBar progress("comparing plans", !vm.count("no-progress"));
  CompareOptions options;
  options.threads = threads;
  options.progress = [&progress](int64_t done, int64_t total) { progress.update(done, total); };
  const std::vector<ClusterComparison> result =
      compare_plans(text, scenario_path, clusters, options);
  progress.finish();
  if (!report_dir.empty()) {
    std::vector<ComparePlanEntry> entries;
    for (const ClusterComparison& c : result) {
      for (const PlanOutcome& p : c.plans) {
        entries.push_back({result.size() > 1 ? c.label : std::string(), plan_label(p.plan),
                           p.result, static_cast<double>(p.memory.total().count()),
                           static_cast<double>(p.memory.capacity.count())});
      }
    }
    announce_report("compare", write_compare_report(report_dir, scenario, entries));
  }
  if (format == "json") {
    write_compare_json(std::cout, scenario, result);
  } else if (format == "csv") {
    write_compare_csv(std::cout, result);
  } else {
    print_compare_table(std::cout, scenario, result);
  }
  return 0;
}

}  // namespace moesim::cli
