// The parametric builders: vertex naming, wiring loops and parameter checks.
#include "topologies/builders.h"

#include <stdexcept>
#include <string>

namespace moesim {
namespace {

void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument(message);
}

void require_positive(Bandwidth b, const char* builder, const char* field) {
  require(b.bytes_per_second() > 0.0,
          std::string(builder) + ": " + field + " must be a positive bandwidth");
}

void check_node(const NvSwitchNodeParams& p, const char* builder) {
  require(p.gpus >= 1,
          std::string(builder) + ": a node needs at least one GPU, got " + std::to_string(p.gpus));
  require_positive(p.nvlink_per_gpu, builder, "nvlink_per_gpu");
}

// Adds one node's GPUs and NVSwitch; returns the NVSwitch.
VertexId add_node(Topology& t, const NvSwitchNodeParams& p, const std::string& prefix) {
  std::vector<VertexId> gpus;
  for (int i = 0; i < p.gpus; ++i) {
    gpus.push_back(t.add_vertex(VertexKind::kGpu, prefix + "gpu" + std::to_string(i)));
  }
  const VertexId nvswitch = t.add_vertex(VertexKind::kNvSwitch, prefix + "nvswitch");
  for (VertexId g : gpus) {
    t.add_duplex_link(g, nvswitch, p.nvlink_per_gpu, p.nvlink_latency, LinkKind::kNvLink);
  }
  return nvswitch;
}

}  // namespace

Topology build_nvswitch_node(const NvSwitchNodeParams& params) {
  check_node(params, "nvswitch node");
  Topology t;
  add_node(t, params, "");
  t.set_gpus_per_node(params.gpus);
  return t;
}

Topology build_rail_fat_tree(const RailFatTreeParams& params) {
  const char* name = "rail fat-tree";
  check_node(params.node, name);
  require(params.nodes >= 1,
          std::string(name) + ": nodes must be at least 1, got " + std::to_string(params.nodes));
  require_positive(params.nic, name, "nic");
  require_positive(params.pcie, name, "pcie");
  require(params.spines >= 0, std::string(name) + ": spines must not be negative");
  require(params.oversubscription > 0.0, std::string(name) + ": oversubscription must be > 0");
  const int rails = params.node.gpus;
  const int spines = params.spines == 0 ? rails : params.spines;

  Topology t;
  // GPUs first so that GPU indices run node by node.
  std::vector<std::vector<VertexId>> nics(static_cast<size_t>(params.nodes));
  for (int n = 0; n < params.nodes; ++n) {
    const std::string prefix = "n" + std::to_string(n) + ".";
    add_node(t, params.node, prefix);
    for (int r = 0; r < rails; ++r) {
      const VertexId nic = t.add_vertex(VertexKind::kNic, prefix + "nic" + std::to_string(r));
      t.add_duplex_link(t.gpu(n * rails + r), nic, params.pcie, params.pcie_latency,
                        LinkKind::kPcie);
      nics[static_cast<size_t>(n)].push_back(nic);
    }
  }
  std::vector<VertexId> leaves;
  for (int r = 0; r < rails; ++r) {
    leaves.push_back(t.add_vertex(VertexKind::kSwitch, "leaf" + std::to_string(r)));
    for (int n = 0; n < params.nodes; ++n) {
      t.add_duplex_link(nics[static_cast<size_t>(n)][static_cast<size_t>(r)], leaves.back(),
                        params.nic, params.network_latency, LinkKind::kNetwork);
    }
  }
  const Bandwidth uplink =
      params.nic * (static_cast<double>(params.nodes) / (params.oversubscription * spines));
  for (int s = 0; s < spines; ++s) {
    const VertexId spine = t.add_vertex(VertexKind::kSwitch, "spine" + std::to_string(s));
    for (VertexId leaf : leaves) {
      t.add_duplex_link(leaf, spine, uplink, params.network_latency, LinkKind::kNetwork);
    }
  }
  t.set_gpus_per_node(rails);
  return t;
}

Topology build_fat_tree(const FatTreeParams& params) {
  const std::string name = "fat-tree";
  require(params.tiers == 2 || params.tiers == 3,
          name + ": tiers must be 2 or 3, got " + std::to_string(params.tiers));
  require(params.radix >= 2 && params.radix % 2 == 0,
          name + ": radix must be even and at least 2, got " + std::to_string(params.radix));
  require_positive(params.link, "fat-tree", "link");
  const int k = params.radix;
  const int half = k / 2;
  Topology t;
  auto connect = [&](VertexId a, VertexId b) {
    t.add_duplex_link(a, b, params.link, params.latency, params.kind);
  };
  if (params.tiers == 2) {
    for (int i = 0; i < k * half; ++i) t.add_vertex(VertexKind::kGpu, "gpu" + std::to_string(i));
    std::vector<VertexId> leaves;
    for (int l = 0; l < k; ++l) {
      leaves.push_back(t.add_vertex(VertexKind::kSwitch, "leaf" + std::to_string(l)));
      for (int h = 0; h < half; ++h) connect(t.gpu(l * half + h), leaves.back());
    }
    for (int s = 0; s < half; ++s) {
      const VertexId spine = t.add_vertex(VertexKind::kSwitch, "spine" + std::to_string(s));
      for (VertexId leaf : leaves) connect(leaf, spine);
    }
  } else {
    const int gpus_per_pod = half * half;
    for (int i = 0; i < k * gpus_per_pod; ++i) {
      t.add_vertex(VertexKind::kGpu, "gpu" + std::to_string(i));
    }
    std::vector<VertexId> cores;
    for (int c = 0; c < half * half; ++c) {
      cores.push_back(t.add_vertex(VertexKind::kSwitch, "core" + std::to_string(c)));
    }
    for (int pod = 0; pod < k; ++pod) {
      const std::string prefix = std::to_string(pod) + ".";
      std::vector<VertexId> aggs;
      for (int a = 0; a < half; ++a) {
        aggs.push_back(t.add_vertex(VertexKind::kSwitch, "agg" + prefix + std::to_string(a)));
        // Aggregation switch a of every pod reaches cores [a*k/2, (a+1)*k/2).
        for (int c = 0; c < half; ++c)
          connect(aggs.back(), cores[static_cast<size_t>(a * half + c)]);
      }
      for (int e = 0; e < half; ++e) {
        const VertexId edge =
            t.add_vertex(VertexKind::kSwitch, "edge" + prefix + std::to_string(e));
        for (int h = 0; h < half; ++h) connect(t.gpu(pod * gpus_per_pod + e * half + h), edge);
        for (VertexId agg : aggs) connect(edge, agg);
      }
    }
  }
  t.set_gpus_per_node(1);
  return t;
}

Topology build_torus(const TorusParams& params) {
  const std::string name = "torus";
  require(!params.dims.empty() && params.dims.size() <= 3,
          name + ": needs 1 to 3 dimensions, got " + std::to_string(params.dims.size()));
  int total = 1;
  for (int d : params.dims) {
    require(d >= 1, name + ": every dimension size must be at least 1, got " + std::to_string(d));
    require(total <= (1 << 24) / d, name + ": too many GPUs");
    total *= d;
  }
  require_positive(params.link, "torus", "link");
  const size_t rank = params.dims.size();
  Topology t;
  t.set_gpu_forwarding(true);
  for (int i = 0; i < total; ++i) {
    std::string label = "gpu";
    int rest = i;
    for (size_t d = 0; d < rank; ++d) {
      label += (d == 0 ? "" : ".") + std::to_string(rest % params.dims[d]);
      rest /= params.dims[d];
    }
    t.add_vertex(VertexKind::kGpu, label);
  }
  int stride = 1;
  for (size_t d = 0; d < rank; ++d) {
    const int size = params.dims[d];
    for (int i = 0; i < total; ++i) {
      const int x = (i / stride) % size;
      const bool has_next = x + 1 < size || (params.wrap_around && size >= 3);
      if (!has_next) continue;
      const int next = x + 1 < size ? i + stride : i - x * stride;
      t.add_duplex_link(t.gpu(i), t.gpu(next), params.link, params.latency, params.kind);
    }
    stride *= size;
  }
  t.set_gpus_per_node(1);
  return t;
}

}  // namespace moesim
