#include "sim/cost_model.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "models/moe/model_spec.h"

namespace moesim {

CostModel::CostModel(FlowNetwork& network, const GpuModel& gpu, CostOptions options)
    : network_(network), gpu_(gpu), options_(options), collectives_(network) {
  if (!(options.comm_sm_fraction >= 0.0 && options.comm_sm_fraction < 1.0)) {
    throw std::invalid_argument("CostModel: comm_sm_fraction " +
                                std::to_string(options.comm_sm_fraction) + " is not in [0, 1)");
  }
}

CostModel::~CostModel() = default;

Time CostModel::kernel_time(const Op& op) {
  if (op.grad != GradPart::kWhole && op.kernel == KernelKind::kMemoryBound) {
    throw std::invalid_argument("CostModel: a memory-bound kernel has no gradient parts");
  }
  switch (op.kernel) {
    case KernelKind::kFixed:
      return op.fixed_time * op.work_scale;
    case KernelKind::kMemoryBound:
      return gpu_.memory_bound(op.bytes) * op.work_scale;
    default:
      throw std::invalid_argument("CostModel: this cost model prices no model kernels");
  }
}

void CostModel::launch(const Collective& c, CollectiveObserver& observer, uint64_t tag) {
  const std::vector<int>& group = c.members;
  const int n = static_cast<int>(group.size());
  switch (c.kind) {
    case CollectiveKind::kAllGather:
      collectives_.all_gather(group, c.bytes * n, &observer, tag);
      return;
    case CollectiveKind::kReduceScatter:
      collectives_.reduce_scatter(group, c.bytes * n, &observer, tag);
      return;
    case CollectiveKind::kAllReduce:
      collectives_.all_reduce(group, c.bytes, CollectiveAlgo::kRing, &observer, tag);
      return;
    case CollectiveKind::kSendRecv: {
      ByteMatrix one(2);
      one.at(0, 1) = c.bytes.count();
      collectives_.all_to_all(group, one, CollectiveAlgo::kDirect, &observer, tag);
      return;
    }
    case CollectiveKind::kAllToAll:
      collectives_.all_to_all(group, ByteMatrix::uniform(n, c.bytes.count()),
                              CollectiveAlgo::kDirect, &observer, tag);
      return;
    case CollectiveKind::kMoeDispatch:
    case CollectiveKind::kMoeCombine:
      throw std::invalid_argument("CostModel: MoE exchanges need the step's cost model");
  }
}

StepCostModel::StepCostModel(FlowNetwork& network, const StepSetup& setup, CostOptions options)
    : CostModel(network, *setup.gpu, options),
      setup_(setup),
      link_capacities_(comm_link_capacities(network.topology())) {
  options_.comm_kernel.validate();
  const int32_t layers = setup.model->layers;
  moe_index_of_layer_.assign(static_cast<size_t>(layers), kNone);
  for (int32_t l = 0; l < layers; ++l) {
    if (setup.model->is_moe_layer(l)) moe_index_of_layer_[static_cast<size_t>(l)] = moe_layers_++;
  }
  attention_core_ = attention_core_time();
  attention_ = attention_time();
  dense_ffn_ = dense_ffn_time();
  gate_and_shared_ = gate_and_shared_time();
  lm_head_ = lm_head_time();
}

void StepCostModel::bind(const StepTraffic* traffic, const AwaitTrafficSlot* await_slot) {
  traffic_ = traffic;
  await_slot_ = await_slot;
  slot_ready_.assign(static_cast<size_t>(setup_.micro_batches) * moe_layers_ * setup_.plan->dp, 0);
  exchange_bytes_ = ExchangeBytes{};
}

const MoeLayerTraffic& StepCostModel::slot(int32_t mb, int32_t moe, int32_t d) {
  const auto index = static_cast<size_t>(traffic_slot(mb, moe, d, moe_layers_, setup_.plan->dp));
  if (!slot_ready_[index]) {
    if (await_slot_ != nullptr && *await_slot_) (*await_slot_)(mb, moe, d);
    slot_ready_[index] = 1;
  }
  return (*traffic_)[static_cast<size_t>(mb)][static_cast<size_t>(moe)][static_cast<size_t>(d)];
}

// The attention kernel alone, in the weights dtype (prefill and training: causal flash
// attention over whole sequences, after their cached prefix; decode: over the KV cache).
Time StepCostModel::attention_core_time() const {
  const ModelSpec& model = *setup_.model;
  const GpuModel& g = gpu_;
  const int64_t tokens = tokens_in_tp_group();
  const bool decode = setup_.kind == WorkloadKind::kDecode;
  const AttentionShape shape = attention_shape(model, tp(), decode);
  if (decode) return g.attention_decode(tokens, setup_.kv_context_length, shape, Dtype::kBf16);
  const int64_t length = std::min<int64_t>(setup_.sequence_length, tokens);
  const int64_t sequences = std::max<int64_t>(1, tokens / std::max<int64_t>(1, length));
  return g.attention_prefill(sequences, length, shape, weights_dtype(), true,
                             setup_.cached_prefix_tokens);
}

// The projections (in the dense GEMM precision) and the attention kernel.
Time StepCostModel::attention_time() const {
  const ModelSpec& model = *setup_.model;
  const int64_t tokens = tokens_in_tp_group();
  const int64_t proj_cols = model.attention_params() / (int64_t{tp()} * model.hidden_size);
  return gpu_.gemm(tokens, proj_cols, model.hidden_size, dense_dtype()) + attention_core_;
}

Time StepCostModel::dense_ffn_time() const {
  const ModelSpec& model = *setup_.model;
  return gpu_.gemm(tokens_in_tp_group(), int64_t{model.ffn_matrices} * model.dense_ffn_size / tp(),
                   model.hidden_size, dense_dtype());
}

Time StepCostModel::gate_and_shared_time() const {
  const ModelSpec& model = *setup_.model;
  Time t = gpu_.gemm(tokens_in_tp_group(), model.routed_experts, model.hidden_size, Dtype::kFp32);
  if (model.shared_experts > 0) {
    t +=
        gpu_.gemm(tokens_in_tp_group(),
                  int64_t{model.ffn_matrices} * model.shared_experts * model.expert_ffn_size / tp(),
                  model.hidden_size, dense_dtype());
  }
  return t;
}

Time StepCostModel::lm_head_time() const {
  const ModelSpec& model = *setup_.model;
  if (model.vocab_size == 0) return Time::zero();
  return gpu_.gemm(tokens_in_tp_group(), model.vocab_size / tp(), model.hidden_size,
                   model.weights.dtype);
}

namespace {

// A model kernel's time from its forward's, `forward`, of which `weightless` is work with no
// weights (the attention kernel). Whole: work_scale times the forward (a backward computing
// both gradients: twice). Split (zero-bubble weight chunks), the same total: the input part is
// the dgrad GEMMs (forward - weightless) and the backward of the weightless work (twice it, as
// the whole backward prices it): forward + weightless; the weight part is the wgrad GEMMs,
// forward - weightless.
Time priced(const Op& op, Time forward, Time weightless = Time::zero()) {
  switch (op.grad) {
    case GradPart::kWhole:
      return forward * op.work_scale;
    case GradPart::kInput:
      return forward + weightless;
    case GradPart::kWeight:
      return forward - weightless;
  }
  return forward * op.work_scale;
}

}  // namespace

Time StepCostModel::kernel_time(const Op& op) {
  switch (op.kernel) {
    case KernelKind::kAttention:
      return priced(op, attention_, attention_core_);
    case KernelKind::kAttentionProjections:
      return priced(op, attention_ - attention_core_);
    case KernelKind::kAttentionCore:
      return priced(op, attention_core_, attention_core_);
    case KernelKind::kLmHead:
      return priced(op, lm_head_);
    case KernelKind::kDenseFfn:
      return priced(op, dense_ffn_);
    case KernelKind::kGateAndShared:
      return priced(op, gate_and_shared_);
    case KernelKind::kExpertFfn: {
      // Read when the GPU reaches the kernel: the layer may still be routing before.
      const ModelSpec& model = *setup_.model;
      const MoeLayerTraffic& traffic =
          slot(op.micro_batch, moe_index_of_layer(op.layer), dp_rank_of_gpu(op.gpu));
      const auto& counts = traffic.tokens_per_local_expert[static_cast<size_t>(op.gpu)];
      return priced(op, gpu_.grouped_expert_ffn(counts, model.hidden_size, model.expert_ffn_size,
                                                expert_dtype(), tp(), model.ffn_matrices));
    }
    case KernelKind::kFixed:
    case KernelKind::kMemoryBound:
      return CostModel::kernel_time(op);
  }
  return CostModel::kernel_time(op);
}

void StepCostModel::launch(const Collective& c, CollectiveObserver& observer, uint64_t tag) {
  if (c.kind != CollectiveKind::kMoeDispatch && c.kind != CollectiveKind::kMoeCombine) {
    CostModel::launch(c, observer, tag);
    return;
  }
  const MoeLayerTraffic& traffic = slot(c.micro_batch, c.moe_layer, c.dp_rank);
  const bool combine = c.kind == CollectiveKind::kMoeCombine;
  const Topology& topology = network_.topology();
  const ExchangeMatrices x = exchange_matrices(traffic, c.members, topology, c.per_token, combine);
  // The kernel's own bound (models/network/comm_kernel.h), as run_moe_phase takes it: the
  // busiest member's SMs or NIC. Its transfers still run at the links' rates, so concurrent
  // traffic sees them early rather than spread over the kernel's time.
  const std::vector<CommKernelLoad> loads =
      exchange_kernel_loads(traffic, c.members, topology, c.per_token, combine);
  std::vector<double> nvlink(c.members.size()), nic(c.members.size());
  for (size_t i = 0; i < c.members.size(); ++i) {
    nvlink[i] = link_capacities_.nvlink[static_cast<size_t>(c.members[i])];
    nic[i] = link_capacities_.nic[static_cast<size_t>(c.members[i])];
  }
  const Time kernel =
      comm_bounds(options_.comm_kernel, loads, {nvlink, nic, {}, {}}, Time::zero()).kernel;
  uint64_t index = bounded_.size();
  if (!free_bounded_.empty()) {
    index = free_bounded_.back();
    free_bounded_.pop_back();
  } else {
    bounded_.emplace_back();
  }
  bounded_[index] = {&observer, tag, network_.engine().now() + kernel, {}, {}};
  if (!x.staged) {
    collectives_.all_to_all(c.members, x.direct, CollectiveAlgo::kDirect, this, index);
    return;
  }
  collectives_.two_stage(c.members, x.first, x.second, x.direct, this, index);
}

void StepCostModel::on_collective_done(CollectiveId id, uint64_t index,
                                       const CollectiveResult& result) {
  BoundedExchange& b = bounded_[index];
  const Time now = network_.engine().now();
  if (now >= b.not_before) {
    CollectiveObserver* observer = b.observer;
    const uint64_t tag = b.tag;
    free_bounded_.push_back(index);
    observer->on_collective_done(id, tag, result);
    return;
  }
  // The kernel is still copying or sending: the members end with it.
  b.id = id;
  b.result = result;
  b.result.end = b.not_before;
  network_.engine().schedule_at(b.not_before, *this, index);
}

void StepCostModel::on_event(uint64_t index) {
  BoundedExchange& b = bounded_[index];
  CollectiveObserver* observer = b.observer;
  const uint64_t tag = b.tag;
  const CollectiveId id = b.id;
  const CollectiveResult result = std::move(b.result);
  b.result = {};
  free_bounded_.push_back(index);
  observer->on_collective_done(id, tag, result);
}

void StepCostModel::on_result(const Collective& c, const CollectiveResult& result) {
  if (c.kind != CollectiveKind::kMoeDispatch && c.kind != CollectiveKind::kMoeCombine) return;
  for (const auto& sent : result.sent_bytes) {
    exchange_bytes_.nvlink +=
        sent[static_cast<int>(LinkKind::kNvLink)] + sent[static_cast<int>(LinkKind::kPcie)];
    exchange_bytes_.network += sent[static_cast<int>(LinkKind::kNetwork)];
  }
}

}  // namespace moesim
