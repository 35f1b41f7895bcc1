// Gating arithmetic against hand-worked cases and brute-force references: scores, top-k,
// group-limited top-k, expert choice, capacity and drop orders, load statistics.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <numeric>
#include <vector>

#include "models/router/gating.h"
#include "models/router/normal.h"
#include "core/random.h"

namespace moesim {
namespace {

RouterSpec small_spec(int32_t experts, int32_t top_k) {
  RouterSpec spec;
  spec.experts = experts;
  spec.top_k = top_k;
  spec.tokens.hidden = 1;
  return spec;
}

void route(const RouterSpec& spec, const std::vector<float>& logits, RoutingDecision& out,
           RouterStats* stats = nullptr) {
  GatingScratch scratch;
  const auto T = static_cast<int32_t>(logits.size() / spec.experts);
  route_from_logits(spec, LogitRows{logits.data(), T, spec.experts, {}}, {}, {}, scratch, out,
                    stats);
}

}  // namespace

TEST_CASE("4 experts, top-2: softmax, selection, renormalised weights and combine by hand",
          "[router]") {
  // logits (1, 2, 3, 0): softmax = (e, e^2, e^3, 1) / (1 + e + e^2 + e^3).
  const std::vector<float> logits = {1.0f, 2.0f, 3.0f, 0.0f};
  const double e = std::exp(1.0);
  const double z = 1.0 + e + e * e + e * e * e;
  std::vector<float> p(4);
  score_row(RouterScoring::kSoftmax, logits, p);
  CHECK(p[0] == Approx(e / z).epsilon(1e-6));
  CHECK(p[1] == Approx(e * e / z).epsilon(1e-6));
  CHECK(p[2] == Approx(e * e * e / z).epsilon(1e-6));
  CHECK(p[3] == Approx(1.0 / z).epsilon(1e-6));

  RouterSpec spec = small_spec(4, 2);
  RoutingDecision d;
  route(spec, logits, d);
  REQUIRE(d.slots_per_token == 2);
  CHECK(d.expert_ids[0] == 2);
  CHECK(d.expert_ids[1] == 1);
  // Renormalised over the two: e^3 / (e^3 + e^2) = 1 / (1 + e^-1) = 0.7310585786.
  CHECK(d.weights[0] == Approx(0.7310585786).epsilon(1e-6));
  CHECK(d.weights[1] == Approx(0.2689414214).epsilon(1e-6));
  // Combine given expert outputs: expert 1 -> (1, 0), expert 2 -> (0, 2).
  const float out1[2] = {1.0f, 0.0f};
  const float out2[2] = {0.0f, 2.0f};
  const float y0 = d.weights[0] * out2[0] + d.weights[1] * out1[0];
  const float y1 = d.weights[0] * out2[1] + d.weights[1] * out1[1];
  CHECK(y0 == Approx(0.2689414214).epsilon(1e-6));
  CHECK(y1 == Approx(1.4621171573).epsilon(1e-6));

  // Without renormalisation and with a routed scaling of 2.5 the weights are 2.5 p.
  spec.renormalize = false;
  spec.routed_scaling = 2.5;
  route(spec, logits, d);
  CHECK(d.weights[0] == Approx(2.5 * e * e * e / z).epsilon(1e-6));
  CHECK(d.weights[1] == Approx(2.5 * e * e / z).epsilon(1e-6));
  CHECK(d.tokens_per_expert == std::vector<int32_t>{0, 1, 1, 0});
}

TEST_CASE("sigmoid scores match 1 / (1 + e^-x)", "[router]") {
  std::vector<float> x;
  for (int i = -40; i <= 40; ++i) x.push_back(0.37f * i);
  std::vector<float> s(x.size());
  score_row(RouterScoring::kSigmoid, x, s);
  for (size_t i = 0; i < x.size(); ++i) {
    CHECK(s[i] == Approx(1.0 / (1.0 + std::exp(-double(x[i])))).epsilon(1e-6));
  }
}

TEST_CASE("top-k breaks ties toward the lower expert index", "[router]") {
  const std::vector<float> s = {0.5f, 0.9f, 0.5f, 0.9f, 0.1f};
  std::vector<int32_t> ids(3);
  top_k_row(s, ids);
  CHECK(ids == std::vector<int32_t>{1, 3, 0});
}

TEST_CASE("expert capacity is ceil(factor * T * k / E)", "[router]") {
  CHECK(expert_capacity(1.0, 4, 1, 2) == 2);
  CHECK(expert_capacity(0.5, 4, 1, 2) == 1);
  CHECK(expert_capacity(1.0, 10, 2, 3) == 7);  // 6.67 -> 7
  CHECK(expert_capacity(1.25, 4096, 8, 256) == 160);
  CHECK(expert_capacity(1.1, 1000, 1, 10) == 110);  // 110.00000000000001 in floating point
  CHECK(expert_capacity(0.0, 4096, 8, 256) == 0);
}

TEST_CASE("capacity drops by arrival or by lowest score on a hand case", "[router]") {
  // Two experts, top-1, every token prefers expert 0 with p0 = sigmoid(a_t), a = (1, 3, 2, 4).
  // Capacity ceil(1 * 4 * 1 / 2) = 2.
  const std::vector<float> logits = {1, 0, 3, 0, 2, 0, 4, 0};
  RouterSpec spec = small_spec(2, 1);
  spec.capacity_factor = 1.0;
  RoutingDecision d;
  RouterStats stats;

  spec.drop_policy = DropPolicy::kByArrival;
  route(spec, logits, d, &stats);
  CHECK(d.dropped == std::vector<uint8_t>{0, 0, 1, 1});
  CHECK(d.tokens_per_expert == std::vector<int32_t>{2, 0});
  CHECK(d.dropped_pairs == 2);
  CHECK(stats.dropped_pairs == 2);
  CHECK(stats.routed_pairs == 4);

  spec.drop_policy = DropPolicy::kByLowestScore;
  route(spec, logits, d);
  CHECK(d.dropped == std::vector<uint8_t>{1, 0, 1, 0});  // keeps a = 3 and a = 4
  CHECK(d.tokens_per_expert == std::vector<int32_t>{2, 0});
  CHECK(d.dropped_pairs == 2);

  spec.capacity_factor = 0.0;  // no dropping
  route(spec, logits, d);
  CHECK(d.dropped == std::vector<uint8_t>{0, 0, 0, 0});
  CHECK(d.tokens_per_expert == std::vector<int32_t>{4, 0});
}

TEST_CASE("aux loss is 1 for uniform routing and E for total collapse", "[router]") {
  const int32_t E = 4, T = 8;
  RouterSpec spec = small_spec(E, 1);
  std::vector<float> logits(T * E, 0.0f);
  for (int32_t t = 0; t < T; ++t) logits[t * E + t % E] = 10.0f;
  RoutingDecision d;
  RouterStats stats;
  route(spec, logits, d, &stats);
  CHECK(stats.aux_loss == Approx(1.0).epsilon(1e-6));
  CHECK(stats.max_over_mean_load == Approx(1.0));
  CHECK(stats.load_entropy_nats == Approx(std::log(4.0)));
  // z-loss: logsumexp(10, 0, 0, 0) = 10 + log(1 + 3 e^-10) for every token.
  const double lse = 10.0 + std::log(1.0 + 3.0 * std::exp(-10.0));
  CHECK(stats.z_loss == Approx(lse * lse).epsilon(1e-5));

  std::fill(logits.begin(), logits.end(), 0.0f);
  for (int32_t t = 0; t < T; ++t) logits[t * E] = 30.0f;
  route(spec, logits, d, &stats);
  CHECK(stats.aux_loss == Approx(double(E)).epsilon(1e-6));
  CHECK(stats.max_over_mean_load == Approx(double(E)));
  CHECK(stats.load_entropy_nats == Approx(0.0).margin(1e-12));
}

TEST_CASE("group-limited top-k equals a brute-force reference", "[router]") {
  RandomStream rng(7, "group test");
  const int32_t E = 32, groups = 8, topk_group = 3, k = 4;
  const int32_t size = E / groups;
  std::vector<float> s(E);
  std::vector<int32_t> ids(k);
  for (int trial = 0; trial < 2000; ++trial) {
    for (float& v : s) v = static_cast<float>(rng.uniform01());
    if (trial % 3 == 0) {
      // Coarse values force ties, which must break toward lower indices.
      for (float& v : s) v = std::round(v * 4.0f) / 4.0f;
    }
    group_limited_top_k_row(s, groups, topk_group, ids);

    std::vector<std::pair<float, int32_t>> group_scores;
    for (int32_t g = 0; g < groups; ++g) {
      std::vector<float> members(s.begin() + g * size, s.begin() + (g + 1) * size);
      std::sort(members.rbegin(), members.rend());
      group_scores.push_back({members[0] + members[1], g});
    }
    std::sort(group_scores.begin(), group_scores.end(), [](auto a, auto b) {
      return a.first > b.first || (a.first == b.first && a.second < b.second);
    });
    std::vector<std::pair<float, int32_t>> candidates;
    for (int32_t j = 0; j < topk_group; ++j) {
      const int32_t g = group_scores[j].second;
      for (int32_t i = g * size; i < (g + 1) * size; ++i) candidates.push_back({s[i], i});
    }
    std::sort(candidates.begin(), candidates.end(), [](auto a, auto b) {
      return a.first > b.first || (a.first == b.first && a.second < b.second);
    });
    std::vector<int32_t> expected;
    for (int32_t j = 0; j < k; ++j) expected.push_back(candidates[j].second);
    REQUIRE(ids == expected);
  }
}

TEST_CASE("expert choice gives every expert exactly C tokens, its best ones", "[router]") {
  const int32_t E = 8, T = 64;
  RouterSpec spec = small_spec(E, 2);
  spec.selection = RouterSelection::kExpertChoice;
  spec.capacity_factor = 1.0;  // C = 64 * 2 / 8 = 16
  RandomStream rng(3, "expert choice");
  std::vector<float> logits(T * E);
  for (float& v : logits) v = static_cast<float>(2.0 * rng.uniform01());
  RoutingDecision d;
  route(spec, logits, d);
  const int32_t C = 16;
  CHECK(d.tokens_per_expert == std::vector<int32_t>(E, C));
  std::vector<float> p(T * E);
  for (int32_t t = 0; t < T; ++t) {
    score_row(RouterScoring::kSoftmax, std::span<const float>(logits).subspan(t * E, E),
              std::span<float>(p).subspan(t * E, E));
  }
  for (int32_t e = 0; e < E; ++e) {
    std::vector<uint8_t> chosen(T, 0);
    int32_t count = 0;
    for (int32_t t = 0; t < T; ++t) {
      for (const int32_t id : d.experts_of(t)) {
        if (id == e) {
          chosen[t] = 1;
          ++count;
        }
      }
    }
    CHECK(count == C);
    float worst_chosen = 2.0f, best_other = -1.0f;
    for (int32_t t = 0; t < T; ++t) {
      if (chosen[t])
        worst_chosen = std::min(worst_chosen, p[t * E + e]);
      else
        best_other = std::max(best_other, p[t * E + e]);
    }
    CHECK(worst_chosen >= best_other);
  }
}

TEST_CASE("group-limited sigmoid routing with a bias selects by score + bias, weighs by score",
          "[router]") {
  // 4 experts in 2 groups, 1 group kept, top-1. Scores sigmoid(0) = 0.5 everywhere; a bias on
  // expert 3 makes group 1 win and expert 3 chosen, with the unbiased weight 0.5.
  RouterSpec spec = small_spec(4, 1);
  spec.scoring = RouterScoring::kSigmoid;
  spec.selection = RouterSelection::kGroupLimitedTopK;
  spec.groups = 2;
  spec.topk_group = 1;
  spec.renormalize = false;
  const std::vector<float> logits(4, 0.0f);
  const std::vector<float> bias = {0.0f, 0.0f, 0.0f, 0.1f};
  GatingScratch scratch;
  RoutingDecision d;
  route_from_logits(spec, LogitRows{logits.data(), 1, 4, {}}, {}, bias, scratch, d, nullptr);
  CHECK(d.expert_ids[0] == 3);
  CHECK(d.weights[0] == Approx(0.5));
}

TEST_CASE("ziggurat normals have the moments and tails of N(0, 1)", "[router]") {
  RandomStream rng(11, "normal test");
  std::vector<float> x(400000);
  fill_standard_normal(rng, x);
  double m1 = 0, m2 = 0, m4 = 0;
  int64_t beyond2 = 0, beyond3_6 = 0;
  for (const float v : x) {
    m1 += v;
    m2 += double(v) * v;
    m4 += double(v) * v * v * v;
    beyond2 += std::abs(v) > 2.0f;
    beyond3_6 += std::abs(v) > 3.6541528853610088f;  // the ziggurat's tail region
  }
  const double n = double(x.size());
  CHECK(std::abs(m1 / n) < 5 * std::sqrt(1.0 / n));
  CHECK(std::abs(m2 / n - 1.0) < 5 * std::sqrt(2.0 / n));
  CHECK(std::abs(m4 / n - 3.0) < 5 * std::sqrt(96.0 / n));
  // P(|X| > 2) = erfc(2 / sqrt 2) = 0.0455003.
  const double p2 = std::erfc(2.0 / std::sqrt(2.0));
  CHECK(std::abs(beyond2 / n - p2) < 5 * std::sqrt(p2 * (1 - p2) / n));
  const double p36 = std::erfc(3.6541528853610088 / std::sqrt(2.0));
  CHECK(std::abs(beyond3_6 / n - p36) < 5 * std::sqrt(p36 / n));
}

}  // namespace moesim
