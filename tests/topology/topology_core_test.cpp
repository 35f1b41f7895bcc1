// Tests of the Topology core on hand-built graphs: duplex links, efficiency, node structure,
// BFS paths and ECMP, GPU forwarding, validation messages and cache lifetime across a move.
#include <catch2/catch.hpp>

#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "topologies/topology.h"

namespace moesim {
namespace {

std::vector<std::string> names_along(const Topology& t, std::span<const LinkId> path) {
  std::vector<std::string> names;
  if (path.empty()) return names;
  names.push_back(t.vertex_name(t.link(path.front()).from));
  for (LinkId id : path) names.push_back(t.vertex_name(t.link(id).to));
  return names;
}

TEST_CASE("duplex links come in twins and carry their attributes", "[topology]") {
  Topology t;
  const VertexId a = t.add_vertex(VertexKind::kGpu, "a");
  const VertexId sw = t.add_vertex(VertexKind::kNvSwitch, "sw");
  const VertexId b = t.add_vertex(VertexKind::kGpu, "b");
  const LinkId ab =
      t.add_duplex_link(a, sw, Bandwidth::gigabytes_per_s(450), Time::ns(250), LinkKind::kNvLink);
  t.add_duplex_link(b, sw, Bandwidth::gigabytes_per_s(100), Time::ns(100), LinkKind::kNvLink);
  REQUIRE(t.links().size() == 4);
  CHECK(ab.value == 0);
  CHECK(t.link(LinkId{1}).from == sw);
  CHECK(t.link(LinkId{1}).to == a);
  CHECK(t.reverse(LinkId{2}).value == 3);
  CHECK(t.gpu_count() == 2);
  CHECK(t.gpu(1) == b);
  CHECK(t.gpu_index(sw) == -1);
  CHECK(t.gpu_index(b) == 1);
  CHECK(t.find_vertex("sw") == sw);
  CHECK_FALSE(t.find_vertex("nope").has_value());

  // a -> sw -> b: 250 ns + 100 ns.
  const auto p = t.path(0, 1, 7);
  REQUIRE(p.size() == 2);
  CHECK(names_along(t, p) == std::vector<std::string>{"a", "sw", "b"});
  CHECK(t.path_latency(p) == Time::ns(350));
  CHECK(t.path(1, 1, 0).empty());

  CHECK(t.effective_capacity(ab).gigabytes_per_second() == Approx(450.0));
  t.set_efficiency(LinkKind::kNvLink, 0.8);
  CHECK(t.efficiency(LinkKind::kNvLink) == 0.8);
  CHECK(t.efficiency(LinkKind::kNetwork) == 1.0);
  CHECK(t.effective_capacity(ab).gigabytes_per_second() == Approx(360.0));
  CHECK_THROWS_AS(t.set_efficiency(LinkKind::kPcie, 1.5), std::invalid_argument);
  CHECK_THROWS_AS(t.set_efficiency(LinkKind::kPcie, 0.0), std::invalid_argument);
}

TEST_CASE("bad vertices, links and indices are refused", "[topology]") {
  Topology t;
  const VertexId a = t.add_vertex(VertexKind::kGpu, "a");
  CHECK_THROWS_AS(t.add_vertex(VertexKind::kGpu, "a"), std::invalid_argument);
  CHECK_THROWS_AS(t.add_vertex(VertexKind::kGpu, ""), std::invalid_argument);
  CHECK_THROWS_AS(t.add_duplex_link(a, a, Bandwidth::gbps(1), Time::ns(1), LinkKind::kPcie),
                  std::invalid_argument);
  const VertexId b = t.add_vertex(VertexKind::kSwitch, "b");
  CHECK_THROWS_AS(t.add_duplex_link(a, b, Bandwidth::gbps(0), Time::ns(1), LinkKind::kPcie),
                  std::invalid_argument);
  CHECK_THROWS_AS(
      t.add_duplex_link(a, VertexId{9}, Bandwidth::gbps(1), Time::ns(1), LinkKind::kPcie),
      std::out_of_range);
  CHECK_THROWS_AS(t.path(0, 1, 0), std::out_of_range);
  CHECK_THROWS_AS(t.path(-1, 0, 0), std::out_of_range);
}

TEST_CASE("gpus_per_node splits GPUs into nodes", "[topology]") {
  Topology t;
  for (int i = 0; i < 12; ++i) t.add_vertex(VertexKind::kGpu, "g" + std::to_string(i));
  const VertexId sw = t.add_vertex(VertexKind::kSwitch, "sw");
  for (int i = 0; i < 12; ++i) {
    t.add_duplex_link(t.gpu(i), sw, Bandwidth::gbps(100), Time::ns(1), LinkKind::kNetwork);
  }
  CHECK(t.gpus_per_node() == 1);
  CHECK(t.node_count() == 12);
  t.set_gpus_per_node(4);
  CHECK(t.node_count() == 3);
  CHECK(t.node_of(9) == 2);
  CHECK(t.local_rank(9) == 1);
  t.validate();
  t.set_gpus_per_node(5);
  CHECK_THROWS_AS(t.validate(), std::invalid_argument);
  CHECK_THROWS_AS(t.set_gpus_per_node(0), std::invalid_argument);
}

// a - s1 - {x, y} - s2 - b: two equal-cost paths, and a longer detour via z that must not be used.
Topology diamond() {
  Topology t;
  t.add_vertex(VertexKind::kGpu, "a");
  t.add_vertex(VertexKind::kGpu, "b");
  std::map<std::string, VertexId> v;
  for (const char* n : {"s1", "x", "y", "s2", "z1", "z2"}) {
    v[n] = t.add_vertex(VertexKind::kSwitch, n);
  }
  const auto bw = Bandwidth::gbps(400);
  const auto lat = Time::ns(100);
  const auto net = LinkKind::kNetwork;
  t.add_duplex_link(t.gpu(0), v["s1"], bw, lat, net);
  t.add_duplex_link(v["s1"], v["x"], bw, lat, net);
  t.add_duplex_link(v["s1"], v["y"], bw, lat, net);
  t.add_duplex_link(v["s1"], v["z1"], bw, lat, net);
  t.add_duplex_link(v["z1"], v["z2"], bw, lat, net);
  t.add_duplex_link(v["z2"], v["s2"], bw, lat, net);
  t.add_duplex_link(v["x"], v["s2"], bw, lat, net);
  t.add_duplex_link(v["y"], v["s2"], bw, lat, net);
  t.add_duplex_link(v["s2"], t.gpu(1), bw, lat, net);
  return t;
}

TEST_CASE("ECMP picks among all equal-cost paths, deterministically", "[topology]") {
  const Topology t = diamond();
  CHECK(t.ecmp_width(0, 1) == 2);
  std::map<std::string, int> middle_use;
  for (uint64_t h = 0; h < 200; ++h) {
    const auto p = t.path(0, 1, h);
    REQUIRE(p.size() == 4);
    const auto names = names_along(t, p);
    CHECK(names.front() == "a");
    CHECK(names.back() == "b");
    ++middle_use[names[2]];
    // The same hash gives the same span.
    CHECK(t.path(0, 1, h).data() == p.data());
  }
  REQUIRE(middle_use.size() == 2);
  // 200 mixed hashes over 2 paths: each gets well over a quarter.
  CHECK(middle_use["x"] > 50);
  CHECK(middle_use["y"] > 50);
  // The reverse direction uses the twin links.
  const auto back = t.path(1, 0, 3);
  REQUIRE(back.size() == 4);
  CHECK(t.link(back.back()).to == t.gpu(0));
}

TEST_CASE("GPUs relay traffic only when forwarding is on", "[topology]") {
  auto build = [](bool forwarding) {
    Topology t;
    t.set_gpu_forwarding(forwarding);
    const VertexId a = t.add_vertex(VertexKind::kGpu, "a");
    const VertexId c = t.add_vertex(VertexKind::kGpu, "c");
    const VertexId b = t.add_vertex(VertexKind::kGpu, "b");
    const VertexId s1 = t.add_vertex(VertexKind::kSwitch, "s1");
    const VertexId s2 = t.add_vertex(VertexKind::kSwitch, "s2");
    const auto bw = Bandwidth::gbps(100);
    t.add_duplex_link(a, s1, bw, Time::ns(10), LinkKind::kNetwork);
    t.add_duplex_link(s1, c, bw, Time::ns(10), LinkKind::kNetwork);
    t.add_duplex_link(c, s2, bw, Time::ns(10), LinkKind::kNetwork);
    t.add_duplex_link(s2, b, bw, Time::ns(10), LinkKind::kNetwork);
    return t;
  };
  const Topology relaying = build(true);
  relaying.validate();
  const auto p = relaying.path(0, 2, 0);
  CHECK(names_along(relaying, p) == std::vector<std::string>{"a", "s1", "c", "s2", "b"});

  const Topology plain = build(false);
  CHECK(plain.path(0, 1, 0).size() == 2);  // a reaches c, c reaches b
  CHECK_THROWS_WITH(plain.path(0, 2, 0), Catch::Contains("'a' cannot reach GPU 'b'"));
  // Every GPU reaches c, but a and b only through c.
  CHECK_THROWS_WITH(plain.validate(), Catch::Contains("GPU 'a' cannot reach GPU 'b'"));
}

TEST_CASE("an isolated GPU is named by validate", "[topology]") {
  Topology t;
  const VertexId sw = t.add_vertex(VertexKind::kSwitch, "sw");
  for (const char* n : {"g0", "g1", "lonely", "g3"}) t.add_vertex(VertexKind::kGpu, n);
  for (int i : {0, 1, 3}) {
    t.add_duplex_link(t.gpu(i), sw, Bandwidth::gbps(100), Time::ns(10), LinkKind::kNetwork);
  }
  CHECK_THROWS_WITH(t.validate(), Catch::Contains("GPU 'lonely' cannot reach") &&
                                      Catch::Contains("unreachable from it: lonely"));
  Topology empty;
  CHECK_THROWS_WITH(empty.validate(), Catch::Contains("no GPUs"));
}

TEST_CASE("a direct GPU mesh without switches validates", "[topology]") {
  Topology t;
  for (int i = 0; i < 4; ++i) t.add_vertex(VertexKind::kGpu, "g" + std::to_string(i));
  for (int i = 0; i < 4; ++i) {
    for (int j = i + 1; j < 4; ++j) {
      t.add_duplex_link(t.gpu(i), t.gpu(j), Bandwidth::gigabytes_per_s(64), Time::ns(100),
                        LinkKind::kNvLink);
    }
  }
  t.validate();
  CHECK(t.path(0, 3, 0).size() == 1);
}

TEST_CASE("the graph is frozen once paths are cached; spans survive a move", "[topology]") {
  Topology t = diamond();
  const auto p = t.path(0, 1, 11);
  const std::vector<LinkId> copy_of_path(p.begin(), p.end());
  CHECK_THROWS_WITH(t.add_vertex(VertexKind::kGpu, "late"), Catch::Contains("after paths"));

  Topology moved = std::move(t);
  CHECK(std::vector<LinkId>(p.begin(), p.end()) == copy_of_path);
  CHECK(moved.path(0, 1, 11).data() == p.data());

  // A copy has its own cache (and is mutable again) but chooses the same links.
  Topology copied(moved);
  const auto q = copied.path(0, 1, 11);
  CHECK(q.data() != p.data());
  CHECK(std::vector<LinkId>(q.begin(), q.end()) == copy_of_path);
  Topology extended(moved);
  extended.add_vertex(VertexKind::kGpu, "late");
  CHECK(extended.gpu_count() == 3);
}

TEST_CASE("precompute_paths fills every pair with the BFS hop count", "[topology]") {
  const Topology t = diamond();
  t.precompute_paths();
  CHECK(t.path(0, 1, 1).size() == 4);
  CHECK(t.path(1, 0, 1).size() == 4);
}

}  // namespace
}  // namespace moesim
