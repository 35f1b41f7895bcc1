#include "models/router/token_model_fit.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "models/router/router.h"

namespace moesim {

RoutingSample synthesize_routing(const TokenModel& model, int32_t experts, int32_t top_k,
                                 int32_t layers, int32_t tokens_per_batch, int64_t batches,
                                 uint64_t seed) {
  RouterSpec spec;
  spec.experts = experts;
  spec.top_k = top_k;
  spec.layers = layers;
  spec.source = TokenSourceKind::kLogitSpace;
  spec.tokens = model;
  spec.seed = seed;
  Router router(spec);
  RoutingSample out;
  out.experts = experts;
  out.top_k = top_k;
  out.ids.resize(layers);
  out.sequence_start.assign(static_cast<size_t>(tokens_per_batch * batches), 0);
  RoutingDecision decision;
  for (int64_t b = 0; b < batches; ++b) {
    out.sequence_start[static_cast<size_t>(b * tokens_per_batch)] = 1;
    for (int32_t l = 0; l < layers; ++l) {
      RoutingRequest request;
      request.layer = l;
      request.micro_batch = b;
      request.tokens = tokens_per_batch;
      router.route(request, decision);
      out.ids[l].insert(out.ids[l].end(), decision.expert_ids.begin(), decision.expert_ids.end());
    }
  }
  return out;
}

double fit_loss(const RoutingStatistics& model, const RoutingStatistics& reference) {
  const StatisticsError e = statistics_error(model, reference);
  // Following near zero (independent tokens) is compared in absolute terms, not relative.
  const double follow = (model.follow_fraction - reference.follow_fraction) /
                        std::max(reference.follow_fraction, 0.1);
  return e.load_curve * e.load_curve + e.max_over_mean * e.max_over_mean +
         0.25 * e.max_over_mean_stddev * e.max_over_mean_stddev +
         e.pair_top_share * e.pair_top_share + follow * follow;
}

namespace {

constexpr int kParameters = 6;
constexpr int32_t kLargerBatches[] = {4, 16};
using Point = std::array<double, kParameters>;

double logistic(double x) {
  return 1.0 / (1.0 + std::exp(-x));
}
double logit(double p) {
  return std::log(p / (1.0 - p));
}

// Unconstrained coordinates to parameters: exponent in (0, 3), spread and isotropic scale
// positive (log), stay probability in (0, 1), offset correlation in (0, 0.98), common centre
// scale positive (log).
TokenModel to_model(const Point& x, int32_t clusters, int32_t rank, int32_t hidden) {
  TokenModel m;
  m.hidden = hidden;
  m.clusters = clusters;
  m.offset_rank = rank;
  m.centre_scale = 1.0;
  m.popularity_exponent = 3.0 * logistic(x[0]);
  m.offset_scale = std::exp(std::clamp(x[1], -6.0, 4.0));
  m.isotropic_scale = std::exp(std::clamp(x[2], -6.0, 4.0));
  m.stay_probability = logistic(x[3]);
  m.offset_correlation = 0.98 * logistic(x[4]);
  m.common_scale = std::exp(std::clamp(x[5], -6.0, 4.0));
  m.sequence_tokens = 0;
  return m;
}

}  // namespace

TokenModelFit fit_token_model(const RoutingSample& sample, const TokenModelFitOptions& options) {
  sample.validate();
  const int32_t B = options.tokens_per_batch;
  if (B < 1) throw std::invalid_argument("token model fit: tokens_per_batch must be >= 1");
  if (sample.tokens() / B < 2) {
    throw std::invalid_argument("token model fit: " + std::to_string(sample.tokens()) +
                                " tokens hold fewer than two batches of " + std::to_string(B));
  }
  if (options.cluster_counts.empty() || options.evaluations_per_count < 1) {
    throw std::invalid_argument("token model fit: no cluster count or evaluation to try");
  }
  TokenModelFit best;
  best.trace = routing_statistics(sample, B);
  best.loss = std::numeric_limits<double>::infinity();
  const int64_t tokens = options.synthetic_tokens > 0 ? options.synthetic_tokens
                                                      : std::max<int64_t>(sample.tokens(), 16 * B);
  // How imbalance falls as the batch grows is fitted too, from the sample's own batches of 4x
  // and 16x B where it holds two or more: the synthetic stream is drawn in requests of the
  // largest such size (one sequence each, as consecutive tokens of a trace are) and measured at
  // every size.
  int32_t request = B;
  for (const int32_t scale : kLargerBatches) {
    if (sample.tokens() / (int64_t{scale} * B) < 2) break;
    request = scale * B;
    best.trace_larger.push_back(routing_statistics(sample, request));
  }
  const int64_t requests = std::max<int64_t>(2, tokens / request);
  const auto larger_statistics = [&](const RoutingSample& synthetic) {
    std::vector<RoutingStatistics> out;
    for (const RoutingStatistics& t : best.trace_larger) {
      out.push_back(routing_statistics(synthetic, t.tokens_per_batch));
    }
    return out;
  };

  const auto evaluate = [&](const Point& x, int32_t clusters, int32_t rank,
                            RoutingStatistics& stats) {
    const TokenModel m = to_model(x, clusters, rank, options.hidden);
    const RoutingSample synthetic = synthesize_routing(
        m, sample.experts, sample.top_k, sample.layers(), request, requests, options.seed);
    stats = routing_statistics(synthetic, B);
    ++best.evaluations;
    double loss = fit_loss(stats, best.trace);
    for (size_t i = 0; i < best.trace_larger.size(); ++i) {
      const StatisticsError e =
          statistics_error(routing_statistics(synthetic, best.trace_larger[i].tokens_per_batch),
                           best.trace_larger[i]);
      loss += e.max_over_mean * e.max_over_mean + e.load_curve * e.load_curve;
    }
    return loss;
  };

  // Start: moderate popularity skew and spread; following from the trace's own figure (above
  // the chance level k / E, the excess is what staying in a cluster must produce).
  const double chance = static_cast<double>(sample.top_k) / sample.experts;
  const double excess =
      std::clamp((best.trace.follow_fraction - chance) / std::max(1.0 - chance, 1e-6), 0.05, 0.95);
  const Point start = {logit(1.0 / 3.0), std::log(0.5), std::log(0.3),
                       logit(excess),    0.0,           std::log(0.3)};

  std::vector<std::pair<int32_t, int32_t>> shapes;
  for (const int32_t clusters : options.cluster_counts) {
    for (const int32_t rank : options.offset_ranks) shapes.emplace_back(clusters, rank);
  }
  for (const auto& [clusters, rank] : shapes) {
    // The common centre sets how far the hottest experts stand out, which ranges over orders of
    // magnitude between traces: start from the best of a coarse scan of it.
    Point from = start;
    double from_value = std::numeric_limits<double>::infinity();
    int32_t used = 0;
    for (const double common : {0.1, 0.5, 1.0, 2.0}) {
      Point p = start;
      p[5] = std::log(common);
      RoutingStatistics s;
      const double f = evaluate(p, clusters, rank, s);
      ++used;
      if (f < from_value) from = p, from_value = f;
    }
    // Nelder-Mead (standard coefficients) from a simplex of unit steps, restarted once from its
    // best point when it has converged with budget left.
    std::array<Point, kParameters + 1> simplex;
    std::array<double, kParameters + 1> value{};
    std::array<RoutingStatistics, kParameters + 1> stats;
    const auto restart = [&](const Point& centre) {
      for (int i = 0; i <= kParameters; ++i) {
        simplex[i] = centre;
        if (i > 0) simplex[i][i - 1] += 1.0;
        value[i] = evaluate(simplex[i], clusters, rank, stats[i]);
        ++used;
      }
    };
    restart(from);
    bool restarted = false;
    while (used < options.evaluations_per_count) {
      std::array<int, kParameters + 1> order{};
      for (int i = 0; i <= kParameters; ++i) order[i] = i;
      std::sort(order.begin(), order.end(), [&](int a, int b) { return value[a] < value[b]; });
      const int worst = order[kParameters];
      const int second = order[kParameters - 1];
      const int lowest = order[0];
      if (value[worst] - value[lowest] < 1e-7) {
        if (restarted || used + 2 * (kParameters + 1) > options.evaluations_per_count) break;
        restarted = true;
        const Point best_point = simplex[lowest];
        restart(best_point);
        continue;
      }
      Point centroid{};
      for (int i = 0; i <= kParameters; ++i) {
        if (i == worst) continue;
        for (int j = 0; j < kParameters; ++j) centroid[j] += simplex[i][j] / kParameters;
      }
      const auto along = [&](double t) {
        Point p;
        for (int j = 0; j < kParameters; ++j) {
          p[j] = centroid[j] + t * (simplex[worst][j] - centroid[j]);
        }
        return p;
      };
      RoutingStatistics s_r;
      const Point reflected = along(-1.0);
      const double f_r = evaluate(reflected, clusters, rank, s_r);
      ++used;
      if (f_r < value[lowest]) {
        RoutingStatistics s_e;
        const Point expanded = along(-2.0);
        const double f_e = evaluate(expanded, clusters, rank, s_e);
        ++used;
        if (f_e < f_r) {
          simplex[worst] = expanded, value[worst] = f_e, stats[worst] = s_e;
        } else {
          simplex[worst] = reflected, value[worst] = f_r, stats[worst] = s_r;
        }
        continue;
      }
      if (f_r < value[second]) {
        simplex[worst] = reflected, value[worst] = f_r, stats[worst] = s_r;
        continue;
      }
      RoutingStatistics s_c;
      const Point contracted = f_r < value[worst] ? along(-0.5) : along(0.5);
      const double f_c = evaluate(contracted, clusters, rank, s_c);
      ++used;
      if (f_c < std::min(f_r, value[worst])) {
        simplex[worst] = contracted, value[worst] = f_c, stats[worst] = s_c;
        continue;
      }
      // Shrink toward the best vertex.
      for (int i = 0; i <= kParameters; ++i) {
        if (i == lowest) continue;
        for (int j = 0; j < kParameters; ++j) {
          simplex[i][j] = simplex[lowest][j] + 0.5 * (simplex[i][j] - simplex[lowest][j]);
        }
        value[i] = evaluate(simplex[i], clusters, rank, stats[i]);
        ++used;
      }
    }
    const auto at =
        static_cast<size_t>(std::min_element(value.begin(), value.end()) - value.begin());
    if (value[at] < best.loss) {
      best.loss = value[at];
      best.model = to_model(simplex[at], clusters, rank, options.hidden);
      best.fitted = stats[at];
      best.fitted_larger =
          larger_statistics(synthesize_routing(best.model, sample.experts, sample.top_k,
                                               sample.layers(), request, requests, options.seed));
    }
  }
  return best;
}

}  // namespace moesim
