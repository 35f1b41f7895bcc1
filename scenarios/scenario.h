// A scenario file (scenarios/scenario.proto, text format) loaded, validated and resolved into
// plain structs: presets expanded, defaults applied, unit strings parsed, paths made absolute.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "models/gpu/gpu_spec.h"
#include "models/moe/expert_cache.h"
#include "models/moe/model_spec.h"
#include "models/moe/parallel_plan.h"
#include "models/network/flow_network.h"
#include "models/router/router_spec.h"
#include "topologies/presets.h"

namespace moesim {

// Bad scenario input. what() is "file:line:column: field: what was expected" where the line is
// known (syntax errors and fields the user set), else "file: field: ...".
class ScenarioError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The cluster: a topology preset with its options, or a topology file; and the GPU type.
struct ClusterSpec {
  // Set for a preset; the fields of topologies' ClusterOptions.
  std::string topology_preset;
  int32_t nodes = 1;
  std::optional<double> nic_gbps;  // nullopt: the preset's own NIC rate
  double oversubscription = 1.0;
  // Set (absolute) for a topology file; topology_preset is then empty.
  std::filesystem::path topology_file;
  // GPUs in the cluster (nodes * the preset's GPUs per node, or the file's GPU count).
  int32_t gpu_count = 0;
  int32_t gpus_per_node = 0;
  GpuSpec gpu;
  // The network model's NetworkOptions::completion_tolerance: 0 is exact max-min.
  double completion_tolerance = 0.0;
  // The requested network tier; nullopt: the default for the GPU count (choose_network_tier).
  std::optional<NetworkTier> network_tier;
  // With a preset: ClusterOptions' routing and spines.
  FabricRouting fabric_routing = kDefaultFabricRouting;
  int32_t spines = 0;
  // The MoE exchanges' communication kernels (sim/cost_model.h, CostOptions::comm_kernel): their
  // SMs (nullopt: kDefaultCommSms, or what the caller's cost options say) and DeepEP mode.
  std::optional<int32_t> comm_sms;
  bool low_latency_exchanges = false;

  bool from_file() const { return !topology_file.empty(); }
};

enum class WorkloadKind : uint8_t { kTraining, kPrefill, kDecode };
// "training", "prefill" or "decode", for reports.
std::string_view workload_kind_name(WorkloadKind kind);

// The step's schedule (sim/schedule.h makes one of each); proto Workload.Schedule documents them.
enum class ScheduleKind : uint8_t { kOneFOneB, kTwoBatchOverlap, kOneFOneBEpOverlap, kDualPipe };
// "1f1b", "two_batch_overlap", "1f1b_ep_overlap", "dualpipe": for reports.
std::string_view schedule_name(ScheduleKind kind);

// Activation recomputation, Megatron-LM's --recompute-granularity (Korthikanti et al. 2022,
// "Reducing Activation Recomputation in Large Transformer Models", sections 4.1-4.2).
enum class Recomputation : uint8_t {
  kNone,
  // Megatron's selective: the core attention (QK^T, softmax, attention over V) is run again in
  // the backward pass instead of keeping its internals. The memory model already assumes flash
  // attention, which keeps none of them (no score matrix), so it saves no memory here and costs
  // one more forward of the attention kernel per layer and micro-batch.
  kSelective,
  // Megatron's full (--recompute-method uniform --recompute-num-layers 1): only each layer's
  // input is kept; the backward pass runs the layer's whole forward again first, its
  // tensor-parallel collectives and MoE exchanges included, then its backward.
  kFull,
};
// "none", "selective", "full".
std::string_view recomputation_name(Recomputation r);

// How a step runs its arithmetic and keeps its training state. Every default is the step as it
// ran before these options existed, so a scenario that sets none of them is unchanged.
struct StepOptions {
  // Training: ZeRO-1 / Megatron's distributed optimizer (--use-distributed-optimizer; Rajbhandari
  // et al. 2020, "ZeRO", stage 1). The FP32 master weights and Adam moments are sharded over the
  // data-parallel ranks that hold a parameter (dense: the dp * ep ranks of a (tp, pp) position;
  // routed experts: the dp ranks of an EP rank); gradients are reduce-scattered instead of
  // all-reduced, each rank updates its shard, and the BF16 parameters are all-gathered.
  bool distributed_optimizer = false;
  Recomputation recomputation = Recomputation::kNone;
  // Precision of the routed experts' grouped GEMMs and of the dense GEMMs (attention
  // projections, dense FFNs, shared experts). nullopt: the model's weights dtype. The attention
  // kernel, router gate and LM head keep the weights dtype (DeepSeek-V3 report 3.3: embedding,
  // output head, gating and attention operators stay in higher precision under FP8 training).
  std::optional<Dtype> expert_gemm_dtype;
  std::optional<Dtype> dense_gemm_dtype;
  // Training: the backward pass's dispatch-way exchange (the gradients of the expert outputs,
  // sent to the experts' GPUs) in the model's dispatch format, as DeepSeek-V3 sends them (report
  // 3.3.3: the activation gradient before the MoE down-projection is quantised to FP8, while
  // both combines stay in BF16). false: in the combine format, as every backward exchange.
  bool gradients_in_dispatch_format = false;
  // Training: the data-parallel gradient reduction overlaps the backward (Megatron-Core's
  // DistributedDataParallelConfig.overlap_grad_reduce, --overlap-grad-reduce; PyTorch DDP's
  // gradient buckets, Li et al. 2020, "PyTorch Distributed", section 3.2.3): each layer's
  // gradients (one bucket per layer) are reduced, all-reduced or with the distributed optimizer
  // reduce-scattered, as soon as the GPU's last backward of that layer produced them, on a
  // communication stream of their own, while the backward goes on. false: one reduction after
  // the last backward, as before.
  bool overlap_grad_reduce = false;
};

struct Workload {
  WorkloadKind kind = WorkloadKind::kTraining;
  ScheduleKind schedule = ScheduleKind::kOneFOneB;
  int32_t tokens_per_gpu = 0;  // per micro-batch; decode: sequences, one new token each
  int32_t sequence_length = 0;
  int32_t micro_batches = 1;
  int32_t steps = 1;
  int32_t warmup_steps = 0;       // the first steps, excluded from statistics
  int32_t kv_context_length = 0;  // decode only
  // Model stages per pipeline rank (Megatron-LM's virtual pipeline stages): above 1, 1F1B runs
  // interleaved, rank r holding stages r, r + pp, ... of pp x virtual_pipeline_stages.
  int32_t virtual_pipeline_stages = 1;
  StepOptions options;
  // Prefill only: the share of input tokens found in the KV cache (proto Workload
  // prefix_cache_hit_rate), as a cached prefix of cached_prefix_tokens =
  // round(rate * sequence_length) tokens per sequence, which are not recomputed. 0 otherwise.
  double prefix_cache_hit_rate = 0.0;
  int32_t cached_prefix_tokens = 0;

  // Tokens a GPU computes per micro-batch: tokens_per_gpu less every sequence's cached prefix.
  int32_t computed_tokens_per_gpu() const {
    if (cached_prefix_tokens == 0) return tokens_per_gpu;
    return tokens_per_gpu - tokens_per_gpu / sequence_length * cached_prefix_tokens;
  }
  // Tokens per sequence that are computed (its tokens after the cached prefix).
  int32_t computed_sequence_length() const { return sequence_length - cached_prefix_tokens; }
};

// One sweep axis, names and values validated (every value resolves to a valid scenario).
struct SweepAxis {
  std::string name;
  std::vector<std::string> values;
};

struct Scenario {
  std::string name;
  std::string description;
  std::filesystem::path source_file;  // as given to load/parse
  ModelSpec model;
  ClusterSpec cluster;
  ParallelPlan parallel;
  Workload workload;
  // Complete for the router: experts, top-k, MoE layers and groups from the model, the token
  // model's hidden size and sequence length from the model and workload, seed from `seed`.
  RouterSpec router;
  uint64_t seed = 1;
  std::vector<SweepAxis> sweep;
  // Set by an `offload` block: `moesim run` then decodes with offloaded experts (sim/offload.h).
  std::optional<OffloadConfig> offload;
};

// Reads and resolves a scenario file; throws ScenarioError.
Scenario load_scenario(const std::filesystem::path& file);
// Resolves scenario text; relative paths resolve against file_name_for_errors's folder.
Scenario parse_scenario(std::string_view text, std::string_view file_name_for_errors);

// The sweep axis names accepted in `sweep { name: ... }`.
std::span<const std::string_view> sweep_axis_names();

// The scenario of one sweep point: `text` with each (axis name, value) applied in order, then
// resolved. Throws ScenarioError naming the axis and value when a point is invalid.
Scenario parse_scenario_at(std::string_view text, std::string_view file_name_for_errors,
                           std::span<const std::pair<std::string, std::string>> axis_values);

// The one way a command changes a scenario (sweep points, compare's clusters and plans): `text`
// with each (field, value) set on the scenario message in order, its sweep dropped, then
// validated and resolved as a file would be. Fields: the sweep axes (sweep_axis_names(); "ep"
// also sets dp to the GPUs that tp*ep*pp leave, "topology" replaces a topology_file, "gpu" the
// gpu block) and name, sequence_length, tp, placement (CONTIGUOUS or ROUND_ROBIN; drops
// expert_ep_rank), cluster (a whole `cluster { ... }` block's text, replacing the scenario's)
// and model (a model preset's name, replacing the model block; drops hot_experts, replicas and
// an explicit placement, which name the old model's experts).
// Throws ScenarioError with the validation's message (no line numbers once anything is edited).
Scenario parse_scenario_edited(std::string_view text, std::string_view file_name_for_errors,
                               std::span<const std::pair<std::string, std::string>> edits);

}  // namespace moesim
