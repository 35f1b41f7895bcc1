#include "sim/compare.h"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <exception>
#include <iomanip>
#include <numeric>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "core/statistics.h"
#include "models/moe/model_spec.h"
#include "models/router/router.h"
#include "sim/parallel.h"
#include "sim/sweep.h"
#include "topologies/presets.h"

namespace moesim {
namespace {

template <typename T>
T parse_value(std::string_view text, std::string_view part, std::string_view whole) {
  T v{};
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || ptr != text.data() + text.size() || !(v > T{0})) {
    throw std::invalid_argument("--cluster '" + std::string(whole) + "': " + std::string(part) +
                                "='" + std::string(text) + "': expected a positive number");
  }
  return v;
}

double mean_over_gpus(const SimulationResult& r, std::initializer_list<Phase> phases) {
  if (r.gpu_phase_us.empty()) return 0.0;
  double sum = 0.0;
  for (const auto& g : r.gpu_phase_us) {
    for (Phase p : phases) sum += g[static_cast<int>(p)];
  }
  return sum / static_cast<double>(r.gpu_phase_us.size());
}

}  // namespace

ClusterChoice parse_cluster_choice(std::string_view text) {
  ClusterChoice choice;
  choice.label = std::string(text);
  std::vector<std::string_view> parts;
  for (size_t start = 0;;) {
    const size_t colon = text.find(':', start);
    parts.push_back(text.substr(start, colon == std::string_view::npos ? colon : colon - start));
    if (colon == std::string_view::npos) break;
    start = colon + 1;
  }
  ClusterSpec& c = choice.cluster;
  c.topology_preset = std::string(parts[0]);
  std::string gpu_name(find_preset(c.topology_preset).default_gpu);  // throws for an unknown one
  std::optional<std::string_view> nic_text;
  std::optional<std::string_view> oversub_text;
  for (size_t i = 1; i < parts.size(); ++i) {
    const size_t eq = parts[i].find('=');
    const std::string_view key = parts[i].substr(0, eq);
    const std::string_view value =
        eq == std::string_view::npos ? std::string_view() : parts[i].substr(eq + 1);
    if (eq == std::string_view::npos || value.empty()) {
      throw std::invalid_argument("--cluster '" + choice.label + "': '" + std::string(parts[i]) +
                                  "': expected key=value (nodes, nic, oversub or gpu)");
    }
    if (key == "nodes") {
      c.nodes = parse_value<int32_t>(value, key, text);
    } else if (key == "nic") {
      c.nic_gbps = parse_value<double>(value, key, text);
      nic_text = value;
    } else if (key == "oversub") {
      c.oversubscription = parse_value<double>(value, key, text);
      oversub_text = value;
      if (c.oversubscription < 1.0) {
        throw std::invalid_argument("--cluster '" + choice.label + "': oversub must be >= 1");
      }
    } else if (key == "gpu") {
      gpu_name = std::string(value);
    } else {
      throw std::invalid_argument("--cluster '" + choice.label + "': unknown key '" +
                                  std::string(key) + "' (expected nodes, nic, oversub or gpu)");
    }
  }
  if (gpu_name.empty()) {
    throw std::invalid_argument("--cluster '" + choice.label + "': no default GPU for topology " +
                                c.topology_preset + "; add :gpu=NAME");
  }
  const GpuSpec* gpu = find_gpu_preset(gpu_name);
  if (!gpu) {
    throw std::invalid_argument("--cluster '" + choice.label + "': unknown GPU preset '" +
                                gpu_name + "'");
  }
  c.gpu = *gpu;
  choice.scenario_text = "topology: \"" + c.topology_preset +
                         "\" nodes: " + std::to_string(c.nodes) + " gpu { preset: \"" + gpu_name +
                         "\" }";
  if (nic_text) choice.scenario_text += " nic_bandwidth: \"" + std::string(*nic_text) + "Gbps\"";
  if (oversub_text) {
    choice.scenario_text += " oversubscription: " + std::string(*oversub_text);
  }
  const Topology topology = build_topology(c);
  c.gpu_count = topology.gpu_count();
  c.gpus_per_node = topology.gpus_per_node();
  return choice;
}

std::vector<ParallelPlan> enumerate_plans(const ModelSpec& model, int32_t gpus,
                                          int32_t gpus_per_node, int32_t pp) {
  std::vector<ParallelPlan> plans;
  for (int32_t tp = 1; tp <= gpus_per_node; ++tp) {
    if (gpus_per_node % tp != 0 || model.attention_heads % tp != 0) continue;
    for (int32_t ep = 1; ep <= std::max(1, model.routed_experts); ++ep) {  // dense: ep 1
      if (model.routed_experts % ep != 0) continue;
      const int64_t group = int64_t{tp} * ep * pp;
      if (group > gpus || gpus % group != 0) continue;
      ParallelPlan p;
      p.tp = tp;
      p.ep = ep;
      p.pp = pp;
      p.dp = static_cast<int32_t>(gpus / group);
      plans.push_back(p);
    }
  }
  return plans;
}

// ---- GlobalBatchSource ----

struct GlobalBatchSource::Entry {
  std::once_flag once;
  RoutingDecision global;
  std::atomic<int32_t> served{0};
};

GlobalBatchSource::GlobalBatchSource(RoutingSource& inner, int32_t shards, int32_t shard_tokens)
    : inner_(inner), shards_(shards), shard_tokens_(shard_tokens) {
  if (shards < 1 || shard_tokens < 0) {
    throw std::invalid_argument("GlobalBatchSource: shards must be >= 1, shard tokens >= 0");
  }
}

GlobalBatchSource::~GlobalBatchSource() = default;

int64_t GlobalBatchSource::global_routings() const {
  const std::lock_guard lock(mutex_);
  return global_routings_;
}

std::shared_ptr<GlobalBatchSource::Entry> GlobalBatchSource::entry(int32_t layer,
                                                                   int64_t micro_batch) {
  const std::lock_guard lock(mutex_);
  auto& slot = cache_[{layer, micro_batch}];
  if (!slot) slot = std::make_shared<Entry>();
  return slot;
}

void GlobalBatchSource::fill(Entry& e, int32_t layer, int64_t micro_batch) {
  std::vector<RoutingDecision> parts(static_cast<size_t>(shards_));
  int32_t width = 0;
  for (int32_t s = 0; s < shards_; ++s) {
    RoutingRequest q;
    q.layer = layer;
    q.micro_batch = micro_batch;
    q.rank = s;
    q.ranks = shards_;
    q.tokens = shard_tokens_;
    inner_.route(q, parts[s]);
    if (parts[s].counts_only) {
      throw std::invalid_argument("GlobalBatchSource: count-only decisions cannot be sliced");
    }
    width = std::max(width, parts[s].slots_per_token);
  }
  int32_t tokens = 0;
  for (const RoutingDecision& d : parts) tokens += d.tokens;
  RoutingDecision& g = e.global;
  g.reset(tokens, inner_.experts(), width);
  const bool weights = std::all_of(parts.begin(), parts.end(),
                                   [](const RoutingDecision& d) { return !d.weights.empty(); });
  if (!weights) g.weights.clear();
  int32_t row = 0;
  for (const RoutingDecision& d : parts) {
    for (int32_t t = 0; t < d.tokens; ++t, ++row) {
      for (int32_t k = 0; k < d.slots_per_token; ++k) {
        const size_t from = static_cast<size_t>(t) * d.slots_per_token + k;
        const size_t to = static_cast<size_t>(row) * width + k;
        g.expert_ids[to] = d.expert_ids[from];
        if (weights) g.weights[to] = d.weights[from];
        g.dropped[to] = d.dropped.empty() ? 0 : d.dropped[from];
      }
    }
  }
  const std::lock_guard lock(mutex_);
  ++global_routings_;
}

void GlobalBatchSource::route(const RoutingRequest& request, RoutingDecision& out) {
  if (request.ranks < 1 || request.rank < 0 || request.rank >= request.ranks) {
    throw std::invalid_argument("GlobalBatchSource: rank " + std::to_string(request.rank) + " of " +
                                std::to_string(request.ranks));
  }
  if (request.ranks == shards_) {
    RoutingRequest q = request;
    q.tokens = shard_tokens_;
    inner_.route(q, out);
    return;
  }
  const std::shared_ptr<Entry> e = entry(request.layer, request.micro_batch);
  std::call_once(e->once, [&] { fill(*e, request.layer, request.micro_batch); });
  const RoutingDecision& g = e->global;
  const int64_t first = int64_t{request.rank} * g.tokens / request.ranks;
  const int64_t last = int64_t{request.rank + 1} * g.tokens / request.ranks;
  const int32_t width = g.slots_per_token;
  out.reset(static_cast<int32_t>(last - first), g.experts, width);
  const size_t begin = static_cast<size_t>(first) * width;
  const size_t end = static_cast<size_t>(last) * width;
  std::copy(g.expert_ids.begin() + begin, g.expert_ids.begin() + end, out.expert_ids.begin());
  if (g.weights.empty()) {
    out.weights.clear();
  } else {
    std::copy(g.weights.begin() + begin, g.weights.begin() + end, out.weights.begin());
  }
  std::copy(g.dropped.begin() + begin, g.dropped.begin() + end, out.dropped.begin());
  for (size_t i = 0; i < out.expert_ids.size(); ++i) {
    if (out.expert_ids[i] == kNoExpert) continue;
    if (out.dropped[i]) {
      ++out.dropped_pairs;
    } else {
      ++out.tokens_per_expert[out.expert_ids[i]];
    }
  }
  if (++e->served == request.ranks) {
    const std::lock_guard lock(mutex_);
    cache_.erase({request.layer, request.micro_batch});
  }
}

// ---- compare_plans ----

std::vector<ClusterComparison> compare_plans(std::string_view scenario_text,
                                             std::string_view file_name,
                                             std::span<const ClusterChoice> clusters,
                                             const CompareOptions& options) {
  const Scenario scenario = parse_scenario(scenario_text, file_name);
  const int32_t pp = scenario.parallel.pp;
  const int32_t base_ranks = scenario.cluster.gpu_count / pp;
  const int32_t shard_tokens = scenario.workload.tokens_per_gpu;
  const int64_t global_tokens = int64_t{base_ranks} * shard_tokens;
  std::vector<ClusterChoice> choices(clusters.begin(), clusters.end());
  if (choices.empty()) {
    ClusterChoice own;
    own.label = scenario.cluster.from_file() ? scenario.cluster.topology_file.filename().string()
                                             : scenario.cluster.topology_preset;
    if (!scenario.cluster.from_file() && scenario.cluster.nodes > 1) {
      own.label += ":nodes=" + std::to_string(scenario.cluster.nodes);
    }
    own.cluster = scenario.cluster;
    choices.push_back(own);
  }

  // Each model resolved once on the scenario (at TP1 EP1, so that the scenario's own plan need
  // not suit it), for its plans and name; the plans below are validated one by one.
  struct ModelChoice {
    std::string preset;  // empty: the scenario's own model, unedited
    ModelSpec model;
  };
  std::vector<ModelChoice> models;
  if (options.models.empty()) {
    models.push_back({std::string(), scenario.model});
  } else {
    for (const std::string& name : options.models) {
      if (find_model_preset(name) == nullptr) {
        throw std::invalid_argument("unknown model preset '" + name + "'");
      }
      const std::pair<std::string, std::string> edits[] = {
          {"model", name}, {"tp", "1"}, {"ep", "1"}};
      models.push_back({name, parse_scenario_edited(scenario_text, file_name, edits).model});
    }
  }
  const bool several_models = models.size() > 1;

  std::vector<ClusterComparison> out(models.size() * choices.size());
  struct Job {
    size_t cluster;  // index into out
    size_t plan;
  };
  std::vector<Job> jobs;
  for (size_t i = 0; i < out.size(); ++i) {
    const size_t c = i % choices.size();
    const ModelChoice& mc = models[i / choices.size()];
    ClusterComparison& cc = out[i];
    cc.label = choices[c].label;
    cc.cluster = choices[c].cluster;
    cc.model = mc.model;
    const int32_t gpus = cc.cluster.gpu_count;
    if (gpus % pp != 0) {
      throw std::invalid_argument("cluster " + cc.label + ": its " + std::to_string(gpus) +
                                  " GPUs do not divide into the scenario's pp " +
                                  std::to_string(pp) + " stages");
    }
    const int32_t ranks = gpus / pp;
    if (global_tokens % ranks != 0) {
      throw std::invalid_argument("cluster " + cc.label + ": the global batch of " +
                                  std::to_string(global_tokens) +
                                  " tokens per micro-batch does not divide over its " +
                                  std::to_string(ranks) + " data-holding ranks (GPUs / pp)");
    }
    cc.tokens_per_gpu = static_cast<int32_t>(global_tokens / ranks);
    if (ranks != base_ranks && scenario.router.selection_bias) {
      throw std::invalid_argument(
          "cluster " + cc.label +
          ": auxiliary-free bias balancing needs every cluster to have the scenario's GPU count "
          "(the bias moves with the router, which a re-sliced global batch hides)");
    }
    for (const ParallelPlan& p : enumerate_plans(cc.model, gpus, cc.cluster.gpus_per_node, pp)) {
      PlanOutcome o;
      o.plan = p;
      o.plan.placement = scenario.parallel.placement == PlacementKind::kRoundRobin
                             ? PlacementKind::kRoundRobin
                             : PlacementKind::kContiguous;
      cc.plans.push_back(o);
      jobs.push_back({i, cc.plans.size() - 1});
    }
    if (cc.plans.empty()) {
      throw std::invalid_argument((several_models ? "model " + cc.model.name + ", " : "") +
                                  "cluster " + cc.label + ": no plan fits " + std::to_string(gpus) +
                                  " GPUs");
    }
  }

  std::atomic<int64_t> done{0};
  std::mutex progress_mutex;
  parallel_for(static_cast<int64_t>(jobs.size()), options.threads, [&](int64_t j, int32_t) {
    ClusterComparison& cc = out[jobs[j].cluster];
    const ClusterChoice& choice = choices[jobs[j].cluster % choices.size()];
    const std::string& preset = models[jobs[j].cluster / choices.size()].preset;
    PlanOutcome& o = cc.plans[jobs[j].plan];
    try {
      std::vector<std::pair<std::string, std::string>> edits = {
          {"name", scenario.name + (preset.empty() ? "" : " " + preset) + " " + cc.label + " " +
                       plan_label(o.plan)}};
      if (!preset.empty()) edits.emplace_back("model", preset);
      if (!choice.scenario_text.empty()) edits.emplace_back("cluster", choice.scenario_text);
      edits.emplace_back("tp", std::to_string(o.plan.tp));
      edits.emplace_back("ep", std::to_string(o.plan.ep));  // dp: the GPUs tp*ep*pp leave
      edits.emplace_back("placement", o.plan.placement == PlacementKind::kRoundRobin
                                          ? "ROUND_ROBIN"
                                          : "CONTIGUOUS");
      edits.emplace_back("tokens_per_gpu", std::to_string(cc.tokens_per_gpu));
      // The global batch keeps its sequences when it is sliced over another GPU count (and the
      // router its token model), so the sequence length stays the scenario's, not the share's.
      if (scenario.workload.kind != WorkloadKind::kDecode) {
        edits.emplace_back("sequence_length", std::to_string(scenario.workload.sequence_length));
      }
      const Scenario s = parse_scenario_edited(scenario_text, file_name, edits);
      o.plan = s.parallel;
      SimulationOptions sim;
      sim.threads = 1;
      Router router(s.router);
      if (cc.cluster.gpu_count / pp == base_ranks) {
        o.result = simulate(s, router, sim);
      } else {
        GlobalBatchSource global(router, base_ranks, shard_tokens);
        o.result = simulate(s, global, sim);
      }
      const SampleSet steps(o.result.step_time_us);
      o.step_p50_us = steps.p50();
      o.step_p99_us = steps.p99();
      o.alltoall_us = mean_over_gpus(o.result, {Phase::kDispatch, Phase::kCombine});
      o.tp_collective_us = mean_over_gpus(o.result, {Phase::kTpCollective});
      o.compute_us = mean_over_gpus(o.result, {Phase::kAttention, Phase::kDenseFfn,
                                               Phase::kExpertCompute, Phase::kOptimizer});
      o.other_us = mean_over_gpus(o.result, {Phase::kPipeline, Phase::kGradientSync});
      o.idle_us = mean_over_gpus(o.result, {Phase::kIdle});
      o.memory = memory_per_gpu(s);
    } catch (const std::exception& e) {
      throw std::runtime_error((several_models ? "model " + cc.model.name + ", " : "") +
                               "cluster " + cc.label + ", plan " + plan_label(o.plan) + ": " +
                               e.what());
    }
    if (options.progress) {
      const std::lock_guard lock(progress_mutex);
      options.progress(++done, static_cast<int64_t>(jobs.size()));
    }
  });
  for (ClusterComparison& cc : out) {
    std::stable_sort(
        cc.plans.begin(), cc.plans.end(),
        [](const PlanOutcome& a, const PlanOutcome& b) { return a.step_p50_us < b.step_p50_us; });
  }
  return out;
}

}  // namespace moesim
