// The preset table with its sources, and build_cluster.
#include "topologies/presets.h"

#include <array>
#include <cmath>
#include <stdexcept>
#include <string>

#include "topologies/builders.h"

namespace moesim {
namespace {

// PCIe x16 per direction: transfer rate (GT/s per lane) x 16 lanes x 128b/130b encoding / 8 bits
// (PCI-SIG base specifications 4.0 and 5.0): Gen4 31.5 GB/s, Gen5 63.0 GB/s.
constexpr Bandwidth pcie_x16(double gigatransfers) {
  return Bandwidth::gigabytes_per_s(gigatransfers * 16.0 * 128.0 / 130.0 / 8.0);
}
constexpr Bandwidth kPcieGen4 = pcie_x16(16.0);
constexpr Bandwidth kPcieGen5 = pcie_x16(32.0);

// Achievable over nominal bandwidth per link kind, applied to every preset. Each comes from an
// independent measurement or a protocol overhead, never from the DeepEP figures moesim is
// validated against (tests/validation/README.md).
// - Network: nccl-tests reach 48-49 GB/s of busbw on one 50 GB/s ConnectX-7 NDR 400 Gb/s port
//   (public nccl-tests runs on DGX H100 clusters; InfiniBand headers and flow control
//   cost ~2-4% at 4 KiB MTU): 48.5 / 50 = 0.97.
// - NVLink: nccl-tests all_reduce busbw on one DGX H100 without NVLink SHARP is ~360-380 GB/s
//   of 450 GB/s nominal in public runs (NVLink 4 packet headers and flow control); the low
//   end, 360 / 450 = 0.80, is taken (the spread is a +-3% uncertainty on NVLink-bound figures).
// - PCIe: transaction-layer overhead at a 256-byte maximum payload (24-26 B of TLP header,
//   sequence number, LCRC and framing per packet, plus flow-control DLLPs) leaves ~90%.
constexpr double kNetworkEfficiency = 0.97;
constexpr double kNvLinkEfficiency = 0.80;
constexpr double kPcieEfficiency = 0.90;

Topology with_link_efficiencies(Topology t) {
  t.set_efficiency(LinkKind::kNetwork, kNetworkEfficiency);
  t.set_efficiency(LinkKind::kNvLink, kNvLinkEfficiency);
  t.set_efficiency(LinkKind::kPcie, kPcieEfficiency);
  return t;
}

const std::array<NodePreset, 6> kPresets{{
    {"dgx-a100", 8, Bandwidth::gigabytes_per_s(300), Bandwidth::gbps(200), kPcieGen4,
     "NVIDIA A100 Tensor Core GPU Architecture whitepaper (2020): NVLink 3, 12 links x 25 GB/s "
     "per direction = 300 GB/s; DGX A100 data sheet: 8x ConnectX-6 200 Gb/s HDR InfiniBand, "
     "PCIe Gen4",
     "a100-80gb"},
    {"dgx-h100", 8, Bandwidth::gigabytes_per_s(450), Bandwidth::gbps(400), kPcieGen5,
     "NVIDIA H100 Tensor Core GPU Architecture whitepaper (2022): NVLink 4, 18 links, 900 GB/s "
     "bidirectional = 450 GB/s per direction; DGX H100 data sheet: 8x ConnectX-7 400 Gb/s NDR, "
     "PCIe Gen5",
     "h100-sxm"},
    {"dgx-h800", 8, Bandwidth::gigabytes_per_s(200), Bandwidth::gbps(400), kPcieGen5,
     "NVIDIA H800 SXM spec: NVLink 400 GB/s bidirectional (8 NVLink 4 links) = 200 GB/s per "
     "direction; DeepSeek-V3 Technical Report (arXiv:2412.19437) sec. 3.2.2: InfiniBand 50 GB/s "
     "(400 Gb/s) per GPU",
     "h800"},
    {"hgx-h200", 8, Bandwidth::gigabytes_per_s(450), Bandwidth::gbps(400), kPcieGen5,
     "NVIDIA H200 data sheet: NVLink 900 GB/s bidirectional = 450 GB/s per direction; NIC per "
     "NVIDIA's HGX reference configuration (as DGX H100): 8x ConnectX-7 400 Gb/s, PCIe Gen5",
     "h200"},
    {"dgx-b200", 8, Bandwidth::gigabytes_per_s(900), Bandwidth::gbps(400), kPcieGen5,
     "NVIDIA DGX B200 data sheet: NVLink 5, 1.8 TB/s bidirectional per GPU = 900 GB/s per "
     "direction; 8x single-port ConnectX-7 400 Gb/s; PCIe Gen5",
     "b200"},
    {"nvl72", 72, Bandwidth::gigabytes_per_s(900), Bandwidth::gbps(400), kPcieGen5,
     "NVIDIA GB200 NVL72 spec: 72 Blackwell GPUs in one NVLink 5 domain, 130 TB/s = 72 x 1.8 "
     "TB/s bidirectional, 900 GB/s per GPU per direction; scale-out one 400 Gb/s ConnectX-7 per "
     "GPU (4 per compute tray), PCIe Gen5",
     "gb200"},
}};

}  // namespace

std::string_view to_string(FabricRouting routing) {
  return routing == FabricRouting::kAdaptive ? "adaptive" : "ecmp";
}

FabricRouting parse_fabric_routing(std::string_view name) {
  for (auto r : {FabricRouting::kAdaptive, FabricRouting::kEcmp}) {
    if (to_string(r) == name) return r;
  }
  throw std::invalid_argument("unknown fabric routing '" + std::string(name) +
                              "' (expected adaptive or ecmp)");
}

std::span<const NodePreset> node_presets() {
  return kPresets;
}

std::vector<std::string> preset_names() {
  std::vector<std::string> names;
  for (const NodePreset& p : kPresets) names.emplace_back(p.name);
  return names;
}

const NodePreset& find_preset(std::string_view name) {
  for (const NodePreset& p : kPresets) {
    if (p.name == name) return p;
  }
  std::string known;
  for (const NodePreset& p : kPresets) known += (known.empty() ? "" : ", ") + std::string(p.name);
  throw std::invalid_argument("unknown topology preset '" + std::string(name) +
                              "'; known presets: " + known);
}

Topology build_cluster(const ClusterOptions& options) {
  const NodePreset& preset = find_preset(options.preset);
  if (options.nodes < 1) {
    throw std::invalid_argument("cluster '" + options.preset + "': nodes must be at least 1, got " +
                                std::to_string(options.nodes));
  }
  if (options.nic_gbps && !(std::isfinite(*options.nic_gbps) && *options.nic_gbps > 0.0)) {
    throw std::invalid_argument("cluster '" + options.preset +
                                "': nic_gbps must be a positive number, got " +
                                std::to_string(*options.nic_gbps));
  }
  if (!(std::isfinite(options.oversubscription) && options.oversubscription > 0.0)) {
    throw std::invalid_argument("cluster '" + options.preset +
                                "': oversubscription must be a positive number, got " +
                                std::to_string(options.oversubscription));
  }
  if (options.spines < 0) {
    throw std::invalid_argument("cluster '" + options.preset + "': spines must not be negative");
  }
  if (options.spines != 0 && options.routing == FabricRouting::kAdaptive) {
    throw std::invalid_argument("cluster '" + options.preset +
                                "': a spine count applies to ECMP routing; adaptive routing "
                                "spreads packets over every spine, modelled as one");
  }
  if (static_cast<int64_t>(options.nodes) * preset.gpus > kMaxClusterGpus) {
    throw std::invalid_argument("cluster '" + options.preset +
                                "': " + std::to_string(options.nodes) + " nodes of " +
                                std::to_string(preset.gpus) + " GPUs exceed the " +
                                std::to_string(kMaxClusterGpus) + " GPUs moesim simulates");
  }
  const NvSwitchNodeParams node{preset.gpus, preset.nvlink_per_gpu, kNvLinkLinkLatency};
  RailFatTreeParams params;
  params.node = node;
  params.nodes = options.nodes;
  params.nic = options.nic_gbps ? Bandwidth::gbps(*options.nic_gbps) : preset.nic;
  params.pcie = preset.pcie;
  // Adaptive routing: one logical spine with every spine's capacity (see FabricRouting).
  params.spines = options.routing == FabricRouting::kAdaptive ? 1 : options.spines;
  params.oversubscription = options.oversubscription;
  return with_link_efficiencies(build_rail_fat_tree(params));
}

}  // namespace moesim
