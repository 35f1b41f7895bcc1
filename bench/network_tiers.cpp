// The network tiers side by side: the error suite (bench/network_tier_cases.h) as a table of
// each case's fast-tier error against the exact tier and both tiers' wall times, and the fast
// tier's cost on a Zipf all-to-all as the cluster grows.
//   bench_network_tiers suite MIN_GPUS MAX_GPUS   the suite's cases in that GPU range
//   bench_network_tiers scale NODES...            Zipf all-to-all on NODES x 8 GPUs, fast tier
//   bench_network_tiers scale-exact NODES...      the same, exact tier
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench/network_tier_cases.h"

namespace moesim {
namespace {

int suite(int min_gpus, int max_gpus) {
  std::printf(
      "| case | flows | exact s | fast s | speed-up | collective err %% | worst GPU err %% "
      "| slowest GPU err %% | recomputations exact / fast "
      "|\n|---|---|---|---|---|---|---|---|---|\n");
  std::vector<double> errors;
  for (const bench::TierCase& c : bench::tier_cases(min_gpus, max_gpus)) {
    const Topology topology = c.topology();
    topology.precompute_paths();
    const auto launches = c.launches(topology);
    const bench::TierRun exact = bench::run_tier_case(topology, launches, NetworkTier::kExact);
    const bench::TierRun fast = bench::run_tier_case(topology, launches, NetworkTier::kFast);
    const bench::TierError e = bench::tier_error(launches, exact, fast);
    errors.push_back(std::max(e.collective, e.slowest_gpu));
    std::printf("| %s | %llu | %.3f | %.3f | %.1fx | %.3f | %.3f | %.3f | %llu / %llu |\n",
                c.name.c_str(), static_cast<unsigned long long>(exact.stats.flows_started),
                exact.wall_s, fast.wall_s, exact.wall_s / std::max(fast.wall_s, 1e-9),
                100 * e.collective, 100 * e.gpu, 100 * e.slowest_gpu,
                static_cast<unsigned long long>(exact.stats.recomputations),
                static_cast<unsigned long long>(fast.stats.recomputations));
    std::fflush(stdout);
  }
  std::sort(errors.begin(), errors.end());
  if (!errors.empty()) {
    std::printf("\n%zu cases; max(collective, slowest GPU) error: median %.3f %%, worst %.3f %%\n",
                errors.size(), 100 * errors[errors.size() / 2], 100 * errors.back());
  }
  return 0;
}

int scale(const std::vector<int>& nodes_list, NetworkTier tier) {
  std::printf(
      "| GPUs | flows | tier | wall s | recomputations | simulated us "
      "|\n|---|---|---|---|---|---|\n");
  for (const int nodes : nodes_list) {
    const Topology topology = bench::tier_rail(nodes, 1.0);
    const int gpus = topology.gpu_count();
    const std::vector<bench::TierLaunch> launches{
        bench::a2a(bench::iota_group(0, gpus), bench::zipf_matrix(gpus, 1))};
    const bench::TierRun run = bench::run_tier_case(topology, launches, tier);
    std::printf("| %d | %llu | %s | %.2f | %llu | %.1f |\n", gpus,
                static_cast<unsigned long long>(run.stats.flows_started),
                std::string(network_tier_name(tier)).c_str(), run.wall_s,
                static_cast<unsigned long long>(run.stats.recomputations),
                run.collective_end[0].to_us());
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace
}  // namespace moesim

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "suite";
  if (mode == "suite") {
    return moesim::suite(argc > 2 ? std::atoi(argv[2]) : 8, argc > 3 ? std::atoi(argv[3]) : 64);
  }
  if (mode == "scale" || mode == "scale-exact") {
    std::vector<int> nodes;
    for (int i = 2; i < argc; ++i) nodes.push_back(std::atoi(argv[i]));
    return moesim::scale(
        nodes, mode == "scale" ? moesim::NetworkTier::kFast : moesim::NetworkTier::kExact);
  }
  std::fprintf(
      stderr, "usage: bench_network_tiers suite MIN MAX | scale NODES... | scale-exact NODES...\n");
  return 2;
}
