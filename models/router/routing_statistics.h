// Statistics of top-k routing that do not depend on which expert is which, so synthetic and real
// routing can be compared: the sorted load curve, max/mean per batch, co-selection, following.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace moesim {

// Routing decisions as a stream of tokens per MoE layer: layer l's token t chose
// ids[l][t * top_k .. t * top_k + top_k) (kNoExpert for an empty slot, e.g. a dropped pair).
// sequence_start[t] (optional; empty: one sequence) marks a token whose predecessor belongs to
// another sequence, so following is not counted across it. Batches are cut from the stream.
struct RoutingSample {
  int32_t experts = 0;
  int32_t top_k = 0;
  std::vector<std::vector<int32_t>> ids;  // [layer][token * top_k + slot]
  std::vector<uint8_t> sequence_start;    // [token]; empty or one per token

  int32_t layers() const { return static_cast<int32_t>(ids.size()); }
  int64_t tokens() const {
    return ids.empty() ? 0 : static_cast<int64_t>(ids[0].size()) / (top_k > 0 ? top_k : 1);
  }
  // The tokens [begin, end) of every layer. Throws std::invalid_argument out of range.
  RoutingSample slice(int64_t begin, int64_t end) const;
  // Throws std::invalid_argument unless the shape is consistent and ids are in range.
  void validate() const;
};

// Summary of a set of values: what the fit and the validation compare.
struct Spread {
  int64_t count = 0;
  double mean = 0.0;
  double stddev = 0.0;  // population (divides by count); 0 for fewer than two values
  double p50 = 0.0;
  double p90 = 0.0;  // nearest rank
  double max = 0.0;
};
Spread spread_of(std::span<const double> values);

struct RoutingStatistics {
  int32_t tokens_per_batch = 0;
  int64_t batches = 0;  // (batch, layer) pairs measured: whole batches only
  // Per (batch, layer), each expert's chosen slots over their mean over experts, sorted from the
  // hottest; averaged over (batch, layer). E entries; sums to E when no slot is empty.
  std::vector<double> load_curve;
  // Per (batch, layer): the hottest expert's slots over the mean over experts.
  Spread max_over_mean;
  // Co-selection: of all (token, pair of its chosen experts), the fraction that fall on the
  // `experts` most frequent unordered pairs of that layer (over the whole stream, averaged over
  // layers). Independent uniform choice gives about 2 / (experts - 1); tokens that always pick
  // the same k experts give 1 for k(k-1)/2 <= experts.
  double pair_top_share = 0.0;
  // Following: over consecutive tokens of a batch within one sequence, the mean fraction of a
  // token's chosen experts that its predecessor also chose (|S_t n S_t-1| / k). Independent
  // uniform choice gives k / experts.
  double follow_fraction = 0.0;
};

// The statistics of `sample` cut into consecutive batches of `tokens_per_batch` tokens (a last
// partial batch is left out of the per-batch figures). Throws std::invalid_argument when the
// sample holds no whole batch.
RoutingStatistics routing_statistics(const RoutingSample& sample, int32_t tokens_per_batch);

// Differences of `model` against `reference`, each as a fraction of the reference's figure:
// load curve mean |difference| over experts (curve values are relative to the mean, so this is
// a fraction of the mean load), max/mean mean and stddev, co-selection and following.
struct StatisticsError {
  double load_curve = 0.0;
  double max_over_mean = 0.0;         // (model - reference) / reference
  double max_over_mean_stddev = 0.0;  // (model - reference) / reference
  double pair_top_share = 0.0;        // (model - reference) / reference
  double follow_fraction = 0.0;       // (model - reference) / reference
};
StatisticsError statistics_error(const RoutingStatistics& model,
                                 const RoutingStatistics& reference);

}  // namespace moesim
