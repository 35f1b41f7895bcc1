// The exact network tier (NetworkModel) checked against an independent max-min solver: SimGrid's
// LMM (3.32, model CM02 reduced to pure max-min), on random flow sets over the same platform.
//
// SimGrid configuration (the 3.32 names, checked against libsimgrid's option table):
//   network/model:CM02  network/latency-factor:1  network/bandwidth-factor:1
//   network/weight-S:0  network/TCP-gamma:0  network/crosstraffic:0
//   surf/precision:1e-12 (seconds; 3.32 has no precision/work-amount)
//   maxmin/precision:1e-12 (the solver's precision on rates and saturation)
//   network/optim left at CM02's default, Lazy (Full gives the same agreement)
// SimGrid links get latency 0: with a latency CM02 weighs a flow's share by its path latency (a
// penalty of latency + weight-S terms once the latency has elapsed), which is not max-min, and it
// charges the latency before the first byte drains where moesim charges it after the last. So
// the convention is converted, not avoided: moesim's platform keeps its builders' latencies and
// each flow's drain end is its arrival less its path's latency (moesim adds the latency after the
// last byte leaves and it takes no part in sharing), compared with SimGrid's completion on the
// same links at latency 0. The staggered sets on the star have latency 0 on both sides, where the
// two agree with no conversion at all.
//
// Routes: every flow names its own ECMP hash, and gets its own pair of SimGrid hosts whose one
// route is exactly moesim's path for that hash (every link of it, including those moesim leaves
// out of its fill because they cannot constrain). So two flows of one GPU pair may take different
// spines, as in moesim, and SimGrid still sees the same links per flow.
//
// SimGrid's engine is once per process (a second s4u::Engine keeps the first's clock and refuses
// to set the network model), so every flow set runs SimGrid in a forked child, which sends back
// its completion times through a pipe.
#include <sys/wait.h>
#include <unistd.h>
#include <catch2/catch.hpp>
#include <simgrid/s4u.hpp>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/engine.h"
#include "core/random.h"
#include "core/units.h"
#include "models/network/network_model.h"
#include "tests/network/test_topologies.h"
#include "tests/simgrid/pure_maxmin_engine.h"
#include "topologies/builders.h"
#include "topologies/presets.h"

namespace moesim {
namespace {

struct FlowSpec {
  int src = 0;
  int dst = 0;
  int64_t bytes = 0;
  int64_t start_ps = 0;
  uint64_t ecmp_hash = 0;
};

// Random flows between distinct GPUs: 2-40 of them, sizes log-uniform in [1 KB, 100 MB], each
// with its own ECMP hash; all start at 0, or when `start_span_ps` > 0 at a uniform whole
// picosecond in [0, start_span_ps).
std::vector<FlowSpec> random_flow_set(RandomStream& rng, int gpus, int64_t start_span_ps) {
  std::vector<FlowSpec> flows(2 + rng.below(39));
  for (FlowSpec& f : flows) {
    f.src = static_cast<int>(rng.below(static_cast<uint64_t>(gpus)));
    f.dst = (f.src + 1 + static_cast<int>(rng.below(static_cast<uint64_t>(gpus - 1)))) % gpus;
    f.bytes = std::llround(1e3 * std::pow(1e5, rng.uniform01()));
    f.ecmp_hash = rng();
    if (start_span_ps > 0)
      f.start_ps = static_cast<int64_t>(rng.below(static_cast<uint64_t>(start_span_ps)));
  }
  return flows;
}

// moesim: when each flow's last byte left its source (arrival less the path latency), in ps.
class MoesimRun final : public EventHandler, public FlowObserver {
 public:
  MoesimRun(const Topology& topology, const std::vector<FlowSpec>& flows)
      : topology_(topology),
        flows_(flows),
        net_(engine_, topology),
        drain_end_ps_(flows.size(), -1) {}

  std::vector<int64_t> run() {
    for (size_t i = 0; i < flows_.size(); ++i)
      engine_.schedule_at(Time::ps(flows_[i].start_ps), *this, i);
    engine_.run();
    return drain_end_ps_;
  }

  void on_event(uint64_t i) override {
    const FlowSpec& f = flows_[i];
    net_.start_flow(f.src, f.dst, Bytes(f.bytes), this, static_cast<uint32_t>(i), f.ecmp_hash);
  }
  void on_flow_done(FlowId, uint32_t i) override {
    const FlowSpec& f = flows_[i];
    const Time latency = topology_.path_latency(topology_.path(f.src, f.dst, f.ecmp_hash));
    drain_end_ps_[i] = (engine_.now() - latency).count_ps();
  }

 private:
  const Topology& topology_;
  const std::vector<FlowSpec>& flows_;
  Engine engine_;
  NetworkModel net_;
  std::vector<int64_t> drain_end_ps_;
};

namespace sg4 = simgrid::s4u;

// SimGrid, in this (forked) process: each flow's completion, in seconds. Each moesim link used
// becomes a SimGrid link of the capacity NetworkModel gives it, Topology::effective_capacity.
std::vector<double> simgrid_completions_s(const Topology& topology,
                                          const std::vector<FlowSpec>& flows) {
  test::PureMaxMinArgs args("moesim-simgrid-oracle");
  sg4::Engine engine(args.argc(), args.argv());

  sg4::NetZone* zone = sg4::create_full_zone("moesim");
  std::vector<sg4::Link*> link_of(topology.links().size(), nullptr);
  std::vector<sg4::Host*> src_host(flows.size()), dst_host(flows.size());
  for (size_t i = 0; i < flows.size(); ++i) {
    const FlowSpec& f = flows[i];
    src_host[i] = zone->create_host("flow" + std::to_string(i) + ".src", 1e9);
    dst_host[i] = zone->create_host("flow" + std::to_string(i) + ".dst", 1e9);
    std::vector<sg4::LinkInRoute> route;
    for (const LinkId l : topology.path(f.src, f.dst, f.ecmp_hash)) {
      sg4::Link*& link = link_of[l.value];
      if (link == nullptr) {
        link = zone->create_link("link" + std::to_string(l.value),
                                 topology.effective_capacity(l).bytes_per_second())
                   ->set_latency(0.0)
                   ->seal();
      }
      route.emplace_back(link);
    }
    zone->add_route(src_host[i]->get_netpoint(), dst_host[i]->get_netpoint(), nullptr, nullptr,
                    route, /*symmetrical=*/false);
  }
  zone->seal();

  std::vector<double> done_s(flows.size(), -1.0);
  for (size_t i = 0; i < flows.size(); ++i) {
    sg4::Actor::create("flow" + std::to_string(i), src_host[i], [&, i] {
      const double start_s = static_cast<double>(flows[i].start_ps) * 1e-12;
      if (start_s > 0.0) sg4::this_actor::sleep_until(start_s);
      sg4::Comm::sendto(src_host[i], dst_host[i], static_cast<uint64_t>(flows[i].bytes));
      done_s[i] = sg4::Engine::get_clock();
    });
  }
  engine.run();
  return done_s;
}

// Runs simgrid_completions_s in a child process and returns what it wrote to the pipe.
std::vector<double> simgrid_in_child(const Topology& topology, const std::vector<FlowSpec>& flows) {
  int fds[2];
  if (pipe(fds) != 0) throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    close(fds[0]);
    int status = 0;
    try {
      const std::vector<double> done = simgrid_completions_s(topology, flows);
      const auto* p = reinterpret_cast<const char*>(done.data());
      size_t left = done.size() * sizeof(double);
      while (left > 0) {
        const ssize_t n = write(fds[1], p, left);
        if (n <= 0) {
          status = 3;
          break;
        }
        p += n;
        left -= static_cast<size_t>(n);
      }
    } catch (const std::exception& e) {
      std::fprintf(stderr, "simgrid child: %s\n", e.what());
      status = 2;
    }
    close(fds[1]);
    _exit(status);  // no atexit handlers: they belong to the parent (Catch2)
  }
  close(fds[1]);
  std::vector<double> done(flows.size(), -1.0);
  auto* p = reinterpret_cast<char*>(done.data());
  size_t got = 0;
  const size_t want = done.size() * sizeof(double);
  while (got < want) {
    const ssize_t n = read(fds[0], p + got, want - got);
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || got != want) {
    throw std::runtime_error("the SimGrid child failed (status " + std::to_string(status) + ", " +
                             std::to_string(got) + " of " + std::to_string(want) + " bytes)");
  }
  return done;
}

struct Agreement {
  size_t flows = 0;
  double max_relative = 0.0;  // |moesim - simgrid| / simgrid
  double max_abs_ps = 0.0;
  // The error left after the picosecond allowance, relative: 0 when every difference is rounding.
  double max_relative_beyond_rounding = 0.0;
};

// Compares every flow of `sets` random sets. Tolerance per flow: 1e-9 of SimGrid's time plus 1 ps
// per rate change before it. moesim rounds each drain instant up to a whole picosecond, so every
// instant at which rates change (a start or a drain) may come up to 1 ps late, and each such delay
// moves a later drain by about as much; SimGrid keeps double seconds.
Agreement compare_sets(const Topology& topology, uint64_t seed, int sets, int64_t start_span_ps) {
  RandomStream rng(seed, "simgrid-oracle");
  Agreement agreement;
  for (int s = 0; s < sets; ++s) {
    const std::vector<FlowSpec> flows = random_flow_set(rng, topology.gpu_count(), start_span_ps);
    const std::vector<int64_t> moesim_ps = MoesimRun(topology, flows).run();
    const std::vector<double> simgrid_s = simgrid_in_child(topology, flows);
    std::vector<double> instants_ps;  // every rate change, in SimGrid's time
    for (size_t i = 0; i < flows.size(); ++i) {
      instants_ps.push_back(static_cast<double>(flows[i].start_ps));
      instants_ps.push_back(simgrid_s[i] * 1e12);
    }
    std::sort(instants_ps.begin(), instants_ps.end());
    instants_ps.erase(std::unique(instants_ps.begin(), instants_ps.end()), instants_ps.end());
    for (size_t i = 0; i < flows.size(); ++i) {
      const double expected_ps = simgrid_s[i] * 1e12;
      const double got_ps = static_cast<double>(moesim_ps[i]);
      const double error_ps = std::abs(got_ps - expected_ps);
      const auto changes_before = static_cast<double>(
          std::lower_bound(instants_ps.begin(), instants_ps.end(), expected_ps) -
          instants_ps.begin());
      const double rounding_ps = 1.0 * (changes_before + 1.0);
      const double tolerance_ps = 1e-9 * expected_ps + rounding_ps;
      INFO("set " << s << " flow " << i << ": " << flows[i].src << " -> " << flows[i].dst << ", "
                  << flows[i].bytes << " B from " << flows[i].start_ps << " ps; moesim "
                  << moesim_ps[i] << " ps, SimGrid " << expected_ps << " ps, tolerance "
                  << tolerance_ps << " ps");
      REQUIRE(moesim_ps[i] >= 0);
      REQUIRE(simgrid_s[i] > 0.0);
      CHECK(error_ps <= tolerance_ps);
      agreement.max_relative = std::max(agreement.max_relative, error_ps / expected_ps);
      agreement.max_abs_ps = std::max(agreement.max_abs_ps, error_ps);
      agreement.max_relative_beyond_rounding =
          std::max(agreement.max_relative_beyond_rounding,
                   std::max(0.0, error_ps - rounding_ps) / expected_ps);
      ++agreement.flows;
    }
  }
  return agreement;
}

void report(const char* what, const Agreement& a) {
  std::printf(
      "simgrid oracle, %s: %zu flows, max relative error %.3g, max |error| %.3g ps, max relative "
      "error beyond the ps rounding %.3g\n",
      what, a.flows, a.max_relative, a.max_abs_ps, a.max_relative_beyond_rounding);
}

// A flat switch from the presets: one 8-GPU H100 node, every GPU on the NVSwitch by NVLink at
// 450 GB/s x efficiency 0.80, 250 ns per link.
TEST_CASE("flat NVSwitch node agrees with SimGrid, all flows at t=0", "[simgrid]") {
  const Topology topology = build_cluster({.preset = "dgx-h100", .nodes = 1});
  const Agreement a = compare_sets(topology, 1, 20, 0);
  report("dgx-h100 node, t=0", a);
  CHECK(a.flows >= 2 * 20);
}

// A plain two-tier fat-tree of radix 4: 4 leaves of 2 GPUs, 2 spines, every link 100 Gb/s;
// cross-leaf flows pick a spine by their hash.
TEST_CASE("two-tier fat-tree with ECMP agrees with SimGrid, all flows at t=0", "[simgrid]") {
  const Topology topology = build_fat_tree({.tiers = 2, .radix = 4, .link = Bandwidth::gbps(100)});
  REQUIRE(topology.ecmp_width(0, 7) == 2);  // several paths: the per-flow routes matter
  const Agreement a = compare_sets(topology, 2, 20, 0);
  report("fat-tree k=4, t=0", a);
  CHECK(a.flows >= 2 * 20);
}

// Two H100 nodes on a rail fat-tree with 2 spines: NVLink, PCIe and network links with their
// three efficiencies, cross-rail paths over either spine, and PCIe links that moesim leaves out of
// its fill (they sit behind a slower NIC) where SimGrid keeps them.
TEST_CASE("rail fat-tree of two H100 nodes agrees with SimGrid, all flows at t=0", "[simgrid]") {
  const Topology topology = build_cluster(
      {.preset = "dgx-h100", .nodes = 2, .routing = FabricRouting::kEcmp, .spines = 2});
  REQUIRE(topology.ecmp_width(0, 9) == 2);
  const Agreement a = compare_sets(topology, 3, 20, 0);
  report("2 x dgx-h100 rail fat-tree, t=0", a);
  CHECK(a.flows >= 2 * 20);
}

// Flows starting at different instants: on a star of unequal GPU links at latency 0 (where the
// two conventions coincide), and on the fat-tree with its latencies (converted).
TEST_CASE("staggered starts agree with SimGrid", "[simgrid]") {
  const Topology star =
      test::star({Bandwidth::gigabytes_per_s(50), Bandwidth::gigabytes_per_s(100),
                  Bandwidth::gigabytes_per_s(150), Bandwidth::gigabytes_per_s(200),
                  Bandwidth::gigabytes_per_s(300), Bandwidth::gigabytes_per_s(450)},
                 Time::zero());
  const Agreement on_star = compare_sets(star, 4, 15, Time::ms(1).count_ps());
  report("star at latency 0, staggered", on_star);
  const Topology fat_tree = build_fat_tree({.tiers = 2, .radix = 4, .link = Bandwidth::gbps(100)});
  const Agreement on_fat_tree = compare_sets(fat_tree, 5, 15, Time::ms(1).count_ps());
  report("fat-tree k=4, staggered", on_fat_tree);
  CHECK(on_star.flows + on_fat_tree.flows >= 2 * 30);
}

}  // namespace
}  // namespace moesim
