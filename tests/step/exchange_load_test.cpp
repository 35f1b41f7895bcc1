// Load figures per exchange against hand counts: one exchange's expert and GPU max/mean in
// closed form, and a two-layer step whose hot experts differ, where the per-exchange figures
// show the imbalance that the totals over layers and over the step hide. Straggler attribution:
// a hand-played exchange names its combine's last arrival, and in the two-layer step the
// straggler moves with the hot expert.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "analysis/run_report.h"
#include "models/moe/placement.h"
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

// A forward exchange over `members` played by hand: dispatch launched at 10 us and done at
// 20 us, combine launched at 50 us (the last arrival, as the executor launches it) and done at
// 65 us; each member reaches the combine at arrival_us[i].
struct HandExchange {
  OpGraph graph;
  Execution played;
  CollectiveIdx dispatch = kNone, combine = kNone;

  HandExchange(const std::vector<int32_t>& members, const std::vector<int64_t>& arrival_us)
      : graph(static_cast<int32_t>(members.size())) {
    Collective c;
    c.kind = CollectiveKind::kMoeDispatch;
    c.phase = Phase::kDispatch;
    c.micro_batch = 1;
    c.moe_layer = 2;
    c.dp_rank = 0;
    c.members = members;
    dispatch = graph.add_collective(c);
    c.kind = CollectiveKind::kMoeCombine;
    c.phase = Phase::kCombine;
    combine = graph.add_collective(c);
    for (int32_t g : members) {
      const OpId d = graph.add_member(g, Stream::kComm, dispatch);
      graph.add_member(g, Stream::kComm, combine, std::span<const OpId>(&d, 1));
    }
    graph.finish();
    played.op_start.assign(static_cast<size_t>(graph.op_count()), Time::zero());
    played.op_end.assign(static_cast<size_t>(graph.op_count()), Time::zero());
    for (size_t i = 0; i < members.size(); ++i) {
      const Collective& k = graph.collective(combine);
      played.op_start[static_cast<size_t>(k.member_ops[i])] = Time::us(arrival_us[i]);
    }
    played.collective_launch = {Time::us(10), Time::us(50)};
    played.collective_finish = {Time::us(20), Time::us(65)};
  }
};

TEST_CASE("a hand-played exchange: the straggler is the combine's last arrival", "[step][load]") {
  // EP 3, six experts: rank r holds experts 2r and 2r + 1. Rows per GPU 4, 9, 5 (mean 6).
  ParallelPlan plan;
  plan.ep = 3;
  const Placement placement(plan, 6, 3);
  MoeLayerTraffic t;
  t.tokens_per_expert = {3, 1, 2, 7, 4, 1};
  t.tokens_per_local_expert = {{3, 1}, {2, 7}, {4, 1}};
  const auto load = exchange_load(t);
  REQUIRE(load.has_value());

  // GPU 1 arrives last (50 us), after GPU 2 (40 us) and GPU 0 (30 us, the first).
  const HandExchange overloaded({0, 1, 2}, {30, 50, 40});
  const ExchangeStraggler s =
      exchange_straggler(overloaded.graph, overloaded.played, overloaded.dispatch,
                         overloaded.combine, t, placement, plan.tp);
  CHECK(s.gpu == 1);  // the first finisher would be GPU 0
  CHECK(s.micro_batch == 1);
  CHECK(s.moe_layer == 2);
  CHECK(s.replica == 0);
  CHECK(s.rows == 9);
  CHECK(s.hottest_expert == 3);  // its local experts 2 and 3 computed 2 and 7 rows
  CHECK(s.hottest_expert_rows == 7);
  CHECK(s.time == Time::us(55));           // 10 us to 65 us
  CHECK(s.alltoall_time == Time::us(25));  // 10 us of dispatch, 15 us of combine
  const ExchangeRecord record{3, *load, s};
  CHECK(record.straggler_rows_over_mean() == Approx(9.0 / 6.0));

  // The record decides, not the rows: GPU 2 (5 rows) arriving last is the straggler, with
  // 5 / 6 of the mean, and its hottest expert is 4 (4 rows against expert 5's 1).
  const HandExchange late({0, 1, 2}, {30, 40, 50});
  const ExchangeStraggler l = exchange_straggler(late.graph, late.played, late.dispatch,
                                                 late.combine, t, placement, plan.tp);
  CHECK(l.gpu == 2);
  CHECK(l.rows == 5);
  CHECK(ExchangeRecord{3, *load, l}.straggler_rows_over_mean() == Approx(5.0 / 6.0));
  CHECK(l.hottest_expert == 4);
  CHECK(l.hottest_expert_rows == 4);

  // Members arriving together: the lowest GPU index.
  const HandExchange tie({0, 1, 2}, {50, 40, 50});
  CHECK(exchange_straggler(tie.graph, tie.played, tie.dispatch, tie.combine, t, placement, plan.tp)
            .gpu == 0);

  // TP 2 x EP 2: GPUs 2 and 3 form EP rank 1 (experts 2 and 3), so GPU 2's hottest local
  // expert is 3, not expert 1 of rank 2 mod 2 = 0.
  ParallelPlan tp_plan;
  tp_plan.tp = 2;
  tp_plan.ep = 2;
  const Placement tp_placement(tp_plan, 4, 2);
  MoeLayerTraffic tp_traffic;
  tp_traffic.tokens_per_expert = {1, 2, 5, 6};
  tp_traffic.tokens_per_local_expert = {{1, 2}, {1, 2}, {5, 6}, {5, 6}};
  const HandExchange tp({0, 1, 2, 3}, {20, 20, 50, 50});
  const ExchangeStraggler p = exchange_straggler(tp.graph, tp.played, tp.dispatch, tp.combine,
                                                 tp_traffic, tp_placement, tp_plan.tp);
  CHECK(p.gpu == 2);
  CHECK(p.rows == 11);
  CHECK(p.hottest_expert == 3);
  CHECK(p.hottest_expert_rows == 6);
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

// A tiny scenario on one switch of `gpus` GPUs: `layers` MoE layers of four experts, top-1,
// prefill of 8 tokens per GPU, `parallelism` and `steps` lines as given.
Scenario tiny_scenario(const test::ScratchDir& dir, int32_t gpus, int32_t layers,
                       const std::string& parallelism, const std::string& steps) {
  const auto topology = dir / "switch.pbtxt";
  std::ofstream(topology) << "gpus_per_node: " << gpus << "\n"
                          << "flat_switch { name: \"sw\" switch_kind: NVSWITCH gpus: " << gpus
                          << " bandwidth: \"100GB/s\" latency: \"1us\" link_kind: NVLINK }\n";
  std::ostringstream s;
  s << "name: \"tiny\"\n"
    << "model { layers: " << layers
    << " dense_layers: 0 hidden_size: 1024 attention_heads: 8 kv_heads: 8 "
       "head_dim: 128 expert_ffn_size: 512 dense_ffn_size: 512 routed_experts: 4 "
       "shared_experts: 0 top_k: 1 vocab_size: 64 weights { dtype: \"bf16\" } "
       "dispatch { dtype: \"bf16\" } combine { dtype: \"bf16\" } }\n"
    << "cluster { topology_file: \"" << topology.string() << "\" gpu { peak_tflops_bf16: 100 "
    << "peak_tflops_fp8: 200 hbm_bandwidth: \"1TB/s\" hbm_capacity: \"80GB\" "
       "gemm_efficiency_max: 0.5 gemm_half_efficiency_rows: 100 memory_efficiency: 1.0 "
       "kernel_launch: \"5us\" } }\n"
    << parallelism << "workload { kind: PREFILL tokens_per_gpu: 8 sequence_length: 8 " << steps
    << " }\n"
    << "seed: 7\n";
  return parse_scenario(s.str(), "tiny.pbtxt");
}

TEST_CASE("two layers with different hot experts: per exchange shows what the totals hide",
          "[step][load]") {
  const test::ScratchDir dir("exchange_load_test");
  const Scenario scenario =
      tiny_scenario(dir, 2, 2, "parallelism { ep: 2 }\n", "steps: 3 warmup_steps: 1");
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

  // Straggler attribution: layer 0's exchange waits for GPU 0 (16 rows of expert 0, GPU 1 has
  // none), layer 1's for GPU 1 (16 rows of expert 2). Taking the first finisher instead would
  // name the idle GPU in both, and the lowest index among members GPU 0 in both.
  REQUIRE(r.exchanges.size() == 4);
  for (size_t i = 0; i < r.exchanges.size(); ++i) {
    INFO("exchange " << i);
    const ExchangeRecord& e = r.exchanges[i];
    const int32_t layer = static_cast<int32_t>(i % 2);
    CHECK(e.step == static_cast<int32_t>(1 + i / 2));  // steps 1 and 2 (step 0 is warm-up)
    CHECK(e.straggler.micro_batch == 0);
    CHECK(e.straggler.moe_layer == layer);
    CHECK(e.straggler.replica == 0);
    CHECK(e.straggler.gpu == layer);
    CHECK(e.straggler.rows == 16);
    CHECK(e.straggler_rows_over_mean() == Approx(2.0));
    CHECK(e.straggler.hottest_expert == (layer == 0 ? 0 : 2));
    CHECK(e.straggler.hottest_expert_rows == 16);
    CHECK(e.load.gpu_max_over_mean == Approx(r.exchange_gpu_max_over_mean[i]));
    // 1F1B runs nothing between dispatch, expert FFN and combine on a GPU: the exchange's time
    // is its dispatch, the straggler's expert FFN (the layer's slowest) and its combine, as the
    // step's own samples measured them (one exchange per layer, in order).
    const double dispatch = r.dispatch_us[i], combine = r.combine_us[i];
    CHECK(e.straggler.alltoall_time.to_us() == Approx(dispatch + combine));
    CHECK(e.straggler.time.to_us() == Approx(dispatch + r.expert_compute_us[i] + combine));
  }
  CHECK_THAT(json.str(), Catch::Contains("\"exchanges\": {\"count\": 4,\n"
                                         "    \"step\": [1, 1, 2, 2],\n"
                                         "    \"micro_batch\": [0, 0, 0, 0],\n"
                                         "    \"moe_layer\": [0, 1, 0, 1],\n"
                                         "    \"replica\": [0, 0, 0, 0],\n"));
  CHECK_THAT(json.str(), Catch::Contains("\"straggler_gpu\": [0, 1, 0, 1],\n"
                                         "    \"straggler_rows\": [16, 16, 16, 16],\n"
                                         "    \"straggler_rows_over_mean\": [2, 2, 2, 2],\n"
                                         "    \"straggler_expert\": [0, 2, 0, 2],\n"
                                         "    \"straggler_expert_rows\": [16, 16, 16, 16]},\n"));
  std::ostringstream table;
  print_run_table(table, scenario, r);
  CHECK_THAT(table.str(), Catch::Contains("computed the most rows of its replica in 4 of 4"));
}

TEST_CASE("a plan without an all-to-all has no straggler to attribute", "[step][load]") {
  const test::ScratchDir dir("exchange_load_test_ep1");
  const Scenario scenario = tiny_scenario(dir, 1, 1, "", "steps: 2 warmup_steps: 0");
  HotExpertByLayer source(4, {1});
  const SimulationResult r = simulate(scenario, source);
  CHECK(r.exchange_gpu_max_over_mean.size() == 2);  // loads, but no exchange was played
  CHECK(r.exchanges.empty());
  std::ostringstream json;
  write_run_json(json, scenario, r);
  CHECK_THAT(json.str(), Catch::Contains("\"exchanges\": {\"count\": 0,\n    \"step\": [],"));
}

}  // namespace
}  // namespace moesim
