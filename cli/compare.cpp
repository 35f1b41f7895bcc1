// `moesim compare SCENARIO [--cluster SPEC ...] [--model PRESET ...] [--gpu-hour-price USD]`:
// every TP x EP x DP plan of the scenario's model (or of each model named) on each cluster,
// simulated on the same global token batch, ranked, with memory per GPU and cost per token.
#include <boost/program_options.hpp>
#include <charconv>
#include <cmath>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "analysis/compare_output.h"
#include "analysis/html_report.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "cli/progress.h"
#include "cli/report_notes.h"
#include "models/moe/model_spec.h"
#include "scenarios/scenario.h"
#include "sim/compare.h"

namespace moesim::cli {
namespace {

std::optional<double> parse_price(const std::string& text) {
  double v = 0.0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, v);
  if (text.empty() || ec != std::errc() || ptr != end || !std::isfinite(v) || !(v > 0.0)) {
    throw std::invalid_argument("--gpu-hour-price '" + text +
                                "': expected a positive number of US dollars per GPU-hour, "
                                "e.g. 2.50");
  }
  return v;
}

}  // namespace

int compare_command(int argc, char** argv) {
  namespace po = boost::program_options;
  std::string scenario_path;
  std::vector<std::string> cluster_texts;
  std::vector<std::string> model_names;
  std::string price_text;
  std::string format = "table";
  std::string report_dir;
  int32_t threads = 2;
  po::options_description opts(
      "moesim compare SCENARIO [options]\n\n"
      "Simulates every parallelism plan of SCENARIO's model (TP dividing the node's GPUs and the\n"
      "attention heads, EP dividing the routed experts, DP the rest, PP as in the scenario) on\n"
      "the same global token batch, and ranks them by step time (p50). Memory per GPU marks\n"
      "plans that do not fit in HBM. With --model, each model named (MoE or dense) in place of\n"
      "the scenario's, on the same clusters and workload, with each one's best plan, size and\n"
      "cost, and which wins and why");
  opts.add_options()("help,h", "show this help")(
      "cluster", po::value(&cluster_texts),
      "a cluster to compare, repeatable: PRESET[:nodes=N][:nic=GBPS][:oversub=X][:gpu=GPU], "
      "e.g. dgx-h100:nodes=4:nic=400 or nvl72 (default: the scenario's cluster)")(
      "model", po::value(&model_names),
      "a model preset to compare, repeatable (default: the scenario's model), e.g. "
      "--model mixtral-8x7b --model llama-2-70b")(
      "gpu-hour-price", po::value(&price_text),
      "US dollars per GPU-hour: adds the cost per million tokens (trained, prefilled or "
      "decoded)")("format", po::value(&format)->default_value("table"),
                  "output: table, json or csv")("threads", po::value(&threads)->default_value(2),
                                                "plans simulated at once")(
      "report", po::value(&report_dir), "write an HTML report of the plans into this folder")(
      "no-progress", "do not print progress on stderr");
  po::variables_map vm;
  if (!parse_with_scenario(argc, argv, opts, scenario_path, vm)) return 0;
  if (scenario_path.empty()) throw std::invalid_argument("a scenario file is required");
  if (format != "table" && format != "json" && format != "csv") {
    throw std::invalid_argument("--format must be table, json or csv, not '" + format + "'");
  }
  if (threads < 1) throw std::invalid_argument("--threads must be at least 1");
  const std::optional<double> price =
      vm.count("gpu-hour-price") ? parse_price(price_text) : std::nullopt;
  for (size_t i = 0; i < model_names.size(); ++i) {
    const std::string& name = model_names[i];
    if (find_model_preset(name) == nullptr) {
      std::string names;
      for (const ModelSpec& m : model_presets()) names += (names.empty() ? "" : ", ") + m.name;
      throw std::invalid_argument("--model '" + name +
                                  "': unknown model preset; presets: " + names);
    }
    for (size_t j = 0; j < i; ++j) {
      if (model_names[j] == name) {
        throw std::invalid_argument("--model '" + name + "' is given twice");
      }
    }
  }

  const std::string text = read_text_file(scenario_path);
  const Scenario scenario = parse_scenario(text, scenario_path);
  std::vector<ClusterChoice> clusters;
  for (const std::string& text : cluster_texts) clusters.push_back(parse_cluster_choice(text));
  ProgressBar progress("comparing plans", !vm.count("no-progress"));
  CompareOptions options;
  options.threads = threads;
  options.models = model_names;
  options.progress = [&progress](int64_t done, int64_t total) { progress.update(done, total); };
  const std::vector<ClusterComparison> result =
      compare_plans(text, scenario_path, clusters, options);
  progress.finish();
  if (!report_dir.empty()) {
    std::vector<ComparePlanEntry> entries;
    for (const ClusterComparison& c : result) {
      for (const PlanOutcome& p : c.plans) {
        std::string label = result.size() > 1 ? c.label : std::string();
        if (model_names.size() > 1) label = c.model.name + (label.empty() ? "" : " " + label);
        entries.push_back({label, plan_label(p.plan), p.result,
                           static_cast<double>(p.memory.total().count()),
                           static_cast<double>(p.memory.capacity.count())});
      }
    }
    announce_report("compare", write_compare_report(report_dir, scenario, entries));
  }
  if (format == "json") {
    write_compare_json(std::cout, scenario, result, price);
  } else if (format == "csv") {
    write_compare_csv(std::cout, result, price);
  } else {
    print_compare_table(std::cout, scenario, result, price);
  }
  return 0;
}

}  // namespace moesim::cli
