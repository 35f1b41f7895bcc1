// Internal to sim/: the order a pipeline schedule runs forward and backward chunks in on each
// pipeline rank, and where each chunk of a micro-batch runs; shared by the op-graph builder
// (schedule.cpp) and the memory count (memory.cpp).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "sim/op_graph.h"

namespace moesim {

// One chunk of a rank's work: micro-batch mb's forward or backward through model stage `stage`
// (one of PipelineLayout::stages, its layers split as stage_first_layers does). `paired`: a
// forward run overlapped with the backward listed right after it. `grad`, of a backward: kWhole
// computes both gradients; kInput the input gradient only (a zero-bubble backward, B), its
// weight gradient left for a later weight chunk; kWeight is that weight chunk (W), mb and stage
// those of the backward it completes, which it follows on the rank.
struct PipelineWork {
  int32_t mb = 0;
  bool backward = false;
  bool paired = false;
  int32_t stage = 0;
  GradPart grad = GradPart::kWhole;
};

// Where a schedule runs what: the model in `stages` chunks, the order of each pipeline rank's
// work, and which rank runs stage st of a micro-batch: rank st for 1F1B; in two directions for
// DualPipe (micro-batches [0, micro_batches / 2) enter at rank 0 and run stage st on rank st,
// the rest enter at rank pp - 1 and run stage st on rank pp - 1 - st). Memory: O(ranks x work).
struct PipelineLayout {
  int32_t stages = 1;
  bool bidirectional = false;
  int32_t micro_batches = 1;
  int32_t pp = 1;
  std::vector<std::vector<PipelineWork>> order;  // [pipeline rank]

  int32_t rank_of(int32_t mb, int32_t stage) const {
    if (bidirectional && mb >= micro_batches / 2) return pp - 1 - stage;
    return stage % pp;
  }
  // The stages whose parameters rank r holds: its own, and under DualPipe its mirror's.
  std::vector<int32_t> stages_of(int32_t rank) const {
    if (bidirectional) return {rank, pp - 1 - rank};
    std::vector<int32_t> held;
    for (int32_t st = rank; st < stages; st += pp) held.push_back(st);
    return held;
  }
  // The pipeline ranks holding a copy of rank r's parameters, in increasing order.
  std::vector<int32_t> replica_ranks(int32_t rank) const {
    if (!bidirectional) return {rank};
    const int32_t mirror = pp - 1 - rank;
    return {std::min(rank, mirror), std::max(rank, mirror)};
  }
};

// 1F1B's order on pipeline rank `rank` of `pp`, one model stage per rank (Narayanan et al.
// 2021, section 2.2.1): training runs pp - rank - 1 warm-up forwards, then one forward and one
// backward alternately, then the remaining backwards; inference the forwards only. With
// `ep_overlap` (Megatron-Core's 1F1B with EP all-to-all overlap) one more warm-up forward, so
// that a forward and the backward it is paired with are of different micro-batches, and each
// steady-state forward paired with the backward after it.
std::vector<PipelineWork> one_f_one_b_order(int32_t rank, int32_t pp, int32_t micro_batches,
                                            bool training, bool ep_overlap);
// A 1F1B schedule's order on rank `rank`: interleaved_order when each rank holds `chunks` > 1
// model stages, else one_f_one_b_order. What the step lays out and the memory count walks.
std::vector<PipelineWork> one_f_one_b_rank_order(int32_t rank, int32_t pp, int32_t chunks,
                                                 int32_t micro_batches, bool training,
                                                 bool ep_overlap);

// DualPipe's order on pipeline rank `rank` of `pp` (even) for `micro_batches` (even, at least
// 2 x pp) micro-batches, half from each end; see DualPipeSchedule in sim/schedule.h. Without
// `overlap`, each pair is laid out as its forward then its backward. The backwards
// DualPipe.step runs with zero bubble are split: their input part where the backward is, their
// weight part where the repository's _weight_chunk runs it.
std::vector<PipelineWork> dualpipe_order(int32_t rank, int32_t pp, int32_t micro_batches,
                                         bool overlap);

// Interleaved 1F1B's order (Megatron-LM's virtual pipeline stages; Narayanan et al. 2021,
// "Efficient Large-Scale Language Model Training on GPU Clusters Using Megatron-LM", section
// 2.2.2) on rank `rank` of `pp`, each rank holding `chunks` model stages (rank, rank + pp, ...).
// Training: Megatron's forward_backward_pipelining_with_interleaving: (pp - rank - 1) x 2 +
// (chunks - 1) x pp warm-up forwards (all m x chunks when m = pp), then one forward and one
// backward alternately, then the remaining backwards; the k-th forward runs chunk
// (k mod (pp x chunks)) / pp on micro-batch (k / (pp x chunks)) x pp + k mod pp, backwards the
// chunks in reverse. Inference: the forwards only. micro_batches must be a multiple of pp.
// With `ep_overlap` (Megatron-Core's EP overlap across virtual stages) each steady-state
// forward is paired with the backward after it; the order is the same.
std::vector<PipelineWork> interleaved_order(int32_t rank, int32_t pp, int32_t chunks,
                                            int32_t micro_batches, bool training,
                                            bool ep_overlap = false);

}  // namespace moesim
