// Tests of the statistics library against hand-worked cases: percentiles of 1..100 as numpy
// computes them, the standard deviation of a textbook set, histogram bins and the empirical CDF.
#include <catch2/catch.hpp>

#include <cmath>
#include <stdexcept>
#include <vector>

#include "core/statistics.h"

namespace moesim {
namespace {

std::vector<double> one_to_hundred() {
  std::vector<double> v;
  for (int i = 100; i >= 1; --i) v.push_back(i);  // added out of order on purpose
  return v;
}

TEST_CASE("percentiles of 1..100 interpolate linearly between closest ranks", "[statistics]") {
  const SampleSet s(one_to_hundred());
  // numpy.percentile(range(1, 101), p): 1 + 0.99 p.
  CHECK(s.percentile(0) == 1.0);
  CHECK(s.percentile(100) == 100.0);
  CHECK(s.p50() == Approx(50.5).epsilon(1e-15));
  CHECK(s.p99() == Approx(99.01).epsilon(1e-15));
  CHECK(s.percentile(25) == Approx(25.75).epsilon(1e-15));
  CHECK(s.percentile(90) == Approx(90.1).epsilon(1e-15));
  CHECK(s.min() == 1.0);
  CHECK(s.max() == 100.0);
  CHECK(s.mean() == 50.5);
  // Sample variance of 1..n is n (n + 1) / 12: 841.666..., sd 29.0115.
  CHECK(s.stddev() == Approx(std::sqrt(100.0 * 101.0 / 12.0)).epsilon(1e-14));
}

TEST_CASE("percentiles of a small set, hand-worked", "[statistics]") {
  const SampleSet s(std::vector<double>{15, 20, 35, 40, 50});
  // rank h = 4 p / 100: p40 -> h = 1.6 -> 20 + 0.6 * 15 = 29; p75 -> h = 3 -> 40.
  CHECK(s.percentile(40) == Approx(29.0).epsilon(1e-15));
  CHECK(s.percentile(75) == 40.0);
  CHECK(s.p50() == 35.0);
  // p99 -> h = 3.96 -> 40 + 0.96 * 10 = 49.6.
  CHECK(s.p99() == Approx(49.6).epsilon(1e-15));
}

TEST_CASE("sample standard deviation of a textbook set", "[statistics]") {
  // {2, 4, 4, 4, 5, 5, 7, 9}: mean 5, squared deviations sum to 32; sample sd sqrt(32 / 7).
  SampleSet s;
  for (double v : {2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0}) s.add(v);
  CHECK(s.mean() == 5.0);
  CHECK(s.stddev() == Approx(std::sqrt(32.0 / 7.0)).epsilon(1e-15));
  const Summary summary = s.summary();
  CHECK(summary.count == 8);
  REQUIRE(summary.stddev.has_value());
  CHECK(*summary.stddev == Approx(2.13808993529939).epsilon(1e-12));
  CHECK(summary.p50 == 4.5);
}

TEST_CASE("Welford's variance survives a large offset", "[statistics]") {
  // The naive sum-of-squares formula loses every digit here; the true sample sd is 1.
  SampleSet s;
  for (double v : {1e9 - 1, 1e9, 1e9 + 1}) s.add(v);
  CHECK(s.mean() == 1e9);
  CHECK(s.stddev() == Approx(1.0).epsilon(1e-12));
}

TEST_CASE("adding after a percentile query re-sorts", "[statistics]") {
  SampleSet s(std::vector<double>{3, 1});
  CHECK(s.max() == 3.0);
  s.add(10);
  CHECK(s.max() == 10.0);
  CHECK(s.p50() == 3.0);
  CHECK(s.values()[0] == 3.0);
}

TEST_CASE("empty and degenerate sample sets are refused clearly", "[statistics]") {
  SampleSet empty;
  CHECK_THROWS_AS(empty.mean(), std::logic_error);
  CHECK_THROWS_AS(empty.p50(), std::logic_error);
  CHECK_THROWS_AS(empty.summary(), std::logic_error);
  SampleSet one(std::vector<double>{4.0});
  CHECK(one.p99() == 4.0);
  CHECK_THROWS_WITH(one.stddev(), Catch::Matchers::Contains("at least two"));
  CHECK_FALSE(one.summary().stddev.has_value());
  CHECK_THROWS_AS(one.percentile(101), std::invalid_argument);
  CHECK_THROWS_AS(one.percentile(-1), std::invalid_argument);
  CHECK_THROWS_AS(one.add(std::nan("")), std::invalid_argument);
  CHECK_THROWS_AS(one.add(INFINITY), std::invalid_argument);
}

TEST_CASE("a histogram counts samples per bin and outside the range", "[statistics]") {
  Histogram h(0.0, 8.0, 4);  // bins [0,2) [2,4) [4,6) [6,8]
  h.add(std::vector<double>{0.0, 1.9, 2.0, 3.5, 5.0, 6.0, 8.0, 8.5, -0.1, 7.99});
  CHECK(std::vector<uint64_t>(h.counts().begin(), h.counts().end()) ==
        std::vector<uint64_t>{2, 2, 1, 3});
  CHECK(h.underflow() == 1);
  CHECK(h.overflow() == 1);
  CHECK(h.total() == 10);
  CHECK(h.bin_lo(1) == 2.0);
  CHECK(h.bin_hi(1) == 4.0);
  CHECK(h.bin_hi(3) == 8.0);
  CHECK_THROWS_AS(h.bin_lo(4), std::out_of_range);
  CHECK_THROWS_AS(Histogram(1.0, 1.0, 3), std::invalid_argument);
  CHECK_THROWS_AS(Histogram(0.0, 1.0, 0), std::invalid_argument);
  CHECK_THROWS_AS(h.add(std::nan("")), std::invalid_argument);
}

TEST_CASE("the empirical CDF steps once per distinct value", "[statistics]") {
  const std::vector<double> values{3, 1, 2, 2, 5};
  const std::vector<CdfPoint> expected{{1, 0.2}, {2, 0.6}, {3, 0.8}, {5, 1.0}};
  CHECK(empirical_cdf(values) == expected);
  CHECK(empirical_cdf(std::vector<double>{}).empty());
  CHECK_THROWS_AS(empirical_cdf(std::vector<double>{1, std::nan("")}), std::invalid_argument);
}

}  // namespace
}  // namespace moesim
