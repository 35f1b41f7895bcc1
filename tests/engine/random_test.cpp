// Tests of the seeded random streams: independence by name, ranges, and moments of the draws
// against their closed forms, with bounds set from the standard error at a fixed seed.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <vector>

#include "core/engine.h"
#include "core/random.h"

namespace moesim {
namespace {

std::vector<uint64_t> draw(RandomStream& stream, int n) {
  std::vector<uint64_t> values;
  for (int i = 0; i < n; ++i) values.push_back(stream());
  return values;
}

TEST_CASE("a named stream does not depend on other streams", "[random]") {
  Engine engine(2024);
  RandomStream alone = engine.random_stream("a");
  const auto expected = draw(alone, 100);

  Engine other(2024);
  RandomStream b = other.random_stream("b");
  draw(b, 1000);
  RandomStream a = other.random_stream("a");
  draw(b, 1000);
  CHECK(draw(a, 100) == expected);

  RandomStream b_again = other.random_stream("b");
  CHECK(draw(b_again, 100) != expected);  // different names differ
  RandomStream a_other_seed = Engine(2025).random_stream("a");
  CHECK(draw(a_other_seed, 100) != expected);  // different seeds differ
}

TEST_CASE("forked streams are reproducible and distinct", "[random]") {
  const RandomStream parent(5, "router");
  RandomStream x1 = parent.fork("layer0");
  RandomStream x2 = parent.fork("layer0");
  RandomStream y = parent.fork("layer1");
  const auto first = draw(x1, 50);
  CHECK(draw(x2, 50) == first);
  CHECK(draw(y, 50) != first);
}

TEST_CASE("below stays in range and is uniform", "[random]") {
  RandomStream random(1, "below");
  CHECK(random.below(1) == 0);
  constexpr int kDraws = 60000;
  std::vector<int> counts(6, 0);
  for (int i = 0; i < kDraws; ++i) {
    const uint64_t v = random.below(6);
    REQUIRE(v < 6);
    ++counts[v];
  }
  // Binomial(n, 1/6): sd = sqrt(n p (1-p)) ~ 91; allow 5 sd.
  const double sd = std::sqrt(kDraws * (1.0 / 6.0) * (5.0 / 6.0));
  for (int c : counts) CHECK(std::abs(c - kDraws / 6.0) < 5 * sd);
}

TEST_CASE("below has no modulo bias for a large range", "[random]") {
  // n = 3 * 2^62: a plain x % n would land in [0, 2^62) half the time instead of a third.
  RandomStream random(2, "bias");
  const uint64_t n = uint64_t{3} << 62;
  constexpr int kDraws = 30000;
  int low = 0;
  for (int i = 0; i < kDraws; ++i) {
    const uint64_t v = random.below(n);
    REQUIRE(v < n);
    if (v < (uint64_t{1} << 62)) ++low;
  }
  const double sd = std::sqrt(kDraws * (1.0 / 3.0) * (2.0 / 3.0));
  CHECK(std::abs(low - kDraws / 3.0) < 5 * sd);
}

TEST_CASE("uniform01 lies in the half-open unit interval with mean 1/2", "[random]") {
  RandomStream random(3, "uniform");
  constexpr int kDraws = 100000;
  double sum = 0.0;
  for (int i = 0; i < kDraws; ++i) {
    const double u = random.uniform01();
    REQUIRE(u >= 0.0);
    REQUIRE(u < 1.0);
    sum += u;
  }
  // sd of a uniform is 1/sqrt(12).
  CHECK(std::abs(sum / kDraws - 0.5) < 5 * (1.0 / std::sqrt(12.0)) / std::sqrt(kDraws));
}

TEST_CASE("exponential has the requested mean and variance", "[random]") {
  RandomStream random(4, "exp");
  constexpr int kDraws = 200000;
  const double mean = 2.5;
  double sum = 0.0, sum_sq = 0.0;
  for (int i = 0; i < kDraws; ++i) {
    const double x = random.exponential(mean);
    REQUIRE(x >= 0.0);
    sum += x;
    sum_sq += x * x;
  }
  const double m = sum / kDraws;
  const double var = sum_sq / kDraws - m * m;
  // sd of the mean is mean / sqrt(n); the variance mean^2 has a relative sd of about
  // sqrt(8 / n) (fourth moment 24 mean^4), so 5 sd is ~3% here.
  CHECK(std::abs(m - mean) < 5 * mean / std::sqrt(kDraws));
  CHECK(std::abs(var - mean * mean) < 5 * std::sqrt(8.0 / kDraws) * mean * mean);
}

TEST_CASE("normal has mean 0 and variance 1", "[random]") {
  RandomStream random(5, "normal");
  constexpr int kDraws = 200000;
  double sum = 0.0, sum_sq = 0.0;
  int beyond_two_sigma = 0;
  for (int i = 0; i < kDraws; ++i) {
    const double x = random.normal();
    sum += x;
    sum_sq += x * x;
    if (std::abs(x) > 2.0) ++beyond_two_sigma;
  }
  const double m = sum / kDraws;
  const double var = sum_sq / kDraws - m * m;
  CHECK(std::abs(m) < 5 / std::sqrt(kDraws));
  CHECK(std::abs(var - 1.0) < 5 * std::sqrt(2.0 / kDraws));
  // P(|X| > 2) = 0.0455 for a standard normal.
  const double p = 0.0455003;
  CHECK(std::abs(beyond_two_sigma - p * kDraws) < 5 * std::sqrt(kDraws * p * (1 - p)));
}

}  // namespace
}  // namespace moesim
