// The executor on hand-built operation graphs: stream order, dependencies across GPUs, a
// collective waiting for its last member, posted sends, and a dispatch overlapped with
// independent compute (with and without the SMs communication takes), against hand-worked times.
#include <catch2/catch.hpp>
#include <cmath>
#include <stdexcept>
#include <vector>

#include "models/gpu/gpu_model.h"
#include "models/network/network_model.h"
#include "sim/cost_model.h"
#include "sim/executor.h"
#include "sim/op_graph.h"
#include "topologies/builders.h"

namespace moesim {
namespace {

// Two GPUs on one NVSwitch at 100 GB/s per direction, 500 ns per link: a transfer of B bytes
// between them, alone on its direction, takes B / 100 GB/s plus two links' latency.
constexpr double kLinkBytesPerS = 100e9;
constexpr double kLinkLatencyUs = 0.5;
double transfer_us(double bytes) {
  return bytes / kLinkBytesPerS * 1e6 + 2 * kLinkLatencyUs;
}

struct Bench {
  explicit Bench(double comm_sm_fraction = 0.0, int gpus = 2)
      : topology(
            build_nvswitch_node({gpus, Bandwidth::bytes_per_s(kLinkBytesPerS), Time::ns(500)})),
        network(engine, topology),
        gpu(*find_gpu_preset("h100-sxm")),
        cost(network, gpu, CostOptions{comm_sm_fraction}),
        executor(engine, cost) {}
  Engine engine;
  Topology topology;
  NetworkModel network;
  GpuModel gpu;
  CostModel cost;
  Executor executor;
};

Op fixed(int32_t gpu, Time t, Phase phase = Phase::kAttention, Stream stream = Stream::kCompute) {
  Op op;
  op.gpu = gpu;
  op.stream = stream;
  op.phase = phase;
  op.kernel = KernelKind::kFixed;
  op.fixed_time = t;
  return op;
}

Collective all_to_all(std::vector<int32_t> members, Bytes per_pair) {
  Collective c;
  c.kind = CollectiveKind::kAllToAll;
  c.phase = Phase::kDispatch;
  c.members = std::move(members);
  c.bytes = per_pair;
  return c;
}

double us(Time t) {
  return t.to_us();
}
double phase_us(const Execution& x, int gpu, Phase p) {
  return us(x.gpu_phase_time.at(static_cast<size_t>(gpu))[static_cast<int>(p)]);
}

TEST_CASE("a stream runs its ops in order; two streams of a GPU run side by side", "[executor]") {
  Bench b;
  OpGraph g(2);
  // No explicit dependencies: the compute stream alone orders the first three.
  const OpId k1 = g.add_kernel(fixed(0, Time::us(1)));
  const OpId k2 = g.add_kernel(fixed(0, Time::us(2)));
  const OpId k3 = g.add_kernel(fixed(0, Time::us(3)));
  // A kernel on GPU 0's other stream does not wait for them.
  const OpId side = g.add_kernel(fixed(0, Time::us(4), Phase::kDenseFfn, Stream::kComm));
  g.finish();
  const Execution x = b.executor.run(g);
  CHECK(x.op_start[k1] == Time::zero());
  CHECK(x.op_end[k1] == Time::us(1));
  CHECK(x.op_start[k2] == Time::us(1));
  CHECK(x.op_end[k2] == Time::us(3));
  CHECK(x.op_start[k3] == Time::us(3));
  CHECK(x.op_end[k3] == Time::us(6));
  CHECK(x.op_start[side] == Time::zero());
  CHECK(x.op_end[side] == Time::us(4));
  CHECK(x.end - x.start == Time::us(6));
  CHECK(phase_us(x, 0, Phase::kAttention) == 6.0);
  CHECK(phase_us(x, 0, Phase::kDenseFfn) == 4.0);
  CHECK(phase_us(x, 1, Phase::kAttention) == 0.0);
}

TEST_CASE("a dependency across GPUs delays the dependent op", "[executor]") {
  Bench b;
  OpGraph g(2);
  const OpId first = g.add_kernel(fixed(0, Time::us(5)));
  const OpId early = g.add_kernel(fixed(1, Time::us(1)));
  const OpId waits = g.add_kernel(fixed(1, Time::us(2)), std::vector<OpId>{first});
  g.finish();
  const Execution x = b.executor.run(g);
  CHECK(x.op_end[early] == Time::us(1));
  // GPU 1's second kernel waits for GPU 0's first, not just for its own stream.
  CHECK(x.op_start[waits] == Time::us(5));
  CHECK(x.op_end[waits] == Time::us(7));
  CHECK(x.end - x.start == Time::us(7));
  // A plain dependency books no idle time (only collectives do).
  CHECK(phase_us(x, 1, Phase::kAttention) == 3.0);
  CHECK(phase_us(x, 1, Phase::kIdle) == 0.0);
}

TEST_CASE("a collective launches when its last member arrives; the wait is idle", "[executor]") {
  Bench b;
  OpGraph g(2);
  const double bytes = 1e6;
  const OpId k0 = g.add_kernel(fixed(0, Time::us(1)));
  const OpId k1 = g.add_kernel(fixed(1, Time::us(4)));
  const CollectiveIdx c = g.add_collective(all_to_all({0, 1}, Bytes(1'000'000)));
  const OpId m0 = g.add_member(0, Stream::kComm, c, std::vector<OpId>{k0});
  const OpId m1 = g.add_member(1, Stream::kComm, c, std::vector<OpId>{k1});
  g.finish();
  const Execution x = b.executor.run(g);
  const double a2a = transfer_us(bytes);  // both directions at once, each alone on its links
  CHECK(x.op_start[m0] == Time::us(1));   // GPU 0 arrives
  CHECK(x.collective_launch[c] == Time::us(4));
  CHECK(us(x.op_end[m0]) == Approx(4 + a2a).margin(1e-6));
  CHECK(x.op_end[m1] == x.op_end[m0]);
  CHECK(phase_us(x, 0, Phase::kIdle) == Approx(3.0));
  CHECK(phase_us(x, 1, Phase::kIdle) == 0.0);
  CHECK(phase_us(x, 0, Phase::kDispatch) == Approx(a2a).margin(1e-6));
  CHECK(phase_us(x, 1, Phase::kDispatch) == Approx(a2a).margin(1e-6));
  CHECK(x.finish_order == std::vector<CollectiveIdx>{c});
}

TEST_CASE("a posted send lets its sender go on; the receiver waits for the data", "[executor]") {
  Bench b;
  OpGraph g(2);
  const double bytes = 2e6;
  Collective p;
  p.kind = CollectiveKind::kSendRecv;
  p.phase = Phase::kPipeline;
  p.members = {0, 1};
  p.bytes = Bytes(2'000'000);
  const CollectiveIdx c = g.add_collective(p);
  const OpId before = g.add_kernel(fixed(0, Time::us(1)));
  const OpId send = g.add_member(0, Stream::kComm, c, std::vector<OpId>{before});
  const OpId after = g.add_kernel(fixed(0, Time::us(3)), std::vector<OpId>{before});
  const OpId recv = g.add_member(1, Stream::kComm, c);
  const OpId use = g.add_kernel(fixed(1, Time::us(1)), std::vector<OpId>{recv});
  g.finish();
  const Execution x = b.executor.run(g);
  const double arrive = 1 + transfer_us(bytes);
  CHECK(x.op_end[send] == Time::us(1));  // posted, not waited for
  CHECK(x.op_start[after] == Time::us(1));
  CHECK(x.op_end[after] == Time::us(4));
  CHECK(us(x.op_end[recv]) == Approx(arrive).margin(1e-6));
  CHECK(us(x.op_end[use]) == Approx(arrive + 1).margin(1e-6));
  // The receiver idled until the send was posted, then waited on the transfer.
  CHECK(phase_us(x, 1, Phase::kIdle) == Approx(1.0));
  CHECK(phase_us(x, 1, Phase::kPipeline) == Approx(transfer_us(bytes)).margin(1e-6));
  CHECK(phase_us(x, 0, Phase::kPipeline) == 0.0);
}

TEST_CASE("collectives joined in opposite orders deadlock, and the executor says so",
          "[executor]") {
  Bench b;
  OpGraph g(2);
  const CollectiveIdx c1 = g.add_collective(all_to_all({0, 1}, Bytes(1000)));
  const CollectiveIdx c2 = g.add_collective(all_to_all({0, 1}, Bytes(1000)));
  g.add_member(0, Stream::kComm, c1);
  g.add_member(0, Stream::kComm, c2);
  g.add_member(1, Stream::kComm, c2);
  g.add_member(1, Stream::kComm, c1);
  g.finish();
  CHECK_THROWS_WITH(b.executor.run(g), Catch::Contains("deadlocked with 4 of 4 ops"));
}

// Per GPU g of 2: a kernel of C on the compute stream and its member of an all-to-all (A, the
// closed form above) on the comm stream, then a final kernel F after both. `depend` makes the
// member wait for the kernel (no overlap). `members_first` adds the members' ops before the
// kernels' (only without `depend`), which must not matter.
struct OverlapCase {
  Time compute, final_kernel;
  double bytes;
  bool depend, members_first;
};
Execution play_overlap(double fraction, const OverlapCase& o, std::vector<OpId>& kernels) {
  Bench b(fraction);
  OpGraph g(2);
  const CollectiveIdx c =
      g.add_collective(all_to_all({0, 1}, Bytes(static_cast<int64_t>(o.bytes))));
  std::vector<OpId> member(2), kernel(2);
  auto add_kernels = [&] {
    for (int32_t gpu = 0; gpu < 2; ++gpu) {
      kernel[gpu] = g.add_kernel(fixed(gpu, o.compute, Phase::kExpertCompute));
    }
  };
  if (!o.members_first) add_kernels();
  for (int32_t gpu = 0; gpu < 2; ++gpu) {
    member[gpu] = o.depend ? g.add_member(gpu, Stream::kComm, c, std::vector<OpId>{kernel[gpu]})
                           : g.add_member(gpu, Stream::kComm, c);
  }
  if (o.members_first) add_kernels();
  for (int32_t gpu = 0; gpu < 2; ++gpu) {
    g.add_kernel(fixed(gpu, o.final_kernel, Phase::kAttention),
                 std::vector<OpId>{kernel[gpu], member[gpu]});
  }
  g.finish();
  kernels = kernel;
  return b.executor.run(g);
}

TEST_CASE("a dispatch overlapped with independent compute costs the max, not the sum",
          "[executor][overlap]") {
  const double bytes = 1e6;
  const double a2a = transfer_us(bytes);  // 11 us
  const double final_us = 5.0;
  std::vector<OpId> k;
  SECTION("no SMs taken: max(C, A) + F") {
    for (bool members_first : {false, true}) {
      for (double compute_us : {20.0, 4.0}) {
        INFO("members added first: " << members_first << ", C = " << compute_us << " us");
        const OverlapCase o{Time::us(static_cast<int64_t>(compute_us)), Time::us(5), bytes, false,
                            members_first};
        const Execution x = play_overlap(0.0, o, k);
        CHECK(us(x.end - x.start) == Approx(std::max(compute_us, a2a) + final_us).margin(1e-6));
        CHECK(phase_us(x, 0, Phase::kExpertCompute) == compute_us);
        CHECK(phase_us(x, 0, Phase::kDispatch) == Approx(a2a).margin(1e-6));
      }
    }
  }
  SECTION("communication takes a fraction f of the SMs while in flight") {
    // The kernel runs at (1 - f) while the all-to-all is in flight ([0, A]): if C > A (1 - f)
    // it ends at A + (C - A (1 - f)) = C + A f, else at C / (1 - f). The all-to-all itself is
    // not slowed.
    const double f = 0.25;
    for (bool members_first : {false, true}) {
      for (double compute_us : {20.0, 4.0}) {
        INFO("members added first: " << members_first << ", C = " << compute_us << " us");
        const OverlapCase o{Time::us(static_cast<int64_t>(compute_us)), Time::us(5), bytes, false,
                            members_first};
        const Execution x = play_overlap(f, o, k);
        const double kernel_end =
            compute_us > a2a * (1 - f) ? compute_us + a2a * f : compute_us / (1 - f);
        CHECK(us(x.op_end[k[0]]) == Approx(kernel_end).margin(1e-5));
        CHECK(us(x.op_end[k[1]]) == Approx(kernel_end).margin(1e-5));
        CHECK(phase_us(x, 0, Phase::kExpertCompute) == Approx(kernel_end).margin(1e-5));
        CHECK(phase_us(x, 1, Phase::kDispatch) == Approx(a2a).margin(1e-6));
        CHECK(us(x.end - x.start) == Approx(std::max(kernel_end, a2a) + final_us).margin(1e-5));
      }
    }
  }
  SECTION("the same ops with the dispatch after the compute: the sum, whatever f") {
    for (double f : {0.0, 20.0 / 132.0}) {
      INFO("f = " << f);
      const OverlapCase o{Time::us(20), Time::us(5), bytes, true, false};
      const Execution x = play_overlap(f, o, k);
      CHECK(us(x.end - x.start) == Approx(20.0 + a2a + final_us).margin(1e-6));
      CHECK(phase_us(x, 0, Phase::kExpertCompute) == 20.0);
    }
  }
}

double hidden_us(const Execution& x, int gpu, Phase p) {
  return us(x.gpu_hidden_time.at(static_cast<size_t>(gpu))[static_cast<int>(p)]);
}

TEST_CASE("communication beside a kernel is hidden, the rest exposed", "[executor][overlap]") {
  const double bytes = 1e6;
  const double a2a = transfer_us(bytes);  // 11 us
  std::vector<OpId> k;
  SECTION("the overlap case: hidden = min(C, A), exposed = A - hidden; after the kernel: none") {
    for (double compute_us : {20.0, 4.0}) {
      INFO("C = " << compute_us << " us");
      const OverlapCase o{Time::us(static_cast<int64_t>(compute_us)), Time::us(5), bytes, false,
                          false};
      const Execution x = play_overlap(0.0, o, k);
      for (int gpu = 0; gpu < 2; ++gpu) {
        CHECK(hidden_us(x, gpu, Phase::kDispatch) ==
              Approx(std::min(compute_us, a2a)).margin(1e-6));
        CHECK(hidden_us(x, gpu, Phase::kIdle) == 0.0);
        // Kernels book nothing as hidden.
        CHECK(hidden_us(x, gpu, Phase::kExpertCompute) == 0.0);
      }
    }
    const Execution x = play_overlap(0.0, {Time::us(20), Time::us(5), bytes, true, false}, k);
    CHECK(hidden_us(x, 0, Phase::kDispatch) == 0.0);
    CHECK(phase_us(x, 0, Phase::kDispatch) == Approx(a2a).margin(1e-6));
  }
  SECTION("a wait for a late peer is hidden while the GPU computes, like the transfer") {
    // GPU 0: a 6 us kernel, and beside it its member from t = 0. GPU 1: a 4 us kernel, then its
    // member. The all-to-all launches at 4 and ends at 4 + A. GPU 0 idles [0, 4] under its
    // kernel (all hidden) and moves [4, 4 + A], of which [4, 6] is under the kernel. GPU 1's
    // kernel ended before its member started: nothing hidden.
    Bench b;
    OpGraph g(2);
    const CollectiveIdx c = g.add_collective(all_to_all({0, 1}, Bytes(1'000'000)));
    g.add_kernel(fixed(0, Time::us(6)));
    g.add_member(0, Stream::kComm, c);
    const OpId k1 = g.add_kernel(fixed(1, Time::us(4)));
    g.add_member(1, Stream::kComm, c, std::vector<OpId>{k1});
    g.finish();
    const Execution x = b.executor.run(g);
    CHECK(phase_us(x, 0, Phase::kIdle) == Approx(4.0));
    CHECK(hidden_us(x, 0, Phase::kIdle) == Approx(4.0));
    CHECK(hidden_us(x, 0, Phase::kDispatch) == Approx(2.0));
    CHECK(phase_us(x, 0, Phase::kDispatch) - hidden_us(x, 0, Phase::kDispatch) ==
          Approx(a2a - 2.0).margin(1e-6));
    CHECK(hidden_us(x, 1, Phase::kIdle) == 0.0);
    CHECK(hidden_us(x, 1, Phase::kDispatch) == 0.0);
  }
}

TEST_CASE("the SM share must be a fraction below one", "[executor]") {
  Engine engine;
  const Topology topology = build_nvswitch_node({2, Bandwidth::gigabytes_per_s(100)});
  NetworkModel network(engine, topology);
  const GpuModel gpu(*find_gpu_preset("h100-sxm"));
  CHECK_THROWS_AS(CostModel(network, gpu, CostOptions{1.0}), std::invalid_argument);
  CHECK_THROWS_AS(CostModel(network, gpu, CostOptions{-0.1}), std::invalid_argument);
  CHECK(CostOptions{}.comm_sm_fraction == Approx(20.0 / 132.0));
}

}  // namespace
}  // namespace moesim
