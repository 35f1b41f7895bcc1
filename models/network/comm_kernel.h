// A communication kernel's own limits beside the links it drives (DeepEP-style MoE dispatch and
// combine): the SMs it runs on and the work per message on the sending GPU and on its NIC.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "core/units.h"
#include "topologies/topology.h"

namespace moesim {

// SMs of an H800 / H100 SXM5 (NVIDIA H100 Tensor Core GPU Architecture whitepaper, 2022: 132 SMs
// on the SXM5 part).
inline constexpr int32_t kH800Sms = 132;
// SMs DeepSeek-V3's all-to-all kernels run on (DeepSeek-V3 technical report, arXiv:2412.19437,
// sec. 3.2.2: "only 20 SMs"; DeepEP's Buffer.num_sms defaults to 20).
inline constexpr int32_t kDefaultCommSms = 20;

// The per-GPU parameters of a communication kernel. One source of truth: a step's
// CostOptions::comm_sm_fraction (the SMs taken from computation while a kernel is in flight)
// defaults to kDefaultCommKernel.sm_fraction().
//
// Three numbers are fitted, each on ONE published DeepEP H800 figure and checked against the
// others (tests/validation/README.md):
// - bytes_per_sm: the bytes one SM of DeepEP's normal kernels moves per second (every byte it
//   copies: into a peer's buffer over NVLink, out of its own receive buffer, into the RDMA send
//   buffer). Fitted on intranode EP8 dispatch (153 GB/s with 20 SMs); 15.4 GB/s per SM is of
//   the order of one SM's achievable copy rate (an H100 SM's share of ~3 TB/s of HBM traffic is
//   ~25 GB/s, and each byte here is read once and written once).
// - sm_message_cost: the warps' time per message of the low-latency kernels (FP8 cast, slot
//   bookkeeping, the per-message flag): messages to NVLink peers are copied by the same warps,
//   so their copy adds to it. Fitted on low-latency EP8 dispatch with NVLink (77 us).
// - nic_message_cost: the NIC's time per GPU-initiated (IBGDA) RDMA write beyond its bytes:
//   fetching the work request from GPU memory over PCIe, the doorbell, the write's completion.
//   Fitted on pure-RDMA low-latency EP8 dispatch (163 us). It is a rate of ~1/cost messages per
//   second when messages are tiny (ConnectX-7 is specified for several hundred million small
//   messages per second from host-posted work; GPU-initiated requests are far slower).
struct CommKernelSpec {
  int32_t sms = kDefaultCommSms;  // SMs the normal (throughput) kernels run on
  int32_t gpu_sms = kH800Sms;
  // Fitted: DeepEP intranode EP8 dispatch, 153 GB/s (tests/validation/README.md).
  Bandwidth bytes_per_sm = Bandwidth::gigabytes_per_s(15.43);
  // Fitted: DeepEP low-latency EP8 dispatch with NVLink, 77 us.
  Time sm_message_cost = Time::ps(34'100);
  // Fitted: DeepEP low-latency EP8 dispatch over pure RDMA, 163 us.
  Time nic_message_cost = Time::ps(23'500);

  constexpr double sm_fraction() const { return static_cast<double>(sms) / gpu_sms; }
  // Throws std::invalid_argument naming the bad field.
  void validate() const;
};
inline constexpr CommKernelSpec kDefaultCommKernel{};

// One GPU's share of a phase, as the kernel handles it.
struct CommKernelLoad {
  double sm_bytes = 0.0;         // bytes the normal kernels' SMs copy
  int64_t sm_messages = 0;       // messages the low-latency kernels' warps issue one by one
  double sm_nvlink_bytes = 0.0;  // of those, bytes the warps copy to NVLink peers themselves
  int64_t nic_messages_out = 0;  // messages through its NIC, each way
  int64_t nic_messages_in = 0;
  double nic_bytes_out = 0.0;
  double nic_bytes_in = 0.0;
  double nvlink_bytes_out = 0.0;  // every byte on its NVLink link, each way
  double nvlink_bytes_in = 0.0;
};

// What can bound a phase. kLinks is the flow model's time where it exceeds every single
// resource's busy time (ECMP collisions, pipeline fill, latency).
enum class CommResource : uint8_t { kNvLink, kNic, kSpine, kSms, kMessages, kLinks };
inline constexpr int kCommResources = 6;
std::string_view to_string(CommResource r);

// The busiest instance of each resource, in time (seconds as Time), and which bound the phase.
struct CommBounds {
  std::array<Time, kCommResources> busy{};
  Time kernel;  // the kernel's own bound: the busiest GPU's SMs or NIC, message costs included
  CommResource bound = CommResource::kLinks;
};

// Per-GPU link capacities the busy times are measured against (effective, per direction); a GPU
// without a NIC has zero there. spine_bytes/spine_capacity: per leaf, cross-rail bytes up or
// down and the leaf's aggregated uplink capacity (empty without a leaf/spine fabric).
struct CommCapacities {
  std::span<const double> nvlink;
  std::span<const double> nic;
  std::span<const double> spine_bytes;
  std::span<const double> spine_capacity;
};

// Per GPU, the effective capacity of its NVLink link and of its NIC's network port (zero where
// it has none); per rail fat-tree leaf ("leaf<r>"), the aggregated capacity of its uplinks
// (empty when the topology has no such leaves). Owns what CommCapacities points at.
struct CommLinkCapacities {
  std::vector<double> nvlink, nic, leaf_uplink;
};
// O(links + vertices + rails x links).
CommLinkCapacities comm_link_capacities(const Topology& topology);

// The busy times and the kernel's bound of the given loads (one per GPU); `flow` is the flow
// model's phase time, which decides kLinks and which link kind to name when the links bound it.
CommBounds comm_bounds(const CommKernelSpec& spec, std::span<const CommKernelLoad> loads,
                       const CommCapacities& capacities, Time flow);

}  // namespace moesim
