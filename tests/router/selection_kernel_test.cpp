// The vectorised selection kernels against plain scalar references on random scores, with ties:
// group-limited top-k over whole-vector groups (DeepSeek-V3's 8 x 32 and other shapes); and
// whole routing at every kernel width against each other.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <utility>
#include <vector>

#include "models/router/gating.h"
#include "core/random.h"

namespace moesim {
namespace {

// DeepSeek-V3's rule written out plainly: group score = sum of the group's two best scores, the
// topk_group best groups (ties to the lower group), then the k best experts in them (ties to the
// lower expert), best first.
std::vector<int32_t> reference_group_limited(const std::vector<float>& s, int32_t groups,
                                             int32_t topk_group, int32_t k) {
  const auto n = static_cast<int32_t>(s.size());
  const int32_t size = n / groups;
  const auto better = [](const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  std::vector<std::pair<float, int32_t>> group_scores;
  for (int32_t g = 0; g < groups; ++g) {
    std::vector<float> members(s.begin() + g * size, s.begin() + (g + 1) * size);
    std::sort(members.rbegin(), members.rend());
    group_scores.push_back({members[0] + members[1], g});
  }
  std::sort(group_scores.begin(), group_scores.end(), better);
  std::vector<std::pair<float, int32_t>> candidates;
  for (int32_t j = 0; j < topk_group; ++j) {
    const int32_t g = group_scores[j].second;
    for (int32_t i = g * size; i < (g + 1) * size; ++i) candidates.push_back({s[i], i});
  }
  std::sort(candidates.begin(), candidates.end(), better);
  std::vector<int32_t> ids;
  for (int32_t j = 0; j < k; ++j) ids.push_back(candidates[j].second);
  return ids;
}

struct Shape {
  int32_t experts, groups, topk_group, k;
};

}  // namespace

TEST_CASE("group-limited top-k on whole-vector groups equals the scalar reference, ties included",
          "[router]") {
  // DeepSeek-V3 (8 x 32, top-4 groups, k 8) and shapes that exercise every merge level: one
  // group, 2, 4, 16 groups, groups of 16 and 64, k from 1 to 2 topk_group, and a group count
  // that is not a power of two.
  const Shape shapes[] = {{256, 8, 4, 8}, {256, 8, 1, 2},  {256, 16, 3, 6}, {256, 4, 2, 3},
                          {64, 4, 2, 4},  {32, 1, 1, 2},   {128, 2, 1, 1},  {192, 12, 5, 10},
                          {96, 3, 2, 4},  {512, 16, 8, 16}};
  RandomStream rng(11, "selection kernel test");
  for (const Shape& shape : shapes) {
    std::vector<float> s(shape.experts);
    std::vector<int32_t> ids(shape.k);
    for (int trial = 0; trial < 600; ++trial) {
      for (float& v : s) v = static_cast<float>(rng.uniform01());
      if (trial % 3 == 1) {
        // Few distinct values: ties between experts, group scores and the threshold.
        for (float& v : s) v = std::round(v * 3.0f) / 3.0f;
      } else if (trial % 3 == 2) {
        // Sigmoid-like scores plus a bias of either sign, as the router selects on.
        for (float& v : s) {
          v = 1.0f / (1.0f + std::exp(-4.0f * (v - 0.5f))) +
              0.01f * static_cast<float>(rng.below(5)) - 0.02f;
        }
      }
      const std::vector<int32_t> expected =
          reference_group_limited(s, shape.groups, shape.topk_group, shape.k);
      // The CPU's own width, then each width the kernels are written for (4 lanes: only 4
      // groups per vector; 8: the AVX2 layout; 16: the AVX-512 layout), so that every layout is
      // checked on any machine.
      for (const KernelWidth width : {KernelWidth::kNative, KernelWidth::kLanes4,
                                      KernelWidth::kLanes8, KernelWidth::kLanes16}) {
        group_limited_top_k_row(s, shape.groups, shape.topk_group, ids, width);
        INFO("experts " << shape.experts << " groups " << shape.groups << " topk_group "
                        << shape.topk_group << " k " << shape.k << " trial " << trial << " width "
                        << static_cast<int>(width));
        REQUIRE(ids == expected);
      }
    }
  }
}

TEST_CASE("group-limited top-k with every score equal picks the first experts of the first groups",
          "[router]") {
  // All 256 scores equal: groups 0-3 are kept and experts 0-7 come first, in order.
  const std::vector<float> s(256, 0.5f);
  std::vector<int32_t> ids(8);
  for (const KernelWidth width :
       {KernelWidth::kNative, KernelWidth::kLanes4, KernelWidth::kLanes8, KernelWidth::kLanes16}) {
    group_limited_top_k_row(s, 8, 4, ids, width);
    CHECK(ids == std::vector<int32_t>{0, 1, 2, 3, 4, 5, 6, 7});
  }
}

TEST_CASE("routing gives the same bits at every kernel width", "[router]") {
  // Scores, sums (softmax totals, statistics), selection and weights at 4, 8 and 16 lanes: the
  // kernels reduce in 16-float chunks whatever the width, so the results must agree to the bit.
  // Shapes: DeepSeek-V3 (sigmoid, bias, 8 x 32 groups, k 8), Qwen3-style softmax top-8 of 128,
  // Mixtral (8 experts: no whole chunk), 40 experts (a chunk tail), noisy top-2 of 64, capacity
  // dropping by score.
  struct Case {
    int32_t experts, k, groups, topk_group;
    RouterScoring scoring;
    bool bias, noisy;
    double capacity_factor;
  };
  const Case cases[] = {{256, 8, 8, 4, RouterScoring::kSigmoid, true, false, 0.0},
                        {128, 8, 1, 1, RouterScoring::kSoftmax, false, false, 0.0},
                        {8, 2, 1, 1, RouterScoring::kSoftmax, false, false, 0.0},
                        {40, 4, 1, 1, RouterScoring::kSigmoid, false, false, 0.0},
                        {64, 2, 1, 1, RouterScoring::kSoftmax, false, true, 0.0},
                        {64, 6, 4, 2, RouterScoring::kSoftmax, true, false, 1.0}};
  RandomStream rng(23, "kernel width test");
  for (const Case& c : cases) {
    RouterSpec spec;
    spec.experts = c.experts;
    spec.top_k = c.k;
    spec.tokens.hidden = 1;
    spec.scoring = c.scoring;
    spec.groups = c.groups;
    spec.topk_group = c.topk_group;
    spec.selection = c.groups > 1 ? RouterSelection::kGroupLimitedTopK : RouterSelection::kTopK;
    spec.noisy = c.noisy;
    spec.capacity_factor = c.capacity_factor;
    spec.drop_policy = DropPolicy::kByLowestScore;
    spec.routed_scaling = 2.5;
    const int32_t T = 300;
    const int32_t stride = c.noisy ? 2 * c.experts : c.experts;
    std::vector<float> logits(static_cast<size_t>(T) * stride);
    for (float& v : logits) v = static_cast<float>(3.0 * (rng.uniform01() - 0.5));
    std::vector<float> noise;
    if (c.noisy) {
      noise.resize(static_cast<size_t>(T) * c.experts);
      for (float& v : noise) v = static_cast<float>(rng.uniform01() - 0.5);
    }
    std::vector<float> bias;
    if (c.bias) {
      for (int32_t e = 0; e < c.experts; ++e) {
        bias.push_back(static_cast<float>(0.1 * (rng.uniform01() - 0.5)));
      }
    }
    const auto route_at = [&](KernelWidth width, RoutingDecision& d, RouterStats& stats) {
      GatingScratch scratch;
      route_from_logits(spec, LogitRows{logits.data(), T, stride, {}}, noise, bias, scratch, d,
                        &stats, width);
    };
    RoutingDecision four;
    RouterStats four_stats;
    route_at(KernelWidth::kLanes4, four, four_stats);
    INFO("experts " << c.experts << " k " << c.k << " groups " << c.groups);
    // Not a vacuous comparison: the weights are the scores of the chosen experts, scaled.
    REQUIRE(four.weights.size() == static_cast<size_t>(T) * c.k);
    CHECK(four_stats.z_loss > 0.0);
    std::vector<KernelWidth> widths = {KernelWidth::kLanes8, KernelWidth::kLanes16};
    // The native AVX-512 code may fuse a * b + c (last-bit differences); AVX2 and the baseline
    // do not, so there the native code must agree too.
    if (!__builtin_cpu_supports("avx512f")) widths.push_back(KernelWidth::kNative);
    for (const KernelWidth width : widths) {
      RoutingDecision d;
      RouterStats stats;
      route_at(width, d, stats);
      INFO("width " << static_cast<int>(width));
      CHECK(d.expert_ids == four.expert_ids);
      CHECK(d.weights == four.weights);
      CHECK(d.dropped == four.dropped);
      CHECK(d.tokens_per_expert == four.tokens_per_expert);
      CHECK(stats.aux_loss == four_stats.aux_loss);
      CHECK(stats.z_loss == four_stats.z_loss);
    }
  }
}

}  // namespace moesim
