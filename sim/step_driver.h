// The MoE step on the event engine: each GPU runs a program of compute and collective ops
// (layers, micro-batches in 1F1B order, gradient reduction, optimizer); collectives wait for
// every member, so the slowest GPU sets the pace and imbalance shows as idle time.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "models/gpu/gpu_model.h"
#include "models/moe/model_spec.h"
#include "models/moe/parallel_plan.h"
#include "models/moe/placement.h"
#include "models/network/collectives.h"
#include "models/network/flow_network.h"
#include "core/engine.h"
#include "sim/moe_traffic.h"

namespace moesim {

enum class Phase : uint8_t {
  kAttention,     // attention projections and kernel (and the LM head on the last stage)
  kDenseFfn,      // dense layers' FFN, the router gate, shared experts
  kTpCollective,  // tensor-parallel all-gather / reduce-scatter
  kDispatch,
  kExpertCompute,
  kCombine,
  kPipeline,      // activations between pipeline stages
  kGradientSync,  // data-parallel gradient reduction
  kOptimizer,
  kIdle,  // waiting for peers at a collective
};
inline constexpr int kPhaseCount = 10;
const char* phase_name(Phase phase);

enum class StepKind : uint8_t { kTraining, kPrefill, kDecode };

// Everything the driver needs besides the traffic; references must outlive the driver.
struct StepSetup {
  const ModelSpec* model = nullptr;
  const ParallelPlan* plan = nullptr;
  const Placement* placement = nullptr;
  const GpuModel* gpu = nullptr;
  StepKind kind = StepKind::kTraining;
  int32_t tokens_per_gpu = 0;
  int32_t sequence_length = 0;
  int32_t kv_context_length = 0;
  int32_t micro_batches = 1;
};

// Bytes the MoE exchanges carried, per link kind, for achieved-bandwidth figures.
struct ExchangeBytes {
  int64_t nvlink = 0;
  int64_t network = 0;
};

// The first layer of each pipeline stage, plus the end: layers split as evenly as possible,
// the first stages taking one more when the stages do not divide the layers.
std::vector<int32_t> stage_first_layers(int32_t layers, int32_t stages);

// The routed traffic of one step: [micro_batch][moe_layer][dp_rank].
using StepTraffic = std::vector<std::vector<std::vector<MoeLayerTraffic>>>;

// A slot's number in StepTraffic's order (micro-batch major, then MoE layer, then replica):
// the order a step plays and routes its slots in.
constexpr int64_t traffic_slot(int32_t micro_batch, int32_t moe_layer, int32_t dp_rank,
                               int32_t moe_layers, int32_t dp) {
  return (int64_t{micro_batch} * moe_layers + moe_layer) * dp + dp_rank;
}

// For traffic still being routed while its step plays: called with (micro_batch, moe_layer,
// dp_rank) before the driver first reads that slot; returns once the slot is final, or throws
// the routing error. The driver calls it on its own thread, from inside the engine's events.
using AwaitTrafficSlot = std::function<void(int32_t, int32_t, int32_t)>;

// Told (collectives finished, collectives in the step) each time one of the step's collectives
// ends, so that a long step can show how far it has got; from inside the engine's events.
using StepProgress = std::function<void(int32_t, int32_t)>;

// What one step measured.
struct StepMeasurement {
  Time step_time;
  // One sample per forward MoE exchange (micro-batch, layer, replica): first member's launch
  // to the last member's finish.
  std::vector<Time> dispatch, combine;
  // Per forward (micro-batch, layer): the slowest GPU's time in the phase on that layer.
  std::vector<Time> expert_compute, attention;
  // Per GPU, time in each phase (summed over the step).
  std::vector<std::array<Time, kPhaseCount>> gpu_phase_time;
  // Per GPU, expert rows computed over the step's forward MoE layers.
  std::vector<int64_t> gpu_expert_tokens;
  // Every MoE exchange of the step (forward and backward): bytes by link kind, and the sum of
  // their durations (first launch to last finish), for achieved all-to-all bandwidth.
  ExchangeBytes exchange_bytes;
  Time exchange_time;
  int32_t exchanges = 0;
};

class StepDriver final : public EventHandler, public CollectiveObserver {
 public:
  StepDriver(Engine& engine, FlowNetwork& network, const StepSetup& setup);
  ~StepDriver();

  // Plays one step from now() to its end and returns its measurements. `traffic` must have
  // every slot allocated; with `await_slot`, a slot is read only after await_slot returned for
  // it (a GPU reaching a layer's expert compute, or the layer's exchange starting), so routing
  // may fill later slots meanwhile. Without it every slot must be final. `progress`, when set,
  // hears of every collective that ends.
  StepMeasurement run_step(const StepTraffic& traffic, const AwaitTrafficSlot& await_slot = {},
                           const StepProgress& progress = {});

  void on_event(uint64_t tag) override;
  void on_collective_done(CollectiveId id, uint64_t tag, const CollectiveResult& result) override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace moesim
