// Cost models: how long each op of an operation graph takes. Kernels are priced by the GPU
// model (models/gpu) when they start; collectives are played on the network (FlowNetwork through
// Collectives) when their last member arrives, and end when their transfers do.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "core/engine.h"
#include "core/units.h"
#include "models/gpu/gpu_model.h"
#include "models/network/collectives.h"
#include "models/network/comm_kernel.h"
#include "models/network/flow_network.h"
#include "sim/moe_traffic.h"
#include "sim/op_graph.h"
#include "sim/step_setup.h"

namespace moesim {

struct CostOptions {
  // Share of a GPU's SMs its communication kernels hold while one is in flight, taken from
  // the kernels computing beside them. The default is the communication kernel's SM count,
  // the same one that bounds a DeepEP phase's copy rate (models/network/comm_kernel.h: 20 of
  // the H800's 132 SMs, DeepSeek-V3 technical report 3.2.2). It matters only where a schedule
  // overlaps computation with communication on one GPU (see Executor for how it is applied);
  // in a schedule that overlaps nothing it has no effect. 0 <= fraction < 1.
  double comm_sm_fraction = kDefaultCommKernel.sm_fraction();
  // The MoE exchanges' communication kernels (models/network/comm_kernel.h), as
  // `moesim moe-collective` prices one phase: an exchange ends no sooner than its launch plus
  // the busiest member's kernel bound (normal kernels: the tokens its SMs copy at `sms` x
  // bytes_per_sm; low latency: each message's work on the warps and on the NIC). The scenario's
  // cluster.comm_sms sets `sms` and comm_sm_fraction together (sim/simulation.cpp).
  CommKernelSpec comm_kernel = kDefaultCommKernel;
};

// Prices the ops that need no knowledge of the model: kFixed and kMemoryBound kernels, and
// every collective kind but the MoE exchanges (ring all-gather, reduce-scatter and all-reduce,
// posted send/receive, uniform all-to-all). The MoE step's cost model derives from it.
class CostModel {
 public:
  CostModel(FlowNetwork& network, const GpuModel& gpu, CostOptions options = {});
  virtual ~CostModel();
  CostModel(const CostModel&) = delete;
  CostModel& operator=(const CostModel&) = delete;

  FlowNetwork& network() const { return network_; }
  const CostOptions& options() const { return options_; }

  // The kernel's duration at full speed (work_scale included; a gradient part of a kFixed
  // kernel is fixed_time); asked when it starts.
  virtual Time kernel_time(const Op& op);
  // Starts the collective's transfers; `observer` hears (tag) once they all arrived. A send /
  // receive is launched by its sender alone.
  virtual void launch(const Collective& c, CollectiveObserver& observer, uint64_t tag);
  // Whether the collective's kernels hold comm_sm_fraction of each member's SMs while that
  // member's op is in flight. Posted pipeline sends do not: NCCL's send/receive of one
  // activation runs on one or two channels, taken here as none.
  virtual bool holds_sms(const Collective& c) const { return c.kind != CollectiveKind::kSendRecv; }
  // Told every collective's result when it ends, before its members go on.
  virtual void on_result(const Collective& /*c*/, const CollectiveResult& /*result*/) {}

 protected:
  FlowNetwork& network_;
  const GpuModel& gpu_;
  CostOptions options_;
  Collectives collectives_;
};

// Bytes the MoE exchanges carried, per link kind, for achieved-bandwidth figures.
struct ExchangeBytes {
  int64_t nvlink = 0;
  int64_t network = 0;
};

// The routed traffic of one step: [micro_batch][moe_layer][dp_rank].
using StepTraffic = std::vector<std::vector<std::vector<MoeLayerTraffic>>>;

// A slot's number in StepTraffic's order (micro-batch major, then MoE layer, then replica):
// the order a step plays and routes its slots in.
constexpr int64_t traffic_slot(int32_t micro_batch, int32_t moe_layer, int32_t dp_rank,
                               int32_t moe_layers, int32_t dp) {
  return (int64_t{micro_batch} * moe_layers + moe_layer) * dp + dp_rank;
}

// For traffic still being routed while its step plays: called with (micro_batch, moe_layer,
// dp_rank) before the step first reads that slot; returns once the slot is final, or throws
// the routing error. Called on the step's thread, from inside the engine's events.
using AwaitTrafficSlot = std::function<void(int32_t, int32_t, int32_t)>;

// The MoE step's prices: the layer kernels from the model and the workload's size (attention,
// dense FFN, gate and shared experts, LM head; computed once), the expert FFN from the slot's
// routed rows (read when the kernel starts), and the MoE exchanges from the slot's traffic
// (read when the exchange launches): a slot is read only after await_slot returned for it.
class StepCostModel final : public CostModel, private CollectiveObserver, private EventHandler {
 public:
  StepCostModel(FlowNetwork& network, const StepSetup& setup, CostOptions options = {});

  // The step's traffic; every slot allocated, read as described above. Reset the exchange
  // bytes.
  void bind(const StepTraffic* traffic, const AwaitTrafficSlot* await_slot);
  const ExchangeBytes& exchange_bytes() const { return exchange_bytes_; }
  int32_t moe_index_of_layer(int32_t layer) const {
    return moe_index_of_layer_[static_cast<size_t>(layer)];
  }
  int32_t dp_rank_of_gpu(int32_t gpu) const {
    return (gpu / (setup_.plan->tp * setup_.plan->ep)) % setup_.plan->dp;
  }
  // The slot (await_slot first, if not yet).
  const MoeLayerTraffic& slot(int32_t micro_batch, int32_t moe_layer, int32_t dp_rank);

  // Backward kernels split into gradient parts (Op::grad) cost, together, what the whole
  // backward does: the input part the forward plus its weightless work (the attention kernel),
  // the weight part the forward less it.
  Time kernel_time(const Op& op) override;
  void launch(const Collective& c, CollectiveObserver& observer, uint64_t tag) override;
  void on_result(const Collective& c, const CollectiveResult& result) override;

 private:
  Time attention_time() const;       // projections and core: the whole layer's attention
  Time attention_core_time() const;  // the attention kernel alone (prefill or decode)
  Time dense_ffn_time() const;
  Time gate_and_shared_time() const;
  Time lm_head_time() const;
  int32_t tp() const { return setup_.plan->tp; }
  int32_t tokens_in_tp_group() const { return setup_.tokens_per_gpu * tp(); }

  StepSetup setup_;
  std::vector<int32_t> moe_index_of_layer_;
  int32_t moe_layers_ = 0;
  Dtype expert_dtype() const { return setup_.options.expert_gemm_dtype.value_or(weights_dtype()); }
  Dtype dense_dtype() const { return setup_.options.dense_gemm_dtype.value_or(weights_dtype()); }
  Dtype weights_dtype() const { return setup_.model->weights.dtype; }

  Time attention_core_, attention_, dense_ffn_, gate_and_shared_, lm_head_;
  // A MoE exchange whose transfers run on the network while its kernel bound is measured from
  // the traffic: the executor hears of it at the later of the two ends (O(members + transfers)
  // per exchange at launch).
  struct BoundedExchange {
    CollectiveObserver* observer = nullptr;
    uint64_t tag = 0;
    Time not_before;  // launch + the kernel bound
    CollectiveId id;
    CollectiveResult result;  // kept while it waits for not_before
  };
  void on_collective_done(CollectiveId id, uint64_t slot, const CollectiveResult& result) override;
  void on_event(uint64_t slot) override;

  CommLinkCapacities link_capacities_;
  std::vector<BoundedExchange> bounded_;
  std::vector<uint64_t> free_bounded_;
  const StepTraffic* traffic_ = nullptr;
  const AwaitTrafficSlot* await_slot_ = nullptr;
  std::vector<uint8_t> slot_ready_;  // [micro_batch][moe_layer][dp_rank], once awaited
  ExchangeBytes exchange_bytes_;
};

}  // namespace moesim
