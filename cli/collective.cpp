// `moesim collective`: nccl-tests for the simulator. Sweeps message sizes of one collective on
// a cluster preset or topology file and prints time, algorithm and bus bandwidth per size.
#include <boost/program_options.hpp>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "analysis/collective_output.h"
#include "cli/commands.h"
#include "models/network/collectives.h"
#include "models/network/network_tier.h"
#include "scenarios/topology_file.h"
#include "scenarios/units_parse.h"
#include "topologies/presets.h"

namespace moesim::cli {
namespace {

namespace po = boost::program_options;

// nccl-tests' bus bandwidth factor: what each GPU's link must carry relative to algbw.
double bus_factor(CollectiveOp op, int n) {
  if (op == CollectiveOp::kAllReduce) return 2.0 * (n - 1) / n;
  return static_cast<double>(n - 1) / n;
}

Bytes size_option(const po::variables_map& vm, const char* name) {
  try {
    return parse_bytes(vm[name].as<std::string>());
  } catch (const std::exception& e) {
    throw std::invalid_argument(std::string("--") + name + ": " + e.what());
  }
}

}  // namespace

// The MoE phases take other options (model, tokens, mode), so they have their own parser.
bool is_moe_phase(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--op" && i + 1 < argc) return std::string_view(argv[i + 1]).starts_with("moe-");
    if (arg.starts_with("--op=")) return arg.substr(5).starts_with("moe-");
  }
  return false;
}

int collective_command(int argc, char** argv) {
  if (is_moe_phase(argc, argv)) return moe_collective_command(argc, argv);
  po::options_description desc(
      "usage: moesim collective --topology PRESET|FILE --op OP [options]\n\n"
      "Times one collective over a range of sizes, like nccl-tests. size is the per-GPU buffer\n"
      "as nccl-tests counts it (all-to-all: the send buffer, size/n to each peer; all-gather:\n"
      "the output; reduce-scatter: the input; all-reduce: the buffer); count is size / 4 (float\n"
      "elements). algbw = size / time; busbw = algbw * 2(n-1)/n for all-reduce and\n"
      "algbw * (n-1)/n for the others. Options");
  desc.add_options()("help,h", "show this help")(
      "topology", po::value<std::string>(), "a preset name (dgx-h100, ...) or a topology file")(
      "nodes", po::value<int>(), "nodes of a preset (default 1)")(
      "nic-gbps", po::value<double>(), "override a preset's NIC speed, Gb/s per GPU")(
      "oversubscription", po::value<double>(), "leaf down/up capacity ratio of a preset's fabric")(
      "fabric-routing", po::value<std::string>(),
      "adaptive (default: packets spread over every spine) | ecmp (whole flows hashed over the "
      "spines)")("spines", po::value<int>(), "ecmp routing: spine switches (default one per rail)")(
      "op", po::value<std::string>(),
      "alltoall | allreduce | allgather | reducescatter; moe-dispatch | moe-combine run one "
      "DeepEP-style phase (see moesim moe-collective --help)")(
      "algo", po::value<std::string>(),
      "direct | pairwise | hierarchical (all-to-all), ring | tree (all-reduce); default direct "
      "or ring")("chunks", po::value<int>()->default_value(kDefaultPipelineChunks),
                 "pipeline pieces for hierarchical and tree")(
      "min-bytes", po::value<std::string>()->default_value("1K"), "smallest size")(
      "max-bytes", po::value<std::string>()->default_value("1G"), "largest size")(
      "step-factor", po::value<int>()->default_value(2), "size multiplier between rows (>= 2)")(
      "gpus", po::value<int>(), "use GPUs 0..N-1 (default: all)")(
      "completion-tolerance", po::value<double>()->default_value(0.0),
      "finish together flows that drain within this fraction of their duration of the first "
      "(0: exact max-min)")("network", po::value<std::string>(),
                            "exact | fast (default: exact below 512 GPUs, fast from 512)")(
      "format", po::value<std::string>()->default_value("table"), "table | json");
  po::variables_map vm;
  po::store(po::parse_command_line(argc, argv, desc), vm);
  po::notify(vm);
  if (vm.count("help")) {
    std::cout << desc << "\n";
    return 0;
  }
  if (!vm.count("topology")) throw std::invalid_argument("--topology is required");
  if (!vm.count("op")) throw std::invalid_argument("--op is required");
  const std::string topology_arg = vm["topology"].as<std::string>();
  const CollectiveOp op = parse_collective_op(vm["op"].as<std::string>());
  const CollectiveAlgo algo =
      vm.count("algo")
          ? parse_collective_algo(vm["algo"].as<std::string>())
          : (op == CollectiveOp::kAllToAll ? CollectiveAlgo::kDirect : CollectiveAlgo::kRing);
  const std::string format = vm["format"].as<std::string>();
  if (format != "table" && format != "json") {
    throw std::invalid_argument("--format must be table or json, not '" + format + "'");
  }
  const int step = vm["step-factor"].as<int>();
  if (step < 2) throw std::invalid_argument("--step-factor must be at least 2");
  const Bytes min_bytes = size_option(vm, "min-bytes");
  const Bytes max_bytes = size_option(vm, "max-bytes");
  if (min_bytes.count() < 1 || max_bytes < min_bytes) {
    throw std::invalid_argument("--min-bytes must be at least 1 and at most --max-bytes");
  }

  bool is_preset = false;
  for (const NodePreset& p : node_presets()) is_preset = is_preset || p.name == topology_arg;
  Topology topo;
  if (is_preset) {
    ClusterOptions options;
    options.preset = topology_arg;
    if (vm.count("nodes")) options.nodes = vm["nodes"].as<int>();
    if (vm.count("nic-gbps")) options.nic_gbps = vm["nic-gbps"].as<double>();
    if (vm.count("oversubscription"))
      options.oversubscription = vm["oversubscription"].as<double>();
    if (vm.count("fabric-routing"))
      options.routing = parse_fabric_routing(vm["fabric-routing"].as<std::string>());
    if (vm.count("spines")) options.spines = vm["spines"].as<int>();
    topo = build_cluster(options);
  } else {
    for (const char* o : {"nodes", "nic-gbps", "oversubscription", "fabric-routing", "spines"}) {
      if (vm.count(o)) {
        throw std::invalid_argument(std::string("--") + o + " applies to a topology preset, and '" +
                                    topology_arg + "' is not one (it is read as a topology file)");
      }
    }
    topo = load_topology_file(topology_arg);
  }

  CollectiveSpec spec;
  spec.op = op;
  spec.algo = algo;
  spec.options.chunks = vm["chunks"].as<int>();
  spec.network.completion_tolerance = vm["completion-tolerance"].as<double>();
  int n = topo.gpu_count();
  if (vm.count("gpus")) {
    n = vm["gpus"].as<int>();
    if (n < 1 || n > topo.gpu_count()) {
      throw std::invalid_argument("--gpus must be in [1, " + std::to_string(topo.gpu_count()) +
                                  "]");
    }
  }
  for (int g = 0; g < n; ++g) spec.group.push_back(g);
  std::optional<NetworkTier> requested;
  if (vm.count("network")) {
    requested = parse_network_tier(vm["network"].as<std::string>());
    if (!requested) {
      throw std::invalid_argument("--network must be exact or fast, not '" +
                                  vm["network"].as<std::string>() + "'");
    }
  }
  const NetworkTier tier = choose_network_tier(requested, n, spec.network.completion_tolerance);
  spec.network.tier = tier;
  const std::string network =
      std::string(network_tier_name(tier)) +
      (requested ? "" : " (the default for " + std::to_string(n) + " GPUs)");

  std::vector<CollectiveSizeRow> rows;
  for (int64_t size = min_bytes.count(); size <= max_bytes.count(); size *= step) {
    spec.bytes = Bytes(size);
    const CollectiveResult r = run_collective(topo, spec);
    const double seconds = r.duration().to_s();
    const double algbw = seconds > 0 ? static_cast<double>(size) / seconds * 1e-9 : 0.0;
    rows.push_back({size, r.duration().to_us(), algbw, algbw * bus_factor(op, n), r.flows,
                    network_tier_name(tier)});
    if (size > max_bytes.count() / step) break;
  }
  if (format == "json") {
    write_collective_json(std::cout, rows);
  } else {
    print_collective_table(std::cout, to_string(op), to_string(algo), n, topology_arg, network,
                           rows);
  }
  return 0;
}

}  // namespace moesim::cli
