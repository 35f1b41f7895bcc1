// Tests of expert placement against hand-worked layouts: contiguous, round-robin, explicit,
// least-loaded replicas, and which copy serves a token.
#include <catch2/catch.hpp>

#include <vector>

#include "models/moe/placement.h"

namespace moesim {
namespace {

std::vector<int32_t> v(std::span<const int32_t> s) {
  return {s.begin(), s.end()};
}

ParallelPlan plan(int32_t ep, PlacementKind kind) {
  ParallelPlan p;
  p.ep = ep;
  p.placement = kind;
  return p;
}

TEST_CASE("Contiguous and round-robin placement", "[placement]") {
  const Placement contiguous(plan(4, PlacementKind::kContiguous), 8, 4);
  CHECK(v(contiguous.experts_on(0)) == std::vector<int32_t>{0, 1});
  CHECK(v(contiguous.experts_on(3)) == std::vector<int32_t>{6, 7});
  CHECK(contiguous.home_rank(5) == 2);
  const Placement round_robin(plan(4, PlacementKind::kRoundRobin), 8, 4);
  CHECK(v(round_robin.experts_on(1)) == std::vector<int32_t>{1, 5});
  CHECK(round_robin.home_rank(6) == 2);
  CHECK(round_robin.local_index(1, 5) == 1);
  CHECK(round_robin.local_index(1, 2) == -1);
  CHECK_THROWS_AS(Placement(plan(3, PlacementKind::kContiguous), 8, 4), std::invalid_argument);
}

TEST_CASE("Explicit placement", "[placement]") {
  ParallelPlan p = plan(2, PlacementKind::kExplicit);
  p.explicit_ep_rank = {1, 1, 1, 0};
  const Placement placement(p, 4, 1);
  CHECK(v(placement.experts_on(0)) == std::vector<int32_t>{3});
  CHECK(v(placement.experts_on(1)) == std::vector<int32_t>{0, 1, 2});
  p.explicit_ep_rank = {1, 1, 2, 0};
  CHECK_THROWS_AS(Placement(p, 4, 1), std::invalid_argument);
  p.explicit_ep_rank = {1, 1, 0};
  CHECK_THROWS_AS(Placement(p, 4, 1), std::invalid_argument);
}

TEST_CASE("Replicas go to the least-loaded rank; tokens go to the nearest copy", "[placement]") {
  // 8 experts on 4 EP ranks, 2 ranks per node: ranks {0, 1} on node 0, {2, 3} on node 1.
  ParallelPlan p = plan(4, PlacementKind::kContiguous);
  p.hot_experts = {0, 5};
  p.replicas = 1;
  const Placement placement(p, 8, 2);
  // By hand: homes give loads [2, 2, 2, 2]. Expert 0 (home 0): the least-loaded other rank,
  // lowest on ties, is 1 -> loads [2, 3, 2, 2]. Expert 5 (home 2): ranks 0 and 3 hold 2, so 0
  // -> loads [3, 3, 2, 2].
  CHECK(v(placement.ranks_of(0)) == std::vector<int32_t>{0, 1});
  CHECK(v(placement.ranks_of(5)) == std::vector<int32_t>{2, 0});
  CHECK(v(placement.ranks_of(3)) == std::vector<int32_t>{1});
  CHECK(v(placement.experts_on(0)) == std::vector<int32_t>{0, 1, 5});
  CHECK(v(placement.experts_on(1)) == std::vector<int32_t>{0, 2, 3});
  CHECK(placement.local_index(0, 5) == 2);

  // Expert 5 has copies on ranks 2 and 0: a rank holding it serves itself; rank 1 shares node 0
  // with rank 0; rank 3 shares node 1 with rank 2.
  CHECK(placement.serving_rank(5, 0, 7) == 0);
  CHECK(placement.serving_rank(5, 2, 7) == 2);
  CHECK(placement.serving_rank(5, 1, 7) == 0);
  CHECK(placement.serving_rank(5, 3, 7) == 2);
  // Expert 0 has copies on ranks 0 and 1, both on node 0: tokens from node 1 alternate by index.
  CHECK(placement.serving_rank(0, 2, 0) == 0);
  CHECK(placement.serving_rank(0, 2, 1) == 1);
  CHECK(placement.serving_rank(0, 3, 2) == 0);
  // Unreplicated experts are always served by their home.
  CHECK(placement.serving_rank(3, 2, 5) == 1);
}

TEST_CASE("Several replicas spread over distinct ranks", "[placement]") {
  // 4 experts on 4 ranks (one each), expert 2 copied 3 times: onto ranks 0, 1, 3 in turn.
  ParallelPlan p = plan(4, PlacementKind::kRoundRobin);
  p.hot_experts = {2};
  p.replicas = 3;
  const Placement placement(p, 4, 4);
  CHECK(v(placement.ranks_of(2)) == std::vector<int32_t>{2, 0, 1, 3});
  // One node: every copy is on the source's node, so tokens rotate over all four by index.
  CHECK(placement.serving_rank(2, 1, 0) == 1);  // rank 1 holds a copy: itself
  p.replicas = 4;
  CHECK_THROWS_AS(Placement(p, 4, 4), std::invalid_argument);
}

TEST_CASE("A source rank without a copy rotates over the node's copies", "[placement]") {
  // 8 experts on 8 ranks, one node of 8; expert 0 copied twice: ranks 1 and 2 (loads all 1).
  ParallelPlan p = plan(8, PlacementKind::kContiguous);
  p.hot_experts = {0};
  p.replicas = 2;
  const Placement placement(p, 8, 8);
  CHECK(v(placement.ranks_of(0)) == std::vector<int32_t>{0, 1, 2});
  CHECK(placement.serving_rank(0, 5, 0) == 0);
  CHECK(placement.serving_rank(0, 5, 1) == 1);
  CHECK(placement.serving_rank(0, 5, 2) == 2);
  CHECK(placement.serving_rank(0, 5, 3) == 0);
}

}  // namespace
}  // namespace moesim
