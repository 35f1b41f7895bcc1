// cluster { fabric_routing spines }: the scenario builds the fabric the CLI's --fabric-routing
// and --spines build (topologies/presets.h), with the same default, and refuses what the CLI
// refuses.
#include <catch2/catch.hpp>
#include <string>

#include "scenarios/scenario.h"
#include "sim/simulation.h"
#include "topologies/presets.h"

namespace moesim {
namespace {

Scenario two_nodes(const std::string& cluster_extra) {
  return parse_scenario(
      "model { preset: \"mixtral-8x7b\" }\n"
      "cluster { topology: \"dgx-h100\" nodes: 2 gpu { preset: \"h100-sxm\" } " +
          cluster_extra +
          " }\n"
          "parallelism { ep: 8 dp: 2 }\n"
          "workload { kind: PREFILL tokens_per_gpu: 64 }\n",
      "fabric.pbtxt");
}

// Same vertices (names included) and links (ends and capacities) as the CLI's cluster.
void check_same(const Topology& a, const Topology& b) {
  REQUIRE(a.vertex_count() == b.vertex_count());
  for (uint32_t v = 0; v < a.vertex_count(); ++v) {
    CHECK(a.vertex_name(VertexId{v}) == b.vertex_name(VertexId{v}));
  }
  REQUIRE(a.links().size() == b.links().size());
  for (size_t i = 0; i < a.links().size(); ++i) {
    CHECK(a.links()[i].from == b.links()[i].from);
    CHECK(a.links()[i].to == b.links()[i].to);
    CHECK(a.links()[i].capacity.bytes_per_second() == b.links()[i].capacity.bytes_per_second());
  }
}

int spines_of(const Topology& t) {
  int spines = 0;
  while (t.find_vertex("spine" + std::to_string(spines))) ++spines;
  return spines;
}

TEST_CASE("cluster fabric_routing builds the CLI's fabric", "[scenario]") {
  ClusterOptions cli;
  cli.preset = "dgx-h100";
  cli.nodes = 2;
  SECTION("left out: the one default, adaptive (one aggregated spine)") {
    const Scenario s = two_nodes("");
    CHECK(s.cluster.fabric_routing == kDefaultFabricRouting);
    CHECK(kDefaultFabricRouting == FabricRouting::kAdaptive);
    const Topology t = build_topology(s.cluster);
    check_same(t, build_cluster(cli));
    CHECK(spines_of(t) == 1);
  }
  SECTION("ECMP: one spine per rail, or the given count") {
    cli.routing = FabricRouting::kEcmp;
    const Topology per_rail = build_topology(two_nodes("fabric_routing: ECMP").cluster);
    check_same(per_rail, build_cluster(cli));
    CHECK(spines_of(per_rail) == 8);
    cli.spines = 2;
    const Topology two = build_topology(two_nodes("fabric_routing: ECMP spines: 2").cluster);
    check_same(two, build_cluster(cli));
    CHECK(spines_of(two) == 2);
  }
}

TEST_CASE("cluster spines without ECMP is refused by name", "[scenario]") {
  CHECK_THROWS_WITH(two_nodes("spines: 2"),
                    Catch::Contains("spines") && Catch::Contains("fabric_routing: ECMP"));
  CHECK_THROWS_WITH(two_nodes("fabric_routing: ADAPTIVE spines: 2"), Catch::Contains("spines"));
  CHECK_THROWS_WITH(two_nodes("fabric_routing: ECMP spines: 0"), Catch::Contains("spines"));
}

}  // namespace
}  // namespace moesim
