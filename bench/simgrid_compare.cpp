// moesim's network tiers (exact and fast) against SimGrid 3.32 (LMM, CM02 in pure max-min mode, as
// in tests/simgrid) on the same Zipf-sized all-to-all over one flat switch: wall time and peak
// memory.
//
// Each simulation runs in a forked child, so that its peak resident memory is its own (the
// child's ru_maxrss less that of a child that simulates nothing) and SimGrid's once-per-process
// engine starts fresh. The child times platform building plus the run and sends back that time
// and the simulated makespan (both tiers must agree on it: SimGrid at latency 0, moesim plus its
// 2 x 250 ns path latency). A SimGrid or exact-tier child that has used kCapSeconds of CPU
// time is killed and the case reported as an error with that bound (at 1,024 GPUs neither
// finishes); CPU, not wall time, so that the bound holds on a loaded machine. The
// time is wall time (a noisy figure on a shared machine); child_cpu_s is the child's CPU time, both
// including building the platform.
#include <benchmark/benchmark.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <simgrid/s4u.hpp>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "bench/zipf_sizes.h"
#include "core/engine.h"
#include "models/network/network_tier.h"
#include "tests/simgrid/pure_maxmin_engine.h"
#include "topologies/builders.h"

namespace moesim {
namespace {

constexpr double kCapSeconds = 60.0;  // CPU seconds

Topology flat_switch(int gpus) {
  return build_nvswitch_node({.gpus = gpus, .nvlink_per_gpu = Bandwidth::gigabytes_per_s(450)});
}

struct ChildResult {
  double wall_s = 0.0;
  double makespan_s = 0.0;
};

using Clock = std::chrono::steady_clock;

ChildResult run_moesim_tier(int gpus, NetworkTier tier) {
  const auto t0 = Clock::now();
  const Topology topology = flat_switch(gpus);
  const std::vector<int64_t> sizes = bench::zipf_sizes(gpus, 1);
  Engine engine;
  NetworkOptions options;
  options.tier = tier;
  TieredNetwork tiered(engine, topology, options);
  FlowNetwork& net = tiered.get();
  for (int i = 0; i < gpus; ++i)
    for (int j = 0; j < gpus; ++j)
      if (i != j) net.start_flow(i, j, Bytes(sizes[static_cast<size_t>(i) * gpus + j]), nullptr);
  engine.run();
  return {std::chrono::duration<double>(Clock::now() - t0).count(), engine.now().to_us() * 1e-6};
}
ChildResult run_moesim(int gpus) {
  return run_moesim_tier(gpus, NetworkTier::kExact);
}
ChildResult run_moesim_fast(int gpus) {
  return run_moesim_tier(gpus, NetworkTier::kFast);
}

// One host per GPU, each with an up and a down link of the GPU's NVLink capacity (as moesim
// gives it: Topology::effective_capacity) and latency 0; the route i -> j is i's up link then j's
// down link. One actor per source GPU starts its gpus - 1 sends at once and waits for them all.
ChildResult run_simgrid(int gpus) {
  namespace sg4 = simgrid::s4u;
  const auto t0 = Clock::now();
  const Topology topology = flat_switch(gpus);
  const std::vector<int64_t> sizes = bench::zipf_sizes(gpus, 1);
  test::PureMaxMinArgs args("bench-simgrid");
  sg4::Engine engine(args.argc(), args.argv());
  sg4::NetZone* zone = sg4::create_full_zone("switch");
  std::vector<sg4::Host*> hosts;
  std::vector<sg4::Link*> up, down;
  for (int g = 0; g < gpus; ++g) {
    const auto path = topology.path(g, (g + 1) % gpus, 0);  // g -> switch, switch -> g + 1
    const double up_bps = topology.effective_capacity(path[0]).bytes_per_second();
    const double down_bps =
        topology.effective_capacity(topology.reverse(path[0])).bytes_per_second();
    hosts.push_back(zone->create_host("gpu" + std::to_string(g), 1e9));
    up.push_back(zone->create_link("up" + std::to_string(g), up_bps)->set_latency(0.0)->seal());
    down.push_back(
        zone->create_link("down" + std::to_string(g), down_bps)->set_latency(0.0)->seal());
  }
  for (int i = 0; i < gpus; ++i)
    for (int j = 0; j < gpus; ++j)
      if (i != j)
        zone->add_route(hosts[i]->get_netpoint(), hosts[j]->get_netpoint(), nullptr, nullptr,
                        {sg4::LinkInRoute(up[i]), sg4::LinkInRoute(down[j])}, false);
  zone->seal();
  for (int i = 0; i < gpus; ++i) {
    sg4::Actor::create("src" + std::to_string(i), hosts[i], [&, i] {
      std::vector<sg4::CommPtr> comms;
      for (int j = 0; j < gpus; ++j)
        if (j != i)
          comms.push_back(sg4::Comm::sendto_async(
              hosts[i], hosts[j], static_cast<uint64_t>(sizes[static_cast<size_t>(i) * gpus + j])));
      sg4::Comm::wait_all(comms);
    });
  }
  engine.run();
  return {std::chrono::duration<double>(Clock::now() - t0).count(), sg4::Engine::get_clock()};
}

struct Outcome {
  bool finished = false;
  ChildResult result;
  double max_rss_mib = 0.0;
  double cpu_s = 0.0;  // the child's user + system time: less swayed by other loads than wall
};

// A running child's user + system time so far, from /proc (0 if it cannot be read).
double child_cpu_seconds(pid_t pid) {
  std::FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/stat").c_str(), "r");
  if (f == nullptr) return 0.0;
  char line[1024] = {};
  const size_t n = std::fread(line, 1, sizeof line - 1, f);
  std::fclose(f);
  line[n] = '\0';
  // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
  const char* p = std::strrchr(line, ')');
  if (p == nullptr) return 0.0;
  unsigned long utime = 0, stime = 0;
  if (std::sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) !=
      2) {
    return 0.0;
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

double cpu_seconds(const rusage& usage) {
  auto seconds = [](timeval t) { return static_cast<double>(t.tv_sec) + 1e-6 * t.tv_usec; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

// Runs `work` in a child; kills it after cap_s seconds (cap_s <= 0: no cap).
template <typename Work>
Outcome in_child(Work work, double cap_s) {
  int fds[2];
  if (pipe(fds) != 0) return {};
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid < 0) return {};
  if (pid == 0) {
    close(fds[0]);
    const ChildResult r = work();
    const bool ok = write(fds[1], &r, sizeof r) == static_cast<ssize_t>(sizeof r);
    _exit(ok ? 0 : 1);
  }
  close(fds[1]);
  int status = 0;
  rusage usage{};
  Outcome out;
  for (;;) {
    const pid_t done = wait4(pid, &status, WNOHANG, &usage);
    if (done == pid) break;
    if (cap_s > 0.0 && child_cpu_seconds(pid) > cap_s) {
      kill(pid, SIGKILL);
      wait4(pid, &status, 0, &usage);
      close(fds[0]);
      out.cpu_s = cpu_seconds(usage);  // what it had run: a lower bound on a loaded machine too
      return out;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  out.finished =
      WIFEXITED(status) && WEXITSTATUS(status) == 0 &&
      read(fds[0], &out.result, sizeof out.result) == static_cast<ssize_t>(sizeof out.result);
  close(fds[0]);
  out.max_rss_mib = static_cast<double>(usage.ru_maxrss) / 1024.0;  // KiB on Linux
  out.cpu_s = cpu_seconds(usage);
  return out;
}

double idle_child_rss_mib() {
  static const double rss = in_child([] { return ChildResult{}; }, 0.0).max_rss_mib;
  return rss;
}

template <typename Work>
void time_in_child(benchmark::State& state, Work work, double cap_s) {
  const int gpus = static_cast<int>(state.range(0));
  Outcome out;
  for (auto _ : state) {
    out = in_child([&] { return work(gpus); }, cap_s);
    if (!out.finished) {
      state.SkipWithError(
          ("not finished within " + std::to_string(out.cpu_s) + " s of CPU time").c_str());
      return;
    }
    state.SetIterationTime(out.result.wall_s);
  }
  state.counters["gpus"] = gpus;
  state.counters["flows"] = static_cast<double>(gpus) * (gpus - 1);
  state.counters["makespan_us"] = out.result.makespan_s * 1e6;
  state.counters["child_cpu_s"] = out.cpu_s;
  state.counters["peak_rss_MiB"] = out.max_rss_mib - idle_child_rss_mib();
}

void BM_Moesim(benchmark::State& state) {
  time_in_child(state, run_moesim, kCapSeconds);
}
// The fast tier on the same flows (its makespan within the error suite's bounds of the
// exact one, bench/README.md "Network tiers").
void BM_MoesimFast(benchmark::State& state) {
  time_in_child(state, run_moesim_fast, 0.0);
}
void BM_SimGrid(benchmark::State& state) {
  time_in_child(state, run_simgrid, kCapSeconds);
}

BENCHMARK(BM_Moesim)->Arg(16)->Arg(64)->Arg(256)->Arg(1024)->Iterations(1)->UseManualTime()->Unit(
    benchmark::kMillisecond);
BENCHMARK(BM_MoesimFast)
    ->Arg(16)
    ->Arg(64)
    ->Arg(256)
    ->Arg(1024)
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_SimGrid)
    ->Arg(16)
    ->Arg(64)
    ->Arg(256)
    ->Arg(1024)
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace moesim

BENCHMARK_MAIN();
