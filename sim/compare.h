// Parallelism plans compared on candidate clusters: enumerate the TP x EP x DP plans that fit a
// model on a cluster, simulate each on the same global token batch, rank them, estimate memory.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "models/router/routing_decision.h"
#include "scenarios/scenario.h"
#include "sim/memory.h"
#include "sim/simulation.h"

namespace moesim {

// A cluster named on the command line: PRESET[:nodes=N][:nic=GBPS][:oversub=X][:gpu=GPU], e.g.
// "dgx-h100:nodes=4:nic=400" or "nvl72". nic is Gb/s per GPU; gpu a GPU preset, by default the
// preset's own GPU (NodePreset::default_gpu, topologies/presets.cpp). Throws
// std::invalid_argument naming the part that is wrong.
struct ClusterChoice {
  std::string label;  // the text as given
  ClusterSpec cluster;
  // The same cluster as a scenario's `cluster { ... }` block (without the braces), which
  // compare sets on the scenario (parse_scenario_edited) before validating and resolving it.
  std::string scenario_text;
};
ClusterChoice parse_cluster_choice(std::string_view text);

// The plans for `gpus` GPUs at pipeline size `pp`: every (tp, ep) with tp dividing both
// gpus_per_node and the attention heads, ep dividing the routed experts (1 for a dense model),
// tp*ep*pp dividing the
// GPUs, and dp = gpus / (tp*ep*pp); ordered by tp, then ep. Contiguous placement.
std::vector<ParallelPlan> enumerate_plans(const ModelSpec& model, int32_t gpus,
                                          int32_t gpus_per_node, int32_t pp);

// Same decisions whatever the plan. A global batch of `shards` x `shard_tokens` tokens per
// (MoE layer, micro-batch) is what `inner` returns for ranks 0..shards-1 of `shards` (each
// shard_tokens tokens), concatenated in rank order. A request for rank r of R ranks gets the
// global batch's tokens [r*G/R, (r+1)*G/R), G = shards*shard_tokens; with R == shards that is
// exactly inner's decision for rank r, passed straight through. With R != shards the global
// decision of a (layer, micro-batch) is routed once, cached, sliced, and dropped from the cache
// once its R slices are served. Drops (capacity) are those of the shards. Rows are padded to
// the widest shard's slots. Thread-safe when `inner` is.
class GlobalBatchSource final : public RoutingSource {
 public:
  GlobalBatchSource(RoutingSource& inner, int32_t shards, int32_t shard_tokens);
  ~GlobalBatchSource() override;

  int32_t experts() const override { return inner_.experts(); }
  int32_t top_k() const override { return inner_.top_k(); }
  bool thread_safe() const override { return inner_.thread_safe(); }
  // Throws std::invalid_argument for a request of a rank outside 0..ranks-1.
  void route(const RoutingRequest& request, RoutingDecision& out) override;
  // Global decisions routed so far (each counted once per fill of the cache).
  int64_t global_routings() const;

 private:
  struct Entry;
  std::shared_ptr<Entry> entry(int32_t layer, int64_t micro_batch);
  void fill(Entry& e, int32_t layer, int64_t micro_batch);

  RoutingSource& inner_;
  int32_t shards_;
  int32_t shard_tokens_;
  mutable std::mutex mutex_;
  std::map<std::pair<int32_t, int64_t>, std::shared_ptr<Entry>> cache_;
  int64_t global_routings_ = 0;
};

// One plan's outcome. Phase times are per GPU per step, averaged over GPUs and measured steps.
struct PlanOutcome {
  ParallelPlan plan;
  SimulationResult result;
  MemoryPerGpu memory;
  double step_p50_us = 0, step_p99_us = 0;
  double alltoall_us = 0;       // dispatch + combine
  double tp_collective_us = 0;  // tensor-parallel all-gather / reduce-scatter
  double compute_us = 0;        // attention, dense FFN, experts, optimizer
  double other_us = 0;          // pipeline transfers, data-parallel gradient reduction
  double idle_us = 0;           // waiting at collectives for slower peers
};

// One model on one cluster: its plans.
struct ClusterComparison {
  std::string label;  // the cluster's
  ClusterSpec cluster;
  ModelSpec model;                 // the scenario's, or the preset CompareOptions::models named
  int32_t tokens_per_gpu = 0;      // this cluster's share of the global batch
  std::vector<PlanOutcome> plans;  // fastest (step p50) first; ties keep enumeration order
};

struct CompareOptions {
  int32_t threads = 2;  // plans simulated at once
  // Model presets to compare on the same clusters and workload, each in place of the
  // scenario's model (parse_scenario_edited's "model" edit); empty: the scenario's own model.
  std::vector<std::string> models;
  // Called after each plan with (plans done, plans in all), one call at a time.
  std::function<void(int64_t, int64_t)> progress;
};

// Simulates every plan of every cluster (the scenario's own cluster when `clusters` is empty)
// for every model (options.models, or the scenario's own) on the workload and router of the
// scenario in `scenario_text` (read from `file_name`, for errors and relative paths). The result
// holds one entry per (model, cluster), models outer, in the order given. The global batch per
// micro-batch is the scenario's tokens_per_gpu times its data-holding ranks (GPUs / pp); a cluster
// with another GPU count gets tokens_per_gpu = global / (its GPUs / pp), which must divide. Each
// (cluster, plan) is the scenario edited as sweep points are (parse_scenario_edited: cluster, tp,
// ep with dp derived, placement, tokens_per_gpu), so it is validated as a scenario file would be;
// its other parallelism settings (pp, hot experts) stay. Results do not depend on threads. Throws
// std::invalid_argument, ScenarioError for the scenario, and std::runtime_error naming the
// cluster and plan (with the validation's message) for a plan the validation rejects (and the
// model, when options.models names several).
std::vector<ClusterComparison> compare_plans(std::string_view scenario_text,
                                             std::string_view file_name,
                                             std::span<const ClusterChoice> clusters,
                                             const CompareOptions& options = {});

}  // namespace moesim
