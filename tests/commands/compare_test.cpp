// Compare: the plan set of a small case listed by hand, memory per GPU worked by hand, the
// global-batch adapter's slices against the router's own decisions, the same decisions for
// every plan and cluster, and --cluster parsing.
#include <catch2/catch.hpp>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "analysis/compare_output.h"
#include "models/router/router.h"
#include "scenarios/scenario.h"
#include "sim/compare.h"
#include "sim/memory.h"
#include "tests/commands/commands_test_util.h"

using namespace moesim;
using moesim::test::tiny_scenario;

namespace {

std::set<std::tuple<int, int, int>> plan_set(const std::vector<ParallelPlan>& plans) {
  std::set<std::tuple<int, int, int>> s;
  for (const ParallelPlan& p : plans) s.insert({p.tp, p.ep, p.dp});
  return s;
}

}  // namespace

TEST_CASE("compare enumerates every TP x EP x DP plan that fits, and only those", "[commands]") {
  const Scenario s =
      parse_scenario(tiny_scenario("ep: 8", "kind: TRAINING tokens_per_gpu: 64"), "tiny.pbtxt");
  // 8 GPUs, 8 per node, 4 heads, 8 experts: TP in {1, 2, 4} (8 does not divide 4 heads), EP a
  // divisor of 8 with TP*EP dividing 8.
  const std::set<std::tuple<int, int, int>> expected = {{1, 1, 8}, {1, 2, 4}, {1, 4, 2},
                                                        {1, 8, 1}, {2, 1, 4}, {2, 2, 2},
                                                        {2, 4, 1}, {4, 1, 2}, {4, 2, 1}};
  const std::vector<ParallelPlan> plans = enumerate_plans(s.model, 8, 8, 1);
  CHECK(plan_set(plans) == expected);
  CHECK(plans.size() == expected.size());
  // 12 GPUs (nodes of 4) at PP 2 with 6 experts: TP in {1, 2, 4}, EP in {1, 2, 3, 6},
  // TP*EP dividing 6.
  ModelSpec m = s.model;
  m.routed_experts = 6;
  const std::set<std::tuple<int, int, int>> expected12 = {{1, 1, 6}, {1, 2, 3}, {1, 3, 2},
                                                          {1, 6, 1}, {2, 1, 3}, {2, 3, 1}};
  CHECK(plan_set(enumerate_plans(m, 12, 4, 2)) == expected12);
  for (const ParallelPlan& p : enumerate_plans(m, 12, 4, 2)) CHECK(p.pp == 2);
}

TEST_CASE("memory per GPU matches a hand count and marks a plan that does not fit", "[commands]") {
  const Scenario s = parse_scenario(
      tiny_scenario("ep: 2 dp: 4",
                    "kind: TRAINING tokens_per_gpu: 64 sequence_length: 64 micro_batches: 2", "",
                    R"(preset: "h100-sxm" hbm_capacity: "50MB")"),
      "tiny.pbtxt");
  const MemoryPerGpu m = memory_per_gpu(s);
  // Per layer: attention 4 * 256 * 256 = 262144, gate 256 * 8 = 2048, 4 local experts of
  // 3 * 256 * 512 = 393216 each; 2 layers; embedding and LM head 2 * 1000 * 256.
  const int64_t params = 2 * (262144 + 2048 + 4 * 393216) + 512000;
  CHECK(m.params == params);
  CHECK(m.weights == Bytes(2 * params));
  CHECK(m.gradients == Bytes(2 * params));
  CHECK(m.optimizer_state == Bytes(12 * params));
  // Per token per layer: attention 2*256 + 2*4*64 + 2*4*64 = 1536 elements; MoE block
  // 256 + 1*2*256 + 2*3*512 = 3840; bf16, plus 8 fp32 logits. One micro-batch in flight
  // (pp 1), 64 tokens, 2 layers.
  const int64_t per_token_layer = (1536 + 3840) * 2 + 8 * 4;
  CHECK(m.activations == Bytes(64 * 2 * per_token_layer));
  CHECK(m.kv_cache == Bytes(0));
  CHECK(m.total() == Bytes(68358144));
  CHECK(m.capacity == Bytes(50'000'000));
  CHECK(!m.fits());

  // EP8: one local expert each.
  Scenario ep8 = s;
  ep8.parallel.ep = 8;
  ep8.parallel.dp = 1;
  const MemoryPerGpu m8 = memory_per_gpu(ep8);
  CHECK(m8.params == 2 * (262144 + 2048 + 393216) + 512000);
  CHECK(m8.total() == Bytes(16 * m8.params + 64 * 2 * per_token_layer));
  CHECK(m8.fits());

  // Decode at TP2 EP4: KV of the TP group's 2 * 64 sequences of 101 tokens, 2 layers, heads
  // split over the 2 TP ranks; 2 micro-batches resident; weights only (bf16).
  Scenario decode = s;
  decode.workload.kind = WorkloadKind::kDecode;
  decode.workload.kv_context_length = 100;
  decode.parallel.tp = 2;
  decode.parallel.ep = 4;
  decode.parallel.dp = 1;
  const MemoryPerGpu md = memory_per_gpu(decode);
  CHECK(md.params == 2 * (262144 / 2 + 2048 + 2 * 393216 / 2) + 2 * (1000 * 256 / 2));
  CHECK(md.weights == Bytes(2 * md.params));
  CHECK(md.gradients == Bytes(0));
  CHECK(md.optimizer_state == Bytes(0));
  CHECK(md.kv_cache == Bytes(int64_t{2} * 64 * 101 * 2 * (2 * 4 * 64) * 2 / 2 * 2));
}

TEST_CASE("the global batch adapter hands each rank its slice of the same tokens", "[commands]") {
  const Scenario s = parse_scenario(tiny_scenario("ep: 8", "kind: TRAINING tokens_per_gpu: 16",
                                                  "router { capacity_factor: 1.0 }"),
                                    "tiny.pbtxt");
  Router router(s.router);
  GlobalBatchSource global(router, 4, 16);  // 64 tokens per (layer, micro-batch)
  std::vector<RoutingDecision> shards(4);
  for (int32_t r = 0; r < 4; ++r) {
    RoutingRequest q;
    q.layer = 1;
    q.micro_batch = 3;
    q.rank = r;
    q.ranks = 4;
    q.tokens = 16;
    router.route(q, shards[r]);
  }
  auto check_slice = [&](int32_t rank, int32_t ranks) {
    RoutingRequest q;
    q.layer = 1;
    q.micro_batch = 3;
    q.rank = rank;
    q.ranks = ranks;
    q.tokens = 999;  // ignored: the slice is 64 / ranks tokens
    RoutingDecision d;
    global.route(q, d);
    const int32_t n = 64 / ranks;
    REQUIRE(d.tokens == n);
    std::vector<int32_t> counts(8, 0);
    int64_t dropped = 0;
    for (int32_t t = 0; t < n; ++t) {
      const int32_t g = rank * n + t;  // global token
      const RoutingDecision& shard = shards[g / 16];
      for (int32_t k = 0; k < 2; ++k) {
        const size_t from = static_cast<size_t>(g % 16) * 2 + k;
        const size_t to = static_cast<size_t>(t) * 2 + k;
        CHECK(d.expert_ids[to] == shard.expert_ids[from]);
        CHECK(d.weights[to] == shard.weights[from]);
        CHECK(d.dropped[to] == shard.dropped[from]);
        if (shard.dropped[from]) {
          ++dropped;
        } else {
          ++counts[shard.expert_ids[from]];
        }
      }
    }
    CHECK(d.tokens_per_expert == counts);
    CHECK(d.dropped_pairs == dropped);
  };
  for (int32_t r = 0; r < 2; ++r) check_slice(r, 2);  // two shards each
  CHECK(global.global_routings() == 1);
  for (int32_t r = 0; r < 8; ++r) check_slice(r, 8);  // half a shard each
  CHECK(global.global_routings() == 2);               // the first entry was served and dropped
  // Same rank count as the shards: the router's own decision.
  RoutingRequest q{1, 3, 2, 4, 16};
  RoutingDecision d;
  global.route(q, d);
  CHECK(d.expert_ids == shards[2].expert_ids);
  CHECK_THROWS_AS(global.route(RoutingRequest{1, 3, 4, 4, 16}, d), std::invalid_argument);
}

TEST_CASE("compare routes the same tokens for every plan and cluster, whatever the threads",
          "[commands]") {
  const std::string text =
      tiny_scenario("ep: 8", "kind: TRAINING tokens_per_gpu: 32 sequence_length: 16 steps: 1",
                    "router { capacity_factor: 1.25 }");
  const Scenario s = parse_scenario(text, "tiny.pbtxt");
  const std::vector<ClusterChoice> clusters = {parse_cluster_choice("dgx-h100"),
                                               parse_cluster_choice("dgx-h100:nodes=2:nic=200")};
  CompareOptions one;
  one.threads = 1;
  const std::vector<ClusterComparison> serial = compare_plans(text, "tiny.pbtxt", clusters, one);
  const std::vector<ClusterComparison> parallel = compare_plans(text, "tiny.pbtxt", clusters, {});
  REQUIRE(serial.size() == 2);
  CHECK(serial[0].plans.size() == 9);
  CHECK(serial[0].tokens_per_gpu == 32);
  CHECK(serial[1].tokens_per_gpu == 16);  // the 256-token global batch over 16 GPUs
  const std::vector<int64_t>& reference = serial[0].plans[0].result.tokens_per_expert;
  int64_t kept = 0;
  for (int64_t n : reference) kept += n;
  CHECK(kept + serial[0].plans[0].result.dropped_pairs == 2 * 256 * 2);  // layers x tokens x k
  for (size_t c = 0; c < 2; ++c) {
    REQUIRE(parallel[c].plans.size() == serial[c].plans.size());
    for (size_t i = 0; i < serial[c].plans.size(); ++i) {
      const PlanOutcome& p = serial[c].plans[i];
      CHECK(p.result.tokens_per_expert == reference);
      CHECK(parallel[c].plans[i].plan.tp == p.plan.tp);
      CHECK(parallel[c].plans[i].plan.ep == p.plan.ep);
      CHECK(parallel[c].plans[i].step_p50_us == p.step_p50_us);
      CHECK(p.plan.tp * p.plan.ep * p.plan.dp == serial[c].cluster.gpu_count);
      if (i > 0) CHECK(serial[c].plans[i - 1].step_p50_us <= p.step_p50_us);
    }
  }
  // The scenario's own plan, compared, is `moesim run` of the scenario.
  for (const PlanOutcome& p : serial[0].plans) {
    if (p.plan.tp == 1 && p.plan.ep == 8) {
      CHECK(p.result.step_time_us == simulate(s).step_time_us);
    }
  }
  CHECK_THAT(compare_verdict(serial), Catch::StartsWith("fastest plan that fits: "));
}

TEST_CASE("cluster specs name a preset and its options", "[commands]") {
  const ClusterChoice a = parse_cluster_choice("dgx-h100:nodes=4:nic=400");
  CHECK(a.cluster.gpu_count == 32);
  CHECK(a.cluster.gpus_per_node == 8);
  CHECK(*a.cluster.nic_gbps == 400.0);
  CHECK(a.cluster.gpu.name == "h100-sxm");
  const ClusterChoice b = parse_cluster_choice("nvl72");
  CHECK(b.cluster.gpu_count == 72);
  CHECK(b.cluster.gpu.name == "gb200");
  CHECK(parse_cluster_choice("dgx-h100:gpu=h200:oversub=2").cluster.gpu.name == "h200");
  CHECK_THROWS_WITH(parse_cluster_choice("dgx-h100:nodes=x"), Catch::Contains("nodes='x'"));
  CHECK_THROWS_WITH(parse_cluster_choice("dgx-h100:racks=2"), Catch::Contains("unknown key"));
  CHECK_THROWS_AS(parse_cluster_choice("no-such-cluster"), std::invalid_argument);
  CHECK_THROWS_WITH(parse_cluster_choice("dgx-h100:gpu=tpu"), Catch::Contains("unknown GPU"));
}

TEST_CASE("compare rejects a plan as a scenario file would, with the validation's message",
          "[commands]") {
  // One extra copy of a hot expert needs a second EP rank: the EP1 plans compare tries cannot
  // hold it, and a scenario file at EP1 is rejected for the same reason.
  const std::string workload = "kind: TRAINING tokens_per_gpu: 16";
  std::string file_error;
  try {
    (void)parse_scenario(tiny_scenario("ep: 1 dp: 8 hot_experts: 0 replicas: 1", workload),
                         "tiny.pbtxt");
  } catch (const ScenarioError& e) {
    file_error = e.what();
  }
  REQUIRE_THAT(file_error, Catch::Contains("expected 1..0"));
  const std::string reason = file_error.substr(file_error.find("replicas"));
  const std::string text = tiny_scenario("ep: 8 hot_experts: 0 replicas: 1", workload);
  (void)parse_scenario(text, "tiny.pbtxt");  // valid as it stands
  CHECK_THROWS_WITH(
      compare_plans(text, "tiny.pbtxt", {}, {}),
      Catch::StartsWith("cluster dgx-h100, plan TP1 EP1 DP8: ") && Catch::Contains(reason));
}

TEST_CASE("compare keeps the scenario's sequences when it slices the batch over more GPUs",
          "[commands]") {
  // No sequence_length: one sequence of 32 tokens per GPU on the scenario's 8 GPUs. On 16 GPUs
  // each gets 16 tokens, half a sequence, which the validation rejects.
  const std::string text = tiny_scenario("ep: 8", "kind: TRAINING tokens_per_gpu: 32");
  const std::vector<ClusterChoice> two_nodes = {parse_cluster_choice("dgx-h100:nodes=2")};
  CHECK_THROWS_WITH(compare_plans(text, "tiny.pbtxt", two_nodes, {}),
                    Catch::Contains("tokens_per_gpu 16 is not a whole number of sequences of 32"));
}
