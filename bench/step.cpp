// Issue 5's performance case and its parts: one layer of DeepSeek-V3 routing for 256 ranks
// (logit-space router), the reduction of its decisions to traffic, and the whole training step
// of bench/scenarios/deepseek-v3-ep256-h800.pbtxt.
#include <benchmark/benchmark.h>

#include <filesystem>

#include "bench/blas_main.h"
#include "models/moe/placement.h"
#include "models/router/router.h"
#include "scenarios/scenario.h"
#include "sim/moe_traffic.h"
#include "sim/simulation.h"

namespace moesim {
namespace {

const char* const kScenario = MOESIM_SOURCE_DIR "/bench/scenarios/deepseek-v3-ep256-h800.pbtxt";

struct LayerFixture {
  Scenario scenario = load_scenario(kScenario);
  Topology topology = build_topology(scenario.cluster);
  Placement placement{scenario.parallel, scenario.model, topology.gpus_per_node()};
  Router router{scenario.router};
  std::vector<RoutingDecision> decisions =
      std::vector<RoutingDecision>(static_cast<size_t>(scenario.parallel.ep));

  void route_layer(int64_t micro_batch) {
    for (int32_t r = 0; r < scenario.parallel.ep; ++r) {
      RoutingRequest q{0, micro_batch, r, scenario.parallel.ep, scenario.workload.tokens_per_gpu};
      router.route(q, decisions[static_cast<size_t>(r)]);
    }
  }
};

void BM_RouteOneLayer256Ranks(benchmark::State& state) {
  LayerFixture f;
  int64_t mb = 0;
  for (auto _ : state) f.route_layer(mb++);
  state.SetItemsProcessed(state.iterations() * int64_t{256} * 4096);
  state.counters["ns_per_token"] =
      benchmark::Counter(double(state.iterations()) * 256 * 4096,
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_RouteOneLayer256Ranks)->Unit(benchmark::kMillisecond)->Iterations(3);

void BM_TrafficOneLayer256Ranks(benchmark::State& state) {
  LayerFixture f;
  f.route_layer(0);
  const ReplicaLayout layout{&f.scenario.parallel, &f.placement, &f.topology, 0, 0};
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        build_layer_traffic(layout, f.decisions, DispatchAlgorithm::kHierarchical));
  }
  state.SetItemsProcessed(state.iterations() * int64_t{256} * 4096 * 8);
}
BENCHMARK(BM_TrafficOneLayer256Ranks)->Unit(benchmark::kMillisecond);

void BM_DeepSeekV3TrainingStep256Gpus(benchmark::State& state) {
  const Scenario scenario = load_scenario(kScenario);
  for (auto _ : state) {
    SimulationOptions options;
    options.threads = 2;
    const SimulationResult r = simulate(scenario, options);
    state.counters["routing_s"] = r.routing_wall_s;
    state.counters["simulation_s"] = r.simulation_wall_s;
    state.counters["step_ms"] = r.step_time_us.at(0) * 1e-3;
  }
}
BENCHMARK(BM_DeepSeekV3TrainingStep256Gpus)->Unit(benchmark::kSecond)->Iterations(1)->UseRealTime();

}  // namespace
}  // namespace moesim

int main(int argc, char** argv) {
  return moesim::run_benchmarks_on_fitting_blas(argc, argv);
}
