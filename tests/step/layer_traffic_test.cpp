// A layer's routing decisions reduced to traffic, one rank at a time: hand-worked hierarchical
// dispatches on two nodes of two GPUs, and the order the builder insists on.
#include <catch2/catch.hpp>
#include <stdexcept>
#include <vector>

#include "models/moe/placement.h"
#include "sim/moe_traffic.h"
#include "topologies/builders.h"

namespace moesim {
namespace {

Topology two_nodes_of_two() {
  return build_rail_fat_tree(
      {.node = {.gpus = 2, .nvlink_per_gpu = Bandwidth::gigabytes_per_s(450)},
       .nodes = 2,
       .nic = Bandwidth::gbps(400),
       .pcie = Bandwidth::gigabytes_per_s(64)});
}

RoutingDecision decision(int32_t tokens, std::vector<int32_t> ids) {
  RoutingDecision d;
  d.reset(tokens, 4, 2);
  d.expert_ids = std::move(ids);
  return d;
}

ParallelPlan ep4() {
  ParallelPlan plan;
  plan.ep = 4;
  return plan;
}

// EP4 over two nodes of two GPUs, expert e on GPU e: GPUs 0, 1 on node 0, GPUs 2, 3 on node 1.
// Members point at each other: built in place, never copied.
struct TwoNodesEp4 {
  Topology topology = two_nodes_of_two();
  ParallelPlan plan = ep4();
  Placement placement{plan, 4, 2};
  ReplicaLayout layout{&plan, &placement, &topology, 0, 0};
};

TEST_CASE("layer traffic by rank: a token crosses to a node once, through its rail's relay",
          "[step][traffic]") {
  const TwoNodesEp4 f;
  const ReplicaLayout& layout = f.layout;
  // GPU 0's token 0 chose experts 2 and 3 (both on node 1), token 1 experts 1 and 2.
  const RoutingDecision gpu0 = decision(2, {2, 3, 1, 2});
  const RoutingDecision idle = decision(0, {});
  LayerTrafficBuilder builder(layout, DispatchAlgorithm::kHierarchical);
  builder.add(0, 0, gpu0);
  for (int32_t b = 1; b < 4; ++b) builder.add(b, 0, idle);
  const MoeLayerTraffic t = builder.finish();
  // Stage 1: token 1 to GPU 1 over NVLink; both tokens once to node 1's rail-0 GPU (2).
  // Stage 2: GPU 2 forwards token 0 to GPU 3.
  REQUIRE(t.stage1.size() == 2);
  CHECK((t.stage1[0].src_gpu == 0 && t.stage1[0].dst_gpu == 1 && t.stage1[0].tokens == 1));
  CHECK((t.stage1[1].src_gpu == 0 && t.stage1[1].dst_gpu == 2 && t.stage1[1].tokens == 2));
  REQUIRE(t.stage2.size() == 1);
  CHECK((t.stage2[0].src_gpu == 2 && t.stage2[0].dst_gpu == 3 && t.stage2[0].tokens == 1));
  CHECK(t.tokens_per_expert == std::vector<int64_t>{0, 1, 2, 1});
  CHECK(t.routed_pairs == 4);
  CHECK(t.tokens == 2);
  CHECK(t.tokens_per_local_expert[2] == std::vector<int32_t>{2});
  // The whole-layer form gives the same.
  const std::vector<RoutingDecision> all{gpu0, idle, idle, idle};
  const MoeLayerTraffic whole = build_layer_traffic(layout, all, DispatchAlgorithm::kHierarchical);
  CHECK(whole.tokens_per_expert == t.tokens_per_expert);
  CHECK(whole.stage1.size() == t.stage1.size());
  CHECK(whole.stage2.size() == t.stage2.size());
}

TEST_CASE("layer traffic by rank: each rank's tokens are sent, whatever the ranks before chose",
          "[step][traffic]") {
  // A token's destinations are de-duplicated by stamps that must stay distinct across ranks:
  // GPU 1's first token chose the same experts as GPU 0's and must still be sent.
  const TwoNodesEp4 f;
  const ReplicaLayout& layout = f.layout;
  const RoutingDecision first = decision(1, {2, 3});
  const RoutingDecision idle = decision(0, {});
  LayerTrafficBuilder builder(layout, DispatchAlgorithm::kHierarchical);
  builder.add(0, 0, first);
  builder.add(1, 0, first);
  builder.add(2, 0, idle);
  builder.add(3, 0, idle);
  const MoeLayerTraffic t = builder.finish();
  // Stage 1: GPU 0 to node 1's rail-0 GPU (2), GPU 1 to its rail-1 GPU (3), once each.
  // Stage 2: GPU 2 forwards GPU 0's token to GPU 3, GPU 3 forwards GPU 1's to GPU 2.
  REQUIRE(t.stage1.size() == 2);
  CHECK((t.stage1[0].src_gpu == 0 && t.stage1[0].dst_gpu == 2 && t.stage1[0].tokens == 1));
  CHECK((t.stage1[1].src_gpu == 1 && t.stage1[1].dst_gpu == 3 && t.stage1[1].tokens == 1));
  REQUIRE(t.stage2.size() == 2);
  CHECK((t.stage2[0].src_gpu == 2 && t.stage2[0].dst_gpu == 3 && t.stage2[0].tokens == 1));
  CHECK((t.stage2[1].src_gpu == 3 && t.stage2[1].dst_gpu == 2 && t.stage2[1].tokens == 1));
  CHECK(t.tokens_per_expert == std::vector<int64_t>{0, 0, 2, 2});
}

TEST_CASE("layer traffic by rank: ranks out of turn, twice or missing are refused",
          "[step][traffic]") {
  const TwoNodesEp4 f;
  const ReplicaLayout& layout = f.layout;
  const RoutingDecision idle = decision(0, {});
  LayerTrafficBuilder skipped(layout, DispatchAlgorithm::kHierarchical);
  CHECK_THROWS_WITH(skipped.add(1, 0, idle), Catch::Contains("(ep 1, tp 0) out of turn"));
  LayerTrafficBuilder twice(layout, DispatchAlgorithm::kHierarchical);
  twice.add(0, 0, idle);
  CHECK_THROWS_AS(twice.add(0, 0, idle), std::logic_error);
  CHECK_THROWS_WITH(twice.finish(), Catch::Contains("after 1 of 4 decisions"));
  RoutingDecision wrong = idle;
  wrong.experts = 8;
  LayerTrafficBuilder mismatched(layout, DispatchAlgorithm::kHierarchical);
  CHECK_THROWS_WITH(mismatched.add(0, 0, wrong), Catch::Contains("has 8 experts"));
}

}  // namespace
}  // namespace moesim
