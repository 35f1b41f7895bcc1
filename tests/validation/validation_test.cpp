// moesim's predictions against published hardware measurements (DeepEP on H800, nccl-tests'
// all-to-all shape), plus hand-worked cases of the DeepEP-style phase they rest on.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <vector>

#include "models/moe/model_spec.h"
#include "models/network/collectives.h"
#include "sim/moe_phase.h"
#include "topologies/builders.h"
#include "topologies/presets.h"

namespace moesim {
namespace {

// Four experts, hidden 1024, BF16 both ways: 2048 bytes per token.
ModelSpec tiny_model() {
  ModelSpec m;
  m.name = "tiny";
  m.hidden_size = 1024;
  m.routed_experts = 4;
  m.top_k = 2;
  m.dispatch = {Dtype::kBf16, 0, 0};
  m.combine = {Dtype::kBf16, 0, 0};
  return m;
}

// GPU `sender` holds `tokens` tokens, each bound for `experts`; the other GPUs hold none.
std::vector<RoutingDecision> one_sender(int gpus, int sender, int tokens,
                                        const std::vector<int32_t>& experts) {
  std::vector<RoutingDecision> d(static_cast<size_t>(gpus));
  for (int g = 0; g < gpus; ++g) {
    const int n = g == sender ? tokens : 0;
    d[g].reset(n, 4, static_cast<int32_t>(experts.size()));
    for (int t = 0; t < n; ++t) {
      for (size_t j = 0; j < experts.size(); ++j)
        d[g].expert_ids[t * experts.size() + j] = experts[j];
    }
  }
  return d;
}

// Two nodes of two GPUs: NVLink 100 GB/s, NIC 10 GB/s, PCIe 100 GB/s, nominal efficiency.
// Path latencies: NVLink 0.5 us, same rail 1.0 us, cross rail 1.6 us.
Topology two_by_two() {
  RailFatTreeParams p;
  p.node = {2, Bandwidth::gigabytes_per_s(100), Time::ns(250)};
  p.nodes = 2;
  p.nic = Bandwidth::gigabytes_per_s(10);
  p.pcie = Bandwidth::gigabytes_per_s(100);
  return build_rail_fat_tree(p);
}

}  // namespace

TEST_CASE("intranode uniform dispatch: closed form and DeepEP's received-bytes figure",
          "[validation]") {
  const Topology node = build_nvswitch_node({4, Bandwidth::gigabytes_per_s(100), Time::ns(250)});
  std::vector<RoutingDecision> d(4);
  for (int g = 0; g < 4; ++g) {
    d[g].reset(64, 4, 1);
    for (int t = 0; t < 64; ++t) d[g].expert_ids[t] = t % 4;
  }
  MoePhaseOptions o;
  const MoePhaseResult r = run_moe_phase(node, tiny_model(), d, o);
  // Each GPU sends 16 tokens to each of 3 others over its 100 GB/s link, plus 0.5 us.
  const double expected_us = 3 * 16 * 2048 / 100e9 * 1e6 + 0.5;
  CHECK(r.time_us() == Approx(expected_us).epsilon(1e-6));
  // DeepEP counts every token a GPU receives, its own included: 64 tokens.
  CHECK(r.deepep_nvlink_bytes_per_gpu == 64 * 2048);
  CHECK(r.nvlink_gbps() == Approx(64 * 2048 / (expected_us * 1e3)).epsilon(1e-6));
  CHECK(r.deepep_rdma_bytes_per_gpu == 0.0);
  CHECK(r.wire_nvlink_bytes_per_gpu == 48 * 2048);
}

TEST_CASE("normal dispatch crosses the network once and forwards chunk by chunk", "[validation]") {
  const Topology t = two_by_two();
  MoePhaseOptions o;
  o.pipeline_chunks = 4;
  // GPU 0's 64 tokens each go to experts 2 and 3 (GPUs 2 and 3 of node 1): one network
  // transfer to GPU 2 (GPU 0's rail), which forwards to GPU 3.
  const auto d = one_sender(4, 0, 64, {2, 3});
  const MoePhaseResult r = run_moe_phase(t, tiny_model(), d, o);
  // Four 32 KiB chunks streamed back to back at 10 GB/s in one flow: the last leaves at
  // 4 chunk / B and arrives 1 us later; then its forward at 100 GB/s + 0.5 us.
  const double chunk = 32768.0;
  const double expected_us = 4 * chunk / 10e9 * 1e6 + 1.0 + chunk / 100e9 * 1e6 + 0.5;
  CHECK(r.time_us() == Approx(expected_us).epsilon(1e-6));
  CHECK(r.wire_network_bytes_per_gpu == 64 * 2048 / 4.0);  // once, not twice
  CHECK(r.wire_nvlink_bytes_per_gpu == 64 * 2048 / 4.0);
  // DeepEP: 64 (token, node) pairs sent; 128 (token, GPU) pairs received; mean over 4 GPUs.
  CHECK(r.deepep_rdma_bytes_per_gpu == 64 * 2048 / 4.0);
  CHECK(r.deepep_nvlink_bytes_per_gpu == 128 * 2048 / 4.0);

  // Combine: GPU 3's chunks reach the relay over NVLink (0.82768 us each); the relay's network
  // link then stays busy from the first chunk's arrival until all 128 KiB have left.
  o.phase = MoePhase::kCombine;
  const MoePhaseResult c = run_moe_phase(t, tiny_model(), d, o);
  const double combine_us = (chunk / 100e9 * 1e6 + 0.5) + 4 * chunk / 10e9 * 1e6 + 1.0;
  CHECK(c.time_us() == Approx(combine_us).epsilon(1e-6));
}

TEST_CASE("low-latency dispatch sends each pair directly, over NVLink or through the NIC",
          "[validation]") {
  const Topology t = two_by_two();
  MoePhaseOptions o;
  o.mode = MoeCommMode::kLowLatency;
  const auto d = one_sender(4, 0, 64, {1, 2});
  // Without per-message costs, the flow model alone: 128 KiB to GPU 1 over NVLink (1.8 us) and
  // 128 KiB to GPU 2 at 10 GB/s + 1 us.
  o.kernel.sm_message_cost = Time::zero();
  o.kernel.nic_message_cost = Time::zero();
  const MoePhaseResult r = run_moe_phase(t, tiny_model(), d, o);
  CHECK(r.time_us() == Approx(131072 / 10e9 * 1e6 + 1.0).epsilon(1e-6));
  CHECK(r.deepep_rdma_bytes_per_gpu == 128 * 2048 / 4.0);  // every (token, expert) pair
  CHECK(r.bounds.bound == CommResource::kNic);
  // With them: GPU 0's warps issue 128 messages and copy 64 over NVLink themselves (5.7 us); its
  // NIC port is busy 64 x 2 KiB / 10 GB/s plus 64 messages' work, which outlasts the flows.
  o.kernel = kDefaultCommKernel;
  const MoePhaseResult m = run_moe_phase(t, tiny_model(), d, o);
  const double nic_us = 131072 / 10e9 * 1e6 + 64 * o.kernel.nic_message_cost.to_us();
  const double sm_us = 128 * o.kernel.sm_message_cost.to_us() + 131072 / 100e9 * 1e6;
  CHECK(m.bounds.busy[static_cast<size_t>(CommResource::kSms)].to_us() ==
        Approx(131072 / 100e9 * 1e6).epsilon(1e-6));
  CHECK(m.bounds.kernel.to_us() == Approx(std::max(nic_us, sm_us)).epsilon(1e-6));
  CHECK(m.time_us() == Approx(std::max(nic_us, 131072 / 10e9 * 1e6 + 1.0)).epsilon(1e-6));
  // Through the NIC both share GPU 0's 10 GB/s port; the cross-rail path takes 1.6 us.
  o.low_latency_over_network = true;
  const MoePhaseResult n = run_moe_phase(t, tiny_model(), d, o);
  CHECK(n.flow_time.to_us() == Approx(2 * 131072 / 10e9 * 1e6 + 1.6).epsilon(1e-6));
  CHECK(n.bounds.kernel.to_us() ==
        Approx(2 * 131072 / 10e9 * 1e6 + 128 * o.kernel.nic_message_cost.to_us()).epsilon(1e-6));
  CHECK(n.time_us() == Approx(std::max(n.flow_time, n.bounds.kernel).to_us()).epsilon(1e-9));
  CHECK(n.wire_nvlink_bytes_per_gpu == 0.0);
  // A bare NVSwitch node has no network to fall back on (a preset's node has, see below).
  const Topology node = build_nvswitch_node({4, Bandwidth::gigabytes_per_s(100), Time::ns(250)});
  CHECK_THROWS_WITH(run_moe_phase(node, tiny_model(), d, o), Catch::Contains("without NVLink"));
}

TEST_CASE("bad phase options are refused", "[validation]") {
  const Topology t = two_by_two();
  ModelSpec m = tiny_model();
  m.routed_experts = 6;
  CHECK_THROWS_WITH(run_moe_phase(t, m, MoePhaseOptions{}), Catch::Contains("not divisible"));
  MoePhaseOptions o;
  o.tokens_per_gpu = 0;
  CHECK_THROWS_WITH(run_moe_phase(t, tiny_model(), o), Catch::Contains("tokens per GPU"));
  CHECK_THROWS_WITH(run_moe_phase(t, tiny_model(), one_sender(3, 0, 1, {1}), MoePhaseOptions{}),
                    Catch::Contains("one routing decision per GPU"));
}

namespace {

// DeepSeek-V3 on H800 nodes with a 400 Gb/s NIC per GPU, as in DeepEP's README, run with the
// defaults a user gets (adaptive routing on a non-blocking fabric, 20 communication SMs): only
// the mode, the node count and, for DeepEP's first low-latency table, pure RDMA.
MoePhaseResult deepep_case(int nodes, MoeCommMode mode, MoePhase phase, bool pure_rdma = false) {
  ClusterOptions c;
  c.preset = "dgx-h800";
  c.nodes = nodes;
  c.nic_gbps = 400.0;
  MoePhaseOptions o;
  o.mode = mode;
  o.phase = phase;
  o.tokens_per_gpu = mode == MoeCommMode::kNormal ? 4096 : 128;
  o.low_latency_over_network = pure_rdma;
  return run_moe_phase(build_cluster(c), *find_model_preset("deepseek-v3"), o);
}

double relative_error(double model, double published) {
  return (model - published) / published;
}

// One published DeepEP H800 figure: GB/s for normal kernels (NVLink on one node, RDMA across
// nodes, DeepEP's definitions), us for low-latency ones. `fitted` marks the three cases the
// kernel parameters were fitted on (models/network/comm_kernel.h); `bound` is the accepted
// relative error, 10% except the known misses of tests/validation/README.md.
struct DeepEpFigure {
  int nodes;
  MoeCommMode mode;
  MoePhase phase;
  bool pure_rdma;
  double published;
  double bound;
  bool fitted = false;
};

double model_figure(const DeepEpFigure& f) {
  const MoePhaseResult r = deepep_case(f.nodes, f.mode, f.phase, f.pure_rdma);
  if (f.mode == MoeCommMode::kLowLatency) return r.time_us();
  return f.nodes == 1 ? r.nvlink_gbps() : r.rdma_gbps();
}

constexpr MoeCommMode kNormal = MoeCommMode::kNormal;
constexpr MoeCommMode kLow = MoeCommMode::kLowLatency;
constexpr MoePhase kDispatch = MoePhase::kDispatch;
constexpr MoePhase kCombine = MoePhase::kCombine;

}  // namespace

// DeepEP README (2025); figures quoted from memory by the lead engineer and this helper. EP64
// and above take seconds each to simulate and are checked from the CLI (README table).
TEST_CASE("DeepEP normal kernels EP8 to EP32 within 10%", "[validation][deepep]") {
  const DeepEpFigure figures[] = {
      {1, kNormal, kDispatch, false, 153, 0.10, true}, {1, kNormal, kCombine, false, 158, 0.10},
      {2, kNormal, kDispatch, false, 43, 0.10},        {2, kNormal, kCombine, false, 43, 0.10},
      {4, kNormal, kDispatch, false, 58, 0.10},        {4, kNormal, kCombine, false, 57, 0.10},
  };
  for (const DeepEpFigure& f : figures) {
    const double model = model_figure(f);
    INFO("EP" << 8 * f.nodes << (f.phase == kDispatch ? " dispatch " : " combine ") << model
              << " GB/s, published " << f.published);
    CHECK(std::abs(relative_error(model, f.published)) < (f.fitted ? 0.005 : f.bound));
  }
}

TEST_CASE("DeepEP low-latency kernels EP8 to EP32, with NVLink and pure RDMA",
          "[validation][deepep]") {
  const DeepEpFigure figures[] = {
      // With NVLink inside a node (DeepEP's current table).
      {1, kLow, kDispatch, false, 77, 0.10, true},
      {1, kLow, kCombine, false, 114, 0.10},
      {2, kLow, kDispatch, false, 118, 0.25},  // known miss: the model is ~19% fast
      {2, kLow, kCombine, false, 195, 0.15},   // known miss: ~11% fast
      {4, kLow, kDispatch, false, 155, 0.10},
      {4, kLow, kCombine, false, 273, 0.10},
      // Every pair through the NIC (DeepEP's first table), EP8 included.
      {1, kLow, kDispatch, true, 163, 0.10, true},
      {1, kLow, kCombine, true, 318, 0.10},
      {2, kLow, kDispatch, true, 173, 0.10},
      {2, kLow, kCombine, true, 329, 0.10},
      {4, kLow, kDispatch, true, 182, 0.10},
      {4, kLow, kCombine, true, 350, 0.10},
  };
  double previous_rdma_dispatch = 0.0;
  for (const DeepEpFigure& f : figures) {
    const double model = model_figure(f);
    INFO("EP" << 8 * f.nodes << (f.pure_rdma ? " pure RDMA" : " NVLink")
              << (f.phase == kDispatch ? " dispatch " : " combine ") << model << " us, published "
              << f.published);
    CHECK(std::abs(relative_error(model, f.published)) < (f.fitted ? 0.005 : f.bound));
    // Latency rises with EP, as DeepEP's does.
    if (f.pure_rdma && f.phase == kDispatch) {
      CHECK(model > previous_rdma_dispatch);
      previous_rdma_dispatch = model;
    }
  }
}

TEST_CASE("the bounding resource follows the phase's shape", "[validation][deepep]") {
  // One node, normal: the 20 SMs, not NVLink (DeepEP's kernels run at ~85% of the link).
  CHECK(deepep_case(1, kNormal, kDispatch).bounds.bound == CommResource::kSms);
  // Low latency over NVLink on one node: the warps' per-message work and copies.
  CHECK(deepep_case(1, kLow, kDispatch).bounds.bound == CommResource::kSms);
  // Across 4 nodes, low latency is the NICs' (bytes plus per-message work).
  const MoePhaseResult r = deepep_case(4, kLow, kDispatch);
  CHECK(r.bounds.bound == CommResource::kNic);
  CHECK(r.bounds.busy[static_cast<size_t>(CommResource::kSpine)] <
        r.bounds.busy[static_cast<size_t>(CommResource::kNic)]);  // non-blocking fabric
}

// nccl-tests' all-to-all across N nodes of 8 is NIC-bound: each GPU sends (n-8)/n of its
// buffer through its NIC, so busbw = algbw (n-1)/n = B_eff (n-1)/(n-8), with B_eff = 0.97 x 50
// GB/s (48.5, the figure nccl-tests reaches on a CX7 NDR port). NCCL's PXN sends cross-rail
// data over NVLink to the destination's rail first: the hierarchical algorithm.
TEST_CASE("nccl-tests all-to-all busbw on 2, 4, 8 H100 nodes follows the NIC-bound closed form",
          "[validation][nccl]") {
  double previous = 1e300;
  for (int nodes : {2, 4, 8}) {
    ClusterOptions c;
    c.preset = "dgx-h100";
    c.nodes = nodes;
    c.nic_gbps = 400.0;
    const Topology t = build_cluster(c);
    CollectiveSpec spec;
    spec.op = CollectiveOp::kAllToAll;
    spec.algo = CollectiveAlgo::kHierarchical;
    spec.bytes = Bytes::gib(1);
    spec.options.chunks = 16;
    const CollectiveResult r = run_collective(t, spec);
    const int n = 8 * nodes;
    const double algbw = static_cast<double>(spec.bytes.count()) / r.duration().to_s() * 1e-9;
    const double busbw = algbw * (n - 1) / n;
    const double closed_form = 48.5 * (n - 1) / (n - 8);
    INFO(nodes << " nodes: busbw " << busbw << " GB/s, closed form " << closed_form);
    CHECK(busbw == Approx(closed_form).epsilon(0.02));
    CHECK(busbw < previous);  // falls towards the NIC rate as N grows
    previous = busbw;
    // Without PXN, cross-rail data crosses the spines: on the default fabric (non-blocking,
    // adaptive routing) that costs nothing, so the direct algorithm reaches the same NIC bound;
    // with per-flow ECMP over one spine per rail, flows collide on uplinks and fall short.
    spec.algo = CollectiveAlgo::kDirect;
    const double direct = static_cast<double>(spec.bytes.count()) /
                          run_collective(t, spec).duration().to_s() * 1e-9 * (n - 1) / n;
    CHECK(direct == Approx(closed_form).epsilon(0.03));
    c.routing = FabricRouting::kEcmp;
    const double ecmp = static_cast<double>(spec.bytes.count()) /
                        run_collective(build_cluster(c), spec).duration().to_s() * 1e-9 * (n - 1) /
                        n;
    CHECK(ecmp < 0.95 * direct);
  }
}

}  // namespace moesim
