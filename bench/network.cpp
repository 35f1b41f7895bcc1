// Benchmarks of the flow-level network model: a skewed (Zipf-sized) all-to-all on a
// rail-optimised fat-tree of 8-GPU nodes, simulated to completion with exact max-min sharing.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "bench/zipf_sizes.h"
#include "core/engine.h"
#include "core/random.h"
#include "models/network/network_model.h"
#include "topologies/builders.h"

namespace moesim {
namespace {

Topology rail_cluster(int nodes) {
  RailFatTreeParams p;
  p.node.gpus = 8;
  p.node.nvlink_per_gpu = Bandwidth::gigabytes_per_s(450);
  p.nodes = nodes;
  p.nic = Bandwidth::gbps(400);
  p.pcie = Bandwidth::gigabytes_per_s(64);
  return build_rail_fat_tree(p);
}

void BM_ZipfAllToAll(benchmark::State& state) {
  const int nodes = static_cast<int>(state.range(0));
  NetworkOptions options;
  options.completion_tolerance = static_cast<double>(state.range(1)) * 1e-4;
  const Topology topo = rail_cluster(nodes);
  const int gpus = topo.gpu_count();
  const auto sizes = bench::zipf_sizes(gpus, 1);
  topo.precompute_paths();
  NetworkModel::Stats stats;
  Time finish;
  for (auto _ : state) {
    Engine engine;
    NetworkModel net(engine, topo, options);
    for (int i = 0; i < gpus; ++i)
      for (int j = 0; j < gpus; ++j)
        if (i != j) net.start_flow(i, j, Bytes(sizes[static_cast<size_t>(i) * gpus + j]), nullptr);
    engine.run();
    stats = net.stats();
    finish = engine.now();
  }
  state.counters["gpus"] = gpus;
  state.counters["flows"] = static_cast<double>(stats.flows_started);
  state.counters["recomputations"] = static_cast<double>(stats.recomputations);
  state.counters["flows/s"] = benchmark::Counter(static_cast<double>(stats.flows_started),
                                                 benchmark::Counter::kIsIterationInvariantRate);
  state.counters["recomp/s"] = benchmark::Counter(static_cast<double>(stats.recomputations),
                                                  benchmark::Counter::kIsIterationInvariantRate);
  state.counters["region_flows/recomp"] =
      static_cast<double>(stats.region_flows) / static_cast<double>(stats.recomputations);
  state.counters["active/recomp"] =
      static_cast<double>(stats.active_flows) / static_cast<double>(stats.recomputations);
  state.counters["fills/recomp"] =
      static_cast<double>(stats.fill_passes) / static_cast<double>(stats.recomputations);
  state.counters["scanned/recomp"] =
      static_cast<double>(stats.scanned_entries) / static_cast<double>(stats.recomputations);
  state.counters["rate_changes/recomp"] =
      static_cast<double>(stats.rate_changes) / static_cast<double>(stats.recomputations);
  state.counters["simulated_us"] = finish.to_us();
}
// Arguments: nodes, completion tolerance in units of 1e-4 (0: exact).
BENCHMARK(BM_ZipfAllToAll)
    ->ArgsProduct({{8, 16, 32, 128}, {0, 10, 100, 300}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace moesim

BENCHMARK_MAIN();
