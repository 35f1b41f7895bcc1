// Small topologies assembled by hand for the network tests, independent of the builders in
// topologies/ so that the model's tests check it alone.
#pragma once

#include <string>
#include <vector>

#include "topologies/topology.h"

namespace moesim::test {

// GPUs on one NVSwitch, GPU i linked at caps[i] in each direction; one node of caps.size() GPUs.
inline Topology star(const std::vector<Bandwidth>& caps, Time latency) {
  Topology t;
  std::vector<VertexId> gpus;
  for (size_t i = 0; i < caps.size(); ++i)
    gpus.push_back(t.add_vertex(VertexKind::kGpu, "gpu" + std::to_string(i)));
  const VertexId sw = t.add_vertex(VertexKind::kNvSwitch, "nvswitch");
  for (size_t i = 0; i < caps.size(); ++i)
    t.add_duplex_link(gpus[i], sw, caps[i], latency, LinkKind::kNvLink);
  t.set_gpus_per_node(static_cast<int>(caps.size()));
  return t;
}

// leaves x gpus_per_leaf GPUs; each GPU on its leaf by a network link of gpu_bw, each leaf on a
// single spine by one link of uplink_bw. One GPU per node.
inline Topology two_tier(int leaves, int gpus_per_leaf, Bandwidth gpu_bw, Bandwidth uplink_bw,
                         Time latency) {
  Topology t;
  std::vector<VertexId> gpus;
  for (int i = 0; i < leaves * gpus_per_leaf; ++i)
    gpus.push_back(t.add_vertex(VertexKind::kGpu, "gpu" + std::to_string(i)));
  const VertexId spine = t.add_vertex(VertexKind::kSwitch, "spine");
  for (int l = 0; l < leaves; ++l) {
    const VertexId leaf = t.add_vertex(VertexKind::kSwitch, "leaf" + std::to_string(l));
    t.add_duplex_link(leaf, spine, uplink_bw, latency, LinkKind::kNetwork);
    for (int g = 0; g < gpus_per_leaf; ++g)
      t.add_duplex_link(gpus[static_cast<size_t>(l * gpus_per_leaf + g)], leaf, gpu_bw, latency,
                        LinkKind::kNetwork);
  }
  return t;
}

}  // namespace moesim::test
