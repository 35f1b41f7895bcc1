// Schedules: what runs where and after what in one step, as an operation graph (sim/op_graph.h)
// of kernels and collectives on each GPU's streams. They decide no durations (sim/cost_model.h)
// and no start times (sim/executor.h). A new schedule is a new class implementing Schedule.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "sim/op_graph.h"
#include "sim/step_setup.h"

namespace moesim {

class Schedule {
 public:
  virtual ~Schedule() = default;
  virtual std::string_view name() const = 0;
  // The step's graph, finished. Throws std::invalid_argument for a setup it cannot lay out.
  virtual OpGraph build(const StepSetup& setup) const = 0;
};

// One forward-one-backward pipelining (PipeDream-flush / Megatron's default) with every op of
// a GPU in one sequence, nothing overlapped: each op waits for the one before it on its GPU,
// kernels on the compute stream and collectives on the comm stream. A stage runs
// min(stages - stage - 1, micro-batches) warm-up forwards, then alternates one forward and one
// backward, then drains the backwards; inference runs the forwards only. Per layer: the TP
// all-gather, attention, the TP reduce-scatter and all-gather, then the gate and shared experts,
// the dispatch, the expert FFN and the combine (an MoE layer) or the dense FFN, then the TP
// reduce-scatter; backward in reverse at twice the work. Activations go to the next stage by
// posted sends (the sending GPU does not wait for them). Training ends with the data-parallel
// gradient all-reduces and the optimizer.
class OneFOneBSchedule final : public Schedule {
 public:
  std::string_view name() const override { return "1f1b"; }
  OpGraph build(const StepSetup& setup) const override;
};

}  // namespace moesim
