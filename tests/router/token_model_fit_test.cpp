// Routing statistics on hand-worked samples (closed forms) and the token-model fit's round trip:
// synthetic routing from known parameters is fitted back to parameters that reproduce it.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "models/router/routing_decision.h"
#include "models/router/routing_statistics.h"
#include "models/router/token_model_fit.h"

namespace moesim {
namespace {

RoutingSample one_layer(int32_t experts, int32_t k, std::vector<int32_t> ids) {
  RoutingSample s;
  s.experts = experts;
  s.top_k = k;
  s.ids.push_back(std::move(ids));
  return s;
}

}  // namespace

TEST_CASE("statistics: a batch with known counts gives its sorted curve and max/mean") {
  // E = 4, k = 1, one batch of 8 tokens: counts 4, 2, 1, 1 (mean 2) -> curve 2, 1, .5, .5.
  const RoutingSample s = one_layer(4, 1, {0, 0, 1, 0, 2, 1, 0, 3});
  const RoutingStatistics st = routing_statistics(s, 8);
  REQUIRE(st.batches == 1);
  CHECK(st.load_curve == std::vector<double>{2.0, 1.0, 0.5, 0.5});
  CHECK(st.max_over_mean.mean == 2.0);
  CHECK(st.max_over_mean.stddev == 0.0);
  // Following: pairs (0,0) (0,1) (1,0) (0,2) (2,1) (1,0) (0,3): one shares its expert -> 1/7.
  CHECK(st.follow_fraction == Approx(1.0 / 7.0));
}

TEST_CASE("statistics: max/mean spread across batches and the averaged curve") {
  // Two batches of 4 tokens, E = 2, k = 1: batch 0 all on expert 0 (max/mean 2), batch 1 split
  // 2/2 (max/mean 1): mean 1.5, population stddev 0.5; curve (2+1)/2, (0+1)/2.
  const RoutingSample s = one_layer(2, 1, {0, 0, 0, 0, 1, 0, 1, 0});
  const RoutingStatistics st = routing_statistics(s, 4);
  REQUIRE(st.batches == 2);
  CHECK(st.max_over_mean.mean == 1.5);
  CHECK(st.max_over_mean.stddev == 0.5);
  CHECK(st.max_over_mean.max == 2.0);
  CHECK(st.load_curve == std::vector<double>{1.5, 0.5});
  // A partial last batch is left out: 9 tokens at 4 per batch measure the same two batches.
  RoutingSample longer = s;
  longer.ids[0].push_back(1);
  CHECK(routing_statistics(longer, 4).max_over_mean.mean == 1.5);
}

TEST_CASE("statistics: co-selection share of the top-E pairs") {
  // E = 4, k = 2: the six pairs once each -> the top 4 of 6 pairs hold 4/6.
  const RoutingSample all_pairs = one_layer(4, 2, {0, 1, 0, 2, 0, 3, 1, 2, 1, 3, 2, 3});
  CHECK(routing_statistics(all_pairs, 6).pair_top_share == Approx(4.0 / 6.0));
  // Always the same pair: share 1. Following: every token repeats both -> 1.
  const RoutingSample same = one_layer(4, 2, {2, 3, 3, 2, 2, 3, 2, 3});
  const RoutingStatistics st = routing_statistics(same, 4);
  CHECK(st.pair_top_share == 1.0);
  CHECK(st.follow_fraction == 1.0);
  // Empty slots (dropped pairs) form no pair and count no load.
  const RoutingSample dropped = one_layer(4, 2, {0, kNoExpert, 1, 2, 1, 2, 3, kNoExpert});
  const RoutingStatistics d = routing_statistics(dropped, 4);
  CHECK(d.pair_top_share == 1.0);
  // Slots 0, 1, 2, 1, 2, 3 kept: counts 1, 2, 2, 1 over mean 1.5.
  CHECK(d.max_over_mean.mean == Approx(2.0 / 1.5));
}

TEST_CASE("statistics: following stops at sequence starts and batch edges") {
  // k = 2, E = 8; tokens {0,1} {0,2} | {0,2} {5,6}: within batch 0 one of two shared (0.5),
  // batch 1 none (0) -> 0.25; the pair across the batch edge is not counted.
  RoutingSample s = one_layer(8, 2, {0, 1, 0, 2, 0, 2, 5, 6});
  CHECK(routing_statistics(s, 2).follow_fraction == 0.25);
  // One batch of 4 counts three pairs: 0.5, 1, 0 -> 0.5; a sequence start at token 2 drops the
  // middle one -> 0.25.
  CHECK(routing_statistics(s, 4).follow_fraction == Approx(0.5));
  s.sequence_start = {1, 0, 1, 0};
  CHECK(routing_statistics(s, 4).follow_fraction == Approx(0.25));
}

TEST_CASE("statistics: independent uniform routing meets its closed forms") {
  // Tokens choosing k distinct experts uniformly at random and independently: the expected
  // following is k / E and max/mean at large batches tends to 1. One cluster with no centre or
  // offset, no sequence model and isotropic logits is close to that (the random gate's W^T W is
  // near, not exactly, the identity, so experts are not quite equally likely).
  TokenModel m;
  m.hidden = 256;
  m.clusters = 1;
  m.centre_scale = 0.0;
  m.offset_scale = 0.0;
  m.isotropic_scale = 1.0;
  m.hidden = 1024;
  const RoutingSample s = synthesize_routing(m, 16, 2, 1, 4096, 4, 3);
  const RoutingStatistics st = routing_statistics(s, 4096);
  CHECK(st.follow_fraction == Approx(2.0 / 16.0).margin(0.01));
  // Each expert's share is Binomial(4096, 1/8) of slots: max/mean ~ 1 + 3 sigma / mean, about
  // 1 + 3 * sqrt(7/8 / 512) = 1.12.
  CHECK(st.max_over_mean.mean < 1.2);
  CHECK(st.max_over_mean.mean > 1.02);
}

TEST_CASE("statistics: every pair equally often gives the top-E share E / (E(E-1)/2)") {
  // E = 16, k = 2: each of the 120 pairs chosen by one token -> the top 16 hold 16/120.
  std::vector<int32_t> ids;
  for (int32_t a = 0; a < 16; ++a) {
    for (int32_t b = a + 1; b < 16; ++b) ids.insert(ids.end(), {a, b});
  }
  CHECK(routing_statistics(one_layer(16, 2, ids), 120).pair_top_share == Approx(16.0 / 120.0));
}

TEST_CASE("statistics: bad input is refused") {
  CHECK_THROWS_AS(routing_statistics(one_layer(4, 1, {0, 1}), 3), std::invalid_argument);
  CHECK_THROWS_AS(routing_statistics(one_layer(4, 1, {0, 4}), 1), std::invalid_argument);
  CHECK_THROWS_AS(routing_statistics(one_layer(4, 1, {0, 1}), 0), std::invalid_argument);
}

TEST_CASE("fit: synthetic routing from known parameters is fitted back") {
  TokenModel truth;
  truth.hidden = 512;
  truth.clusters = 8;
  truth.popularity_exponent = 1.2;
  truth.offset_scale = 0.8;
  truth.isotropic_scale = 0.5;
  truth.stay_probability = 0.6;
  truth.offset_correlation = 0.5;
  const int32_t B = 64;
  // Data from another seed than the fit's own draws.
  const RoutingSample data = synthesize_routing(truth, 32, 4, 1, B, 48, 77);
  TokenModelFitOptions options;
  options.tokens_per_batch = B;
  options.cluster_counts = {8};
  options.offset_ranks = {16};
  options.evaluations_per_count = 80;
  const TokenModelFit fit = fit_token_model(data, options);
  // The statistics come back (the fit's own figure and a fresh draw of the fitted model).
  const RoutingStatistics again =
      routing_statistics(synthesize_routing(fit.model, 32, 4, 1, B, 48, 5), B);
  const StatisticsError e = statistics_error(again, fit.trace);
  CHECK(std::abs(e.max_over_mean) < 0.1);
  CHECK(e.load_curve < 0.1);
  CHECK(std::abs(again.follow_fraction - fit.trace.follow_fraction) < 0.05);
  // The parameters the statistics pin down come back too: staying in a cluster sets following.
  CHECK(fit.model.stay_probability == Approx(truth.stay_probability).margin(0.2));
  CHECK(fit.loss < 0.05);
}

}  // namespace moesim
