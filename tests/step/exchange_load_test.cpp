// Load figures per exchange against hand counts: one exchange's expert and GPU max/mean in
// closed form, and a two-layer step whose hot experts differ, where the per-exchange figures
// show the imbalance that the totals over layers and over the step hide.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "analysis/run_report.h"
#include "scenarios/scenario.h"
#include "sim/exchange_load.h"
#include "sim/simulation.h"
#include "tests/scratch_dir.h"

namespace moesim {
namespace {

TEST_CASE("one exchange's expert and GPU load, by hand", "[step][load]") {
  MoeLayerTraffic t;
  // Four routed experts: 6 + 2 + 0 + 4 = 12 pairs, mean 3, hottest expert 0 with 6.
  t.tokens_per_expert = {6, 2, 0, 4};
  // GPU 1 is outside the replica (no rows); GPU 0 holds experts 0 and 1 (8 rows), GPU 2
  // experts 2 and 3 (4 rows): mean 6 over the two GPUs, busiest 8.
  t.tokens_per_local_expert = {{6, 2}, {}, {0, 4}};
  const auto load = exchange_load(t);
  REQUIRE(load.has_value());
  CHECK(load->expert_max_over_mean == Approx(6.0 / 3.0));
  CHECK(load->hottest_expert == 0);
  CHECK(load->hottest_expert_pairs == 6);
  CHECK(load->gpu_max_over_mean == Approx(8.0 / 6.0));
  CHECK(load->busiest_gpu == 0);
  CHECK(load->busiest_gpu_rows == 8);
  CHECK(load->mean_gpu_rows == Approx(6.0));

  // Ties go to the lowest index; an exchange without kept pairs has no ratio.
  t.tokens_per_expert = {1, 5, 5, 1};
  t.tokens_per_local_expert = {{1, 5}, {}, {5, 1}};
  const auto tie = exchange_load(t);
  REQUIRE(tie.has_value());
  CHECK(tie->hottest_expert == 1);
  CHECK(tie->busiest_gpu == 0);
  CHECK(tie->gpu_max_over_mean == Approx(1.0));
  t.tokens_per_expert = {0, 0, 0, 0};
  t.tokens_per_local_expert = {{0, 0}, {}, {0, 0}};
  CHECK_FALSE(exchange_load(t).has_value());
}

// Top-1 routing by MoE layer: every token of layer l goes to hot_expert[l].
class HotExpertByLayer final : public RoutingSource {
 public:
  HotExpertByLayer(int32_t experts, std::vector<int32_t> hot_expert)
      : experts_(experts), hot_(std::move(hot_expert)) {}
  int32_t experts() const override { return experts_; }
  int32_t top_k() const override { return 1; }
  void route(const RoutingRequest& request, RoutingDecision& out) override {
    const int32_t e = hot_.at(static_cast<size_t>(request.layer));
    out.reset(request.tokens, experts_, 1);
    for (int32_t t = 0; t < request.tokens; ++t) {
      out.expert_ids[static_cast<size_t>(t)] = e;
      out.weights[static_cast<size_t>(t)] = 1.0f;
    }
    out.tokens_per_expert[static_cast<size_t>(e)] = request.tokens;
  }

 private:
  int32_t experts_;
  std::vector<int32_t> hot_;
};

TEST_CASE("two layers with different hot experts: per exchange shows what the totals hide",
          "[step][load]") {
  const test::ScratchDir dir("exchange_load_test");
  const auto topology = dir / "switch2.pbtxt";
  std::ofstream(topology) << "gpus_per_node: 2\n"
                             "flat_switch { name: \"sw\" switch_kind: NVSWITCH gpus: 2 "
                             "bandwidth: \"100GB/s\" latency: \"1us\" link_kind: NVLINK }\n";
  std::ostringstream s;
  s << "name: \"two_layers\"\n"
    << "model { layers: 2 dense_layers: 0 hidden_size: 1024 attention_heads: 8 kv_heads: 8 "
       "head_dim: 128 expert_ffn_size: 512 dense_ffn_size: 512 routed_experts: 4 "
       "shared_experts: 0 top_k: 1 vocab_size: 64 weights { dtype: \"bf16\" } "
       "dispatch { dtype: \"bf16\" } combine { dtype: \"bf16\" } }\n"
    << "cluster { topology_file: \"" << topology.string() << "\" gpu { peak_tflops_bf16: 100 "
    << "peak_tflops_fp8: 200 hbm_bandwidth: \"1TB/s\" hbm_capacity: \"80GB\" "
       "gemm_efficiency_max: 0.5 gemm_half_efficiency_rows: 100 memory_efficiency: 1.0 "
       "kernel_launch: \"5us\" } }\n"
    << "parallelism { ep: 2 }\n"
    << "workload { kind: PREFILL tokens_per_gpu: 8 sequence_length: 8 steps: 3 "
       "warmup_steps: 1 }\n"
    << "seed: 7\n";
  const Scenario scenario = parse_scenario(s.str(), "two_layers.pbtxt");
  // Contiguous placement: experts 0, 1 on GPU 0 and 2, 3 on GPU 1. Layer 0 sends all 16
  // tokens to expert 0 (GPU 0), layer 1 to expert 2 (GPU 1).
  HotExpertByLayer source(4, {0, 2});
  const SimulationResult r = simulate(scenario, source);

  // Each exchange: one expert holds 16 pairs, the mean over 4 experts is 4 (ratio 4); one GPU
  // computes 16 rows, the mean over 2 GPUs is 8 (ratio 2). Two measured steps x two layers.
  REQUIRE(r.exchange_expert_max_over_mean.size() == 4);
  REQUIRE(r.exchange_gpu_max_over_mean.size() == 4);
  for (double v : r.exchange_expert_max_over_mean) CHECK(v == Approx(4.0));
  for (double v : r.exchange_gpu_max_over_mean) CHECK(v == Approx(2.0));
  CHECK(r.expert_max_over_mean == Approx(4.0));
  CHECK(r.gpu_max_over_mean == Approx(2.0));
  // The totals add expert 0 of layer 0 to expert 0 of layer 1: {32, 0, 32, 0}, ratio 2; and
  // each GPU computes 32 rows over the two steps: ratio 1, as if perfectly balanced.
  CHECK(r.tokens_per_expert == std::vector<int64_t>{32, 0, 32, 0});
  CHECK(r.expert_summed_over_layers_max_over_mean == Approx(2.0));
  CHECK(r.gpu_tokens == std::vector<int64_t>{32, 32});
  CHECK(r.gpu_summed_over_step_max_over_mean == Approx(1.0));

  std::ostringstream json;
  write_run_json(json, scenario, r);
  CHECK_THAT(json.str(), Catch::Contains("\"expert_load\": {\"max_over_mean\": 4, "
                                         "\"max_over_mean_per_exchange\": {\"count\": 4, "
                                         "\"mean\": 4, \"p50\": 4, \"p99\": 4, \"stddev\": 0, "
                                         "\"min\": 4, \"max\": 4}, "
                                         "\"summed_over_layers_max_over_mean\": 2,"));
  CHECK_THAT(json.str(), Catch::Contains("\"gpu_load\": {\"max_over_mean\": 2, "
                                         "\"max_over_mean_per_exchange\": {\"count\": 4,"));
  CHECK_THAT(json.str(), Catch::Contains("\"summed_over_step_max_over_mean\": 1,"));
}

}  // namespace
}  // namespace moesim
