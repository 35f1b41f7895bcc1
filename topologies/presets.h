// Named cluster presets users can type (dgx-a100, dgx-h100, dgx-h800, hgx-h200, dgx-b200, nvl72),
// each from a data sheet, and build_cluster: a node preset scaled out on a rail fat-tree.
#pragma once

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

// nic_gbps and oversubscription shape the scale-out fabric, which only exists for nodes > 1;
// nodes == 1 builds the bare scale-up node.
struct ClusterOptions {
  std::string preset;
  int nodes = 1;
  std::optional<double> nic_gbps{};  // overrides the preset's NIC speed (Gb/s per GPU)
  double oversubscription = 1.0;     // leaf downlink / uplink capacity
  int spines = 0;                    // 0: one spine per rail
};

// One node for nodes == 1, else build_rail_fat_tree of the preset's node, with the per-link-kind
// efficiencies stated (with their sources) in presets.cpp: network 0.97, NVLink 0.80, PCIe 0.90.
Topology build_cluster(const ClusterOptions& options);

}  // namespace moesim
