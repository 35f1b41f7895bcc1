// Sweeps: point order, identical results for any thread count or sharding, shard parsing, and
// merge's checks (missing and repeated points, header mismatch).
#include <catch2/catch.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "analysis/sweep_output.h"
#include "analysis/text_format.h"
#include "scenarios/scenario.h"
#include "sim/sweep.h"
#include "tests/commands/commands_test_util.h"

using namespace moesim;
using moesim::test::tiny_scenario;

namespace {

const std::string kSweepText = test::two_axis_sweep_scenario();

std::string csv_of(const SweepOptions& options) {
  const Scenario base = parse_scenario(kSweepText, "sweep.pbtxt");
  std::vector<std::string> axes;
  for (const SweepAxis& a : base.sweep) axes.push_back(a.name);
  std::ostringstream out;
  write_sweep_csv(out, axes, 6, run_sweep(kSweepText, "sweep.pbtxt", options));
  return out.str();
}

SweepCsv parsed(const std::string& text, const std::string& name) {
  std::istringstream in(text);
  return read_sweep_csv(in, name);
}

}  // namespace

TEST_CASE("sweep points run the axes in file order, the last fastest", "[commands]") {
  const std::vector<SweepAxis> axes = {{"a", {"x", "y"}}, {"b", {"1", "2", "3"}}};
  const std::vector<SweepPoint> points = sweep_points(axes);
  REQUIRE(points.size() == 6);
  const char* expected[6][2] = {{"x", "1"}, {"x", "2"}, {"x", "3"},
                                {"y", "1"}, {"y", "2"}, {"y", "3"}};
  for (int i = 0; i < 6; ++i) {
    CHECK(points[i].index == i);
    CHECK(points[i].axis_values[0] == std::pair<std::string, std::string>("a", expected[i][0]));
    CHECK(points[i].axis_values[1] == std::pair<std::string, std::string>("b", expected[i][1]));
  }
  CHECK(sweep_points({}).size() == 1);
}

TEST_CASE("shards: I/N parsing and which points a shard holds", "[commands]") {
  const SweepShard s = parse_shard("2/3");
  CHECK(s.index == 2);
  CHECK(s.count == 3);
  CHECK(!s.holds(0));
  CHECK(s.holds(1));
  CHECK(s.holds(4));
  for (const char* bad : {"0/2", "3/2", "1/0", "a/2", "1-2", "1/2x", ""}) {
    CHECK_THROWS_AS(parse_shard(bad), SweepError);
  }
}

TEST_CASE("sweep results do not depend on threads or sharding", "[commands]") {
  SweepOptions one;
  one.threads = 1;
  SweepOptions two;
  two.threads = 2;
  const std::string serial = csv_of(one);
  CHECK(csv_of(two) == serial);

  // The capacity bites at top_k 2 and 4 (the factor-1.0 points drop), not at factor 0.
  const SweepCsv all = parsed(serial, "all.csv");
  REQUIRE(all.rows.size() == 6);
  CHECK(all.total_points == 6);

  SweepOptions shard1 = two;
  shard1.shard = parse_shard("1/2");
  SweepOptions shard2 = two;
  shard2.shard = parse_shard("2/2");
  const SweepCsv a = parsed(csv_of(shard1), "a.csv");
  const SweepCsv b = parsed(csv_of(shard2), "b.csv");
  CHECK(a.rows.size() == 3);
  CHECK(a.rows[1].first == 2);
  std::ostringstream merged;
  merge_sweep_csv(std::vector<std::pair<std::string, SweepCsv>>{{"b.csv", b}, {"a.csv", a}},
                  merged);
  CHECK(merged.str() == serial);
}

TEST_CASE("a sweep row carries the simulation's numbers at full precision", "[commands]") {
  const std::vector<SweepRow> rows = run_sweep(kSweepText, "sweep.pbtxt", {});
  REQUIRE(rows.size() == 6);
  // Point 3 is capacity_factor 1.0, top_k 1: the same scenario run directly.
  const std::pair<std::string, std::string> values[] = {{"capacity_factor", "1.0"}, {"top_k", "1"}};
  const SimulationResult direct = simulate(parse_scenario_at(kSweepText, "sweep.pbtxt", values));
  CHECK(rows[3].axis_values == std::vector<std::string>{"1.0", "1"});
  CHECK(rows[3].metrics[SweepMetric::kStepTimeMeanUs] ==
        (direct.step_time_us[0] + direct.step_time_us[1]) / 2);
  CHECK(rows[3].metrics[SweepMetric::kDroppedTokenFraction] == direct.dropped_token_fraction);
  CHECK(rows[3].metrics[SweepMetric::kTokensPerSPerGpu] == direct.tokens_per_s_per_gpu);
  CHECK(rows[0].metrics[SweepMetric::kDroppedTokenFraction] == 0.0);  // factor 0: no capacity
  CHECK(rows[4].metrics[SweepMetric::kDroppedTokenFraction] > 0.0);
  // The CSV's numbers read back to the same doubles.
  CHECK(std::stod(format_double(rows[3].metrics[SweepMetric::kStepTimeMeanUs])) ==
        rows[3].metrics[SweepMetric::kStepTimeMeanUs]);
  CHECK(format_double(0.1) == "0.1");
}

TEST_CASE("merge refuses a missing point, a repeated point and a header mismatch", "[commands]") {
  const std::string header =
      "point,points,top_k,step_time_mean_us,step_time_p50_us,step_time_p99_us,"
      "step_time_stddev_us,dispatch_mean_us,dispatch_p99_us,combine_mean_us,combine_p99_us,"
      "expert_compute_mean_us,dropped_token_fraction,expert_max_over_mean,gpu_max_over_mean,"
      "idle_fraction,tokens_per_s_per_gpu\n";
  const std::string tail = ",1,1,1,,1,1,1,1,1,0,1,1,0,1\n";
  const SweepCsv s0 = parsed(header + "0,3,1" + tail + "2,3,4" + tail, "s0.csv");
  const SweepCsv s1 = parsed(header + "1,3,2" + tail, "s1.csv");
  std::ostringstream out;
  using Shards = std::vector<std::pair<std::string, SweepCsv>>;
  CHECK_NOTHROW(merge_sweep_csv(Shards{{"s0.csv", s0}, {"s1.csv", s1}}, out));
  CHECK_THROWS_WITH(merge_sweep_csv(Shards{{"s0.csv", s0}}, out),
                    Catch::Contains("1 of 3 points missing: 1"));
  CHECK_THROWS_WITH(merge_sweep_csv(Shards{{"s0.csv", s0}, {"s1.csv", s1}, {"again.csv", s1}}, out),
                    Catch::Contains("point 1 appears twice (in s1.csv and again.csv)"));
  std::string other = header;
  other.replace(other.find("top_k"), 5, "ep");
  const SweepCsv s2 = parsed(other + "1,3,2" + tail, "s2.csv");
  CHECK_THROWS_WITH(merge_sweep_csv(Shards{{"s0.csv", s0}, {"s2.csv", s2}}, out),
                    Catch::Contains("the header of s2.csv differs from s0.csv"));
  CHECK_THROWS_WITH(parsed(header + "0,3,1,2\n", "short.csv"),
                    Catch::Contains("short.csv:2: 4 fields, the header has 17"));
  CHECK_THROWS_WITH(parsed(header + "5,3,1" + tail, "big.csv"),
                    Catch::Contains("point 5 is not below points 3"));
}
