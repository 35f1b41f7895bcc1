// Tests of the named presets and build_cluster: data-sheet figures per preset, scale-out shape,
// option checks and the list of known presets in the unknown-name error.
#include <catch2/catch.hpp>

#include <stdexcept>
#include <string>

#include "topologies/builders.h"
#include "topologies/presets.h"

namespace moesim {
namespace {

TEST_CASE("presets carry their data-sheet NVLink and NIC figures", "[presets]") {
  struct Expect {
    const char* name;
    int gpus;
    double nvlink_gb_per_s;
    double nic_gbit_per_s;
  };
  const Expect expected[] = {{"dgx-a100", 8, 300, 200}, {"dgx-h100", 8, 450, 400},
                             {"dgx-h800", 8, 200, 400}, {"hgx-h200", 8, 450, 400},
                             {"dgx-b200", 8, 900, 400}, {"nvl72", 72, 900, 400}};
  REQUIRE(preset_names().size() == std::size(expected));
  for (const Expect& e : expected) {
    INFO(e.name);
    const NodePreset& p = find_preset(e.name);
    CHECK(p.gpus == e.gpus);
    CHECK(p.nvlink_per_gpu.gigabytes_per_second() == Approx(e.nvlink_gb_per_s));
    CHECK(p.nic.gigabits_per_second() == Approx(e.nic_gbit_per_s));
    CHECK_FALSE(p.source.empty());
    const Topology node = build_cluster({e.name});
    node.validate();
    CHECK(node.gpu_count() == e.gpus);
    CHECK(node.node_count() == 1);
    CHECK(node.link(node.path(0, e.gpus - 1, 0)[0]).capacity.gigabytes_per_second() ==
          Approx(e.nvlink_gb_per_s));
  }
  // PCIe x16: 16 GT/s * 16 lanes * 128/130 / 8 bits = 31.5 GB/s (Gen4), twice that for Gen5.
  CHECK(find_preset("dgx-a100").pcie.gigabytes_per_second() == Approx(31.5077).epsilon(1e-4));
  CHECK(find_preset("dgx-h100").pcie.gigabytes_per_second() == Approx(63.0154).epsilon(1e-4));
}

TEST_CASE("build_cluster scales a preset out on a rail fat-tree", "[presets]") {
  ClusterOptions options;
  options.preset = "dgx-h100";
  options.nodes = 4;
  const Topology t = build_cluster(options);
  t.validate();
  CHECK(t.gpu_count() == 32);
  CHECK(t.node_count() == 4);
  const auto same_rail = t.path(2, 8 + 2, 0);
  REQUIRE(same_rail.size() == 4);
  CHECK(t.link(same_rail[1]).capacity.gigabytes_per_second() == Approx(50.0));  // 400 Gb/s
  CHECK(t.link(same_rail[0]).kind == LinkKind::kPcie);
  CHECK(t.path(2, 8 + 3, 0).size() == 6);
  // The stated efficiencies (presets.cpp): 48.5 of 50 GB/s, 360 of 450 GB/s.
  CHECK(t.efficiency(LinkKind::kNetwork) == 0.97);
  CHECK(t.efficiency(LinkKind::kNvLink) == 0.80);

  // Adaptive routing by default: one logical spine per fabric carrying every spine's capacity,
  // 4 nodes x 50 GB/s per leaf (non-blocking), so a cross-rail flow has no ECMP choice to lose.
  CHECK(t.ecmp_width(2, 8 + 3) == 1u);
  CHECK(t.link(t.path(2, 8 + 3, 0)[2]).capacity.gigabytes_per_second() == Approx(200.0));

  options.nic_gbps = 800;
  options.oversubscription = 4.0;
  options.routing = FabricRouting::kEcmp;
  options.spines = 2;
  const Topology fast = build_cluster(options);
  const auto p = fast.path(2, 8 + 3, 0);
  REQUIRE(p.size() == 6);
  CHECK(fast.link(p[1]).capacity.gigabytes_per_second() == Approx(100.0));
  // 4 nodes x 100 GB/s / (4 x 2 spines) = 50 GB/s per uplink, a flow hashed onto one of two.
  CHECK(fast.link(p[2]).capacity.gigabytes_per_second() == Approx(50.0));
  CHECK(fast.ecmp_width(2, 8 + 3) == 2u);
  options.spines = 0;
  CHECK(build_cluster(options).ecmp_width(2, 8 + 3) == 8u);  // ECMP: one spine per rail
}

TEST_CASE("one node of a preset has its NICs on leaf switches", "[presets]") {
  const Topology t = build_cluster({"dgx-h800"});
  CHECK(t.node_count() == 1);
  CHECK(t.path(0, 7, 0).size() == 2);  // NVLink is shorter
  int nics = 0, switches = 0;
  for (uint32_t v = 0; v < t.vertex_count(); ++v) {
    nics += t.vertex_kind(VertexId{v}) == VertexKind::kNic;
    switches += t.vertex_kind(VertexId{v}) == VertexKind::kSwitch;
  }
  CHECK(nics == 8);
  CHECK(switches == 8 + 1);  // a leaf per rail and the (adaptive, aggregated) spine
}

TEST_CASE("nvl72 is one 72-GPU NVLink domain", "[presets]") {
  const Topology t = build_cluster({"nvl72"});
  CHECK(t.gpu_count() == 72);
  CHECK(t.gpus_per_node() == 72);
  CHECK(t.path(0, 71, 0).size() == 2);
}

TEST_CASE("bad cluster options are refused with what was expected", "[presets]") {
  CHECK_THROWS_WITH(build_cluster({"dgx-h1000"}),
                    Catch::Contains("unknown topology preset 'dgx-h1000'") &&
                        Catch::Contains("known presets: dgx-a100, dgx-h100, dgx-h800, hgx-h200, "
                                        "dgx-b200, nvl72"));
  CHECK_THROWS_WITH(build_cluster({"dgx-h100", 0}), Catch::Contains("nodes must be at least 1"));
  CHECK_THROWS_WITH(build_cluster({"dgx-h100", 2, -5.0}), Catch::Contains("nic_gbps"));
  CHECK_THROWS_WITH(build_cluster({"dgx-h100", 2, 400.0, 0.0}),
                    Catch::Contains("oversubscription"));
  CHECK_THROWS_WITH(build_cluster({"dgx-h100", 2, 400.0, 1.0, FabricRouting::kAdaptive, 4}),
                    Catch::Contains("spine count applies to ECMP"));
  CHECK(parse_fabric_routing("ecmp") == FabricRouting::kEcmp);
  CHECK_THROWS_WITH(parse_fabric_routing("spray"), Catch::Contains("expected adaptive or ecmp"));
}

}  // namespace
}  // namespace moesim
