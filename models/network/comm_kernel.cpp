// The communication kernel's busy times: per GPU, its SMs (copies and per-message work on the
// warps) and its NIC (bytes and per-message work), against the flow model's time.
#include "models/network/comm_kernel.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

namespace moesim {
namespace {

Time seconds(double s) {
  return Time::ps(static_cast<int64_t>(s * 1e12 + 0.5));
}

double ratio(double bytes, double capacity) {
  return capacity > 0.0 ? bytes / capacity : 0.0;
}

// The flow model exceeds the busiest link by more than this before the phase is said to be
// bound by the links as a whole (pipeline fill, path latency, ECMP collisions) rather than by
// the busiest link kind: a chunked two-stage phase runs ~5-15% past its busiest link.
constexpr double kLinksMargin = 1.2;

}  // namespace

void CommKernelSpec::validate() const {
  auto fail = [](const std::string& what) {
    throw std::invalid_argument("communication kernel: " + what);
  };
  if (gpu_sms < 1) fail("gpu_sms must be at least 1, got " + std::to_string(gpu_sms));
  if (sms < 1 || sms >= gpu_sms) {
    fail("sms must be in [1, " + std::to_string(gpu_sms) + "), got " + std::to_string(sms));
  }
  if (!(bytes_per_sm.bytes_per_second() > 0.0)) fail("bytes_per_sm must be positive");
  if (sm_message_cost < Time::zero() || nic_message_cost < Time::zero()) {
    fail("message costs must not be negative");
  }
}

CommLinkCapacities comm_link_capacities(const Topology& topology) {
  const int32_t gpus = topology.gpu_count();
  CommLinkCapacities c;
  c.nvlink.assign(static_cast<size_t>(gpus), 0.0);
  c.nic.assign(static_cast<size_t>(gpus), 0.0);
  const std::span<const Link> links = topology.links();
  std::vector<int32_t> gpu_of_nic(topology.vertex_count(), -1);
  for (size_t i = 0; i < links.size(); ++i) {
    const int g = topology.gpu_index(links[i].from);
    if (g < 0) continue;
    const double cap =
        topology.effective_capacity(LinkId{static_cast<uint32_t>(i)}).bytes_per_second();
    if (links[i].kind == LinkKind::kNvLink && c.nvlink[static_cast<size_t>(g)] == 0.0) {
      c.nvlink[static_cast<size_t>(g)] = cap;
    }
    if (topology.vertex_kind(links[i].to) == VertexKind::kNic) {
      gpu_of_nic[links[i].to.value] = g;
    }
  }
  for (size_t i = 0; i < links.size(); ++i) {
    const int32_t g = gpu_of_nic[links[i].from.value];
    if (g >= 0 && links[i].kind == LinkKind::kNetwork) {
      c.nic[static_cast<size_t>(g)] =
          topology.effective_capacity(LinkId{static_cast<uint32_t>(i)}).bytes_per_second();
    }
  }
  for (int r = 0; r < topology.gpus_per_node(); ++r) {
    const auto leaf = topology.find_vertex("leaf" + std::to_string(r));
    if (!leaf) {
      c.leaf_uplink.clear();
      break;
    }
    double up = 0.0;
    for (size_t i = 0; i < links.size(); ++i) {
      if (links[i].from == *leaf && topology.vertex_kind(links[i].to) == VertexKind::kSwitch) {
        up += topology.effective_capacity(LinkId{static_cast<uint32_t>(i)}).bytes_per_second();
      }
    }
    c.leaf_uplink.push_back(up);
  }
  return c;
}

std::string_view to_string(CommResource r) {
  switch (r) {
    case CommResource::kNvLink:
      return "NVLink";
    case CommResource::kNic:
      return "NIC";
    case CommResource::kSpine:
      return "spine";
    case CommResource::kSms:
      return "SMs";
    case CommResource::kMessages:
      return "message rate";
    case CommResource::kLinks:
      return "links (pipeline fill, latency or ECMP collisions)";
  }
  return "?";
}

CommBounds comm_bounds(const CommKernelSpec& spec, std::span<const CommKernelLoad> loads,
                       const CommCapacities& capacities, Time flow) {
  const double sm_rate = spec.bytes_per_sm.bytes_per_second() * spec.sms;
  const double sm_message_s = spec.sm_message_cost.to_s();
  const double nic_message_s = spec.nic_message_cost.to_s();
  std::array<double, kCommResources> busy{};
  double kernel = 0.0;
  CommResource kernel_bound = CommResource::kSms;
  for (size_t g = 0; g < loads.size(); ++g) {
    const CommKernelLoad& l = loads[g];
    const double nvlink = g < capacities.nvlink.size() ? capacities.nvlink[g] : 0.0;
    const double nic = g < capacities.nic.size() ? capacities.nic[g] : 0.0;
    auto& b = busy;
    const auto at = [](CommResource r) { return static_cast<size_t>(r); };
    b[at(CommResource::kNvLink)] =
        std::max(b[at(CommResource::kNvLink)],
                 ratio(std::max(l.nvlink_bytes_out, l.nvlink_bytes_in), nvlink));
    const double nic_bytes_s = ratio(std::max(l.nic_bytes_out, l.nic_bytes_in), nic);
    b[at(CommResource::kNic)] = std::max(b[at(CommResource::kNic)], nic_bytes_s);
    // The SMs: normal kernels' copies at their SM rate; low-latency warps copy each NVLink
    // message themselves, at the link's rate, one after the other with their per-message work.
    const double sm_copy_s = l.sm_bytes / sm_rate + ratio(l.sm_nvlink_bytes, nvlink);
    const double sm_messages_s = static_cast<double>(l.sm_messages) * sm_message_s;
    b[at(CommResource::kSms)] = std::max(b[at(CommResource::kSms)], sm_copy_s);
    // The NIC: each way, its bytes at the port's rate plus its per-message work.
    const double nic_out_s =
        ratio(l.nic_bytes_out, nic) + static_cast<double>(l.nic_messages_out) * nic_message_s;
    const double nic_in_s =
        ratio(l.nic_bytes_in, nic) + static_cast<double>(l.nic_messages_in) * nic_message_s;
    const double nic_messages_s =
        static_cast<double>(std::max(l.nic_messages_out, l.nic_messages_in)) * nic_message_s;
    b[at(CommResource::kMessages)] =
        std::max({b[at(CommResource::kMessages)], sm_messages_s, nic_messages_s});
    const double sm_s = sm_copy_s + sm_messages_s;
    const double nic_s = std::max(nic_out_s, nic_in_s);
    if (sm_s > kernel) {
      kernel = sm_s;
      kernel_bound = sm_copy_s >= sm_messages_s ? CommResource::kSms : CommResource::kMessages;
    }
    if (nic_s > kernel) {
      kernel = nic_s;
      kernel_bound = nic_bytes_s >= nic_messages_s ? CommResource::kNic : CommResource::kMessages;
    }
  }
  for (size_t leaf = 0; leaf < capacities.spine_bytes.size(); ++leaf) {
    const double capacity =
        leaf < capacities.spine_capacity.size() ? capacities.spine_capacity[leaf] : 0.0;
    auto& spine = busy[static_cast<size_t>(CommResource::kSpine)];
    spine = std::max(spine, ratio(capacities.spine_bytes[leaf], capacity));
  }
  busy[static_cast<size_t>(CommResource::kLinks)] = flow.to_s();

  CommBounds out;
  for (int r = 0; r < kCommResources; ++r) out.busy[static_cast<size_t>(r)] = seconds(busy[r]);
  out.kernel = seconds(kernel);
  if (out.kernel > flow) {
    out.bound = kernel_bound;
    return out;
  }
  // The flow model's time: name the busiest link kind unless the flows ran well past it.
  CommResource busiest = CommResource::kNvLink;
  for (CommResource r : {CommResource::kNic, CommResource::kSpine}) {
    if (busy[static_cast<size_t>(r)] > busy[static_cast<size_t>(busiest)]) busiest = r;
  }
  out.bound = flow.to_s() > kLinksMargin * busy[static_cast<size_t>(busiest)] ? CommResource::kLinks
                                                                              : busiest;
  return out;
}

}  // namespace moesim
