// Interleaved 1F1B's order of chunks on each pipeline rank (Megatron-LM's virtual pipeline
// stages), laid out by the 1F1B builder in schedule.cpp.
#include <algorithm>
#include <stdexcept>
#include <string>

#include "sim/pipeline_order.h"

namespace moesim {

std::vector<PipelineWork> interleaved_order(int32_t rank, int32_t pp, int32_t chunks,
                                            int32_t micro_batches, bool training, bool ep_overlap) {
  if (pp < 1 || chunks < 1 || micro_batches < 1 || micro_batches % pp != 0 || rank < 0 ||
      rank >= pp) {
    throw std::invalid_argument("interleaved 1F1B: needs micro-batches a multiple of pp, got pp " +
                                std::to_string(pp) + ", " + std::to_string(micro_batches) +
                                " micro-batches");
  }
  const int32_t total = micro_batches * chunks;
  const int32_t group = pp * chunks;
  // Megatron's get_model_chunk_id and micro-batch id of the k-th forward or backward.
  const auto work = [&](int32_t k, bool backward) {
    int32_t chunk = (k % group) / pp;
    if (backward) chunk = chunks - 1 - chunk;
    return PipelineWork{(k / group) * pp + k % pp, backward, false, chunk * pp + rank};
  };
  int32_t warmup = total;
  if (training && micro_batches != pp) {
    warmup = std::min((pp - rank - 1) * 2 + (chunks - 1) * pp, total);
  }
  std::vector<PipelineWork> order;
  order.reserve(static_cast<size_t>(training ? 2 * total : total));
  for (int32_t k = 0; k < warmup; ++k) order.push_back(work(k, false));
  if (!training) return order;
  const int32_t remaining = total - warmup;
  for (int32_t k = 0; k < remaining; ++k) {
    PipelineWork forward = work(k + warmup, false);
    forward.paired = ep_overlap;
    order.push_back(forward);
    order.push_back(work(k, true));
  }
  for (int32_t k = remaining; k < total; ++k) order.push_back(work(k, true));
  return order;
}

}  // namespace moesim
