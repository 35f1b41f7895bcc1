// `moesim moe-collective`: one DeepEP-style MoE dispatch or combine phase on a cluster, with
// DeepEP's bandwidth figures (tests/validation/README.md says which bytes are counted).
#include <boost/program_options.hpp>
#include <iomanip>
#include <iostream>
#include <optional>
#include <string>

#include "analysis/collective_output.h"
#include "cli/commands.h"
#include "models/moe/model_spec.h"
#include "models/network/network_tier.h"
#include "scenarios/topology_file.h"
#include "sim/moe_phase.h"
#include "topologies/presets.h"

namespace moesim::cli {
namespace {

Topology cluster_from(const std::string& topology, int nodes, std::optional<double> nic_gbps,
                      const std::optional<std::string>& routing, int spines) {
  for (const NodePreset& p : node_presets()) {
    if (p.name == topology) {
      ClusterOptions options;
      options.preset = topology;
      options.nodes = nodes;
      options.nic_gbps = nic_gbps;
      if (routing) options.routing = parse_fabric_routing(*routing);
      options.spines = spines;
      return build_cluster(options);
    }
  }
  if (nic_gbps || nodes != 1 || routing || spines != 0) {
    throw std::invalid_argument(
        "--nodes, --nic-gbps, --fabric-routing and --spines apply to a topology preset, and '" +
        topology + "' is not one (it is read as a topology file)");
  }
  return load_topology_file(topology);
}

}  // namespace

int moe_collective_command(int argc, char** argv) {
  namespace po = boost::program_options;
  std::string op;
  std::string topology;
  std::string model_name;
  std::string mode;
  std::string routing;
  std::string fabric_routing;
  std::string format;
  int nodes = 1;
  int spines = 0;
  double nic_gbps = 0.0;
  int32_t tokens = 0;
  int32_t chunks = kDefaultPipelineChunks;
  int32_t comm_sms = kDefaultCommSms;
  uint64_t seed = 1;
  double completion_tolerance = 0.0;
  po::options_description opts(
      "moesim moe-collective --op moe-dispatch|moe-combine [options]\n\nRuns one DeepEP-style "
      "MoE dispatch or combine phase (EP = every GPU) and reports its time and DeepEP's\n"
      "bandwidth figures");
  opts.add_options()("help,h", "show this help")("op", po::value(&op)->required(),
                                                 "moe-dispatch or moe-combine")(
      "topology", po::value(&topology)->default_value("dgx-h800"),
      "a topology preset or a topology file")("nodes", po::value(&nodes)->default_value(1),
                                              "nodes of the preset")(
      "nic-gbps", po::value(&nic_gbps), "NIC speed per GPU, Gb/s (default: the preset's)")(
      "fabric-routing", po::value(&fabric_routing),
      "adaptive (default: packets spread over every spine) or ecmp (whole flows hashed over "
      "the spines)")("spines", po::value(&spines)->default_value(0),
                     "ecmp routing: spine switches (0: one per rail)")(
      "model", po::value(&model_name)->default_value("deepseek-v3"), "a model preset")(
      "mode", po::value(&mode)->default_value("normal"), "normal or low-latency")(
      "tokens", po::value(&tokens),
      "tokens per GPU (default 4096 in normal mode, 128 in low-latency mode)")(
      "comm-sms", po::value(&comm_sms)->default_value(comm_sms),
      "SMs the normal kernels run on (DeepEP's num_sms), of the preset GPU's 132")(
      "chunks", po::value(&chunks)->default_value(chunks),
      "normal mode: pipeline chunks per transfer")(
      "ll-over-network",
      "low-latency mode: send pairs inside a node through the NIC too, not over NVLink")(
      "routing", po::value(&routing)->default_value("iid"),
      "iid (independent random logits, as DeepEP's tests) or clustered (the router's token "
      "model)")("seed", po::value(&seed)->default_value(1), "routing seed")(
      "completion-tolerance", po::value(&completion_tolerance)->default_value(0.0),
      "finish together flows that drain within this fraction of their duration of the first "
      "(0: exact max-min)")("network", po::value<std::string>(),
                            "exact | fast (default: exact below 512 GPUs, fast from 512)")(
      "format", po::value(&format)->default_value("table"), "table or json");
  po::variables_map vm;
  po::store(po::parse_command_line(argc, argv, opts), vm);
  if (vm.count("help")) {
    std::cout << opts << "\n";
    return 0;
  }
  po::notify(vm);

  MoePhaseOptions options;
  if (op == "moe-dispatch") {
    options.phase = MoePhase::kDispatch;
  } else if (op == "moe-combine") {
    options.phase = MoePhase::kCombine;
  } else {
    throw std::invalid_argument("--op must be moe-dispatch or moe-combine, not '" + op + "'");
  }
  if (mode == "normal") {
    options.mode = MoeCommMode::kNormal;
  } else if (mode == "low-latency") {
    options.mode = MoeCommMode::kLowLatency;
  } else {
    throw std::invalid_argument("--mode must be normal or low-latency, not '" + mode + "'");
  }
  if (routing == "iid") {
    options.routing = MoePhaseRouting::kIidLogits;
  } else if (routing == "clustered") {
    options.routing = MoePhaseRouting::kClusteredTokens;
  } else {
    throw std::invalid_argument("--routing must be iid or clustered, not '" + routing + "'");
  }
  if (format != "table" && format != "json") {
    throw std::invalid_argument("--format must be table or json, not '" + format + "'");
  }
  if (vm.count("ll-over-network") && options.mode != MoeCommMode::kLowLatency) {
    throw std::invalid_argument("--ll-over-network applies to --mode low-latency only");
  }
  options.low_latency_over_network = vm.count("ll-over-network") > 0;
  options.tokens_per_gpu =
      vm.count("tokens") ? tokens : (options.mode == MoeCommMode::kNormal ? 4096 : 128);
  options.pipeline_chunks = chunks;
  options.kernel.sms = comm_sms;
  options.seed = seed;
  options.network.completion_tolerance = completion_tolerance;
  const ModelSpec* model = find_model_preset(model_name);
  if (model == nullptr) {
    std::string known;
    for (const ModelSpec& m : model_presets()) known += (known.empty() ? "" : ", ") + m.name;
    throw std::invalid_argument("--model: unknown model preset '" + model_name +
                                "'; known presets: " + known);
  }
  const Topology cluster = cluster_from(
      topology, nodes, vm.count("nic-gbps") ? std::optional<double>(nic_gbps) : std::nullopt,
      vm.count("fabric-routing") ? std::optional<std::string>(fabric_routing) : std::nullopt,
      spines);
  std::optional<NetworkTier> requested;
  if (vm.count("network")) {
    requested = parse_network_tier(vm["network"].as<std::string>());
    if (!requested) {
      throw std::invalid_argument("--network must be exact or fast, not '" +
                                  vm["network"].as<std::string>() + "'");
    }
  }
  options.network.tier =
      choose_network_tier(requested, cluster.gpu_count(), options.network.completion_tolerance);
  const MoePhaseResult result = run_moe_phase(cluster, *model, options);
  if (format == "json") {
    write_moe_phase_json(std::cout, op, mode, options.tokens_per_gpu, result);
  } else {
    print_moe_phase_table(std::cout, op, mode, options.tokens_per_gpu, result);
  }
  return 0;
}

}  // namespace moesim::cli
