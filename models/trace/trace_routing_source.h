// Replays a routing trace as a RoutingSource: the step asks (micro-batch, layer, rank) and gets
// the recorded decision for that rank's share of the batch's tokens, streamed from the file.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <vector>

#include "models/router/routing_decision.h"
#include "models/trace/trace_reader.h"

namespace moesim {

// Replay rules:
// - micro_batch m at layer l uses the trace's batch m mod B, where B is the number of batches
//   in the trace: a trace shorter than the run wraps around to its start, and wraps() says how
//   many times it did (the caller reports it). B is learned when the stream first reaches its
//   end, so a run that needs no wrap never reads past the batches it uses.
// - A batch's T tokens are split among request.ranks ranks contiguously: rank r gets tokens
//   [r*T/R, (r+1)*T/R). out.tokens is that share, whatever request.tokens says.
// - A count-only record is apportioned to ranks per expert by largest remainder, in proportion
//   to the ranks' token shares (ties go to the lower rank), and returned with counts_only set.
// - Decisions are taken as recorded: no capacity limit, nothing dropped.
// Asked in (micro_batch, layer, rank) order it reads each record once; other orders are served
// too (same request, same answer) by seeking back to a remembered batch start.
class TraceRoutingSource final : public RoutingSource {
 public:
  explicit TraceRoutingSource(const std::filesystem::path& path);
  explicit TraceRoutingSource(std::unique_ptr<TraceReader> reader);

  int32_t experts() const override { return reader_->header().experts; }
  int32_t top_k() const override { return reader_->header().top_k; }
  // MoE layers per batch in the trace; the step checks it against its model's MoE layer count.
  int32_t layers() const { return reader_->header().layers; }
  const TraceHeader& header() const { return reader_->header(); }

  // Throws TraceError for a request the trace cannot answer (layer beyond layers(), bad rank)
  // and for any error the reader finds in the records it reaches.
  void route(const RoutingRequest& request, RoutingDecision& out) override;
  bool thread_safe() const override { return false; }

  // Batches in the trace, or -1 while the end has not been reached.
  int64_t trace_batches() const { return trace_batches_; }
  // How many times replay went back to the trace's start (0: the trace covered the run so far).
  int64_t wraps() const { return wraps_; }

 private:
  void load(int64_t micro_batch, int32_t layer);
  bool read_next();
  void apportion_counts(int32_t ranks);

  std::unique_ptr<TraceReader> reader_;
  TraceRecord current_;
  bool has_current_ = false;
  std::vector<int64_t> batch_offsets_;  // byte offset of each seen batch's first record
  int64_t trace_batches_ = -1;
  int64_t wraps_ = 0;
  // Count-only records: per rank, per expert counts for apportioned_ranks_ ranks.
  std::vector<int64_t> rank_counts_;
  int32_t apportioned_ranks_ = 0;
  std::vector<int64_t> remainders_;
  std::vector<int32_t> order_;
};

}  // namespace moesim
