// What every network tier does alike when it starts a flow: check the request, and know which
// links can ever bind a flow (the rest are left out of the rate fill, exactly).
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

}  // namespace moesim
