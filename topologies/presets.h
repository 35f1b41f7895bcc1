// Named cluster presets users can type (dgx-a100, dgx-h100, dgx-h800, hgx-h200, dgx-b200, nvl72),
// each from a data sheet, and build_cluster: a node preset scaled out on a rail fat-tree.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/units.h"
#include "topologies/topology.h"

namespace moesim {

struct NodePreset {
  std::string_view name;
  int gpus;
  Bandwidth nvlink_per_gpu;  // per direction
  Bandwidth nic;             // per GPU's NIC, per direction
  Bandwidth pcie;            // GPU <-> NIC, per direction
  std::string_view source;   // where the figures come from
  // The GPU preset (models/gpu) its nodes hold, e.g. "h100-sxm": what a cluster of this preset
  // gets when no GPU is named (`moesim compare --cluster dgx-h100`).
  std::string_view default_gpu;
};

// In the order they are listed to users.
std::span<const NodePreset> node_presets();
std::vector<std::string> preset_names();
// Throws std::invalid_argument listing the known presets for an unknown name.
const NodePreset& find_preset(std::string_view name);

// How the leaf switches spread cross-rail traffic over the spines.
// kAdaptive: per-packet adaptive routing, as NVIDIA Quantum InfiniBand switches do (and as
// DeepEP's README recommends for its kernels): a flow's packets go to whichever uplink is least
// loaded, so a flow model sees every spine of a leaf as one aggregated uplink (one logical spine
// carrying nodes x NIC / oversubscription per leaf). kEcmp: per-flow hashing over `spines`
// spines, as a fabric without adaptive routing (RoCE with static ECMP) does: whole flows may
// collide on one uplink, which matters most on small fabrics.
enum class FabricRouting : uint8_t { kAdaptive, kEcmp };
// The default of every preset cluster (the CLI's --fabric-routing, the scenario's
// cluster.fabric_routing): InfiniBand fabrics route adaptively.
inline constexpr FabricRouting kDefaultFabricRouting = FabricRouting::kAdaptive;
std::string_view to_string(FabricRouting routing);
// Throws std::invalid_argument naming the accepted values.
FabricRouting parse_fabric_routing(std::string_view name);

// The scale-out fabric is a non-blocking (unless oversubscription > 1) rail-optimised leaf/spine
// of the preset's NICs, also for one node: a DGX's NICs connect to leaf switches whatever the
// cluster's size, so traffic forced onto the network (DeepEP's pure-RDMA low-latency kernels)
// has a path on one node too. Paths inside a node still take NVLink (shorter).
struct ClusterOptions {
  std::string preset;
  int nodes = 1;
  std::optional<double> nic_gbps{};  // overrides the preset's NIC speed (Gb/s per GPU)
  double oversubscription = 1.0;     // leaf downlink / uplink capacity
  FabricRouting routing = kDefaultFabricRouting;
  int spines = 0;  // kEcmp only (0: one spine per rail); kAdaptive aggregates them into one
};

// build_rail_fat_tree of the preset's node, with the per-link-kind efficiencies stated (with
// their sources) in presets.cpp: network 0.97, NVLink 0.80, PCIe 0.90.
Topology build_cluster(const ClusterOptions& options);

}  // namespace moesim
