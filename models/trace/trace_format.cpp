#include "models/trace/trace_format.h"

#include "models/router/routing_decision.h"

namespace moesim {

namespace {

[[noreturn]] void fail(const std::string& where, const std::string& what) {
  throw TraceError(where + ": " + what);
}

}  // namespace

void validate_header(const TraceHeader& header, const std::string& where) {
  if (header.layers > kTraceMaxLayers || header.experts > kTraceMaxExperts) {
    fail(where, "header: " + std::to_string(header.layers) + " layers and " +
                    std::to_string(header.experts) + " experts exceed the limits " +
                    std::to_string(kTraceMaxLayers) + " and " + std::to_string(kTraceMaxExperts));
  }
  if (header.layers <= 0)
    fail(where, "header: layers must be > 0, got " + std::to_string(header.layers));
  if (header.experts <= 0)
    fail(where, "header: experts must be > 0, got " + std::to_string(header.experts));
  if (header.top_k <= 0 || header.top_k > header.experts) {
    fail(where, "header: top_k must be in [1, experts=" + std::to_string(header.experts) +
                    "], got " + std::to_string(header.top_k));
  }
  if (header.tokens_per_batch < 0) {
    fail(where,
         "header: tokens_per_batch must be >= 0, got " + std::to_string(header.tokens_per_batch));
  }
}

void validate_record(const TraceHeader& header, const TraceRecord& record, int64_t record_index,
                     const std::string& where) {
  const int64_t want_batch = record_index / header.layers;
  const int32_t want_layer = static_cast<int32_t>(record_index % header.layers);
  if (record.batch != want_batch || record.layer != want_layer) {
    fail(where, "expected batch " + std::to_string(want_batch) + " layer " +
                    std::to_string(want_layer) + " (records are ordered by batch, then layer, " +
                    "with all " + std::to_string(header.layers) +
                    " layers per batch), found batch " + std::to_string(record.batch) + " layer " +
                    std::to_string(record.layer));
  }
  if (record.tokens < 0) fail(where, "tokens must be >= 0, got " + std::to_string(record.tokens));
  if (header.tokens_per_batch > 0 && record.tokens > header.tokens_per_batch) {
    fail(where, "record has " + std::to_string(record.tokens) +
                    " tokens, more than the header's tokens_per_batch " +
                    std::to_string(header.tokens_per_batch));
  }
  if (record.counts_only()) {
    if (!record.expert_ids.empty() || !record.weights.empty()) {
      fail(where, "a record holds either expert counts or expert ids, not both");
    }
    if (record.expert_counts.size() != static_cast<size_t>(header.experts)) {
      fail(where, "count-only record has " + std::to_string(record.expert_counts.size()) +
                      " expert counts, the header says " + std::to_string(header.experts) +
                      " experts");
    }
    int64_t pairs = 0;
    for (size_t e = 0; e < record.expert_counts.size(); ++e) {
      const int64_t c = record.expert_counts[e];
      if (c < 0 || c > record.tokens) {
        fail(where, "expert " + std::to_string(e) + " count " + std::to_string(c) +
                        " is outside [0, tokens=" + std::to_string(record.tokens) + "]");
      }
      pairs += c;
    }
    if (pairs > static_cast<int64_t>(record.tokens) * header.top_k) {
      fail(where, "expert counts sum to " + std::to_string(pairs) +
                      " pairs, more than tokens x top_k = " +
                      std::to_string(static_cast<int64_t>(record.tokens) * header.top_k));
    }
    return;
  }
  const size_t ids = record.expert_ids.size();
  if (ids % static_cast<size_t>(header.top_k) != 0) {
    fail(where, std::to_string(ids) + " expert ids is not a multiple of the header's top_k " +
                    std::to_string(header.top_k) + " (k disagrees with the header)");
  }
  if (ids / static_cast<size_t>(header.top_k) != static_cast<size_t>(record.tokens)) {
    fail(where, "record says " + std::to_string(record.tokens) + " tokens but holds " +
                    std::to_string(ids) + " expert ids = " +
                    std::to_string(ids / static_cast<size_t>(header.top_k)) + " tokens x top_k " +
                    std::to_string(header.top_k) + " (k disagrees with the header)");
  }
  if (header.has_weights ? record.weights.size() != ids : !record.weights.empty()) {
    fail(where, "record has " + std::to_string(record.weights.size()) + " weights for " +
                    std::to_string(ids) + " expert ids; the header says weights are " +
                    (header.has_weights ? "present" : "absent"));
  }
  for (size_t i = 0; i < ids; ++i) {
    const int32_t id = record.expert_ids[i];
    if (id == kNoExpert) continue;
    if (id < 0 || id >= header.experts) {
      fail(where, "token " + std::to_string(i / static_cast<size_t>(header.top_k)) + " slot " +
                      std::to_string(i % static_cast<size_t>(header.top_k)) + ": expert id " +
                      std::to_string(id) + " is out of range [0, " +
                      std::to_string(header.experts) + ")");
    }
  }
}

}  // namespace moesim
