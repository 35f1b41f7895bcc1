// Parametric cluster builders: an NVSwitch node, a multi-node rail-optimised fat-tree of such
// nodes, a plain two- or three-tier fat-tree of GPUs, and a 2D/3D torus with GPUs as routers.
#pragma once

#include <vector>

#include "core/units.h"
#include "topologies/topology.h"

namespace moesim {

// Per-link latencies, chosen so that end-to-end figures land where measurements put them; the
// software latency a collective sees (~µs per step in NCCL) belongs to the collectives model.
// GPU -> NVSwitch -> GPU: 2 x 250 ns = 0.5 µs, the order of a remote NVLink load/store.
inline constexpr Time kNvLinkLinkLatency = Time::ns(250);
// GPU <-> NIC through a PCIe switch, including NIC processing (a few hundred ns).
inline constexpr Time kPcieLinkLatency = Time::ns(200);
// NIC <-> switch and switch <-> switch: an InfiniBand/RoCE switch traversal (~100-200 ns
// port to port) plus serialisation and up to ~20 m of cable at 5 ns/m. Same-rail GPU to GPU is
// then 200 + 300 + 300 + 200 ns = 1 µs, the usual small-message RDMA one-way latency.
inline constexpr Time kNetworkLinkLatency = Time::ns(300);

// One scale-up domain: G GPUs, each with a duplex link to one NVSwitch vertex standing for the
// whole NVSwitch fabric, so any GPU pair's path is GPU -> NVSwitch -> GPU.
struct NvSwitchNodeParams {
  int gpus = 8;
  Bandwidth nvlink_per_gpu{};  // per direction, e.g. 450 GB/s for H100
  Time nvlink_latency = kNvLinkLinkLatency;
};

// Vertices "gpu<i>" and "nvswitch"; gpus_per_node = gpus.
Topology build_nvswitch_node(const NvSwitchNodeParams& params);

// Nodes of `node.gpus` GPUs, one NIC per GPU; NIC r of every node is on rail r, served by one
// logical leaf switch per rail (a rail that spans several physical leaves in a large cluster is
// merged into one, keeping same-rail traffic at one switch hop). Every leaf connects to every
// spine. Paths: same node GPU -> NVSwitch -> GPU (2 hops); same rail GPU -> NIC -> leaf -> NIC
// -> GPU (4); cross rail GPU -> NIC -> leaf -> spine -> leaf -> NIC -> GPU (6), ECMP over spines.
struct RailFatTreeParams {
  NvSwitchNodeParams node;
  int nodes = 2;
  Bandwidth nic{};   // per NIC per direction
  Bandwidth pcie{};  // GPU <-> NIC, per direction
  Time pcie_latency = kPcieLinkLatency;
  Time network_latency = kNetworkLinkLatency;
  int spines = 0;  // 0: one spine per rail
  // Leaf downlink capacity / uplink capacity: each leaf-spine link carries
  // nodes * nic / (oversubscription * spines).
  double oversubscription = 1.0;
};

// Vertices "n<node>.gpu<i>", "n<node>.nvswitch", "n<node>.nic<i>", "leaf<rail>", "spine<s>".
Topology build_rail_fat_tree(const RailFatTreeParams& params);

// A fat-tree of single-GPU hosts built from switches of `radix` (k, even) ports, every link the
// same. Two tiers: k leaves with k/2 GPUs each and k/2 spines (k^2/2 GPUs, k^2 duplex links).
// Three tiers (Al-Fares et al., SIGCOMM 2008): k pods of k/2 edge and k/2 aggregation switches,
// (k/2)^2 cores (k^3/4 GPUs, 3k^3/4 duplex links).
struct FatTreeParams {
  int tiers = 2;
  int radix = 8;
  Bandwidth link{};
  Time latency = kNetworkLinkLatency;
  LinkKind kind = LinkKind::kNetwork;
};

// Vertices "gpu<i>", "leaf<i>"/"spine<i>" (two tiers) or "edge<pod>.<i>", "agg<pod>.<i>",
// "core<i>" (three tiers); gpus_per_node = 1.
Topology build_fat_tree(const FatTreeParams& params);

// A 2D or 3D torus (or mesh without wrap-around) of GPUs that route for each other, each link
// `link` per direction. A dimension of size 2 has one link per ring (the +1 and -1 neighbours
// coincide); size 1 has none. GPU index = x + dims[0] * (y + dims[1] * z).
struct TorusParams {
  std::vector<int> dims{};
  Bandwidth link{};
  Time latency = kNvLinkLinkLatency;
  bool wrap_around = true;
  LinkKind kind = LinkKind::kNvLink;
};

// Vertices "gpu<x>.<y>[.<z>]"; gpu forwarding on; gpus_per_node = 1.
Topology build_torus(const TorusParams& params);

}  // namespace moesim
