// Benchmarks of topology path selection: the warm cached path() lookup the network model makes
// per flow, the first (cold) query of each pair or of an all-to-all, building plus validating.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>

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

// 1024 GPUs on one switch, as in the ASTRA-sim comparison (bench/README.md, network section).
Topology flat_switch(int gpus) {
  Topology t;
  const VertexId sw = t.add_vertex(VertexKind::kSwitch, "switch");
  for (int i = 0; i < gpus; ++i) {
    const VertexId g = t.add_vertex(VertexKind::kGpu, "gpu" + std::to_string(i));
    t.add_duplex_link(g, sw, Bandwidth::gigabytes_per_s(50), Time::ns(500), LinkKind::kNetwork);
  }
  return t;
}

// Every (src, dst, hash) of an all-to-all after the cache is warm: the per-flow cost. Arg: 0 =
// flat switch of 1024 GPUs, else a rail cluster of that many nodes.
void BM_PathWarm(benchmark::State& state) {
  const Topology t =
      state.range(0) == 0 ? flat_switch(1024) : rail_cluster(static_cast<int>(state.range(0)));
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
BENCHMARK(BM_PathWarm)->Arg(0)->Arg(16)->Arg(128);

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

// What an all-to-all asks of an empty cache: one path() per ordered pair, source by source, each
// with its own flow hash (only the chosen ECMP path of a pair is written). Arg: 0 = flat switch
// of 1024 GPUs, else a rail cluster of that many nodes.
void BM_AllToAllCold(benchmark::State& state) {
  const Topology base =
      state.range(0) == 0 ? flat_switch(1024) : rail_cluster(static_cast<int>(state.range(0)));
  const int g = base.gpu_count();
  for (auto _ : state) {
    state.PauseTiming();
    Topology t(base);
    state.ResumeTiming();
    uint64_t flow = 0;
    for (int src = 0; src < g; ++src) {
      for (int dst = 0; dst < g; ++dst) {
        if (src != dst) benchmark::DoNotOptimize(t.path(src, dst, flow++).data());
      }
    }
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * int64_t{g} * (g - 1));
  state.counters["gpus"] = g;
}
BENCHMARK(BM_AllToAllCold)->Arg(0)->Arg(16)->Arg(128)->Unit(benchmark::kMillisecond);

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
