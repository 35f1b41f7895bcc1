// Schedules: what runs where and after what in one step, as an operation graph (sim/op_graph.h)
// of kernels and collectives on each GPU's streams. They decide no durations (sim/cost_model.h)
// and no start times (sim/executor.h). A new schedule is a new class implementing Schedule.
#pragma once

#include <cstdint>
#include <memory>
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
// gradient all-reduces and the optimizer; with StepOptions::overlap_grad_reduce (any schedule
// this builder lays out: 1F1B, interleaved, EP overlap, DualPipe) each layer's gradients are
// instead reduced on the kGradComm stream once the GPU's last kernel computing them ended,
// beside the rest of the backward (Megatron-Core's overlap_grad_reduce, PyTorch DDP's buckets),
// and the optimizer waits for the last of them.
//
// With StepSetup::virtual_stages v above 1, interleaved 1F1B (Megatron-LM's virtual pipeline
// stages, Narayanan et al. 2021, section 2.2.2): the model in pp x v stages, rank r holding
// stages r, r + pp, ..., each rank running Megatron's interleaved order
// (sim/interleaved_schedule.cpp); the bubble is 1F1B's over v. Needs micro-batches a multiple
// of pp and at least one layer per stage. With `ep_overlap` too, the interleaved order is kept
// and each steady-state forward is paired with the backward after it (below).
//
// With `ep_overlap`, Megatron-Core's EP all-to-all overlap in 1F1B (its combined 1F1B,
// --overlap-moe-expert-parallel-comm, NVIDIA Megatron-LM core/pipeline_parallel): each stage runs
// one warm-up forward, then pairs every forward with the next backward (another micro-batch)
// and runs them interleaved at the layer level: the pair's two chains take turns on the compute
// stream segment by segment (a segment ends at a collective its chain waits for), so the dispatch
// or combine of one micro-batch's layer runs on the comm stream during the other micro-batch's
// attention or expert kernels. Each chain keeps 1F1B's own order; the op after a pair waits for
// both. The tail (gradient sync, optimizer) is 1F1B's. With pp > 1 only interleaved (throws
// otherwise): paired with a backward, a stage's forward waits for the gradient from the next
// stage, which chains the stages' pairs one after another (tried: Mixtral pp 2 ep 4 ran 26%
// slower than 1F1B). Megatron-Core pairs across virtual pipeline stages there: interleaved
// 1F1B's order with its steady-state forwards paired (interleaved_order), its warm-up as is.
class OneFOneBSchedule final : public Schedule {
 public:
  explicit OneFOneBSchedule(bool ep_overlap = false) : ep_overlap_(ep_overlap) {}
  std::string_view name() const override { return ep_overlap_ ? "1f1b_ep_overlap" : "1f1b"; }
  OpGraph build(const StepSetup& setup) const override;

 private:
  bool ep_overlap_;
};

// Two-batch overlap for serving (PREFILL and DECODE), after DeepSeek's inference system
// ("DeepSeek Inference System Overview", deepseek-ai/open-infra-index, and the profile-data
// repository's prefill and decode traces) and SGLang's two-batch overlap (TBO). Micro-batches
// 2k and 2k+1 (A and B) run together, layer by layer, each layer cut into segments at its
// exchanges; the compute stream runs A's segment then B's, and each micro-batch's dispatch or
// combine goes on the comm stream as soon as its segment is done, so it moves while the other
// micro-batch computes. A segment that consumes an exchange (the expert FFN, the next layer)
// waits for it.
// - Prefill, per MoE layer: [attention, gate and shared experts] -> dispatch -> [expert FFN] ->
//   combine. Compute: A.pre B.pre A.experts B.experts; comm: A.dispatch B.dispatch A.combine
//   B.combine. With compute longer than communication every exchange runs beside the other
//   micro-batch's compute but the pair's last combine, hidden only by A's LM head.
// - Decode, per MoE layer, the 5-stage pipeline DeepSeek describes, attention split in two:
//   [attention projections] (ATTN-0), [attention kernel, gate and shared experts] (ATTN-1) ->
//   dispatch -> [expert FFN] -> combine, the two micro-batches taking turns at each of the three
//   compute segments. moesim splits attention into its projection GEMMs and its attention
//   kernel, and prices the gate and the shared experts as one kernel, so the shared experts run
//   before the dispatch here (DeepSeek runs them beside the combine).
// Dense layers are one compute segment. Pairs run one after another (pair k + 1 after pair k
// on each stream). Lays out tp 1 and pp 1 only (DeepSeek's serving layout: attention DP, experts
// EP); throws otherwise, and for training or an odd number of micro-batches.
class TwoBatchOverlapSchedule final : public Schedule {
 public:
  std::string_view name() const override { return "two_batch_overlap"; }
  OpGraph build(const StepSetup& setup) const override;
};

// DualPipe (DeepSeek-V3 technical report, section 3.2.1, Figure 5 and Table 2; the order of
// deepseek-ai/DualPipe's dualpipe.py, DualPipe.step): a bidirectional pipeline. The model is cut
// into pp stages as for 1F1B; pipeline rank r holds two of them, stage r and stage pp - 1 - r
// (two copies of the parameters in all, their gradients reduced over both ranks' data-parallel
// groups). Half the micro-batches (0 .. m/2 - 1) enter at rank 0 and run stage s on rank s, the
// other half enter at rank pp - 1 and run stage s on rank pp - 1 - s. Each rank runs the eight
// steps of DualPipe.step (sim/dualpipe_schedule.cpp): forwards from both ends to fill the
// pipeline, then, in the steady state, one direction's forward chunk overlapped with the other's
// backward chunk, as OneFOneBSchedule's EP overlap pairs them (segments taking turns on the
// compute stream, each one's dispatch and combine on the comm stream during the other's
// attention and expert kernels, the kernels beside them slowed by the communication's SMs:
// CostOptions::comm_sm_fraction), then the backwards drain. A pair receives both inputs before
// it starts and sends both outputs when both are done, as dualpipe.py's overlapped chunk does.
// The backwards the repository runs with zero bubble (enable_zb) are split as it splits them:
// the input gradient (B: every backward kernel's dgrad part, and the backward exchanges and TP
// collectives) where the backward is, its gradient sent to the previous stage at its end, and
// the weight gradient (W: the wgrad GEMMs, GradPart::kWeight) where dualpipe.py's _weight_chunk
// runs it: in step 3 right after its B, in steps 6-8 deferred to fill the cool-down bubble.
// Training only; pp even and
// micro-batches even and at least 2 x pp (N = m / 2 >= pp per direction, as DualPipe.step
// asserts); throws otherwise. Without `overlap`, every pair runs as its forward then its backward
// (the same order, nothing overlapped).
class DualPipeSchedule final : public Schedule {
 public:
  explicit DualPipeSchedule(bool overlap = true) : overlap_(overlap) {}
  std::string_view name() const override { return "dualpipe"; }
  OpGraph build(const StepSetup& setup) const override;

 private:
  bool overlap_;
};

// The schedule a scenario's workload names (scenarios/scenario.h ScheduleKind).
std::unique_ptr<Schedule> make_schedule(ScheduleKind kind);

}  // namespace moesim
