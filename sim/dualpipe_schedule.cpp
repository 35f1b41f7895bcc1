// DualPipe's order of chunks on each pipeline rank (DeepSeek-V3 technical report, section 3.2.1,
// Figure 5; deepseek-ai/DualPipe, dualpipe.py, DualPipe.step), laid out by the 1F1B builder in
// schedule.cpp.
#include <algorithm>
#include <deque>
#include <stdexcept>
#include <string>

#include "sim/pipeline_order.h"

namespace moesim {

// DualPipe.step's eight steps, for rank r of pp, h = min(r, pp - 1 - r) its distance from the
// nearer end, H = pp / 2, N = micro_batches / 2 per direction. "Phase 0" is the direction that
// enters at the rank's own end (dualpipe.py flips the phase on the second half of the ranks),
// phase 1 the other; each phase's forwards and backwards go in micro-batch order. B is a
// backward's input part (enable_zb: its weight part pushed on WeightGradStore's queue), W a
// weight chunk (_weight_chunk: the oldest queued weight part).
//   1. 2(H - h - 1) forwards of phase 0;
//   2. h + 1 times: forward 0, forward 1;
//   3. H - h - 1 times: B 1, W, forward 1 (the W is the B's own: its send goes out before it);
//   4. N - pp + h + 1 times: forward 0 overlapped with backward 1, forward 1 overlapped with
//      backward 0; the middle ranks (h = H - 1) run the first of these pairs unoverlapped;
//   5. H - h - 1 times: backward 1, forward 1 overlapped with backward 0;
//   6. h + 1 times: backward 1, backward 0, the last h + 1 of these 2(h + 1) as B (from the
//      (h + 1) / 2-th time's backward 1 when h is odd, its backward 0 when h is even);
//   7. H - h - 1 times: W, B 0;
//   8. h + 1 times: W.
std::vector<PipelineWork> dualpipe_order(int32_t rank, int32_t pp, int32_t micro_batches,
                                         bool overlap) {
  if (pp < 2 || pp % 2 != 0 || micro_batches % 2 != 0 || micro_batches < 2 * pp || rank < 0 ||
      rank >= pp) {
    throw std::invalid_argument(
        "DualPipe: needs an even pp and an even number of micro-batches "
        "of at least 2 x pp, got pp " +
        std::to_string(pp) + ", " + std::to_string(micro_batches) + " micro-batches");
  }
  const int32_t half_ranks = pp / 2;
  const int32_t h = std::min(rank, pp - 1 - rank);
  const int32_t n = micro_batches / 2;
  const bool second_half = rank >= half_ranks;
  // The next forward and backward micro-batch of each direction (direction 1's are n..2n-1).
  int32_t next[2][2] = {{0, n}, {0, n}};  // [backward][direction]
  std::vector<PipelineWork> order;
  order.reserve(static_cast<size_t>(3 * micro_batches));
  std::deque<PipelineWork> deferred;  // WeightGradStore's queue: B chunks awaiting their W
  const auto add = [&](bool backward, int phase, bool paired = false, bool zero_bubble = false) {
    const int direction = phase ^ (second_half ? 1 : 0);
    const int32_t stage = direction == 0 ? rank : pp - 1 - rank;
    const GradPart grad = zero_bubble ? GradPart::kInput : GradPart::kWhole;
    order.push_back({next[backward][direction]++, backward, paired && overlap, stage, grad});
    if (zero_bubble) deferred.push_back(order.back());
  };
  const auto weight = [&] {
    PipelineWork w = deferred.front();
    deferred.pop_front();
    w.grad = GradPart::kWeight;
    order.push_back(w);
  };
  const auto pair = [&](int forward_phase, int backward_phase) {
    add(false, forward_phase, true);
    add(true, backward_phase);
  };
  for (int32_t i = 0; i < 2 * (half_ranks - h - 1); ++i) add(false, 0);
  for (int32_t i = 0; i < h + 1; ++i) {
    add(false, 0);
    add(false, 1);
  }
  for (int32_t i = 0; i < half_ranks - h - 1; ++i) {
    add(true, 1, false, true);
    weight();
    add(false, 1);
  }
  for (int32_t i = 0; i < n - pp + h + 1; ++i) {
    if (i == 0 && h == half_ranks - 1) {
      add(false, 0);  // dualpipe.py: "we don't overlap these two chunks to further reduce bubble"
      add(true, 1);
    } else {
      pair(0, 1);
    }
    pair(1, 0);
  }
  for (int32_t i = 0; i < half_ranks - h - 1; ++i) {
    add(true, 1);
    pair(1, 0);
  }
  bool zero_bubble = false;
  for (int32_t i = 0; i < h + 1; ++i) {
    if (i == (h + 1) / 2 && h % 2 == 1) zero_bubble = true;
    add(true, 1, false, zero_bubble);
    if (i == (h + 1) / 2 && h % 2 == 0) zero_bubble = true;
    add(true, 0, false, zero_bubble);
  }
  for (int32_t i = 0; i < half_ranks - h - 1; ++i) {
    weight();
    add(true, 0, false, true);
  }
  for (int32_t i = 0; i < h + 1; ++i) weight();
  return order;
}

}  // namespace moesim
