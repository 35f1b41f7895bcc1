// Issue 5's performance case and its parts: one layer of DeepSeek-V3 routing for 256 ranks
// (logit-space router), the reduction of its decisions to traffic, the network and step models
// alone on a five-layer cut, and the whole training step of
// bench/scenarios/deepseek-v3-ep256-h800.pbtxt.
#include <benchmark/benchmark.h>

#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench/blas_main.h"
#include "models/moe/placement.h"
#include "models/router/router.h"
#include "scenarios/scenario.h"
#include "sim/moe_traffic.h"
#include "sim/simulation.h"

namespace moesim {
namespace {

const char* const kScenario = MOESIM_SOURCE_DIR "/bench/scenarios/deepseek-v3-ep256-h800.pbtxt";
const char* const kFiveLayers =
    MOESIM_SOURCE_DIR "/bench/scenarios/deepseek-v3-ep256-h800-5layers.pbtxt";

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

// Every (MoE layer, rank) decision of micro-batch 0 routed once up front and handed back by
// copy, so that a simulation with it times the step and network models without the router.
class RoutedOnce final : public RoutingSource {
 public:
  RoutedOnce(Router& router, int32_t moe_layers, int32_t ranks, int32_t tokens)
      : experts_(router.experts()), top_k_(router.top_k()), ranks_(ranks) {
    decisions_.resize(static_cast<size_t>(moe_layers) * ranks);
    for (int32_t layer = 0; layer < moe_layers; ++layer) {
      for (int32_t r = 0; r < ranks; ++r) {
        router.route(RoutingRequest{layer, 0, r, ranks, tokens},
                     decisions_[static_cast<size_t>(layer) * ranks + r]);
      }
    }
  }
  int32_t experts() const override { return experts_; }
  int32_t top_k() const override { return top_k_; }
  void route(const RoutingRequest& request, RoutingDecision& out) override {
    if (request.micro_batch != 0 || request.ranks != ranks_) {
      throw std::logic_error("RoutedOnce holds micro-batch 0 of " + std::to_string(ranks_) +
                             " ranks only");
    }
    out = decisions_.at(static_cast<size_t>(request.layer) * ranks_ + request.rank);
  }
  bool thread_safe() const override { return true; }

 private:
  int32_t experts_, top_k_, ranks_;
  std::vector<RoutingDecision> decisions_;
};

// The case's first five layers (bench/scenarios/deepseek-v3-ep256-h800-5layers.pbtxt),
// simulated on one thread from decisions routed beforehand.
void BM_SimulateFiveLayers256Gpus(benchmark::State& state) {
  const Scenario scenario = load_scenario(kFiveLayers);
  Router router(scenario.router);
  RoutedOnce source(router, scenario.model.moe_layer_count(), scenario.parallel.ep,
                    scenario.workload.tokens_per_gpu);
  SimulationResult r;
  for (auto _ : state) {
    SimulationOptions options;
    options.threads = 1;
    r = simulate(scenario, source, options);
  }
  state.counters["step_ms"] = r.step_time_us.at(0) * 1e-3;
  state.counters["flows"] = static_cast<double>(r.work.flows);
  state.counters["recomputations"] = static_cast<double>(r.work.rate_recomputations);
  state.counters["recomp/s"] = benchmark::Counter(
      static_cast<double>(r.work.rate_recomputations) * static_cast<double>(state.iterations()),
      benchmark::Counter::kIsRate);
  state.counters["region_flows/recomp"] =
      static_cast<double>(r.work.region_flows) / static_cast<double>(r.work.rate_recomputations);
  state.counters["rate_changes/recomp"] =
      static_cast<double>(r.work.rate_changes) / static_cast<double>(r.work.rate_recomputations);
}
BENCHMARK(BM_SimulateFiveLayers256Gpus)->Unit(benchmark::kSecond)->Iterations(3)->UseRealTime();

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
