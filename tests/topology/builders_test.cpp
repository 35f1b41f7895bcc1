// Tests of the topology builders and presets: vertex and link counts against closed-form
// formulas, reverse twins, path lengths and ECMP spread, torus distances, preset figures.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "topologies/builders.h"
#include "topologies/presets.h"

namespace moesim {
namespace {

void check_twins(const Topology& t) {
  const auto links = t.links();
  REQUIRE(links.size() % 2 == 0);
  for (uint32_t i = 0; i < links.size(); ++i) {
    const Link& l = links[i];
    const Link& twin = links[i ^ 1u];
    REQUIRE(twin.from == l.to);
    REQUIRE(twin.to == l.from);
    REQUIRE(twin.capacity == l.capacity);
    REQUIRE(twin.latency == l.latency);
    REQUIRE(twin.kind == l.kind);
  }
}

std::vector<std::string> vertices_along(const Topology& t, std::span<const LinkId> path) {
  std::vector<std::string> names{t.vertex_name(t.link(path.front()).from)};
  for (LinkId id : path) names.push_back(t.vertex_name(t.link(id).to));
  return names;
}

size_t count_kind(const Topology& t, VertexKind kind) {
  size_t n = 0;
  for (uint32_t v = 0; v < t.vertex_count(); ++v) n += t.vertex_kind(VertexId{v}) == kind;
  return n;
}

TEST_CASE("an NVSwitch node joins every GPU pair through the switch", "[builders]") {
  const Topology t = build_nvswitch_node({8, Bandwidth::gigabytes_per_s(450)});
  t.validate();
  CHECK(t.gpu_count() == 8);
  CHECK(t.vertex_count() == 9);
  CHECK(t.links().size() == 2 * 8);
  CHECK(t.gpus_per_node() == 8);
  CHECK(t.node_count() == 1);
  check_twins(t);
  for (int a = 0; a < 8; ++a) {
    for (int b = 0; b < 8; ++b) {
      if (a == b) continue;
      const auto p = t.path(a, b, 0);
      REQUIRE(p.size() == 2);
      CHECK(t.vertex_name(t.link(p[0]).to) == "nvswitch");
      CHECK(t.link(p[0]).capacity.gigabytes_per_second() == Approx(450.0));
      CHECK(t.link(p[0]).kind == LinkKind::kNvLink);
      CHECK(t.path_latency(p) == kNvLinkLinkLatency * 2);
    }
  }
  CHECK_THROWS_AS(build_nvswitch_node({0, Bandwidth::gigabytes_per_s(450)}), std::invalid_argument);
  CHECK_THROWS_AS(build_nvswitch_node({8, Bandwidth{}}), std::invalid_argument);
}

TEST_CASE("a rail fat-tree has the counted parts and rail-aware paths", "[builders]") {
  RailFatTreeParams params;
  params.node = {8, Bandwidth::gigabytes_per_s(450)};
  params.nodes = 4;
  params.nic = Bandwidth::gbps(400);
  params.pcie = Bandwidth::gigabytes_per_s(64);
  const Topology t = build_rail_fat_tree(params);
  t.validate();
  const int n = 4, g = 8, spines = 8;  // spines default to one per rail
  CHECK(t.gpu_count() == n * g);
  CHECK(count_kind(t, VertexKind::kNic) == size_t(n * g));
  CHECK(count_kind(t, VertexKind::kNvSwitch) == size_t(n));
  CHECK(count_kind(t, VertexKind::kSwitch) == size_t(g + spines));
  // Duplex: NVLink n*g, PCIe n*g, NIC-leaf n*g, leaf-spine g*spines.
  CHECK(t.links().size() == size_t(2 * (3 * n * g + g * spines)));
  CHECK(t.gpus_per_node() == g);
  CHECK(t.node_count() == n);
  check_twins(t);

  SECTION("intra-node: 2 hops over NVLink") {
    const auto p = t.path(8 + 1, 8 + 6, 5);
    CHECK(vertices_along(t, p) == std::vector<std::string>{"n1.gpu1", "n1.nvswitch", "n1.gpu6"});
  }
  SECTION("same rail: 4 hops through the rail's leaf only") {
    const auto p = t.path(3, 2 * 8 + 3, 5);
    CHECK(vertices_along(t, p) ==
          std::vector<std::string>{"n0.gpu3", "n0.nic3", "leaf3", "n2.nic3", "n2.gpu3"});
    CHECK(t.ecmp_width(3, 2 * 8 + 3) == 1);
    CHECK(t.path_latency(p) == kPcieLinkLatency * 2 + kNetworkLinkLatency * 2);
  }
  SECTION("cross rail: 6 hops through a spine, spread over all spines") {
    std::set<std::string> used;
    for (uint64_t h = 0; h < 400; ++h) {
      const auto p = t.path(1, 3 * 8 + 5, h);
      const auto names = vertices_along(t, p);
      REQUIRE(names.size() == 7);
      CHECK(names[1] == "n0.nic1");
      CHECK(names[2] == "leaf1");
      CHECK(names[3].rfind("spine", 0) == 0);
      CHECK(names[4] == "leaf5");
      CHECK(names[5] == "n3.nic5");
      used.insert(names[3]);
      // Deterministic: the same hash, the same path.
      CHECK(vertices_along(t, t.path(1, 3 * 8 + 5, h)) == names);
    }
    CHECK(used.size() == size_t(spines));
    CHECK(t.ecmp_width(1, 3 * 8 + 5) == uint32_t(spines));
  }
}

TEST_CASE("oversubscription divides leaf uplink capacity", "[builders]") {
  RailFatTreeParams params;
  params.node = {4, Bandwidth::gigabytes_per_s(300)};
  params.nodes = 6;
  params.nic = Bandwidth::gbps(400);  // 50 GB/s
  params.pcie = Bandwidth::gigabytes_per_s(32);
  params.spines = 3;
  params.oversubscription = 2.0;
  const Topology t = build_rail_fat_tree(params);
  // Per leaf: 6 x 50 GB/s down; up 300 / 2 = 150 GB/s over 3 spines = 50 GB/s per uplink.
  double down = 0, up = 0;
  const VertexId leaf0 = *t.find_vertex("leaf0");
  for (const Link& l : t.links()) {
    if (l.to != leaf0) continue;
    if (t.vertex_kind(l.from) == VertexKind::kNic) down += l.capacity.gigabytes_per_second();
    if (t.vertex_kind(l.from) == VertexKind::kSwitch) {
      up += l.capacity.gigabytes_per_second();
      CHECK(l.capacity.gigabytes_per_second() == Approx(50.0));
    }
  }
  CHECK(down == Approx(300.0));
  CHECK(up == Approx(150.0));
  CHECK(down / up == Approx(params.oversubscription));
}

TEST_CASE("a two-tier fat-tree matches k^2/2 hosts and k^2 links", "[builders]") {
  for (int k : {4, 8}) {
    const Topology t = build_fat_tree({2, k, Bandwidth::gbps(400)});
    t.validate();
    CHECK(t.gpu_count() == k * k / 2);
    CHECK(count_kind(t, VertexKind::kSwitch) == size_t(k + k / 2));
    CHECK(t.links().size() == size_t(2 * k * k));
    check_twins(t);
    CHECK(t.path(0, 1, 0).size() == 2);  // same leaf
    CHECK(t.path(0, k / 2, 0).size() == 4);
    CHECK(t.ecmp_width(0, k * k / 2 - 1) == uint32_t(k / 2));
  }
}

TEST_CASE("a three-tier fat-tree matches Al-Fares's counts and path lengths", "[builders]") {
  const int k = 8, half = k / 2;
  const Topology t = build_fat_tree({3, k, Bandwidth::gbps(100)});
  t.validate();
  CHECK(t.gpu_count() == k * k * k / 4);
  CHECK(count_kind(t, VertexKind::kSwitch) == size_t(k * k + half * half));
  CHECK(t.links().size() == size_t(2 * 3 * k * k * k / 4));
  check_twins(t);
  CHECK(t.path(0, 1, 0).size() == 2);     // same edge switch
  CHECK(t.path(0, half, 0).size() == 4);  // same pod, another edge
  CHECK(t.ecmp_width(0, half) == uint32_t(half));
  const int other_pod = half * half;
  CHECK(t.path(0, other_pod, 0).size() == 6);
  CHECK(t.ecmp_width(0, other_pod) == uint32_t(half * half));
  std::set<std::string> cores;
  for (uint64_t h = 0; h < 1000; ++h) cores.insert(vertices_along(t, t.path(0, other_pod, h))[3]);
  CHECK(cores.size() == size_t(half * half));
  for (const auto& c : cores) CHECK(c.rfind("core", 0) == 0);
  CHECK_THROWS_AS(build_fat_tree({4, 8, Bandwidth::gbps(100)}), std::invalid_argument);
  CHECK_THROWS_AS(build_fat_tree({3, 7, Bandwidth::gbps(100)}), std::invalid_argument);
}

TEST_CASE("ECMP beyond kMaxEcmpPaths samples paths and still uses every core", "[builders]") {
  // k = 20: (k/2)^2 = 100 inter-pod paths > 64 kept per pair; the per-pair rotation must
  // still spread pairs over all 100 cores.
  const int k = 20, half = k / 2;
  const Topology t = build_fat_tree({3, k, Bandwidth::gbps(100)});
  const int gpus_per_pod = half * half;
  CHECK(t.ecmp_width(0, gpus_per_pod) == Topology::kMaxEcmpPaths);
  std::set<std::string> cores;
  for (int src = 0; src < gpus_per_pod; src += 7) {
    for (uint64_t h = 0; h < 200; ++h) {
      const auto p = t.path(src, gpus_per_pod + src, h);
      REQUIRE(p.size() == 6);
      cores.insert(vertices_along(t, p)[3]);
    }
  }
  CHECK(cores.size() == size_t(half * half));
}

TEST_CASE("after precompute_paths, concurrent queries return the cached paths", "[builders]") {
  RailFatTreeParams params;
  params.node = {8, Bandwidth::gigabytes_per_s(450)};
  params.nodes = 4;
  params.nic = Bandwidth::gbps(400);
  params.pcie = Bandwidth::gigabytes_per_s(64);
  Topology t = build_rail_fat_tree(params);
  t.precompute_paths();
  const int g = t.gpu_count();
  std::vector<const LinkId*> serial;
  for (int a = 0; a < g; ++a) {
    for (int b = 0; b < g; ++b) {
      for (uint64_t h = 0; h < 4; ++h) serial.push_back(t.path(a, b, h).data());
    }
  }
  int mismatches[2] = {0, 0};
  auto query = [&](int worker) {
    size_t i = 0;
    for (int a = 0; a < g; ++a) {
      for (int b = 0; b < g; ++b) {
        for (uint64_t h = 0; h < 4; ++h)
          mismatches[worker] += t.path(a, b, h).data() != serial[i++];
      }
    }
  };
  std::thread first(query, 0);
  std::thread second(query, 1);
  first.join();
  second.join();
  CHECK(mismatches[0] == 0);
  CHECK(mismatches[1] == 0);

  // Copy assignment gives an independent topology choosing the same links.
  Topology other = build_nvswitch_node({2, Bandwidth::gigabytes_per_s(1)});
  other = t;
  const auto p = other.path(1, 30, 3);
  const auto q = t.path(1, 30, 3);
  CHECK(p.data() != q.data());
  CHECK(std::vector<LinkId>(p.begin(), p.end()) == std::vector<LinkId>(q.begin(), q.end()));
}

int ring_distance(int a, int b, int size, bool wrap) {
  const int d = std::abs(a - b);
  return wrap ? std::min(d, size - d) : d;
}

TEST_CASE("torus shortest paths equal the wrap-around Manhattan distance", "[builders]") {
  for (bool wrap : {true, false}) {
    const std::vector<int> dims{4, 3, 5};
    const Topology t = build_torus({dims, Bandwidth::gigabytes_per_s(100), Time::ns(100), wrap});
    t.validate();
    CHECK(t.gpu_count() == 60);
    CHECK(t.gpu_forwarding());
    // Per dimension d: (60/d) rings of d links with wrap-around (d >= 3), d-1 without.
    const size_t expected = wrap ? 60 + 60 + 60 : 15 * 3 + 20 * 2 + 12 * 4;
    CHECK(t.links().size() == 2 * expected);
    check_twins(t);
    for (int a = 0; a < 60; ++a) {
      for (int b = 0; b < 60; ++b) {
        const int distance = ring_distance(a % 4, b % 4, 4, wrap) +
                             ring_distance(a / 4 % 3, b / 4 % 3, 3, wrap) +
                             ring_distance(a / 12, b / 12, 5, wrap);
        REQUIRE(t.path(a, b, uint64_t(a * 60 + b)).size() == size_t(distance));
      }
    }
  }
  // Size 2 rings have a single link, size 1 none: 2x2 has 4 links, 1x3 (ring of 3) has 3.
  CHECK(build_torus({{2, 2}, Bandwidth::gbps(100)}).links().size() == 2 * 4);
  CHECK(build_torus({{1, 3}, Bandwidth::gbps(100)}).links().size() == 2 * 3);
  const Topology named = build_torus({{4, 3, 5}, Bandwidth::gbps(100)});
  CHECK(named.vertex_name(named.gpu(5 + 4 * 3 * 2)) == "gpu1.1.2");
  CHECK_THROWS_AS(build_torus({{}, Bandwidth::gbps(100)}), std::invalid_argument);
  CHECK_THROWS_AS(build_torus({{2, 0}, Bandwidth::gbps(100)}), std::invalid_argument);
}

}  // namespace
}  // namespace moesim
