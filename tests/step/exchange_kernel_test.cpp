// The communication kernel's bounds inside a step's MoE exchanges (CostOptions::comm_kernel):
// hand-worked two-GPU cases where the SMs or the per-message work bind and where the network
// does, and the step agreeing with run_moe_phase (`moesim moe-collective`) on one exchange.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "models/network/comm_kernel.h"
#include "models/router/routing_decision.h"
#include "scenarios/scenario.h"
#include "scenarios/topology_file.h"
#include "sim/moe_phase.h"
#include "sim/simulation.h"
#include "tests/fixed_source.h"
#include "tests/scratch_dir.h"

namespace moesim {
namespace {

using test::FixedSource;

// Two GPUs on one NVLink switch, links of `gb_per_s` and 1 ns each way.
std::filesystem::path two_gpu_switch(double gb_per_s) {
  static const test::ScratchDir dir("exchange_kernel_test");
  std::ostringstream name, t;
  name << "switch" << gb_per_s << ".pbtxt";
  t << "gpus_per_node: 2\n"
    << "flat_switch { name: \"sw\" switch_kind: NVSWITCH gpus: 2 bandwidth: \"" << gb_per_s
    << "GB/s\" latency: \"1ns\" link_kind: NVLINK }\n";
  const auto path = dir / name.str();
  std::ofstream(path) << t.str();
  return path;
}

// One MoE layer, 4 experts top-1, BF16 tokens of hidden 1024 (2048 B each way), EP 2.
Scenario two_gpu_scenario(double gb_per_s, const std::string& cluster_extra) {
  std::ostringstream s;
  s << "name: \"kernel\"\n"
    << "model { layers: 1 dense_layers: 0 hidden_size: 1024 attention_heads: 8 kv_heads: 8 "
       "head_dim: 128 expert_ffn_size: 512 dense_ffn_size: 512 routed_experts: 4 "
       "shared_experts: 0 top_k: 1 vocab_size: 64 weights { dtype: \"bf16\" } "
       "dispatch { dtype: \"bf16\" } combine { dtype: \"bf16\" } }\n"
    << "cluster { topology_file: \"" << two_gpu_switch(gb_per_s).string()
    << "\" gpu { peak_tflops_bf16: 100 hbm_bandwidth: \"1TB/s\" hbm_capacity: \"80GB\" } "
    << cluster_extra << " }\n"
    << "parallelism { ep: 2 }\n"
    << "workload { kind: PREFILL tokens_per_gpu: 8 sequence_length: 8 steps: 1 }\n";
  return parse_scenario(s.str(), "kernel.pbtxt");
}

// Experts 0, 1 on GPU 0 and 2, 3 on GPU 1. GPU 0 keeps 3 tokens and sends 5 to GPU 1; GPU 1
// keeps 5 and sends 3.
const std::vector<std::vector<int32_t>> kRouting = {{0, 2, 2, 3, 1, 0, 2, 2},
                                                    {3, 3, 1, 0, 2, 3, 3, 1}};
constexpr double kTokenBytes = 2048.0;

double flow_us(double tokens, double gb_per_s) {
  return tokens * kTokenBytes / (gb_per_s * 1e9) * 1e6 + 0.002;  // two 1 ns links
}

TEST_CASE("normal kernels: the SMs bound a two-GPU exchange, or the network does", "[step]") {
  // Tokens each GPU's SMs copy (DeepEP's intranode kernel): it writes each of its 8 tokens
  // into its destination's buffer, its own included, and copies out every token it receives:
  // GPU 0 8 + (3 + 3) = 14, GPU 1 8 + (5 + 5) = 18. The busiest, GPU 1, moves 18 x 2048 B.
  const double sm_bytes = 18 * kTokenBytes;
  const double per_sm = kDefaultCommKernel.bytes_per_sm.bytes_per_second();
  SECTION("4 SMs, 100 GB/s links: the SMs bind (0.60 us against 0.10 us of flows)") {
    FixedSource source(4, kRouting);
    const SimulationResult r = simulate(two_gpu_scenario(100, "comm_sms: 4"), source);
    const double sm_us = sm_bytes / (4 * per_sm) * 1e6;
    REQUIRE(sm_us > 2 * flow_us(5, 100));
    REQUIRE(r.dispatch_us.size() == 1);
    CHECK(r.dispatch_us[0] == Approx(sm_us).epsilon(1e-6));
    CHECK(r.combine_us[0] == Approx(sm_us).epsilon(1e-6));
  }
  SECTION("20 SMs (the default), 10 GB/s links: the network binds (1.03 us against 0.12 us)") {
    FixedSource source(4, kRouting);
    const SimulationResult r = simulate(two_gpu_scenario(10, ""), source);
    REQUIRE(sm_bytes / (20 * per_sm) * 1e6 < flow_us(5, 10) / 2);
    REQUIRE(r.dispatch_us.size() == 1);
    CHECK(r.dispatch_us[0] == Approx(flow_us(5, 10)).epsilon(1e-6));
    CHECK(r.combine_us[0] == Approx(flow_us(5, 10)).epsilon(1e-6));
  }
}

TEST_CASE("low-latency kernels: per-message work bounds a two-GPU exchange", "[step]") {
  // One message per (token, expert) pair from the token's GPU (dispatch) or the expert's
  // (combine), each costing the warps sm_message_cost; messages to the other GPU (same node)
  // are copied by the same warps at the NVLink link's rate.
  FixedSource source(4, kRouting);
  const SimulationResult r =
      simulate(two_gpu_scenario(100, "exchange_kernels: LOW_LATENCY"), source);
  const double message_us = kDefaultCommKernel.sm_message_cost.to_us();
  const double link = 100e9;
  // Dispatch: GPU 0 sends 8 messages, 5 of them to GPU 1 (GPU 1: 8, 3 to GPU 0).
  const double dispatch_us = 8 * message_us + 5 * kTokenBytes / link * 1e6;
  // Combine: GPU 1 answers the 10 pairs of its experts, 5 to GPU 0 (GPU 0: 6, 3 to GPU 1).
  const double combine_us = 10 * message_us + 5 * kTokenBytes / link * 1e6;
  REQUIRE(dispatch_us > 2 * flow_us(5, 100));
  REQUIRE(r.dispatch_us.size() == 1);
  CHECK(r.dispatch_us[0] == Approx(dispatch_us).epsilon(1e-6));
  CHECK(r.combine_us[0] == Approx(combine_us).epsilon(1e-6));
  CHECK(r.dispatch_algorithm == DispatchAlgorithm::kPerExpert);
}

TEST_CASE("a step's exchange takes as long as moe-collective's phase on the same routing",
          "[step]") {
  for (const bool low_latency : {false, true}) {
    for (const MoePhase phase : {MoePhase::kDispatch, MoePhase::kCombine}) {
      const Scenario scenario = two_gpu_scenario(
          100, low_latency ? "exchange_kernels: LOW_LATENCY comm_sms: 4" : "comm_sms: 4");
      FixedSource source(4, kRouting);
      const SimulationResult step = simulate(scenario, source);
      std::vector<RoutingDecision> decisions(2);
      for (int32_t rank = 0; rank < 2; ++rank) {
        RoutingRequest request;
        request.rank = rank;
        request.ranks = 2;
        request.tokens = 8;
        source.route(request, decisions[static_cast<size_t>(rank)]);
      }
      MoePhaseOptions options;
      options.phase = phase;
      options.mode = low_latency ? MoeCommMode::kLowLatency : MoeCommMode::kNormal;
      options.kernel.sms = 4;
      const MoePhaseResult alone = run_moe_phase(load_topology_file(scenario.cluster.topology_file),
                                                 scenario.model, decisions, options);
      const double step_us =
          (phase == MoePhase::kDispatch ? step.dispatch_us : step.combine_us).at(0);
      INFO((low_latency ? "low latency " : "normal ")
           << (phase == MoePhase::kDispatch ? "dispatch" : "combine"));
      CHECK(step_us == Approx(alone.time_us()).epsilon(1e-9));
      CHECK(alone.bounds.kernel > alone.flow_time);
    }
  }
}

TEST_CASE("the scenario's comm_sms and exchange_kernels are checked", "[step]") {
  CHECK_THROWS_WITH(two_gpu_scenario(100, "comm_sms: 0"), Catch::Contains("comm_sms"));
  CHECK_THROWS_WITH(two_gpu_scenario(100, "comm_sms: 132"), Catch::Contains("[1, 132)"));
  CHECK_THROWS_WITH(two_gpu_scenario(100, "fabric_routing: ECMP"),
                    Catch::Contains("applies to topology presets only"));
}

}  // namespace
}  // namespace moesim
