#include "sim/simulation.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <memory>
#include <numeric>
#include <optional>
#include <stdexcept>

#include "core/statistics.h"
#include "models/network/network_tier.h"
#include "models/router/blas_kernels.h"
#include "models/router/router.h"
#include "scenarios/topology_file.h"
#include "sim/exchange_load.h"
#include "sim/parallel.h"
#include "sim/pipeline_order.h"
#include "sim/schedule.h"
#include "topologies/presets.h"

namespace moesim {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double max_over_mean(const std::vector<int64_t>& counts) {
  if (counts.empty()) return 0.0;
  const double total = std::accumulate(counts.begin(), counts.end(), 0.0);
  if (total <= 0.0) return 0.0;
  const double mean = total / static_cast<double>(counts.size());
  return static_cast<double>(*std::max_element(counts.begin(), counts.end())) / mean;
}

// The mean as the reports' summaries compute it, so the headline equals their "mean".
double mean(const std::vector<double>& samples) {
  return samples.empty() ? 0.0 : SampleSet(samples).mean();
}

// Routes a step: every (micro-batch, MoE layer, replica) task asks the source for each of the
// replica's data-holding ranks and reduces the decisions to traffic. Tasks are numbered as the
// step plays them (micro-batch major, then layer, then replica) and run on a TaskStream, so
// the step can start on the first layers while later ones route.
// With router.reuse_across_micro_batches, every micro-batch's task takes micro-batch 0's
// decisions. The first micro-batch whose (layer, replica) runs on a given pipeline rank (its
// leader: micro-batch 0, or under DualPipe the first of the mirrored direction) asks the source
// for micro-batch 0's request and reduces the decisions onto that rank; every later micro-batch
// on the same rank copies its leader's traffic (it waits for that task, which was claimed
// before it, so some thread is running it). A step so routes once per pipeline direction.
class StepRouter {
 public:
  StepRouter(const Scenario& scenario, RoutingSource& source, const Topology& topology,
             const Placement& placement, DispatchAlgorithm algorithm, int32_t threads)
      : scenario_(scenario),
        source_(source),
        topology_(topology),
        placement_(placement),
        algorithm_(algorithm),
        thread_safe_(source.thread_safe()),
        threads_(std::max(1, threads)) {
    const ModelSpec& model = scenario.model;
    pipeline_.pp = scenario.parallel.pp;
    pipeline_.stages = scenario.parallel.pp * scenario.workload.virtual_pipeline_stages;
    const auto first = stage_first_layers(model.layers, pipeline_.stages);
    pipeline_.micro_batches = scenario.workload.micro_batches;
    pipeline_.bidirectional = scenario.workload.schedule == ScheduleKind::kDualPipe;
    for (int32_t layer : model.moe_layer_indices()) {
      int32_t stage = 0;
      while (first[stage + 1] <= layer) ++stage;
      moe_layer_stage_.push_back(stage);
    }
    // A source that is not thread safe is asked by one thread only, in task order: a
    // background thread when there are two threads (the caller only waits), else the caller.
    const int32_t workers = thread_safe_ ? threads_ : 1;
    scratch_.assign(static_cast<size_t>(workers) + 1, RoutingDecision{});
    reuse_ = scenario.router.reuse_across_micro_batches;
    if (reuse_ && !thread_safe_) {
      // A trace reader streams its records in order and cannot be asked for a batch twice.
      throw std::invalid_argument(
          "router.reuse_routing_across_micro_batches needs the router model; this routing "
          "source (a replayed trace) has its own micro-batches");
    }
  }

  // Every slot of a step, allocated and empty, for start() to fill.
  StepTraffic empty_traffic() const {
    const int32_t moe_layers = static_cast<int32_t>(moe_layer_stage_.size());
    StepTraffic traffic(static_cast<size_t>(scenario_.workload.micro_batches));
    for (auto& per_mb : traffic) {
      per_mb.assign(static_cast<size_t>(moe_layers), {});
      for (auto& per_layer : per_mb) per_layer.resize(static_cast<size_t>(scenario_.parallel.dp));
    }
    return traffic;
  }

  // Starts routing step `step` into `traffic`, which must outlive the stream. `threads`
  // threads route: threads - 1 in the background and the caller while it waits on a slot.
  std::unique_ptr<TaskStream> start(int32_t step, StepTraffic& traffic) {
    const ParallelPlan& plan = scenario_.parallel;
    const int32_t moe_layers = static_cast<int32_t>(moe_layer_stage_.size());
    const int64_t tasks = int64_t{scenario_.workload.micro_batches} * moe_layers * plan.dp;
    const int32_t background = thread_safe_ ? threads_ - 1 : (threads_ > 1 ? 1 : 0);
    const bool caller_helps = thread_safe_ || background == 0;
    const int64_t layer_tasks = int64_t{moe_layers} * plan.dp;
    // Per task, for reuse only: 1 once finished, 2 once failed (copies of a failed leader fail
    // too). Its own flags per step parity: a step starts routing while the previous one's
    // stream lives.
    auto& flags = task_done_[static_cast<size_t>(step % 2)];
    if (reuse_) flags = std::make_unique<std::atomic<uint8_t>[]>(static_cast<size_t>(tasks));
    return std::make_unique<TaskStream>(
        tasks, background, caller_helps,
        [this, step, moe_layers, layer_tasks, done = flags.get(), &traffic](int64_t t, int32_t w) {
          const auto mb = static_cast<int32_t>(t / layer_tasks);
          const auto layer = static_cast<int32_t>((t / scenario_.parallel.dp) % moe_layers);
          const auto d = static_cast<int32_t>(t % scenario_.parallel.dp);
          RoutingDecision& scratch = scratch_[static_cast<size_t>(w)];
          if (!reuse_) {
            traffic[mb][layer][d] = route_task(step, mb, mb, layer, d, scratch);
            return;
          }
          const int32_t leader = reuse_leader(mb, moe_layer_stage_[layer]);
          if (leader == mb) {
            try {
              traffic[mb][layer][d] = route_task(step, mb, 0, layer, d, scratch);
            } catch (...) {
              done[t].store(2);
              done[t].notify_all();
              throw;
            }
            done[t].store(1);
            done[t].notify_all();
            return;
          }
          std::atomic<uint8_t>& first = done[t - (mb - leader) * layer_tasks];
          first.wait(0);
          if (first.load() != 1) {
            throw std::runtime_error("micro-batch 0's routing, reused here, failed");
          }
          traffic[mb][layer][d] = traffic[leader][layer][d];
        });
  }

 private:
  // With reuse, the first micro-batch whose MoE layer of pipeline stage `stage` runs on the same
  // pipeline rank as micro-batch mb's: the one that routes, the others copy its traffic.
  int32_t reuse_leader(int32_t mb, int32_t stage) const {
    const int32_t rank = pipeline_.rank_of(mb, stage);
    int32_t leader = 0;
    while (pipeline_.rank_of(leader, stage) != rank) ++leader;
    return leader;
  }

  // Each rank's decisions are reduced to traffic as soon as they are routed, so a worker holds
  // one rank's decisions, not the layer's.
  // Micro-batch mb's traffic from the decisions of micro-batch routed_mb's request (mb itself
  // unless routing is reused).
  MoeLayerTraffic route_task(int32_t step, int32_t mb, int32_t routed_mb, int32_t layer, int32_t d,
                             RoutingDecision& decision) {
    const ParallelPlan& plan = scenario_.parallel;
    // The pipeline rank running the layer for this micro-batch (DualPipe's second direction
    // runs it on the mirror rank).
    const ReplicaLayout layout{&plan, &placement_, &topology_, d,
                               pipeline_.rank_of(mb, moe_layer_stage_[layer])};
    LayerTrafficBuilder traffic(layout, algorithm_);
    for (int32_t b = 0; b < plan.ep; ++b) {
      for (int32_t a = 0; a < plan.tp; ++a) {
        RoutingRequest request;
        request.layer = layer;
        request.micro_batch = int64_t{step} * scenario_.workload.micro_batches + routed_mb;
        request.rank = a + plan.tp * (b + plan.ep * d);
        request.ranks = plan.tp * plan.ep * plan.dp;
        request.tokens = scenario_.workload.computed_tokens_per_gpu();
        source_.route(request, decision);
        traffic.add(b, a, decision);
      }
    }
    return traffic.finish();
  }

  const Scenario& scenario_;
  RoutingSource& source_;
  const Topology& topology_;
  const Placement& placement_;
  DispatchAlgorithm algorithm_;
  bool thread_safe_;
  int32_t threads_;
  std::vector<int32_t> moe_layer_stage_;
  PipelineLayout pipeline_;               // where each micro-batch's stages run (no order)
  std::vector<RoutingDecision> scratch_;  // per worker of the stream
  bool reuse_ = false;                    // router.reuse_across_micro_batches
  // Per task of the step being routed, for reuse: whether a leader's traffic is ready.
  std::array<std::unique_ptr<std::atomic<uint8_t>[]>, 2> task_done_;
};

}  // namespace

Topology build_topology(const ClusterSpec& cluster) {
  if (cluster.from_file()) return load_topology_file(cluster.topology_file);
  ClusterOptions options;
  options.preset = cluster.topology_preset;
  options.nodes = cluster.nodes;
  options.nic_gbps = cluster.nic_gbps;
  options.oversubscription = cluster.oversubscription;
  options.routing = cluster.fabric_routing;
  options.spines = cluster.spines;
  return build_cluster(options);
}

std::string_view throughput_tokens(WorkloadKind kind) {
  switch (kind) {
    case WorkloadKind::kTraining:
      return "tokens trained";
    case WorkloadKind::kPrefill:
      return "input tokens, KV-cache hits included";
    case WorkloadKind::kDecode:
      return "output tokens";
  }
  return "tokens";
}

SimulationResult simulate(const Scenario& scenario, const SimulationOptions& options) {
  Router router(scenario.router);
  return simulate(scenario, router, options);
}

SimulationResult simulate(const Scenario& scenario, RoutingSource& source,
                          const SimulationOptions& options) {
  const ModelSpec& model = scenario.model;
  const ParallelPlan& plan = scenario.parallel;
  const Workload& workload = scenario.workload;
  if (source.experts() != model.routed_experts) {
    throw std::invalid_argument("the routing source has " + std::to_string(source.experts()) +
                                " experts, the model " + std::to_string(model.routed_experts));
  }
  const Topology topology = build_topology(scenario.cluster);
  const int32_t gpus = topology.gpu_count();
  const int32_t ep_ranks_per_node = std::max(1, topology.gpus_per_node() / plan.tp);
  const Placement placement(plan, model, ep_ranks_per_node);

  // An EP group that spans nodes dispatches through same-rail relays, as DeepEP's normal
  // kernels do; its low-latency kernels send one message per (token, expert) instead.
  const int32_t ep_group_gpus = plan.tp * plan.ep;
  const DispatchAlgorithm algorithm =
      scenario.cluster.low_latency_exchanges     ? DispatchAlgorithm::kPerExpert
      : ep_group_gpus > topology.gpus_per_node() ? DispatchAlgorithm::kHierarchical
                                                 : DispatchAlgorithm::kDirect;
  // One SM count for the exchanges' kernels and for what computation beside them loses.
  CostOptions cost = options.cost;
  if (scenario.cluster.comm_sms) {
    cost.comm_kernel.sms = *scenario.cluster.comm_sms;
    cost.comm_sm_fraction = cost.comm_kernel.sm_fraction();
  }

  Engine engine(scenario.seed);
  NetworkOptions network_options;
  network_options.completion_tolerance = scenario.cluster.completion_tolerance;
  const NetworkTier tier = choose_network_tier(scenario.cluster.network_tier, gpus,
                                               scenario.cluster.completion_tolerance);
  network_options.tier = tier;
  TieredNetwork tiered_network(engine, topology, network_options);
  FlowNetwork& network = tiered_network.get();
  const GpuModel gpu(scenario.cluster.gpu);
  StepSetup setup;
  setup.model = &model;
  setup.plan = &plan;
  setup.placement = &placement;
  setup.gpu = &gpu;
  setup.kind = workload.kind;
  setup.tokens_per_gpu = workload.computed_tokens_per_gpu();
  setup.sequence_length = workload.computed_sequence_length();
  setup.cached_prefix_tokens = workload.cached_prefix_tokens;
  setup.kv_context_length = workload.kv_context_length;
  setup.micro_batches = workload.micro_batches;
  setup.virtual_stages = workload.virtual_pipeline_stages;
  setup.options = workload.options;
  const std::unique_ptr<Schedule> schedule = make_schedule(workload.schedule);
  StepDriver driver(engine, network, setup, schedule.get(), cost);
  StepRouter step_router(scenario, source, topology, placement, algorithm, options.threads);
  auto* router = dynamic_cast<Router*>(&source);
  const bool update_bias = router != nullptr && scenario.router.selection_bias;

  SimulationResult r;
  r.blas_core = blas_core_name();
  r.scenario_name = scenario.name;
  r.gpus = gpus;
  r.dispatch_algorithm = algorithm;
  r.network_tier = tier;
  r.network_tier_by_default = !scenario.cluster.network_tier.has_value();
  r.routing_reused_across_micro_batches = scenario.router.reuse_across_micro_batches;
  r.gpu_phase_us.assign(static_cast<size_t>(gpus), {});
  r.gpu_hidden_us.assign(static_cast<size_t>(gpus), {});
  r.tokens_per_expert.assign(static_cast<size_t>(model.routed_experts), 0);
  r.tokens_per_expert_by_layer.assign(static_cast<size_t>(model.moe_layer_count()),
                                      std::vector<int64_t>(model.routed_experts, 0));
  r.gpu_tokens.assign(static_cast<size_t>(gpus), 0);
  if (options.keep_traffic_matrix) r.dispatch_matrix_bytes.assign(size_t(gpus) * gpus, 0);

  double idle_ps = 0.0;
  double busy_span_ps = 0.0;
  double exchange_bytes = 0.0;
  double exchange_nvlink = 0.0;
  double exchange_network = 0.0;
  double exchange_ps = 0.0;
  const int64_t dispatch_bytes = model.dispatch_bytes_per_token().count();
  // Step s routes into traffic[s % 2] on routing[s % 2]. Once a step is routed, the bias moves
  // by its loads and the next step starts routing, while this one still plays (with
  // overlap_routing), so routing always sees the previous step's bias and never overlaps a
  // bias update. The streams are declared after the traffic they write and go first.
  std::array<StepTraffic, 2> traffic;
  std::array<std::unique_ptr<TaskStream>, 2> routing;
  const int32_t moe_layers = model.moe_layer_count();
  auto start_routing = [&](int32_t step) {
    auto& slots = traffic[static_cast<size_t>(step % 2)];
    slots = step_router.empty_traffic();
    routing[static_cast<size_t>(step % 2)] = step_router.start(step, slots);
  };
  if (workload.steps > 0) start_routing(0);
  for (int32_t step = 0; step < workload.steps; ++step) {
    if (options.stop_requested != nullptr && options.stop_requested->load()) {
      r.partial = true;  // the next step's routing, if started, is abandoned with its stream
      break;
    }
    const StepTraffic& step_traffic = traffic[static_cast<size_t>(step % 2)];
    TaskStream& step_routing = *routing[static_cast<size_t>(step % 2)];
    bool routed = false;
    auto step_routed = [&] {
      routed = true;
      if (update_bias) {
        for (size_t layer = 0; layer < r.tokens_per_expert_by_layer.size(); ++layer) {
          std::vector<int32_t> load(static_cast<size_t>(model.routed_experts), 0);
          for (const auto& per_mb : step_traffic) {
            for (const MoeLayerTraffic& t : per_mb[layer]) {
              for (size_t e = 0; e < load.size(); ++e)
                load[e] += static_cast<int32_t>(t.tokens_per_expert[e]);
            }
          }
          router->update_bias(static_cast<int32_t>(layer), load);
        }
      }
      if (step + 1 < workload.steps) start_routing(step + 1);
    };
    if (!options.overlap_routing) step_routing.wait_all();
    StepProgress within_step;
    if (options.step_progress) {
      within_step = [&](int32_t finished, int32_t collectives) {
        options.step_progress(step, workload.steps, static_cast<double>(finished) / collectives);
      };
    }
    const auto t0 = std::chrono::steady_clock::now();
    const StepMeasurement m = driver.run_step(
        step_traffic,
        [&](int32_t mb, int32_t moe, int32_t d) {
          step_routing.wait(traffic_slot(mb, moe, d, moe_layers, plan.dp));
          if (!routed && options.overlap_routing && step_routing.finished()) step_routed();
        },
        within_step);
    r.simulation_wall_s += seconds_since(t0);
    // Every slot has been read, so every task has finished, but a failure elsewhere in the
    // step has not been reported yet.
    step_routing.wait_all();
    r.routing_wall_s +=
        std::chrono::duration<double>(step_routing.last_finish() - step_routing.started()).count();
    r.routing_wait_s += step_routing.waited_s();
    if (!routed) step_routed();
    r.steps_run = step + 1;
    if (options.progress) options.progress(step + 1, workload.steps);
    if (step < workload.warmup_steps) continue;

    ++r.measured_steps;
    r.step_time_us.push_back(m.step_time.to_us());
    for (Time t : m.dispatch) r.dispatch_us.push_back(t.to_us());
    for (Time t : m.combine) r.combine_us.push_back(t.to_us());
    for (Time t : m.expert_compute) r.expert_compute_us.push_back(t.to_us());
    for (Time t : m.attention) r.attention_us.push_back(t.to_us());
    for (int32_t g = 0; g < gpus; ++g) {
      for (int p = 0; p < kPhaseCount; ++p) {
        r.gpu_phase_us[g][p] += m.gpu_phase_time[g][p].to_us();
        r.gpu_hidden_us[g][p] += m.gpu_hidden_time[g][p].to_us();
      }
      idle_ps +=
          static_cast<double>(m.gpu_phase_time[g][static_cast<int>(Phase::kIdle)].count_ps());
      r.gpu_tokens[g] += m.gpu_expert_tokens[g];
    }
    busy_span_ps += static_cast<double>(m.step_time.count_ps()) * gpus;
    exchange_nvlink += static_cast<double>(m.exchange_bytes.nvlink);
    exchange_network += static_cast<double>(m.exchange_bytes.network);
    exchange_bytes += static_cast<double>(m.exchange_bytes.nvlink + m.exchange_bytes.network);
    exchange_ps += static_cast<double>(m.exchange_time.count_ps());
    size_t slot = 0;  // traffic_slot order, as m.stragglers
    for (const auto& per_mb : step_traffic) {
      for (size_t layer = 0; layer < per_mb.size(); ++layer) {
        for (const MoeLayerTraffic& t : per_mb[layer]) {
          r.routed_pairs += t.routed_pairs;
          r.dropped_pairs += t.dropped_pairs;
          const ExchangeStraggler& straggler = m.stragglers[slot++];
          if (const std::optional<ExchangeLoad> load = exchange_load(t)) {
            r.exchange_expert_max_over_mean.push_back(load->expert_max_over_mean);
            r.exchange_gpu_max_over_mean.push_back(load->gpu_max_over_mean);
            if (straggler.gpu >= 0) r.exchanges.push_back({step, *load, straggler});
          }
          for (size_t e = 0; e < t.tokens_per_expert.size(); ++e) {
            r.tokens_per_expert[e] += t.tokens_per_expert[e];
            r.tokens_per_expert_by_layer[layer][e] += t.tokens_per_expert[e];
          }
          if (!options.keep_traffic_matrix) continue;
          for (const auto* stage : {&t.stage1, &t.stage2}) {
            for (const TokenTransfer& x : *stage) {
              r.dispatch_matrix_bytes[size_t(x.src_gpu) * gpus + x.dst_gpu] +=
                  x.tokens * dispatch_bytes;
            }
          }
        }
      }
    }
  }
  if (r.measured_steps > 0) {
    for (auto* per_gpu : {&r.gpu_phase_us, &r.gpu_hidden_us}) {
      for (auto& phases : *per_gpu) {
        for (double& v : phases) v /= r.measured_steps;
      }
    }
  }
  r.idle_fraction = busy_span_ps > 0 ? idle_ps / busy_span_ps : 0.0;
  r.dropped_token_fraction = r.routed_pairs > 0 ? static_cast<double>(r.dropped_pairs) /
                                                      static_cast<double>(r.routed_pairs)
                                                : 0.0;
  r.expert_max_over_mean = mean(r.exchange_expert_max_over_mean);
  r.gpu_max_over_mean = mean(r.exchange_gpu_max_over_mean);
  r.expert_summed_over_layers_max_over_mean = max_over_mean(r.tokens_per_expert);
  // GPU load over the GPUs that hold routed experts (all of them under EP and TP alike).
  r.gpu_summed_over_step_max_over_mean = max_over_mean(r.gpu_tokens);
  if (exchange_ps > 0) {
    const double per_gpu_s = exchange_ps * 1e-12 * ep_group_gpus;
    r.alltoall_gbps_per_gpu = exchange_bytes / per_gpu_s * 1e-9;
    r.alltoall_nvlink_gbps_per_gpu = exchange_nvlink / per_gpu_s * 1e-9;
    r.alltoall_network_gbps_per_gpu = exchange_network / per_gpu_s * 1e-9;
  }
  if (!r.step_time_us.empty()) {
    const double mean_step_s = std::accumulate(r.step_time_us.begin(), r.step_time_us.end(), 0.0) /
                               r.step_time_us.size() * 1e-6;
    // DeepSeek's counting: tokens trained, input tokens prefilled (cache hits included: they
    // are tokens_per_gpu's), output tokens decoded (one per sequence).
    const double tokens_per_step =
        double(workload.tokens_per_gpu) * plan.tp * plan.ep * plan.dp * workload.micro_batches;
    r.tokens_per_s_per_gpu = tokens_per_step / mean_step_s / gpus;
    r.tokens_per_s_per_node = r.tokens_per_s_per_gpu * topology.gpus_per_node();
  }
  const NetworkStats& net = network.stats();
  r.work = {engine.events_run(), net.flows_started, net.recomputations, net.region_flows,
            net.rate_changes};
  return r;
}

}  // namespace moesim
