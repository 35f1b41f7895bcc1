// Benchmarks of topology path selection: the warm cached path() lookup the network model makes
// per flow, the first (cold) query of each pair, and building plus validating clusters.
#include <benchmark/benchmark.h>

#include <cstdint>

#include "topologies/builders.h"
#include "topologies/presets.h"

namespace moesim {
namespace {

Topology rail_cluster(int nodes) {
  ClusterOptions options;
  options.preset = "dgx-h100";
  options.nodes = nodes;
  return build_cluster(options);
}

// Every (src, dst, hash) of an all-to-all after the cache is warm: the per-flow cost.
void BM_PathWarm(benchmark::State& state) {
  const Topology t = rail_cluster(static_cast<int>(state.range(0)));
  t.precompute_paths();
  const int g = t.gpu_count();
  uint64_t flow = 0;
  int src = 0;
  int dst = 1;
  size_t hops = 0;
  for (auto _ : state) {
    const auto p = t.path(src, dst, flow++);
    hops += p.size();
    benchmark::DoNotOptimize(p.data());
    if (++dst == g) {
      dst = 0;
      if (++src == g) src = 0;
    }
  }
  benchmark::DoNotOptimize(hops);
  state.SetItemsProcessed(state.iterations());
  state.counters["gpus"] = g;
}
BENCHMARK(BM_PathWarm)->Arg(16)->Arg(128);

// All pairs from an empty cache: BFS per destination plus path enumeration per pair.
void BM_PathCold(benchmark::State& state) {
  const Topology base = rail_cluster(static_cast<int>(state.range(0)));
  const int g = base.gpu_count();
  for (auto _ : state) {
    state.PauseTiming();
    Topology t(base);  // a copy starts with an empty cache
    state.ResumeTiming();
    t.precompute_paths();
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * int64_t{g} * g);
  state.counters["gpus"] = g;
}
BENCHMARK(BM_PathCold)->Arg(16)->Arg(128)->Unit(benchmark::kMillisecond);

void BM_BuildAndValidate(benchmark::State& state) {
  for (auto _ : state) {
    const Topology t = rail_cluster(static_cast<int>(state.range(0)));
    t.validate();
    benchmark::DoNotOptimize(t.links().data());
  }
}
BENCHMARK(BM_BuildAndValidate)->Arg(16)->Arg(128)->Unit(benchmark::kMillisecond);

// A 3-tier k=16 fat-tree (1024 GPUs, 64 equal-cost inter-pod paths) from an empty cache, one
// source row: the ECMP enumeration at its widest.
void BM_FatTreeRowCold(benchmark::State& state) {
  const Topology base = build_fat_tree({3, 16, Bandwidth::gbps(400)});
  for (auto _ : state) {
    state.PauseTiming();
    Topology t(base);
    state.ResumeTiming();
    for (int dst = 0; dst < t.gpu_count(); ++dst) benchmark::DoNotOptimize(t.path(0, dst, 0));
  }
  state.SetItemsProcessed(state.iterations() * 1024);
}
BENCHMARK(BM_FatTreeRowCold)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace moesim

BENCHMARK_MAIN();
