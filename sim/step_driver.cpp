#include "sim/step_driver.h"

#include <algorithm>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>

namespace moesim {
namespace {

OpGraph lay_out(const FlowNetwork& network, const StepSetup& setup, const Schedule* schedule) {
  const auto world = static_cast<int32_t>(setup.plan->world_size());
  if (world != network.topology().gpu_count()) {
    throw std::invalid_argument("StepDriver: the plan has " + std::to_string(world) +
                                " GPUs, the topology " +
                                std::to_string(network.topology().gpu_count()));
  }
  if (setup.plan->pp > setup.model->layers) {
    throw std::invalid_argument("StepDriver: more pipeline stages than layers");
  }
  return schedule != nullptr ? schedule->build(setup) : OneFOneBSchedule().build(setup);
}

}  // namespace

StepDriver::StepDriver(Engine& engine, FlowNetwork& network, const StepSetup& setup,
                       const Schedule* schedule, CostOptions cost)
    : setup_(setup),
      graph_(lay_out(network, setup, schedule)),
      cost_(network, setup, cost),
      executor_(engine, cost_) {
  const int32_t moe_layers = setup_.model->moe_layer_count();
  const int32_t dp = setup_.plan->dp;
  forward_exchanges_.assign(static_cast<size_t>(setup_.micro_batches) * moe_layers * dp,
                            {kNone, kNone});
  for (CollectiveIdx c = 0; c < graph_.collective_count(); ++c) {
    const Collective& x = graph_.collective(c);
    const bool dispatch = x.kind == CollectiveKind::kMoeDispatch;
    if (x.backward || (!dispatch && x.kind != CollectiveKind::kMoeCombine)) continue;
    const auto slot = traffic_slot(x.micro_batch, x.moe_layer, x.dp_rank, moe_layers, dp);
    forward_exchanges_[static_cast<size_t>(slot)][dispatch ? 0 : 1] = c;
  }
}

StepDriver::~StepDriver() = default;

StepMeasurement StepDriver::run_step(const StepTraffic& traffic, const AwaitTrafficSlot& await_slot,
                                     const StepProgress& progress) {
  cost_.bind(&traffic, &await_slot);
  Execution x = executor_.run(graph_, progress);

  StepMeasurement m;
  m.step_time = x.end - x.start;
  m.gpu_phase_time = std::move(x.gpu_phase_time);
  m.gpu_hidden_time = std::move(x.gpu_hidden_time);
  m.gpu_expert_tokens.assign(static_cast<size_t>(graph_.gpus()), 0);
  // The slowest GPU's forward attention and expert FFN per (micro-batch, layer).
  const int32_t layers = setup_.model->layers;
  const size_t slots = static_cast<size_t>(setup_.micro_batches) * layers;
  std::vector<Time> attention_max(slots, Time::zero()), expert_max(slots, Time::zero());
  // Attention split in two kernels (decode's two-batch overlap): a GPU's layer attention is
  // their sum, keyed by (slot, GPU).
  std::map<std::pair<size_t, int32_t>, Time> split_attention;
  for (OpId id = 0; id < graph_.op_count(); ++id) {
    const Op& op = graph_.op(id);
    if (!op.is_kernel || op.backward || op.layer < 0) continue;
    const bool attention = op.phase == Phase::kAttention;
    const bool expert = op.phase == Phase::kExpertCompute;
    if (!attention && !expert) continue;
    const size_t slot = static_cast<size_t>(op.micro_batch) * layers + op.layer;
    Time took = x.op_end[static_cast<size_t>(id)] - x.op_start[static_cast<size_t>(id)];
    if (op.kernel == KernelKind::kAttentionProjections || op.kernel == KernelKind::kAttentionCore) {
      took = split_attention[{slot, op.gpu}] += took;
    }
    Time& max = attention ? attention_max[slot] : expert_max[slot];
    max = std::max(max, took);
    if (expert) {
      const MoeLayerTraffic& t = cost_.slot(op.micro_batch, cost_.moe_index_of_layer(op.layer),
                                            cost_.dp_rank_of_gpu(op.gpu));
      for (int32_t n : t.tokens_per_local_expert[static_cast<size_t>(op.gpu)]) {
        m.gpu_expert_tokens[static_cast<size_t>(op.gpu)] += n;
      }
    }
  }
  for (size_t i = 0; i < slots; ++i) {
    if (attention_max[i] > Time::zero()) m.attention.push_back(attention_max[i]);
    if (expert_max[i] > Time::zero()) m.expert_compute.push_back(expert_max[i]);
  }
  for (CollectiveIdx index : x.finish_order) {
    const Collective& c = graph_.collective(index);
    if (c.kind != CollectiveKind::kMoeDispatch && c.kind != CollectiveKind::kMoeCombine) continue;
    const Time took = x.collective_finish[static_cast<size_t>(index)] -
                      x.collective_launch[static_cast<size_t>(index)];
    m.exchange_time += took;
    ++m.exchanges;
    if (!c.backward)
      (c.kind == CollectiveKind::kMoeDispatch ? m.dispatch : m.combine).push_back(took);
  }
  m.exchange_bytes = cost_.exchange_bytes();
  m.stragglers.reserve(forward_exchanges_.size());
  for (const auto& [dispatch, combine] : forward_exchanges_) {
    if (dispatch == kNone && combine == kNone) {  // no all-to-all in the plan (EP 1)
      m.stragglers.emplace_back();
      continue;
    }
    if (dispatch == kNone || combine == kNone) {
      throw std::logic_error("StepDriver: the schedule left a forward exchange without its " +
                             std::string(dispatch == kNone ? "dispatch" : "combine"));
    }
    const Collective& c = graph_.collective(combine);
    m.stragglers.push_back(exchange_straggler(graph_, x, dispatch, combine,
                                              cost_.slot(c.micro_batch, c.moe_layer, c.dp_rank),
                                              *setup_.placement, setup_.plan->tp));
  }
  cost_.bind(nullptr, nullptr);
  return m;
}

}  // namespace moesim
