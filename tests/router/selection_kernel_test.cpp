// The vectorised selection kernels against plain scalar references on random scores, with ties:
// group-limited top-k over whole-vector groups (DeepSeek-V3's 8 x 32 and other shapes).
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <utility>
#include <vector>

#include "models/router/gating.h"
#include "sim/engine/random.h"

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
      group_limited_top_k_row(s, shape.groups, shape.topk_group, ids);
      INFO("experts " << shape.experts << " groups " << shape.groups << " topk_group "
                      << shape.topk_group << " k " << shape.k << " trial " << trial);
      REQUIRE(ids == reference_group_limited(s, shape.groups, shape.topk_group, shape.k));
    }
  }
}

TEST_CASE("group-limited top-k with every score equal picks the first experts of the first groups",
          "[router]") {
  // All 256 scores equal: groups 0-3 are kept and experts 0-7 come first, in order.
  const std::vector<float> s(256, 0.5f);
  std::vector<int32_t> ids(8);
  group_limited_top_k_row(s, 8, 4, ids);
  CHECK(ids == std::vector<int32_t>{0, 1, 2, 3, 4, 5, 6, 7});
}

}  // namespace moesim
