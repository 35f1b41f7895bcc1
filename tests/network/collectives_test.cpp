// Tests of the collectives against closed forms: uniform all-to-all, pairwise rounds, ring
// all-reduce, oversubscription, and the byte accounting of the hierarchical all-to-all.
#include <algorithm>
#include <catch2/catch.hpp>
#include <numeric>
#include <vector>

#include "models/network/collectives.h"
#include "models/network/network_model.h"
#include "tests/network/test_topologies.h"
#include "topologies/builders.h"
#include "topologies/presets.h"

namespace moesim {

namespace {
constexpr size_t kNet = static_cast<size_t>(LinkKind::kNetwork);
constexpr size_t kNvl = static_cast<size_t>(LinkKind::kNvLink);

Topology node8() {
  NvSwitchNodeParams p;
  p.gpus = 8;
  p.nvlink_per_gpu = Bandwidth::gigabytes_per_s(450);
  return build_nvswitch_node(p);
}
}  // namespace

TEST_CASE("uniform all-to-all on one NVSwitch node takes S(n-1)/(nB)", "[collectives]") {
  const Topology topo = node8();
  CollectiveSpec spec;
  spec.op = CollectiveOp::kAllToAll;
  spec.bytes = Bytes::mib(64);
  const CollectiveResult r = run_collective(topo, spec);
  const double n = 8, s = 64.0 * (1 << 20), b = 450e9;
  const double expected_us = s * (n - 1) / (n * b) * 1e6 + 0.5;  // + GPU->NVSwitch->GPU latency
  CHECK(r.duration().to_us() == Approx(expected_us).epsilon(0.01));
  CHECK(r.sent_bytes[3][kNvl] == 7 * (64 << 20) / 8);
  CHECK(r.received_bytes[5][kNet] == 0);
  CHECK(r.gpu_finish[2] <= r.end);
}

TEST_CASE("pairwise all-to-all takes n-1 rounds of m/B plus latency", "[collectives]") {
  const int n = 6;
  const Topology topo =
      test::star(std::vector<Bandwidth>(n, Bandwidth::gigabytes_per_s(100)), Time::us(1));
  CollectiveSpec spec;
  spec.algo = CollectiveAlgo::kPairwise;
  spec.matrix = ByteMatrix::uniform(n, 1'000'000);
  const CollectiveResult r = run_collective(topo, spec);
  // Each round one flow per link: 1 MB / 100 GB/s = 10 us, plus 2 us of latency.
  CHECK(r.duration().to_us() == Approx((n - 1) * 12.0).epsilon(0.01));
  CHECK(r.flows == static_cast<uint64_t>(n * (n - 1)));
}

TEST_CASE("ring all-reduce takes 2(n-1)/n S/B plus 2(n-1) latency steps", "[collectives]") {
  const Topology topo = node8();
  CollectiveSpec spec;
  spec.op = CollectiveOp::kAllReduce;
  spec.algo = CollectiveAlgo::kRing;
  spec.bytes = Bytes::mib(256);
  const CollectiveResult r = run_collective(topo, spec);
  const double n = 8, s = 256.0 * (1 << 20), b = 450e9;
  const double expected_us = 2 * (n - 1) / n * s / b * 1e6 + 2 * (n - 1) * 0.5;
  CHECK(r.duration().to_us() == Approx(expected_us).epsilon(0.01));
  // Each member sends 2(n-1) pieces of S/n.
  CHECK(r.sent_bytes[0][kNvl] == int64_t{2} * 7 * (int64_t{256} << 20) / 8);
}

TEST_CASE("ring all-reduce across nodes runs one rail-aligned ring per NIC", "[collectives]") {
  // Two DGX H100 nodes: 16 GPUs, 8 rings (one per rail), each with 1/8 of the buffer. Every GPU
  // sends 2(n-1)/n S over NVLink in all (its piece of each ring, or the NVLink leg of a hop
  // relayed to the next node); each rail's NIC carries its ring's 2(n-1) pieces of S/(8n) each
  // way. The bound is the slower of the two, and the pieces pipeline close to it. A single ring
  // would push everything through one NIC per node, 8x slower (and across rails, via a spine).
  ClusterOptions options;
  options.preset = "dgx-h100";
  options.nodes = 2;
  const Topology topo = build_cluster(options);
  CollectiveSpec spec;
  spec.op = CollectiveOp::kAllReduce;
  spec.algo = CollectiveAlgo::kRing;
  spec.bytes = Bytes::mib(256);
  const CollectiveResult r = run_collective(topo, spec);
  const double n = 16, k = 8, s = 256.0 * (1 << 20);
  const double nvlink = 450e9 * topo.efficiency(LinkKind::kNvLink);
  const double nic = 400e9 / 8 * topo.efficiency(LinkKind::kNetwork);
  const double bound_us =
      std::max(2 * (n - 1) / n * s / nvlink, 2 * (n - 1) / n * s / k / nic) * 1e6;
  CHECK(r.duration().to_us() >= bound_us);
  CHECK(r.duration().to_us() <= 1.1 * bound_us);
  const int64_t piece = (int64_t{256} << 20) / (8 * 16);
  for (int g = 0; g < 16; ++g) {
    CHECK(r.sent_bytes[static_cast<size_t>(g)][kNet] == 2 * 15 * piece);
    CHECK(r.received_bytes[static_cast<size_t>(g)][kNet] == 2 * 15 * piece);
    // Its piece of the 7 other rings over NVLink, and the NVLink leg into its own ring's relay
    // (sent by the member before it, received by it).
    CHECK(r.sent_bytes[static_cast<size_t>(g)][kNvl] == 2 * 15 * 8 * piece);
  }
}

TEST_CASE("tree all-reduce: pipelined reduce and broadcast on a binary tree", "[collectives]") {
  // Three GPUs: root 0 with children 1 and 2, one chunk: up (S/B + 2L), then down (S/B + 2L).
  const Topology topo =
      test::star(std::vector<Bandwidth>(3, Bandwidth::gigabytes_per_s(10)), Time::us(1));
  CollectiveSpec spec;
  spec.op = CollectiveOp::kAllReduce;
  spec.algo = CollectiveAlgo::kTree;
  spec.bytes = Bytes(10'000'000);
  spec.options.chunks = 1;
  const CollectiveResult r = run_collective(topo, spec);
  // Up: both children send 10 MB into the root's 10 GB/s link: 2 ms. Down: the root sends to
  // both over its link: 2 ms.
  CHECK(r.duration().to_us() == Approx(4000.0 + 4.0).epsilon(0.001));
  CHECK(r.gpu_finish[0].to_us() == Approx(2002.0).epsilon(0.001));
}

TEST_CASE("an oversubscribed fabric slows inter-node all-to-all by the ratio", "[collectives]") {
  auto run = [](double ratio) {
    const int leaves = 4, per_leaf = 4;
    const Bandwidth gpu = Bandwidth::gigabytes_per_s(50);
    const Topology topo =
        test::two_tier(leaves, per_leaf, gpu, gpu * (per_leaf / ratio), Time::zero());
    ByteMatrix m(leaves * per_leaf);
    for (int i = 0; i < m.n; ++i)
      for (int j = 0; j < m.n; ++j)
        if (i / per_leaf != j / per_leaf) m.at(i, j) = 1 << 20;
    CollectiveSpec spec;
    spec.matrix = m;
    return run_collective(topo, spec).duration().to_us();
  };
  const double full = run(1.0);
  // Each GPU sends 12 MiB at 50 GB/s.
  CHECK(full == Approx(12.0 * (1 << 20) / 50e9 * 1e6).epsilon(0.01));
  CHECK(run(2.0) / full == Approx(2.0).epsilon(0.01));
  CHECK(run(4.0) / full == Approx(4.0).epsilon(0.01));
}

TEST_CASE("hierarchical all-to-all crosses the network once per destination node",
          "[collectives]") {
  RailFatTreeParams p;
  p.node.gpus = 4;
  p.node.nvlink_per_gpu = Bandwidth::gigabytes_per_s(450);
  p.nodes = 2;
  p.nic = Bandwidth::gbps(400);
  p.pcie = Bandwidth::gigabytes_per_s(64);
  const Topology topo = build_rail_fat_tree(p);
  ByteMatrix m(8);
  for (int i = 0; i < 8; ++i)
    for (int j = 0; j < 8; ++j)
      if (i != j) m.at(i, j) = 1000 * (i + 1) + j;
  CollectiveSpec spec;
  spec.matrix = m;
  spec.algo = CollectiveAlgo::kHierarchical;
  const CollectiveResult r = run_collective(topo, spec);
  for (int i = 0; i < 8; ++i) {
    int64_t remote = 0;
    for (int j = 0; j < 8; ++j)
      if (j / 4 != i / 4) remote += m.at(i, j);
    CHECK(r.sent_bytes[i][kNet] == remote);
  }
  // Every byte arrives somewhere: network bytes received plus forwarded NVLink equals the total.
  int64_t received = 0;
  for (int i = 0; i < 8; ++i) received += r.received_bytes[i][kNet];
  CHECK(received == std::accumulate(m.bytes.begin(), m.bytes.end(), int64_t{0}) - [&] {
    int64_t local = 0;
    for (int i = 0; i < 8; ++i)
      for (int j = 0; j < 8; ++j)
        if (i / 4 == j / 4) local += m.at(i, j);
    return local;
  }());
  spec.options.reverse = true;
  const CollectiveResult back = run_collective(topo, spec);
  int64_t net_sent = 0;
  for (int i = 0; i < 8; ++i) net_sent += back.sent_bytes[i][kNet];
  CHECK(net_sent == received);
}

TEST_CASE("concurrent collectives on disjoint groups do not slow each other", "[collectives]") {
  const Topology topo = node8();
  Engine engine;
  NetworkModel net(engine, topo);
  Collectives coll(net);
  struct Keep final : CollectiveObserver {
    void on_collective_done(CollectiveId, uint64_t tag, const CollectiveResult& r) override {
      t[tag] = r.duration();
    }
    Time t[2];
  } keep;
  coll.all_reduce({0, 1, 2, 3}, Bytes::mib(64), CollectiveAlgo::kRing, &keep, 0);
  coll.all_reduce({4, 5, 6, 7}, Bytes::mib(64), CollectiveAlgo::kRing, &keep, 1);
  CHECK(coll.running() == 2);
  engine.run();
  CHECK(coll.running() == 0);
  CHECK(keep.t[0] == keep.t[1]);
  const double expected_us = 2 * 3.0 / 4 * 64.0 * (1 << 20) / 450e9 * 1e6 + 6 * 0.5;
  CHECK(keep.t[0].to_us() == Approx(expected_us).epsilon(0.01));
  CHECK_THROWS_AS(coll.all_reduce({0, 0}, Bytes(1), CollectiveAlgo::kRing, &keep),
                  std::invalid_argument);
  CHECK_THROWS_AS(coll.all_to_all({0, 1}, ByteMatrix(3), CollectiveAlgo::kDirect, &keep),
                  std::invalid_argument);
}

}  // namespace moesim
