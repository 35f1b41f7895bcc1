// Routing beside the simulation (issue #5): a step played while its later layers still route
// gives exactly what routing the whole step first gives, and routing errors surface as before.
#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "models/router/router.h"
#include "scenarios/scenario.h"
#include "sim/parallel.h"
#include "sim/simulation.h"
#include "tests/scratch_dir.h"

namespace moesim {
namespace {

// One folder per test process: CTest runs the test cases as parallel processes, and a shared
// folder let one truncate the topology file while another loaded it ("topology: no GPUs").
std::filesystem::path switch_topology_file(int gpus) {
  static const test::ScratchDir dir("overlap_test");
  const auto path = dir / ("switch" + std::to_string(gpus) + ".pbtxt");
  std::ofstream(path) << "gpus_per_node: " << gpus << "\n"
                      << "flat_switch { name: \"sw\" switch_kind: NVSWITCH gpus: " << gpus
                      << " bandwidth: \"200GB/s\" latency: \"500ns\" link_kind: NVLINK }\n";
  return path;
}

// Eight GPUs as EP4 x DP2, five layers (one dense, four MoE), two micro-batches, three
// training steps with auxiliary-free bias balancing, so each step routes with the bias the
// previous step's loads gave.
Scenario multi_layer_scenario() {
  std::ostringstream s;
  s << "name: \"overlap\"\n"
    << "model { layers: 5 dense_layers: 1 hidden_size: 512 attention_heads: 4 kv_heads: 4 "
       "head_dim: 128 expert_ffn_size: 256 dense_ffn_size: 1024 routed_experts: 16 "
       "shared_experts: 0 top_k: 2 vocab_size: 64 }\n"
    << "cluster { topology_file: \"" << switch_topology_file(8).string()
    << "\" gpu { preset: \"h100-sxm\" } }\n"
    << "parallelism { ep: 4 dp: 2 }\n"
    << "workload { kind: TRAINING tokens_per_gpu: 128 sequence_length: 128 micro_batches: 2 "
       "steps: 3 warmup_steps: 0 }\n"
    << "router { capacity_factor: 1.0 zipf_exponent: 1.3 aux_free_bias: true bias_gamma: 0.05 }\n"
    << "seed: 11\n";
  return parse_scenario(s.str(), "overlap.pbtxt");
}

void check_same(const SimulationResult& a, const SimulationResult& b) {
  CHECK(a.step_time_us == b.step_time_us);
  CHECK(a.dispatch_us == b.dispatch_us);
  CHECK(a.combine_us == b.combine_us);
  CHECK(a.expert_compute_us == b.expert_compute_us);
  CHECK(a.attention_us == b.attention_us);
  CHECK(a.gpu_phase_us == b.gpu_phase_us);
  CHECK(a.tokens_per_expert_by_layer == b.tokens_per_expert_by_layer);
  CHECK(a.gpu_tokens == b.gpu_tokens);
  CHECK(a.dropped_pairs == b.dropped_pairs);
  CHECK(a.alltoall_gbps_per_gpu == b.alltoall_gbps_per_gpu);
}

// Passes requests to a router; optionally slows layers down, fails one request, records the
// order of requests, or claims not to be thread safe.
class WrappedRouter final : public RoutingSource {
 public:
  explicit WrappedRouter(const Scenario& scenario) : router_(scenario.router) {}
  int32_t experts() const override { return router_.experts(); }
  int32_t top_k() const override { return router_.top_k(); }
  bool thread_safe() const override { return thread_safe_; }
  void route(const RoutingRequest& request, RoutingDecision& out) override {
    const auto key = std::make_tuple(request.micro_batch, request.layer, request.rank);
    if (record_) {
      std::lock_guard lock(mutex_);
      order_.push_back(key);
    }
    if (request.layer > 0) {
      const auto delay = delay_per_later_layer_ * request.layer;
      std::this_thread::sleep_for(delay);
      slept_us_ += delay.count();
    }
    for (const auto& [failing, message] : failures_) {
      if (key == failing) throw std::runtime_error(message);
    }
    router_.route(request, out);
  }

  bool thread_safe_ = true;
  bool record_ = false;
  std::chrono::microseconds delay_per_later_layer_{0};
  std::vector<std::pair<std::tuple<int64_t, int32_t, int32_t>, std::string>> failures_;
  std::vector<std::tuple<int64_t, int32_t, int32_t>> order_;
  std::atomic<int64_t> slept_us_{0};  // summed over the requests, whichever thread ran them

 private:
  Router router_;
  std::mutex mutex_;
};

TEST_CASE("a step played while it routes equals the step routed first", "[step][overlap]") {
  const Scenario scenario = multi_layer_scenario();
  SimulationOptions first;
  first.threads = 1;
  first.overlap_routing = false;
  const SimulationResult reference = simulate(scenario, first);
  REQUIRE(reference.step_time_us.size() == 3);
  REQUIRE(reference.dispatch_us.size() == 3 * 2 * 4 * 2);  // steps x mbs x MoE layers x DP
  // The bias moved between steps: the layers' loads differ from an unbiased run's.
  Scenario unbiased = scenario;
  unbiased.router.selection_bias = false;
  CHECK(simulate(unbiased, first).tokens_per_expert_by_layer !=
        reference.tokens_per_expert_by_layer);

  for (const int threads : {1, 2, 3}) {
    for (const bool overlap : {true, false}) {
      INFO("threads " << threads << ", overlap " << overlap);
      SimulationOptions options;
      options.threads = threads;
      options.overlap_routing = overlap;
      check_same(simulate(scenario, options), reference);
    }
  }
}

TEST_CASE("a slow router makes the step wait for its layers, not change", "[step][overlap]") {
  Scenario scenario = multi_layer_scenario();
  scenario.workload.steps = 1;
  SimulationOptions options;
  options.threads = 2;
  options.overlap_routing = false;
  WrappedRouter fast(scenario);
  const SimulationResult reference = simulate(scenario, fast, options);
  // Later layers route up to 0.6 ms per rank slower, so the simulation catches up with
  // routing and blocks on slots that are still being routed.
  WrappedRouter slow(scenario);
  slow.delay_per_later_layer_ = std::chrono::microseconds(200);
  options.overlap_routing = true;
  const SimulationResult r = simulate(scenario, slow, options);
  check_same(r, reference);
  CHECK(r.routing_wait_s > 0.0);
  // At most two threads route (the background one and the waiting simulation), so the
  // routing span holds at least half the sleeps. (Routing starts before the step's clock, so
  // no order between the routing and simulation spans is guaranteed.)
  REQUIRE(slow.slept_us_ > 0);
  CHECK(r.routing_wall_s >= 0.5e-6 * static_cast<double>(slow.slept_us_.load()));
}

TEST_CASE("a source that is not thread safe is asked in order, on one thread at a time",
          "[step][overlap]") {
  Scenario scenario = multi_layer_scenario();
  scenario.workload.steps = 2;  // the second step routes while the first plays
  WrappedRouter in_order(scenario);
  in_order.thread_safe_ = false;
  in_order.record_ = true;
  SimulationOptions options;
  options.threads = 2;  // one routing thread in the background, the simulation waits
  const SimulationResult r = simulate(scenario, in_order, options);
  // 2 steps x 2 micro-batches x 4 MoE layers x 8 ranks, in (step's micro-batch, layer, rank)
  // order.
  REQUIRE(in_order.order_.size() == 2 * 2 * 4 * 8);
  CHECK(std::is_sorted(in_order.order_.begin(), in_order.order_.end()));
  WrappedRouter reference_source(scenario);
  options.threads = 1;
  options.overlap_routing = false;
  check_same(r, simulate(scenario, reference_source, options));
}

TEST_CASE("a routing error in a later layer surfaces, the lowest task's first", "[step][overlap]") {
  Scenario scenario = multi_layer_scenario();
  scenario.workload.steps = 2;
  for (const int threads : {1, 2, 3}) {
    for (const bool overlap : {true, false}) {
      INFO("threads " << threads << ", overlap " << overlap);
      SimulationOptions options;
      options.threads = threads;
      options.overlap_routing = overlap;
      WrappedRouter failing(scenario);
      // Micro-batch 0, MoE layer 2, rank 1 (task 4) fails, and so does micro-batch 1, layer 1,
      // rank 4 (task 11): the lower task's error surfaces.
      failing.failures_ = {{{0, 2, 1}, "layer 2 broke"}, {{1, 1, 4}, "micro-batch 1 broke"}};
      CHECK_THROWS_WITH(simulate(scenario, failing, options), "layer 2 broke");
      // Only the later failure: it surfaces in the second step, after the first played.
      WrappedRouter late(scenario);
      late.failures_ = {{{3, 2, 1}, "step 1 broke"}};
      int32_t steps_done = 0;
      options.progress = [&](int32_t done, int32_t) { steps_done = done; };
      CHECK_THROWS_WITH(simulate(scenario, late, options), "step 1 broke");
      CHECK(steps_done == 1);
    }
  }
}

TEST_CASE("TaskStream: a task is available before later ones finish", "[step][overlap]") {
  std::mutex mutex;
  std::condition_variable cv;
  bool released = false;
  std::atomic<bool> task1_done{false};
  std::vector<int> results(4, 0);
  std::vector<int32_t> workers(4, -1);
  {
    TaskStream stream(4, 1, false, [&](int64_t i, int32_t worker) {
      workers[static_cast<size_t>(i)] = worker;
      if (i > 0) {
        // Held until the test has had task 0; if wait(0) waited for every task, the hold
        // times out and task 1 is done too early.
        std::unique_lock lock(mutex);
        cv.wait_for(lock, std::chrono::seconds(5), [&] { return released; });
      }
      results[static_cast<size_t>(i)] = static_cast<int>(i) * 10 + 1;
      if (i == 1) task1_done = true;
    });
    stream.wait(0);
    CHECK(results[0] == 1);
    CHECK_FALSE(task1_done.load());
    {
      std::lock_guard lock(mutex);
      released = true;
    }
    cv.notify_all();
    stream.wait_all();
  }
  CHECK(results == std::vector<int>{1, 11, 21, 31});
  // The caller did not help: only the background thread ran tasks.
  CHECK(workers == std::vector<int32_t>{1, 1, 1, 1});
}

TEST_CASE("TaskStream: the lowest failing task's error, whatever fails first in time",
          "[step][overlap]") {
  for (const int background : {0, 1, 2, 3}) {
    INFO(background << " background threads");
    std::atomic<int> ran{0};
    TaskStream stream(12, background, true, [&](int64_t i, int32_t) {
      ++ran;
      if (i == 3) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        throw std::runtime_error("task 3");
      }
      if (i == 4) throw std::runtime_error("task 4");
    });
    // Task 4 fails at once, task 3 20 ms later: the lower one is reported. (A wait on a
    // task above both may return first, if it finished before either failed.)
    CHECK_THROWS_WITH(stream.wait(4), "task 3");
    CHECK_THROWS_WITH(stream.wait(11), "task 3");
    CHECK_THROWS_WITH(stream.wait_all(), "task 3");
    CHECK(ran.load() >= 4);  // every task below the lowest failure ran
  }
  // No task is claimed after a failure: on the caller alone, the first failure ends the run.
  std::atomic<int> ran{0};
  TaskStream serial(12, 0, false, [&](int64_t i, int32_t) {
    ++ran;
    if (i == 2) throw std::runtime_error("task 2");
  });
  CHECK_THROWS_WITH(serial.wait(5), "task 2");
  CHECK_THROWS_WITH(serial.wait_all(), "task 2");
  CHECK(ran.load() == 3);
  TaskStream empty(0, 2, true, [](int64_t, int32_t) {});
  CHECK_NOTHROW(empty.wait_all());
  CHECK_THROWS_AS(empty.wait(0), std::out_of_range);
}

}  // namespace
}  // namespace moesim
