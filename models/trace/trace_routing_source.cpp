#include "models/trace/trace_routing_source.h"

#include <algorithm>
#include <string>

namespace moesim {

TraceRoutingSource::TraceRoutingSource(const std::filesystem::path& path)
    : TraceRoutingSource(std::make_unique<TraceReader>(path)) {}

TraceRoutingSource::TraceRoutingSource(std::unique_ptr<TraceReader> reader)
    : reader_(std::move(reader)) {
  if (!reader_) throw TraceError("TraceRoutingSource: no reader");
}

bool TraceRoutingSource::read_next() {
  const int64_t offset = reader_->next_offset();
  if (!reader_->next(current_)) {
    has_current_ = false;
    return false;
  }
  has_current_ = true;
  apportioned_ranks_ = 0;
  if (current_.layer == 0 && current_.batch == static_cast<int64_t>(batch_offsets_.size())) {
    batch_offsets_.push_back(offset);
  }
  return true;
}

void TraceRoutingSource::load(int64_t micro_batch, int32_t layer) {
  const int32_t layers = reader_->header().layers;
  for (;;) {
    const int64_t batch = trace_batches_ > 0 ? micro_batch % trace_batches_ : micro_batch;
    if (has_current_ && current_.batch == batch && current_.layer == layer) return;
    const int64_t want = batch * layers + layer;
    const auto known = static_cast<int64_t>(batch_offsets_.size());
    if (batch < known) {
      if (reader_->next_index() != want) {
        reader_->seek(batch_offsets_[batch], batch * layers);
        has_current_ = false;
      }
    } else if (known > 0 && reader_->next_index() < known * layers) {
      reader_->seek(batch_offsets_[known - 1], (known - 1) * layers);
      has_current_ = false;
    }
    bool at_end = false;
    while (reader_->next_index() <= want) {
      if (!read_next()) {
        at_end = true;
        break;
      }
    }
    if (!at_end) continue;
    trace_batches_ = static_cast<int64_t>(batch_offsets_.size());
    if (trace_batches_ == 0) throw TraceError(reader_->name() + ": the trace holds no records");
  }
}

void TraceRoutingSource::route(const RoutingRequest& request, RoutingDecision& out) {
  const TraceHeader& h = reader_->header();
  if (request.layer < 0 || request.layer >= h.layers) {
    throw TraceError(reader_->name() + ": asked for MoE layer " + std::to_string(request.layer) +
                     " but the trace records " + std::to_string(h.layers) +
                     " MoE layers (the model and the trace disagree)");
  }
  if (request.ranks < 1 || request.rank < 0 || request.rank >= request.ranks) {
    throw TraceError(reader_->name() + ": asked for rank " + std::to_string(request.rank) + " of " +
                     std::to_string(request.ranks) + " ranks");
  }
  if (request.micro_batch < 0) {
    throw TraceError(reader_->name() + ": asked for micro-batch " +
                     std::to_string(request.micro_batch));
  }
  load(request.micro_batch, request.layer);
  if (trace_batches_ > 0) wraps_ = std::max(wraps_, request.micro_batch / trace_batches_);

  const int64_t total = current_.tokens;
  const int64_t lo = request.rank * total / request.ranks;
  const int64_t hi = (request.rank + 1) * total / request.ranks;
  const auto n = static_cast<int32_t>(hi - lo);
  out.tokens = n;
  out.experts = h.experts;
  out.slots_per_token = h.top_k;
  out.dropped_pairs = 0;
  if (current_.counts_only()) {
    if (apportioned_ranks_ != request.ranks) apportion_counts(request.ranks);
    out.counts_only = true;
    out.expert_ids.clear();
    out.weights.clear();
    out.dropped.clear();
    const int64_t* row = rank_counts_.data() + static_cast<size_t>(request.rank) * h.experts;
    out.tokens_per_expert.assign(row, row + h.experts);
    return;
  }
  out.counts_only = false;
  const size_t k = static_cast<size_t>(h.top_k);
  const int32_t* ids = current_.expert_ids.data() + static_cast<size_t>(lo) * k;
  const size_t pairs = static_cast<size_t>(n) * k;
  out.expert_ids.assign(ids, ids + pairs);
  if (h.has_weights) {
    const float* w = current_.weights.data() + static_cast<size_t>(lo) * k;
    out.weights.assign(w, w + pairs);
  } else {
    out.weights.clear();
  }
  out.dropped.assign(pairs, 0);
  out.tokens_per_expert.assign(static_cast<size_t>(h.experts), 0);
  int32_t* counts = out.tokens_per_expert.data();
  for (size_t i = 0; i < pairs; ++i) {
    const int32_t id = ids[i];
    // Ids were range-checked when the record was read; kNoExpert pads empty slots.
    if (id != kNoExpert) ++counts[id];
  }
}

void TraceRoutingSource::apportion_counts(int32_t ranks) {
  const int32_t experts = reader_->header().experts;
  const int64_t total = current_.tokens;
  rank_counts_.assign(static_cast<size_t>(ranks) * experts, 0);
  remainders_.resize(ranks);
  order_.resize(ranks);
  for (int32_t e = 0; e < experts; ++e) {
    const int64_t count = current_.expert_counts[e];
    if (count == 0) continue;
    int64_t given = 0;
    for (int32_t r = 0; r < ranks; ++r) {
      const int64_t share = (r + 1) * total / ranks - r * total / ranks;
      // count <= total (checked on read), so count * share stays far below 2^63.
      rank_counts_[static_cast<size_t>(r) * experts + e] = count * share / total;
      remainders_[r] = count * share % total;
      given += count * share / total;
    }
    for (int32_t r = 0; r < ranks; ++r) order_[r] = r;
    std::stable_sort(order_.begin(), order_.end(),
                     [&](int32_t a, int32_t b) { return remainders_[a] > remainders_[b]; });
    for (int64_t i = 0; i < count - given; ++i) {
      ++rank_counts_[static_cast<size_t>(order_[i]) * experts + e];
    }
  }
  apportioned_ranks_ = ranks;
}

}  // namespace moesim
