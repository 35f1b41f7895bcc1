// What every network tier does alike when it starts a flow: check the request, draw its ECMP
// hash, find its route (the links that can ever bind it, its latency and kind; the rest are left
// out of the rate fill, exactly).
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "core/units.h"
#include "topologies/topology.h"

namespace moesim {

// Per link (by LinkId value): 1 if it can ever be a flow's bottleneck, else 0. A link can never
// be a bottleneck if every flow through it must also cross another link of no more capacity:
// the next link when its head is a switch or NIC with one way onward, or the previous one when
// its tail has one way in (paths are shortest, so they never turn straight back). Leaving such
// links out of the fill is exact and shortens the paths it walks (a GPU's PCIe link to its NIC
// sits behind the NIC's slower network link). Ties in capacity are broken by link id, so that of
// two such links exactly one stays and every chain ends at a kept link. `capacity` is per link
// in bytes/s. O(links + vertices).
std::vector<uint8_t> constraining_links(const Topology& topology, std::span<const double> capacity);

// Throws std::out_of_range for a GPU outside the topology and std::invalid_argument for a
// negative size; `network` names the tier in the message ("network model", "fast network").
void check_flow_request(std::string_view network, const Topology& topology, int src_gpu,
                        int dst_gpu, Bytes bytes);

// SplitMix64's finaliser: spreads a tier's count of flows started into an ECMP hash, so that
// both tiers draw the same paths for the same start order.
inline uint64_t ecmp_hash(uint64_t flows_started) {
  uint64_t x = flows_started + 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// The longest run of constraining links a flow's path may have (a tier keeps a hop count in a
// byte).
inline constexpr size_t kMaxConstrainingLinks = 255;

// A flow's route: its path's latency and the kind of link that carries it (network if any link
// is, else PCIe if any is, else NVLink); its constraining links are written to `links`.
struct FlowRoute {
  Time latency;
  LinkKind kind = LinkKind::kNvLink;
  bool empty = true;  // src == dst: no path
};
// Throws std::invalid_argument for a path of more than kMaxConstrainingLinks such links, and
// std::logic_error when `drains` (it has bytes) and no link of a non-empty path constrains it.
// `constraining` is constraining_links()'s answer for the topology.
FlowRoute route_flow(std::string_view network, const Topology& topology,
                     std::span<const uint8_t> constraining, int src_gpu, int dst_gpu,
                     uint64_t flow_hash, bool drains, std::vector<uint32_t>& links);

}  // namespace moesim
