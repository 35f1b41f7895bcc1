// The network tiers' error suite: cases of collectives on shared topologies, each run under the
// exact and the fast tier, and the relative error of the fast one's completion times. The small
// cases run in CTest (tests/network/network_tier_test.cpp), the large ones in bench_network_tiers.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "bench/zipf_sizes.h"
#include "core/engine.h"
#include "models/network/collectives.h"
#include "models/network/network_tier.h"
#include "topologies/builders.h"

namespace moesim::bench {

// One collective of a case, started at `at` on a subset of the GPUs.
struct TierLaunch {
  Time at;
  CollectiveOp op = CollectiveOp::kAllToAll;
  CollectiveAlgo algo = CollectiveAlgo::kDirect;
  std::vector<int> group;
  ByteMatrix matrix;  // all-to-all
  Bytes bytes;        // all-reduce
  bool reverse = false;
};

struct TierCase {
  std::string name;
  std::function<Topology()> topology;
  std::function<std::vector<TierLaunch>(const Topology&)> launches;
};

struct TierRun {
  std::vector<Time> collective_end;  // per launch, when its last transfer arrived
  std::vector<Time> gpu_finish;      // per GPU, its last arrival over all launches (0 if none)
  double wall_s = 0.0;
  NetworkStats stats;
};

inline TierRun run_tier_case(const Topology& topology, const std::vector<TierLaunch>& launches,
                             NetworkTier tier) {
  const auto t0 = std::chrono::steady_clock::now();
  Engine engine;
  NetworkOptions options;
  options.tier = tier;
  TieredNetwork tiered(engine, topology, options);
  FlowNetwork& network = tiered.get();
  Collectives collectives(network);
  TierRun run;
  run.collective_end.assign(launches.size(), Time{});
  run.gpu_finish.assign(static_cast<size_t>(topology.gpu_count()), Time{});
  struct Done final : CollectiveObserver {
    TierRun* run = nullptr;
    const std::vector<TierLaunch>* launches = nullptr;
    void on_collective_done(CollectiveId, uint64_t tag, const CollectiveResult& r) override {
      run->collective_end[tag] = r.end;
      const std::vector<int>& group = (*launches)[tag].group;
      for (size_t i = 0; i < group.size(); ++i) {
        Time& f = run->gpu_finish[static_cast<size_t>(group[i])];
        f = std::max(f, r.gpu_finish[i]);
      }
    }
  } done;
  done.run = &run;
  done.launches = &launches;
  struct Starter final : EventHandler {
    Collectives* collectives = nullptr;
    const std::vector<TierLaunch>* launches = nullptr;
    CollectiveObserver* observer = nullptr;
    void on_event(uint64_t i) override {
      const TierLaunch& l = (*launches)[i];
      CollectiveOptions options;
      options.reverse = l.reverse;
      if (l.op == CollectiveOp::kAllToAll) {
        collectives->all_to_all(l.group, l.matrix, l.algo, observer, i, options);
      } else {
        collectives->all_reduce(l.group, l.bytes, l.algo, observer, i, options);
      }
    }
  } starter;
  starter.collectives = &collectives;
  starter.launches = &launches;
  starter.observer = &done;
  for (size_t i = 0; i < launches.size(); ++i) engine.schedule_at(launches[i].at, starter, i);
  engine.run();
  run.stats = network.stats();
  run.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return run;
}

// The fast tier's relative errors against the exact one: the worst over collectives'
// completions (from their start), the worst over GPUs' finishes and the slowest GPU's finish.
struct TierError {
  double collective = 0.0;
  double gpu = 0.0;
  double slowest_gpu = 0.0;
};

inline TierError tier_error(const std::vector<TierLaunch>& launches, const TierRun& exact,
                            const TierRun& fast) {
  auto rel = [](double a, double b) { return b > 0.0 ? std::abs(a - b) / b : 0.0; };
  TierError e;
  for (size_t i = 0; i < launches.size(); ++i) {
    const double t0 = launches[i].at.to_us();
    e.collective = std::max(e.collective, rel(fast.collective_end[i].to_us() - t0,
                                              exact.collective_end[i].to_us() - t0));
  }
  double slowest_exact = 0.0, slowest_fast = 0.0;
  for (size_t g = 0; g < exact.gpu_finish.size(); ++g) {
    if (exact.gpu_finish[g] == Time{}) continue;
    e.gpu = std::max(e.gpu, rel(fast.gpu_finish[g].to_us(), exact.gpu_finish[g].to_us()));
    slowest_exact = std::max(slowest_exact, exact.gpu_finish[g].to_us());
    slowest_fast = std::max(slowest_fast, fast.gpu_finish[g].to_us());
  }
  e.slowest_gpu = rel(slowest_fast, slowest_exact);
  return e;
}

// Topologies: a flat switch (every GPU on one switch by a 50 GB/s link) and the rail-optimised
// fat-tree of 8-GPU H800-like nodes (400 Gb/s NIC per GPU), optionally oversubscribed.
inline Topology tier_flat(int gpus) {
  Topology t;
  std::vector<VertexId> v;
  for (int i = 0; i < gpus; ++i)
    v.push_back(t.add_vertex(VertexKind::kGpu, "gpu" + std::to_string(i)));
  const VertexId sw = t.add_vertex(VertexKind::kSwitch, "switch");
  for (int i = 0; i < gpus; ++i)
    t.add_duplex_link(v[static_cast<size_t>(i)], sw, Bandwidth::gigabytes_per_s(50), Time::ns(500),
                      LinkKind::kNetwork);
  t.set_gpus_per_node(1);
  return t;
}

inline Topology tier_rail(int nodes, double oversubscription) {
  RailFatTreeParams p;
  p.node.gpus = 8;
  p.node.nvlink_per_gpu = Bandwidth::gigabytes_per_s(160);
  p.nodes = nodes;
  p.nic = Bandwidth::gbps(400);
  p.pcie = Bandwidth::gigabytes_per_s(64);
  p.oversubscription = oversubscription;
  p.spines = oversubscription > 1.0 ? 4 : 0;
  return build_rail_fat_tree(p);
}

inline std::vector<int> iota_group(int first, int count, int stride = 1) {
  std::vector<int> g;
  for (int i = 0; i < count; ++i) g.push_back(first + i * stride);
  return g;
}

inline ByteMatrix zipf_matrix(int n, uint64_t seed) {
  ByteMatrix m(n);
  m.bytes = zipf_sizes(n, seed);
  return m;
}

inline TierLaunch a2a(std::vector<int> group, ByteMatrix m,
                      CollectiveAlgo algo = CollectiveAlgo::kDirect, Time at = Time{},
                      bool reverse = false) {
  TierLaunch l;
  l.at = at;
  l.algo = algo;
  l.group = std::move(group);
  l.matrix = std::move(m);
  l.reverse = reverse;
  return l;
}

// The suite for GPU counts in [min_gpus, max_gpus]: every workload on every topology size
// whose GPU count falls in the range (sizes 8 to 1,024 by powers of two).
inline std::vector<TierCase> tier_cases(int min_gpus, int max_gpus) {
  std::vector<TierCase> cases;
  const Time later = Time::us(50);
  for (int gpus = 8; gpus <= max_gpus; gpus *= 2) {
    if (gpus < min_gpus) continue;
    const std::string n = std::to_string(gpus);
    const int nodes = gpus / 8;
    cases.push_back({"flat " + n + " uniform a2a", [=] { return tier_flat(gpus); },
                     [=](const Topology&) {
                       return std::vector<TierLaunch>{
                           a2a(iota_group(0, gpus), ByteMatrix::uniform(gpus, 256 << 10))};
                     }});
    cases.push_back({"flat " + n + " zipf a2a", [=] { return tier_flat(gpus); },
                     [=](const Topology&) {
                       return std::vector<TierLaunch>{
                           a2a(iota_group(0, gpus), zipf_matrix(gpus, 1))};
                     }});
    for (const double over : {1.0, 2.0}) {
      const std::string topo = "rail " + n + (over > 1.0 ? " 2:1" : "");
      cases.push_back({topo + " zipf a2a", [=] { return tier_rail(nodes, over); },
                       [=](const Topology&) {
                         return std::vector<TierLaunch>{
                             a2a(iota_group(0, gpus), zipf_matrix(gpus, 2))};
                       }});
      if (nodes < 2) continue;
      cases.push_back(
          {topo + " hierarchical dispatch+combine", [=] { return tier_rail(nodes, over); },
           [=](const Topology&) {
             return std::vector<TierLaunch>{
                 a2a(iota_group(0, gpus), zipf_matrix(gpus, 3), CollectiveAlgo::kHierarchical),
                 a2a(iota_group(0, gpus), zipf_matrix(gpus, 4), CollectiveAlgo::kHierarchical,
                     later, true)};
           }});
    }
    if (nodes < 2) continue;
    // Four EP groups, one GPU of each node in each pair of rails, sharing leaves and spines;
    // the last starts later, into the others' traffic.
    cases.push_back({"rail " + n + " 4 concurrent zipf a2a", [=] { return tier_rail(nodes, 1.0); },
                     [=](const Topology&) {
                       std::vector<TierLaunch> l;
                       for (int k = 0; k < 4; ++k)
                         l.push_back(a2a(iota_group(k, gpus / 4, 4), zipf_matrix(gpus / 4, 10 + k),
                                         CollectiveAlgo::kDirect, k == 3 ? later : Time{}));
                       return l;
                     }});
    // A gradient all-reduce (ring, over one GPU per node) beside an EP all-to-all.
    cases.push_back(
        {"rail " + n + " all-reduce beside zipf a2a", [=] { return tier_rail(nodes, 1.0); },
         [=](const Topology&) {
           TierLaunch ar;
           ar.op = CollectiveOp::kAllReduce;
           ar.algo = CollectiveAlgo::kRing;
           ar.group = iota_group(0, nodes, 8);
           ar.bytes = Bytes(64 << 20);
           return std::vector<TierLaunch>{a2a(iota_group(0, gpus), zipf_matrix(gpus, 5)), ar};
         }});
  }
  return cases;
}

}  // namespace moesim::bench
