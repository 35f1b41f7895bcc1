// DualPipe's order of chunks on each pipeline rank (DeepSeek-V3 technical report, section 3.2.1,
// Figure 5; deepseek-ai/DualPipe, dualpipe.py, DualPipe.step), laid out by the 1F1B builder in
// schedule.cpp.
#include <algorithm>
#include <stdexcept>
#include <string>

#include "sim/pipeline_order.h"

namespace moesim {

// DualPipe.step's eight steps, for rank r of pp, h = min(r, pp - 1 - r) its distance from the
// nearer end, H = pp / 2, N = micro_batches / 2 per direction. "Phase 0" is the direction that
// enters at the rank's own end (dualpipe.py flips the phase on the second half of the ranks),
// phase 1 the other; each phase's forwards and backwards go in micro-batch order.
//   1. 2(H - h - 1) forwards of phase 0;
//   2. h + 1 times: forward 0, forward 1;
//   3. H - h - 1 times: backward 1, forward 1 (the repository runs this backward's input part
//      only and its weight part here, between the two: one backward in moesim);
//   4. N - pp + h + 1 times: forward 0 overlapped with backward 1, forward 1 overlapped with
//      backward 0; the middle ranks (h = H - 1) run the first of these pairs unoverlapped;
//   5. H - h - 1 times: backward 1, forward 1 overlapped with backward 0;
//   6. h + 1 times: backward 1, backward 0;
//   7. H - h - 1 times: backward 0 (and the weight parts deferred before it);
//   8. the remaining deferred weight parts.
// moesim's backward computes input and weight gradients together (W = 0 in the report's
// notation), so steps 7 and 8's weight chunks are in the backwards already.
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
  order.reserve(static_cast<size_t>(2 * micro_batches));
  const auto add = [&](bool backward, int phase, bool paired = false) {
    const int direction = phase ^ (second_half ? 1 : 0);
    const int32_t stage = direction == 0 ? rank : pp - 1 - rank;
    order.push_back({next[backward][direction]++, backward, paired && overlap, stage});
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
    add(true, 1);
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
  for (int32_t i = 0; i < h + 1; ++i) {
    add(true, 1);
    add(true, 0);
  }
  for (int32_t i = 0; i < half_ranks - h - 1; ++i) add(true, 0);
  return order;
}

}  // namespace moesim
