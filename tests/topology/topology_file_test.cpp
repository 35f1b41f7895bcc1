// Tests of the topology file reader on small texts and files the test writes, and on the
// shipped example: parts and paths counted by hand, and each error's location and wording.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

#include "scenarios/topology_file.h"
#include "tests/scratch_dir.h"

namespace moesim {
namespace {

const char* const kGood = R"(gpus_per_node: 2
node { name: "g0" kind: GPU }
node { name: "g1" kind: GPU }
node { name: "g2" kind: GPU }
node { name: "g3" kind: GPU }
node { name: "nvs0" kind: NVSWITCH }
node { name: "nvs1" kind: NVSWITCH }
node { name: "nic0" kind: NIC }
node { name: "nic1" kind: NIC }
node { name: "nic2" kind: NIC }
node { name: "nic3" kind: NIC }
node { name: "sw" kind: SWITCH }
link { a: "g0" b: "nvs0" bandwidth: "450GB/s" latency: "250ns" kind: NVLINK }
link { a: "g1" b: "nvs0" bandwidth: "450GB/s" latency: "250ns" kind: NVLINK }
link { a: "g2" b: "nvs1" bandwidth: "450GB/s" latency: "250ns" kind: NVLINK }
link { a: "g3" b: "nvs1" bandwidth: "450GB/s" latency: "250ns" kind: NVLINK }
link { a: "g0" b: "nic0" bandwidth: "64GB/s" latency: "100ns" kind: PCIE }
link { a: "g1" b: "nic1" bandwidth: "64GB/s" latency: "100ns" kind: PCIE }
link { a: "g2" b: "nic2" bandwidth: "64GB/s" latency: "100ns" kind: PCIE }
link { a: "g3" b: "nic3" bandwidth: "64GB/s" latency: "100ns" kind: PCIE }
link { a: "nic0" b: "sw" bandwidth: "400Gbps" latency: "1us" kind: NETWORK }
link { a: "nic1" b: "sw" bandwidth: "400Gbps" latency: "1us" kind: NETWORK }
link { a: "nic2" b: "sw" bandwidth: "400Gbps" latency: "1us" kind: NETWORK }
link { a: "nic3" b: "sw" bandwidth: "400Gbps" latency: "1us" kind: NETWORK }
efficiency { nvlink: 0.8 network: 0.9 }
)";

TEST_CASE("a good topology text gives the graph it describes", "[topology_file]") {
  const Topology t = parse_topology_text(kGood, "good.pbtxt");
  CHECK(t.gpu_count() == 4);
  CHECK(t.vertex_count() == 11);
  CHECK(t.links().size() == 24);
  CHECK(t.gpus_per_node() == 2);
  CHECK(t.node_count() == 2);
  CHECK(t.efficiency(LinkKind::kNvLink) == 0.8);
  CHECK(t.efficiency(LinkKind::kPcie) == 1.0);
  CHECK(t.efficiency(LinkKind::kNetwork) == 0.9);
  const auto intra = t.path(0, 1, 0);
  REQUIRE(intra.size() == 2);
  CHECK(t.vertex_name(t.link(intra[0]).to) == "nvs0");
  CHECK(t.link(intra[0]).capacity.gigabytes_per_second() == Approx(450.0));
  CHECK(t.ecmp_width(0, 1) == 1);  // the NIC route is 4 hops, NVLink 2
  const auto inter = t.path(0, 3, 0);
  REQUIRE(inter.size() == 4);
  CHECK(t.vertex_name(t.link(inter[1]).to) == "sw");
  CHECK(t.link(inter[0]).kind == LinkKind::kPcie);
  // 400 Gb/s = 50 GB/s nominal, 45 GB/s at 0.9.
  CHECK(t.link(inter[1]).capacity.gigabytes_per_second() == Approx(50.0));
  CHECK(t.effective_capacity(inter[1]).gigabytes_per_second() == Approx(45.0));
  CHECK(t.path_latency(inter) == Time::ns(2200));
}

TEST_CASE("a flat switch of 1024 GPUs takes one entry", "[topology_file]") {
  const Topology t = parse_topology_text(
      R"(flat_switch { name: "sw" gpus: 1024 bandwidth: "50GB/s" latency: "500ns" })", "flat");
  CHECK(t.gpu_count() == 1024);
  CHECK(t.vertex_count() == 1025);
  CHECK(t.links().size() == 2 * 1024);
  CHECK(t.gpus_per_node() == 1);
  CHECK(t.vertex_name(t.gpu(1023)) == "sw.gpu1023");
  const auto p = t.path(5, 1000, 0);
  REQUIRE(p.size() == 2);
  CHECK(t.link(p[0]).kind == LinkKind::kNetwork);
  CHECK(t.link(p[0]).capacity.gigabytes_per_second() == Approx(50.0));
  CHECK(t.path_latency(p) == Time::us(1));
}

TEST_CASE("a flat switch beyond the largest cluster is refused before it is built",
          "[topology_file]") {
  CHECK_THROWS_WITH(
      parse_topology_text(
          R"(flat_switch { name: "sw" gpus: 100000 bandwidth: "50GB/s" latency: "500ns" })", "big"),
      Catch::Contains("flat_switch[0]") && Catch::Contains("1 to 65536"));
  // Two switches that each fit but together do not.
  CHECK_THROWS_WITH(
      parse_topology_text(R"(flat_switch { name: "a" gpus: 40000 bandwidth: "1GB/s" latency: "1ns" }
flat_switch { name: "b" gpus: 40000 bandwidth: "1GB/s" latency: "1ns" })",
                          "two"),
      Catch::Contains("flat_switch[1]") && Catch::Contains("exceed the 65536 GPUs"));
}

TEST_CASE("syntax errors report file:line:column", "[topology_file]") {
  // Line 3; the parser knows the name is unknown at the ':' after it, column 12.
  const char* text = "node { name: \"a\" kind: GPU }\n\nnode { nmae: \"b\" kind: GPU }\n";
  CHECK_THROWS_WITH(parse_topology_text(text, "bad.pbtxt"),
                    Catch::StartsWith("bad.pbtxt:3:12:") && Catch::Contains("nmae"));
  CHECK_THROWS_WITH(parse_topology_text("node { name: \"a\" kind: CPU }", "e.pbtxt"),
                    Catch::StartsWith("e.pbtxt:1:") && Catch::Contains("CPU"));
}

TEST_CASE("a dangling link endpoint names the link and the missing name", "[topology_file]") {
  const char* text = R"(node { name: "g0" kind: GPU }
node { name: "g1" kind: GPU }
node { name: "sw" kind: SWITCH }
link { a: "g0" b: "sw" bandwidth: "100Gbps" latency: "1us" kind: NETWORK }
link { a: "g1"
       b: "swx" bandwidth: "100Gbps" latency: "1us" kind: NETWORK }
)";
  CHECK_THROWS_WITH(parse_topology_text(text, "d.pbtxt"),
                    Catch::StartsWith("d.pbtxt:6:8: link[1]: endpoint b 'swx' is not the name"));
}

TEST_CASE("duplicate names are refused with both places", "[topology_file]") {
  const char* text = R"(node { name: "g0" kind: GPU }
node { name: "g0" kind: SWITCH }
)";
  CHECK_THROWS_WITH(parse_topology_text(text, "dup.pbtxt"),
                    Catch::StartsWith("dup.pbtxt:2:8: node[1]: duplicate name 'g0'") &&
                        Catch::Contains("first at dup.pbtxt:1:8"));
  // A flat switch's generated GPU names clash too.
  const char* clash = R"(node { name: "sw.gpu1" kind: NIC }
flat_switch { name: "sw" gpus: 2 bandwidth: "1GB/s" latency: "1ns" })";
  CHECK_THROWS_WITH(parse_topology_text(clash, "c"), Catch::Contains("duplicate name 'sw.gpu1'"));
}

TEST_CASE("unreachable GPUs are named", "[topology_file]") {
  const char* text = R"(flat_switch { name: "sw" gpus: 3 bandwidth: "1GB/s" latency: "1ns" }
node { name: "island" kind: GPU }
node { name: "other" kind: SWITCH }
link { a: "island" b: "other" bandwidth: "1GB/s" latency: "1ns" kind: NETWORK }
)";
  CHECK_THROWS_WITH(parse_topology_text(text, "u.pbtxt"),
                    Catch::StartsWith("u.pbtxt: topology: GPU 'island' cannot reach") &&
                        Catch::Contains("unreachable from it: island"));
}

TEST_CASE("bad unit strings and missing fields are located", "[topology_file]") {
  const char* bad_unit = R"(node { name: "g0" kind: GPU }
node { name: "g1" kind: GPU }
link { a: "g0" b: "g1"
       bandwidth: "400Gbx" latency: "1us" kind: NVLINK }
)";
  CHECK_THROWS_WITH(
      parse_topology_text(bad_unit, "unit.pbtxt"),
      Catch::StartsWith("unit.pbtxt:4:8: link[0]: bandwidth:") && Catch::Contains("400Gbx"));
  const char* no_latency = R"(node { name: "g0" kind: GPU }
node { name: "g1" kind: GPU }
link { a: "g0" b: "g1" bandwidth: "1GB/s" kind: NVLINK }
)";
  CHECK_THROWS_WITH(parse_topology_text(no_latency, "l"),
                    Catch::StartsWith("l:3:1: link[0]: latency is required"));
  CHECK_THROWS_WITH(parse_topology_text("node { name: \"g\" }", "k"),
                    Catch::Contains("node[0]: kind is required"));
  CHECK_THROWS_WITH(
      parse_topology_text(R"(flat_switch { name: "s" gpus: 4 bandwidth: "0GB/s" latency: "1ns" })",
                          "z"),
      Catch::Contains("bandwidth must be positive"));
  CHECK_THROWS_WITH(
      parse_topology_text(
          "gpus_per_node: 3\nflat_switch { name: \"s\" gpus: 4 bandwidth: \"1GB/s\" latency: "
          "\"1ns\" }",
          "n"),
      Catch::StartsWith("n:1:1: gpus_per_node: must divide the 4 GPUs"));
  CHECK_THROWS_WITH(
      parse_topology_text(
          "flat_switch { name: \"s\" gpus: 2 bandwidth: \"1GB/s\" latency: \"1ns\" }\n"
          "efficiency {\n  pcie: 1.5\n}",
          "eff"),
      Catch::StartsWith("eff:3:3: efficiency.pcie: must be in (0, 1]"));
}

TEST_CASE("files are read from disk, the shipped example included", "[topology_file]") {
  const test::ScratchDir dir("topology_file_test");
  const auto path = dir / "good.pbtxt";
  {
    std::ofstream out(path);
    out << kGood;
  }
  CHECK(load_topology_file(path).gpu_count() == 4);
  CHECK_THROWS_WITH(load_topology_file(dir / "missing.pbtxt"),
                    Catch::Contains("missing.pbtxt: cannot open"));

  const Topology example = load_topology_file(std::filesystem::path(MOESIM_SOURCE_DIR) /
                                              "scenarios/topologies/two-node-example.pbtxt");
  CHECK(example.gpu_count() == 8);
  CHECK(example.node_count() == 2);
  CHECK(example.vertex_name(example.gpu(4)) == "n1.gpu0");
  CHECK(example.path(0, 3, 0).size() == 2);  // NVLink inside node 0
  const auto across = example.path(1, 6, 0);
  REQUIRE(across.size() == 4);  // GPU -> NIC -> ib -> NIC -> GPU
  CHECK(example.path_latency(across) == Time::ns(1000));
  CHECK(example.efficiency(LinkKind::kNetwork) == 0.9);
}

}  // namespace
}  // namespace moesim
