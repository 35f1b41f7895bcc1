// router.reuse_routing_across_micro_batches: every micro-batch of a step carries micro-batch 0's
// routing, the router is asked for micro-batch 0 only, and one micro-batch per step is unchanged.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "models/router/router.h"
#include "scenarios/scenario.h"
#include "sim/simulation.h"
#include "tests/scratch_dir.h"

namespace moesim {
namespace {

std::filesystem::path switch_topology_file(int gpus) {
  static const test::ScratchDir dir("routing_reuse_test");
  const auto path = dir / ("switch" + std::to_string(gpus) + ".pbtxt");
  std::ofstream(path) << "gpus_per_node: " << gpus << "\n"
                      << "flat_switch { name: \"sw\" switch_kind: NVSWITCH gpus: " << gpus
                      << " bandwidth: \"200GB/s\" latency: \"500ns\" link_kind: NVLINK }\n";
  return path;
}

// Eight GPUs, three MoE layers of 16 experts, `micro_batches` per step, two steps.
Scenario scenario(int32_t micro_batches, bool reuse, const std::string& parallel = "ep: 4 dp: 2",
                  const std::string& schedule = "") {
  std::ostringstream s;
  s << "name: \"reuse\"\n"
    << "model { layers: 4 dense_layers: 1 hidden_size: 512 attention_heads: 4 kv_heads: 4 "
       "head_dim: 128 expert_ffn_size: 256 dense_ffn_size: 1024 routed_experts: 16 "
       "shared_experts: 0 top_k: 2 vocab_size: 64 }\n"
    << "cluster { topology_file: \"" << switch_topology_file(8).string()
    << "\" gpu { preset: \"h100-sxm\" } }\n"
    << "parallelism { " << parallel << " }\n"
    << "workload { kind: TRAINING tokens_per_gpu: 128 sequence_length: 128 micro_batches: "
    << micro_batches << " steps: 2 warmup_steps: 0 " << schedule << " }\n"
    << "router { capacity_factor: 1.0 zipf_exponent: 1.3"
    << (reuse ? " reuse_routing_across_micro_batches: true" : "") << " }\n"
    << "seed: 5\n";
  return parse_scenario(s.str(), "reuse.pbtxt");
}

// A router that records each request's per-expert kept counts; optionally not thread safe.
class RecordingRouter final : public RoutingSource {
 public:
  explicit RecordingRouter(const Scenario& s) : router_(s.router) {}
  int32_t experts() const override { return router_.experts(); }
  int32_t top_k() const override { return router_.top_k(); }
  bool thread_safe() const override { return thread_safe_; }
  void route(const RoutingRequest& request, RoutingDecision& out) override {
    router_.route(request, out);
    std::lock_guard lock(mutex_);
    const auto key = std::make_tuple(request.micro_batch, request.layer, request.rank);
    ++asks_[key];
    counts_[key] = out.tokens_per_expert;  // the same decisions when asked again
  }
  int32_t most_asks() const {
    int32_t most = 0;
    for (const auto& [key, n] : asks_) most = std::max(most, n);
    return most;
  }
  // (global micro-batch, layer, rank) -> kept pairs per expert, and how often it was asked
  std::map<std::tuple<int64_t, int32_t, int32_t>, std::vector<int32_t>> counts_;
  std::map<std::tuple<int64_t, int32_t, int32_t>, int32_t> asks_;
  bool thread_safe_ = true;

 private:
  Router router_;
  std::mutex mutex_;
};

// Per MoE layer, the recorded counts summed over every request.
std::vector<std::vector<int64_t>> summed_by_layer(const RecordingRouter& source, int32_t layers) {
  std::vector<std::vector<int64_t>> sum(static_cast<size_t>(layers),
                                        std::vector<int64_t>(source.experts(), 0));
  for (const auto& [key, counts] : source.counts_) {
    for (size_t e = 0; e < counts.size(); ++e) sum[std::get<1>(key)][e] += counts[e];
  }
  return sum;
}

TEST_CASE("reuse off: micro-batches of a step route their own tokens", "[step][reuse]") {
  const Scenario s = scenario(4, false);
  CHECK_FALSE(s.router.reuse_across_micro_batches);
  RecordingRouter source(s);
  const SimulationResult r = simulate(s, source, SimulationOptions{});
  CHECK_FALSE(r.routing_reused_across_micro_batches);
  // 2 steps x 4 micro-batches x 3 MoE layers x 8 ranks, each asked once.
  CHECK(source.counts_.size() == 2 * 4 * 3 * 8);
  CHECK(source.most_asks() == 1);
  // Micro-batches 0 and 1 of step 0 load the experts differently.
  CHECK(source.counts_.at({0, 0, 0}) != source.counts_.at({1, 0, 0}));
  CHECK(source.counts_.at({0, 2, 5}) != source.counts_.at({3, 2, 5}));
  CHECK(r.tokens_per_expert_by_layer == summed_by_layer(source, 3));
}

TEST_CASE("reuse on: every micro-batch carries micro-batch 0's routing", "[step][reuse]") {
  const Scenario s = scenario(4, true);
  REQUIRE(s.router.reuse_across_micro_batches);
  for (const int threads : {1, 2, 3}) {
    INFO("threads " << threads);
    RecordingRouter source(s);
    SimulationOptions options;
    options.threads = threads;
    const SimulationResult r = simulate(s, source, options);
    CHECK(r.routing_reused_across_micro_batches);
    // Only each step's first micro-batch (global indices 0 and 4) is routed.
    CHECK(source.counts_.size() == 2 * 3 * 8);
    CHECK(source.most_asks() == 1);  // later micro-batches copied micro-batch 0's traffic
    for (const auto& [key, counts] : source.counts_) CHECK(std::get<0>(key) % 4 == 0);
    // The simulated loads are four times the routed ones: every micro-batch carried them.
    const auto routed = summed_by_layer(source, 3);
    for (size_t layer = 0; layer < routed.size(); ++layer) {
      for (size_t e = 0; e < routed[layer].size(); ++e) {
        CHECK(r.tokens_per_expert_by_layer[layer][e] == 4 * routed[layer][e]);
      }
    }
    // Exchange by exchange, micro-batch k's expert load equals micro-batch 0's.
    std::map<std::tuple<int32_t, int32_t, int32_t>, ExchangeLoad> first;
    for (const ExchangeRecord& x : r.exchanges) {
      if (x.straggler.micro_batch == 0) {
        first[{x.step, x.straggler.moe_layer, x.straggler.replica}] = x.load;
      }
    }
    REQUIRE(first.size() == 2 * 3 * 2);
    int64_t later = 0;
    for (const ExchangeRecord& x : r.exchanges) {
      if (x.straggler.micro_batch == 0) continue;
      ++later;
      const ExchangeLoad& f = first.at({x.step, x.straggler.moe_layer, x.straggler.replica});
      CHECK(x.load.hottest_expert == f.hottest_expert);
      CHECK(x.load.hottest_expert_pairs == f.hottest_expert_pairs);
      CHECK(x.load.busiest_gpu_rows == f.busiest_gpu_rows);
      CHECK(x.load.expert_max_over_mean == f.expert_max_over_mean);
    }
    CHECK(later == 2 * 3 * 3 * 2);
  }
}

TEST_CASE("reuse changes nothing with one micro-batch per step", "[step][reuse]") {
  const SimulationResult off = simulate(scenario(1, false), SimulationOptions{});
  const SimulationResult on = simulate(scenario(1, true), SimulationOptions{});
  CHECK(on.routing_reused_across_micro_batches);
  CHECK(on.step_time_us == off.step_time_us);
  CHECK(on.dispatch_us == off.dispatch_us);
  CHECK(on.combine_us == off.combine_us);
  CHECK(on.tokens_per_expert_by_layer == off.tokens_per_expert_by_layer);
  CHECK(on.gpu_tokens == off.gpu_tokens);
  // And micro-batch 0 of a longer step routes as it does without reuse.
  RecordingRouter with(scenario(4, true)), without(scenario(4, false));
  simulate(scenario(4, true), with, SimulationOptions{});
  simulate(scenario(4, false), without, SimulationOptions{});
  for (const auto& [key, counts] : with.counts_) CHECK(without.counts_.at(key) == counts);
}

TEST_CASE("reuse under DualPipe re-routes micro-batch 0 onto the mirrored ranks", "[step][reuse]") {
  // DualPipe runs half the micro-batches in the mirrored direction: their layers run on other
  // pipeline ranks, so the first of them asks for micro-batch 0's decisions again and reduces
  // them there, and the rest of that direction copies it.
  const Scenario s = scenario(4, true, "ep: 4 pp: 2", "schedule: DUALPIPE");
  RecordingRouter source(s);
  const SimulationResult r = simulate(s, source, SimulationOptions{});
  CHECK(r.routing_reused_across_micro_batches);
  for (const auto& [key, counts] : source.counts_) CHECK(std::get<0>(key) % 4 == 0);
  // DualPipe sends half the micro-batches (2 and 3 of 0-3) the mirrored way: micro-batch 0's
  // request is asked once for itself and once for micro-batch 2; 1 copies 0's traffic and 3
  // copies 2's. Every request is so asked exactly twice (once per direction).
  CHECK(source.most_asks() == 2);
  for (const auto& [key, n] : source.asks_) CHECK(n == 2);
  const auto routed = summed_by_layer(source, 3);
  for (size_t layer = 0; layer < routed.size(); ++layer) {
    for (size_t e = 0; e < routed[layer].size(); ++e) {
      CHECK(r.tokens_per_expert_by_layer[layer][e] == 4 * routed[layer][e]);
    }
  }
}

TEST_CASE("reuse needs a source that can be asked twice", "[step][reuse]") {
  const Scenario s = scenario(2, true);
  RecordingRouter source(s);
  source.thread_safe_ = false;
  CHECK_THROWS_WITH(simulate(s, source, SimulationOptions{}),
                    Catch::Contains("reuse_routing_across_micro_batches"));
}

}  // namespace
}  // namespace moesim
