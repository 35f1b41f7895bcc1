#include "models/router/routing_statistics.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <stdexcept>
#include <string>
#include <unordered_map>

#include "models/router/routing_decision.h"

namespace moesim {

RoutingSample RoutingSample::slice(int64_t begin, int64_t end) const {
  if (begin < 0 || end < begin || end > tokens()) {
    throw std::invalid_argument("routing sample: tokens [" + std::to_string(begin) + ", " +
                                std::to_string(end) + ") out of [0, " + std::to_string(tokens()) +
                                ")");
  }
  RoutingSample out;
  out.experts = experts;
  out.top_k = top_k;
  for (const auto& layer : ids) {
    out.ids.emplace_back(layer.begin() + begin * top_k, layer.begin() + end * top_k);
  }
  if (!sequence_start.empty()) {
    out.sequence_start.assign(sequence_start.begin() + begin, sequence_start.begin() + end);
  }
  return out;
}

void RoutingSample::validate() const {
  const auto bad = [](const std::string& what) {
    throw std::invalid_argument("routing sample: " + what);
  };
  if (experts < 2) bad("experts must be >= 2");
  if (top_k < 1 || top_k > experts) bad("top_k must be in [1, experts]");
  if (ids.empty()) bad("no layer");
  for (size_t l = 0; l < ids.size(); ++l) {
    if (ids[l].size() != ids[0].size() || ids[l].size() % top_k != 0) {
      bad("layer " + std::to_string(l) + " holds " + std::to_string(ids[l].size()) +
          " ids, expected " + std::to_string(ids[0].size()) + " (tokens x top_k)");
    }
    for (const int32_t e : ids[l]) {
      if (e != kNoExpert && (e < 0 || e >= experts)) {
        bad("layer " + std::to_string(l) + ": expert id " + std::to_string(e) + " out of [0, " +
            std::to_string(experts) + ")");
      }
    }
  }
  if (!sequence_start.empty() && static_cast<int64_t>(sequence_start.size()) != tokens()) {
    bad("sequence_start must be empty or hold one flag per token");
  }
}

Spread spread_of(std::span<const double> values) {
  Spread s;
  s.count = static_cast<int64_t>(values.size());
  if (values.empty()) return s;
  std::vector<double> v(values.begin(), values.end());
  std::sort(v.begin(), v.end());
  double sum = 0.0;
  for (const double x : v) sum += x;
  s.mean = sum / static_cast<double>(v.size());
  double sq = 0.0;
  for (const double x : v) sq += (x - s.mean) * (x - s.mean);
  s.stddev = v.size() > 1 ? std::sqrt(sq / static_cast<double>(v.size())) : 0.0;
  // Nearest rank: the smallest value with at least p of the values at or below it.
  const auto rank = [&v](double p) {
    const auto n = static_cast<double>(v.size());
    const auto i = static_cast<size_t>(std::max(1.0, std::ceil(p * n))) - 1;
    return v[std::min(i, v.size() - 1)];
  };
  s.p50 = rank(0.5);
  s.p90 = rank(0.9);
  s.max = v.back();
  return s;
}

namespace {

// Per-layer pair counts: dense when E^2 is small (every model today), hashed otherwise.
double pair_top_share_of_layer(std::span<const int32_t> ids, int32_t experts, int32_t k) {
  const int64_t tokens = static_cast<int64_t>(ids.size()) / k;
  std::vector<int64_t> counts;
  int64_t total = 0;
  const bool dense = static_cast<int64_t>(experts) * experts <= (int64_t{1} << 22);
  std::unordered_map<int64_t, int64_t> sparse;
  if (dense) counts.assign(static_cast<size_t>(experts) * experts, 0);
  for (int64_t t = 0; t < tokens; ++t) {
    const int32_t* row = ids.data() + t * k;
    for (int32_t a = 0; a < k; ++a) {
      if (row[a] == kNoExpert) continue;
      for (int32_t b = a + 1; b < k; ++b) {
        if (row[b] == kNoExpert || row[b] == row[a]) continue;
        const int64_t lo = std::min(row[a], row[b]);
        const int64_t hi = std::max(row[a], row[b]);
        if (dense) {
          ++counts[static_cast<size_t>(lo * experts + hi)];
        } else {
          ++sparse[lo * experts + hi];
        }
        ++total;
      }
    }
  }
  if (total == 0) return 0.0;
  if (!dense) {
    for (const auto& [key, n] : sparse) counts.push_back(n);
  }
  const size_t top = std::min(counts.size(), static_cast<size_t>(experts));
  std::partial_sort(counts.begin(), counts.begin() + static_cast<std::ptrdiff_t>(top), counts.end(),
                    std::greater<>());
  int64_t in_top = 0;
  for (size_t i = 0; i < top; ++i) in_top += counts[i];
  return static_cast<double>(in_top) / static_cast<double>(total);
}

}  // namespace

RoutingStatistics routing_statistics(const RoutingSample& sample, int32_t tokens_per_batch) {
  sample.validate();
  if (tokens_per_batch < 1) throw std::invalid_argument("tokens_per_batch must be >= 1");
  const int32_t E = sample.experts;
  const int32_t k = sample.top_k;
  const int64_t whole = sample.tokens() / tokens_per_batch;
  if (whole < 1) {
    throw std::invalid_argument("routing statistics: " + std::to_string(sample.tokens()) +
                                " tokens hold no whole batch of " +
                                std::to_string(tokens_per_batch));
  }
  RoutingStatistics s;
  s.tokens_per_batch = tokens_per_batch;
  s.load_curve.assign(E, 0.0);
  std::vector<double> ratios;
  std::vector<int64_t> counts(E);
  int64_t follow_pairs = 0;
  double follow_sum = 0.0;
  double pair_share_sum = 0.0;
  for (const auto& layer : sample.ids) {
    for (int64_t b = 0; b < whole; ++b) {
      std::fill(counts.begin(), counts.end(), 0);
      int64_t slots = 0;
      const int64_t first = b * tokens_per_batch;
      for (int64_t t = first; t < first + tokens_per_batch; ++t) {
        const int32_t* row = layer.data() + t * k;
        for (int32_t j = 0; j < k; ++j) {
          if (row[j] == kNoExpert) continue;
          ++counts[row[j]];
          ++slots;
        }
        // Following, within the batch and the sequence.
        const bool starts = t == first || (!sample.sequence_start.empty() &&
                                           sample.sequence_start[static_cast<size_t>(t)] != 0);
        if (starts) continue;
        const int32_t* prev = row - k;
        int32_t shared = 0;
        for (int32_t j = 0; j < k; ++j) {
          if (row[j] != kNoExpert && std::find(prev, prev + k, row[j]) != prev + k) ++shared;
        }
        follow_sum += static_cast<double>(shared) / k;
        ++follow_pairs;
      }
      if (slots == 0) continue;
      const double mean = static_cast<double>(slots) / E;
      std::sort(counts.begin(), counts.end(), std::greater<>());
      for (int32_t e = 0; e < E; ++e) s.load_curve[e] += static_cast<double>(counts[e]) / mean;
      ratios.push_back(static_cast<double>(counts[0]) / mean);
    }
    pair_share_sum += pair_top_share_of_layer(layer, E, k);
  }
  s.batches = static_cast<int64_t>(ratios.size());
  if (s.batches > 0) {
    for (double& v : s.load_curve) v /= static_cast<double>(s.batches);
  }
  s.max_over_mean = spread_of(ratios);
  s.pair_top_share = pair_share_sum / sample.layers();
  s.follow_fraction = follow_pairs > 0 ? follow_sum / static_cast<double>(follow_pairs) : 0.0;
  return s;
}

StatisticsError statistics_error(const RoutingStatistics& model,
                                 const RoutingStatistics& reference) {
  if (model.load_curve.size() != reference.load_curve.size()) {
    throw std::invalid_argument("statistics_error: expert counts differ (" +
                                std::to_string(model.load_curve.size()) + " vs " +
                                std::to_string(reference.load_curve.size()) + ")");
  }
  const auto rel = [](double m, double r) { return r != 0.0 ? (m - r) / r : m - r; };
  StatisticsError e;
  double sum = 0.0;
  for (size_t i = 0; i < model.load_curve.size(); ++i) {
    sum += std::abs(model.load_curve[i] - reference.load_curve[i]);
  }
  e.load_curve =
      model.load_curve.empty() ? 0.0 : sum / static_cast<double>(model.load_curve.size());
  e.max_over_mean = rel(model.max_over_mean.mean, reference.max_over_mean.mean);
  e.max_over_mean_stddev = rel(model.max_over_mean.stddev, reference.max_over_mean.stddev);
  e.pair_top_share = rel(model.pair_top_share, reference.pair_top_share);
  e.follow_fraction = rel(model.follow_fraction, reference.follow_fraction);
  return e;
}

}  // namespace moesim
