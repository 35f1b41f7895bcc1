// Tests of the path cache against closed forms: link ids on a flat switch, lattice path counts
// (binomials) on a mesh, parallel links as ECMP, and lazily chosen paths equal precomputed ones.
#include <catch2/catch.hpp>

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "topologies/builders.h"
#include "topologies/topology.h"

namespace moesim {
namespace {

std::vector<uint32_t> ids(std::span<const LinkId> path) {
  std::vector<uint32_t> out;
  for (LinkId l : path) out.push_back(l.value);
  return out;
}

uint64_t binomial(int n, int k) {
  uint64_t result = 1;
  for (int i = 1; i <= k; ++i) result = result * static_cast<uint64_t>(n - k + i) / i;
  return result;
}

TEST_CASE("a flat switch routes every pair over its two GPU links", "[topology][paths]") {
  Topology t;
  const VertexId sw = t.add_vertex(VertexKind::kSwitch, "switch");
  const int gpus = 48;
  for (int i = 0; i < gpus; ++i) {
    const VertexId g = t.add_vertex(VertexKind::kGpu, "gpu" + std::to_string(i));
    // GPU i's uplink is link 2i, its downlink 2i + 1.
    t.add_duplex_link(g, sw, Bandwidth::gbps(400), Time::ns(500), LinkKind::kNetwork);
  }
  for (int src = 0; src < gpus; ++src) {
    for (int dst = 0; dst < gpus; ++dst) {
      const auto p = t.path(src, dst, uint64_t(src * gpus + dst));
      if (src == dst) {
        CHECK(p.empty());
        continue;
      }
      REQUIRE(p.size() == 2);
      CHECK(p[0].value == uint32_t(2 * src));
      CHECK(p[1].value == uint32_t(2 * dst + 1));
      CHECK(t.ecmp_width(src, dst) == 1);
    }
  }
}

TEST_CASE("a mesh has binomially many shortest paths, all of them used", "[topology][paths]") {
  // 7 x 9 mesh without wrap-around, GPUs forwarding: from (0, 0) to (dx, dy) there are
  // C(dx + dy, dx) monotone lattice paths of dx + dy hops.
  const int nx = 7;
  const int ny = 9;
  const Topology t = build_torus({{nx, ny}, Bandwidth::gbps(400), Time::ns(100), false});
  for (int dy = 0; dy < ny; ++dy) {
    for (int dx = 0; dx < nx; ++dx) {
      if (dx + dy == 0) continue;
      const int dst = dx + nx * dy;
      const uint64_t paths = binomial(dx + dy, dx);
      INFO("dx " << dx << " dy " << dy);
      CHECK(t.ecmp_width(0, dst) == std::min<uint64_t>(paths, Topology::kMaxEcmpPaths));
      CHECK(t.path(0, dst, 5).size() == size_t(dx + dy));
    }
  }
  // (3, 2): C(5, 3) = 10 distinct paths, each a monotone walk (x and y never decrease).
  const int dst = 3 + nx * 2;
  std::set<std::vector<uint32_t>> seen;
  for (uint64_t h = 0; h < 400; ++h) {
    const auto p = t.path(0, dst, h);
    seen.insert(ids(p));
    int x = 0;
    int y = 0;
    for (LinkId l : p) {
      const int to = t.gpu_index(t.link(l).to);
      const int tx = to % nx;
      const int ty = to / nx;
      CHECK(((tx == x + 1 && ty == y) || (tx == x && ty == y + 1)));
      x = tx;
      y = ty;
    }
    CHECK(x == 3);
    CHECK(y == 2);
  }
  CHECK(seen.size() == 10);
}

TEST_CASE("parallel links are distinct equal-cost paths", "[topology][paths]") {
  Topology t;
  const VertexId a = t.add_vertex(VertexKind::kGpu, "a");
  const VertexId b = t.add_vertex(VertexKind::kGpu, "b");
  const VertexId sw = t.add_vertex(VertexKind::kSwitch, "sw");
  const auto bw = Bandwidth::gbps(100);
  const LinkId first = t.add_duplex_link(a, sw, bw, Time::ns(10), LinkKind::kNetwork);
  const LinkId second = t.add_duplex_link(a, sw, bw, Time::ns(10), LinkKind::kNetwork);
  const LinkId down = t.add_duplex_link(sw, b, bw, Time::ns(10), LinkKind::kNetwork);
  CHECK(t.ecmp_width(0, 1) == 2);
  CHECK(t.ecmp_width(1, 0) == 2);
  std::set<std::vector<uint32_t>> seen;
  for (uint64_t h = 0; h < 100; ++h) seen.insert(ids(t.path(0, 1, h)));
  CHECK(seen ==
        std::set<std::vector<uint32_t>>{{first.value, down.value}, {second.value, down.value}});
  std::set<uint32_t> last_hops;
  for (uint64_t h = 0; h < 100; ++h) last_hops.insert(t.path(1, 0, h).back().value);
  CHECK(last_hops == std::set<uint32_t>{t.reverse(first).value, t.reverse(second).value});
}

TEST_CASE("paths chosen lazily equal the precomputed ones", "[topology][paths]") {
  // 9 x 9 mesh: corner to (4, 4) has C(8, 4) = 70 shortest paths, 64 kept; (8, 8) has 12870.
  const Topology lazy = build_torus({{9, 9}, Bandwidth::gbps(400), Time::ns(100), false});
  const Topology eager(lazy);
  // Two pairs chosen before precompute_paths keep their per-path slots, which it then fills.
  const auto early = eager.path(0, 4 + 9 * 4, 1);
  eager.path(0, 80, 2);
  eager.precompute_paths();
  CHECK(eager.path(0, 4 + 9 * 4, 1).data() == early.data());
  const int g = lazy.gpu_count();
  for (int src = 0; src < g; src += 4) {
    for (int dst = 0; dst < g; ++dst) {
      REQUIRE(lazy.ecmp_width(src, dst) == eager.ecmp_width(src, dst));
      for (uint64_t h = 0; h < 3; ++h) {
        const uint64_t hash = uint64_t(src) * 1000003 + uint64_t(dst) * 17 + h;
        REQUIRE(ids(lazy.path(src, dst, hash)) == ids(eager.path(src, dst, hash)));
      }
    }
  }
  // The 64 kept paths of a pair with more are 64 distinct ones, for a lazy and an eager cache.
  for (const int dst : {4 + 9 * 4, 80}) {
    std::set<std::vector<uint32_t>> kept_lazy;
    std::set<std::vector<uint32_t>> kept_eager;
    for (uint64_t h = 0; h < 3000; ++h) {
      kept_lazy.insert(ids(lazy.path(0, dst, h)));
      kept_eager.insert(ids(eager.path(0, dst, h)));
    }
    CHECK(kept_lazy.size() == Topology::kMaxEcmpPaths);
    CHECK(kept_eager == kept_lazy);
  }
}

}  // namespace
}  // namespace moesim
