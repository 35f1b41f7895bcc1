// End-to-end checks of the step simulation against hand-worked cases and closed forms:
// phase times from the roofline and max-min formulas, idle time from imbalance, overload.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "analysis/run_report.h"
#include "models/router/routing_decision.h"
#include "scenarios/scenario.h"
#include "sim/simulation.h"
#include "tests/fixed_source.h"
#include "tests/scratch_dir.h"

namespace moesim {
namespace {

using test::FixedSource;

// One folder per test process: CTest runs this file's test cases as parallel processes, and a
// shared folder let one rewrite a topology file while another read it.
std::filesystem::path write_temp(const std::string& name, const std::string& text) {
  static const test::ScratchDir dir("step_test");
  const auto path = dir / name;
  std::ofstream(path) << text;
  return path;
}

// GPUs on one switch: `gpus` links of `gbps` GB/s and `latency_ns` per direction.
std::filesystem::path switch_topology(int gpus, double gb_per_s, int latency_ns) {
  std::ostringstream t;
  t << "gpus_per_node: " << gpus << "\n"
    << "flat_switch { name: \"sw\" switch_kind: NVSWITCH gpus: " << gpus << " bandwidth: \""
    << gb_per_s << "GB/s\" latency: \"" << latency_ns << "ns\" link_kind: NVLINK }\n";
  return write_temp("switch" + std::to_string(gpus) + ".pbtxt", t.str());
}

// A one-layer MoE model (hidden 1024, expert FFN 512, SwiGLU, BF16 everywhere) on a made-up
// GPU whose parameters make the roofline easy to work by hand.
std::string scenario_text(const std::filesystem::path& topology, int experts, int ep,
                          int tokens_per_gpu, const char* kind) {
  std::ostringstream s;
  s << "name: \"hand\"\n"
    << "model { layers: 1 dense_layers: 0 hidden_size: 1024 attention_heads: 8 kv_heads: 8 "
       "head_dim: 128 expert_ffn_size: 512 dense_ffn_size: 512 routed_experts: "
    << experts
    << " shared_experts: 0 top_k: 1 vocab_size: 64 "
       "weights { dtype: \"bf16\" } dispatch { dtype: \"bf16\" } combine { dtype: \"bf16\" } }\n"
    << "cluster { topology_file: \"" << topology.string()
    << "\" gpu { peak_tflops_bf16: 100 peak_tflops_fp8: 200 hbm_bandwidth: \"1TB/s\" "
       "hbm_capacity: \"80GB\" gemm_efficiency_max: 0.5 gemm_half_efficiency_rows: 100 "
       "memory_efficiency: 1.0 kernel_launch: \"5us\" } }\n"
    << "parallelism { ep: " << ep << " }\n"
    << "workload { kind: " << kind << " tokens_per_gpu: " << tokens_per_gpu
    << " sequence_length: " << tokens_per_gpu << " steps: 1 }\n"
    << "seed: 7\n";
  return s.str();
}

// The test's own roofline for one MoE layer's grouped expert FFN on the made-up GPU.
double expert_ffn_us(const std::vector<int>& rows_per_expert) {
  const double hidden = 1024, ffn = 512, peak = 100e12, hbm = 1e12, launch_us = 5.0;
  double us = 2 * launch_us;
  for (int m : rows_per_expert) {
    if (m == 0) continue;
    const double eff = 0.5 * m / (m + 100.0);
    const double flops = 2.0 * 3 * hidden * ffn * m;
    const double bytes = 3 * hidden * ffn * 2 + m * (hidden * 2 + 2 * ffn * 2 + hidden * 2);
    us += std::max(flops / (peak * eff), bytes / hbm) * 1e6;
  }
  return us;
}

double phase_us(const SimulationResult& r, int gpu, Phase p) {
  return r.gpu_phase_us.at(static_cast<size_t>(gpu))[static_cast<int>(p)];
}

TEST_CASE("hand-worked two-GPU, four-expert prefill step", "[step]") {
  const auto topo = switch_topology(2, 100, 1000);
  const Scenario scenario = parse_scenario(scenario_text(topo, 4, 2, 8, "PREFILL"), "hand.pbtxt");
  // Contiguous placement: experts 0, 1 on GPU 0 and 2, 3 on GPU 1.
  FixedSource source(4, {{0, 2, 2, 3, 1, 0, 2, 2}, {3, 3, 1, 0, 2, 3, 3, 1}});
  const SimulationResult r = simulate(scenario, source);

  // Dispatch: GPU 0 sends its 5 tokens for experts 2-3 (5 x 1024 x 2 B) to GPU 1 while GPU 1
  // sends 3 tokens to GPU 0 over the other direction of the links; each flow runs alone at
  // 100 GB/s, then crosses two links of 1 us. The exchange ends with the larger flow.
  const double dispatch_us = 5 * 2048 / 100e9 * 1e6 + 2.0;
  REQUIRE(r.dispatch_us.size() == 1);
  CHECK(r.dispatch_us[0] == Approx(dispatch_us).epsilon(1e-9));
  // Combine sends the outputs back: 5 tokens from GPU 1, 3 from GPU 0.
  REQUIRE(r.combine_us.size() == 1);
  CHECK(r.combine_us[0] == Approx(dispatch_us).epsilon(1e-9));

  // Expert rows: GPU 0 computes experts 0 and 1 for 3 tokens each, GPU 1 experts 2 and 3 for
  // 5 tokens each; the slower GPU sets the layer's expert time.
  const double gpu0_us = expert_ffn_us({3, 3});
  const double gpu1_us = expert_ffn_us({5, 5});
  REQUIRE(r.expert_compute_us.size() == 1);
  CHECK(r.expert_compute_us[0] == Approx(gpu1_us).epsilon(1e-6));
  CHECK(phase_us(r, 0, Phase::kExpertCompute) == Approx(gpu0_us).epsilon(1e-6));
  // GPU 0 waits for GPU 1 at the combine: that wait is its idle time, and GPU 1 never waits.
  CHECK(phase_us(r, 0, Phase::kIdle) == Approx(gpu1_us - gpu0_us).epsilon(1e-6));
  CHECK(phase_us(r, 1, Phase::kIdle) == 0.0);

  // The step is the phases in sequence on the slower GPU.
  const double step = phase_us(r, 1, Phase::kAttention) + phase_us(r, 1, Phase::kDenseFfn) +
                      dispatch_us + gpu1_us + dispatch_us;
  REQUIRE(r.step_time_us.size() == 1);
  CHECK(r.step_time_us[0] == Approx(step).epsilon(1e-7));  // kernels round up to whole ps
  CHECK(r.tokens_per_expert == std::vector<int64_t>{3, 3, 5, 5});
  CHECK(r.gpu_tokens == std::vector<int64_t>{6, 10});
  CHECK(r.gpu_max_over_mean == Approx(10.0 / 8.0));
  CHECK(r.dropped_pairs == 0);

  // The network's work, by hand: each exchange starts its two flows together (one
  // recomputation that rates both) and they leave at different instants (one each). The two
  // use opposite directions of the links, so neither departure changes the other's rate.
  CHECK(r.work.flows == 4);
  CHECK(r.work.rate_recomputations == 6);
  CHECK(r.work.region_flows == 4);
  CHECK(r.work.rate_changes == 4);
}

TEST_CASE("a step reports each collective that ends, in order", "[step]") {
  const auto topo = switch_topology(2, 100, 1000);
  FixedSource source(4, {{0, 2, 2, 3, 1, 0, 2, 2}, {3, 3, 1, 0, 2, 3, 3, 1}});
  std::vector<std::pair<int32_t, double>> seen;
  SimulationOptions options;
  options.step_progress = [&](int32_t step, int32_t steps, double fraction) {
    CHECK(steps == 1);
    seen.emplace_back(step, fraction);
  };
  using Seen = std::vector<std::pair<int32_t, double>>;
  SECTION("prefill: the layer's dispatch, then its combine") {
    simulate(parse_scenario(scenario_text(topo, 4, 2, 8, "PREFILL"), "hand.pbtxt"), source,
             options);
    CHECK(seen == Seen{{0, 0.5}, {0, 1.0}});
  }
  SECTION(
      "training: forward dispatch and combine, the backward pass's two, then the all-reduce "
      "of the attention weights' gradients (replicated on both GPUs; experts are not)") {
    simulate(parse_scenario(scenario_text(topo, 4, 2, 8, "TRAINING"), "hand.pbtxt"), source,
             options);
    CHECK(seen == Seen{{0, 0.2}, {0, 0.4}, {0, 0.6}, {0, 0.8}, {0, 1.0}});
  }
}

TEST_CASE("balanced EP matches the closed-form all-to-all plus compute", "[step]") {
  // n = 8 GPUs, one expert each, 64 tokens per GPU spread evenly: every GPU sends 8 tokens to
  // each of the 7 others. Uniform all-to-all on one switch: S (n - 1) / (n B) + path latency.
  const int n = 8;
  const auto topo = switch_topology(n, 200, 500);
  const Scenario scenario = parse_scenario(scenario_text(topo, n, n, 64, "PREFILL"), "bal.pbtxt");
  std::vector<std::vector<int32_t>> ids(n);
  for (int r = 0; r < n; ++r) {
    for (int t = 0; t < 64; ++t) ids[r].push_back(t % n);
  }
  FixedSource source(n, ids);
  const SimulationResult r = simulate(scenario, source);
  const double per_gpu_bytes = 64.0 * 1024 * 2;
  const double alltoall_us = per_gpu_bytes * (n - 1) / (n * 200e9) * 1e6 + 1.0;
  REQUIRE(r.dispatch_us.size() == 1);
  CHECK(r.dispatch_us[0] == Approx(alltoall_us).epsilon(1e-6));
  CHECK(r.combine_us[0] == Approx(alltoall_us).epsilon(1e-6));
  const double expert_us = expert_ffn_us({64});
  CHECK(r.expert_compute_us[0] == Approx(expert_us).epsilon(1e-6));
  CHECK(r.idle_fraction == 0.0);
  CHECK(r.expert_max_over_mean == Approx(1.0));
  CHECK(r.gpu_max_over_mean == Approx(1.0));
  const double step = phase_us(r, 0, Phase::kAttention) + phase_us(r, 0, Phase::kDenseFfn) +
                      2 * alltoall_us + expert_us;
  CHECK(r.step_time_us[0] == Approx(step).epsilon(1e-7));  // kernels round up to whole ps
  // Achieved all-to-all bandwidth per GPU: the bytes each GPU sends over the exchange's time.
  CHECK(r.alltoall_gbps_per_gpu ==
        Approx(per_gpu_bytes * (n - 1) / n / alltoall_us * 1e-3).epsilon(1e-6));
}

TEST_CASE("all tokens on one expert make its GPU the bottleneck", "[step]") {
  const int n = 4;
  const auto topo = switch_topology(n, 200, 500);
  const Scenario scenario = parse_scenario(scenario_text(topo, n, n, 32, "PREFILL"), "hot.pbtxt");
  FixedSource source(n, std::vector<std::vector<int32_t>>(n, std::vector<int32_t>(32, 0)));
  const SimulationResult r = simulate(scenario, source);
  // Closed form: one expert holds all T*n pairs; the mean over E = n experts is T: max/mean = E.
  CHECK(r.expert_max_over_mean == Approx(n));
  CHECK(r.gpu_max_over_mean == Approx(n));
  CHECK(r.gpu_tokens[0] == 32 * n);
  // GPU 0 computes 128 rows; the others only launch their empty grouped GEMMs and wait.
  const double hot_us = expert_ffn_us({32 * n});
  const double empty_us = expert_ffn_us({});
  CHECK(r.expert_compute_us[0] == Approx(hot_us).epsilon(1e-6));
  for (int g = 1; g < n; ++g) {
    CHECK(phase_us(r, g, Phase::kIdle) == Approx(hot_us - empty_us).epsilon(1e-6));
  }
  CHECK(phase_us(r, 0, Phase::kIdle) == 0.0);
}

TEST_CASE("a run is bit-identical for a seed whatever the thread count", "[step]") {
  const auto topo = switch_topology(4, 200, 500);
  std::string text = scenario_text(topo, 8, 4, 256, "TRAINING");
  text += "router { capacity_factor: 1.0 zipf_exponent: 1.2 }\n";
  const Scenario scenario = parse_scenario(text, "det.pbtxt");
  auto json_of = [&](int threads) {
    SimulationOptions options;
    options.threads = threads;
    SimulationResult r = simulate(scenario, options);
    r.routing_wall_s = r.simulation_wall_s = 0;  // wall clock is not simulated output
    std::ostringstream out;
    write_run_json(out, scenario, r);
    return out.str();
  };
  const std::string one = json_of(1);
  CHECK(one == json_of(2));
  CHECK(one == json_of(1));
  // Another seed routes other tokens.
  Scenario other = scenario;
  other.router.seed += 1;
  SimulationResult r2 = simulate(other);
  SimulationResult r1 = simulate(scenario);
  CHECK(r1.tokens_per_expert != r2.tokens_per_expert);
}

TEST_CASE("pipeline stages run 1F1B: the step follows (M + P - 1) x (forward + backward)",
          "[step]") {
  // Two GPUs as two pipeline stages (EP 1: every GPU holds all four experts), a fast link so
  // activations cost next to nothing. Per micro-batch stage s computes a slot f + b = 3f. A
  // pipeline's makespan: one micro-batch through every stage (fill and drain) plus M - 1 slots
  // of the slowest stage, (M + P - 1) slots for equal stages; then the optimizer. The last
  // stage also runs the LM head, so the stages differ a little.
  const auto topo = switch_topology(2, 10000, 1);
  for (int micro_batches : {1, 2, 8}) {
    std::string text = scenario_text(topo, 4, 1, 16, "TRAINING");
    text.replace(text.find("layers: 1 "), 10, "layers: 2 ");
    text.replace(text.find("parallelism { ep: 1 }"), 21, "parallelism { pp: 2 }");
    text.replace(text.find("steps: 1"), 8,
                 "steps: 1 micro_batches: " + std::to_string(micro_batches));
    const Scenario scenario = parse_scenario(text, "pp.pbtxt");
    std::vector<std::vector<int32_t>> ids(1, std::vector<int32_t>(16));
    for (int t = 0; t < 16; ++t) ids[0][t] = t % 4;
    FixedSource source(4, ids);
    const SimulationResult r = simulate(scenario, source);
    REQUIRE(r.step_time_us.size() == 1);
    double slowest = 0.0, fill = 0.0, optimizer = 0.0;
    for (int g = 0; g < 2; ++g) {
      const double compute = phase_us(r, g, Phase::kAttention) + phase_us(r, g, Phase::kDenseFfn) +
                             phase_us(r, g, Phase::kExpertCompute);
      slowest = std::max(slowest, compute / micro_batches);
      fill += compute / micro_batches;
      optimizer = std::max(optimizer, phase_us(r, g, Phase::kOptimizer));
    }
    const double closed_form = fill + (micro_batches - 1) * slowest + optimizer;
    INFO("micro-batches " << micro_batches);
    CHECK(r.step_time_us[0] >= closed_form * 0.98);
    CHECK(r.step_time_us[0] <= closed_form * 1.02);
  }
}

TEST_CASE("the optimizer updates the parameters a GPU holds: both vocabulary tables at one stage",
          "[step]") {
  // Two GPUs, EP 2, one MoE layer of 4 experts, one pipeline stage. By hand: attention
  // 4 * 1024 * 8 * 128 = 4194304, the gate 1024 * 4 = 4096, two local experts of
  // 3 * 1024 * 512 = 1572864, the embedding and the LM head 64 * 1024 each: 7475200
  // parameters. Adam moves 18 bytes per parameter through HBM (1 TB/s here), plus a launch.
  const auto topo = switch_topology(2, 10000, 1);
  const Scenario scenario =
      parse_scenario(scenario_text(topo, 4, 2, 16, "TRAINING"), "optimizer.pbtxt");
  const SimulationResult r = simulate(scenario);
  const double params = 4194304 + 4096 + 2 * 1572864 + 2 * 64 * 1024;
  const double expected_us = params * 18 / 1e12 * 1e6 + 5.0;
  for (int g = 0; g < 2; ++g) CHECK(phase_us(r, g, Phase::kOptimizer) == Approx(expected_us));
}

TEST_CASE("a routing source with another expert count is refused", "[step]") {
  const auto topo = switch_topology(2, 100, 1000);
  const Scenario scenario = parse_scenario(scenario_text(topo, 4, 2, 8, "PREFILL"), "bad.pbtxt");
  FixedSource source(8, {{0}, {0}});
  CHECK_THROWS_WITH(simulate(scenario, source),
                    Catch::Contains("8 experts") && Catch::Contains("4"));
}

}  // namespace
}  // namespace moesim
