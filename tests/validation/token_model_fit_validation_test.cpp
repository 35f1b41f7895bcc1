// The token-model fit on routing nobody here made: the two vLLM traces in ../shared/traces,
// fitted on their first half and checked on the held-out second half at 1x, 4x and 16x the
// batch. The bounds and their reasons are in tests/validation/README.md (Token model fit).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "models/router/token_model_fit.h"
#include "models/trace/trace_sample.h"

namespace moesim {
namespace {

struct Case {
  const char* file;
  // Bounds on |synthetic - held-out| / held-out of max/mean's mean at 1x, 4x, 16x the batch.
  double max_over_mean_bound[3];
  // Bounds on the load curve's mean |difference| (a fraction of the mean load) at each size.
  double load_curve_bound[3];
  // At 1x: |synthetic - held-out| following, and co-selection's relative error.
  double follow_bound;
  double pair_bound;
};

constexpr int32_t kBatch = 32;

}  // namespace

TEST_CASE("token model fit: held-out halves of real vLLM traces", "[validation]") {
  // Bounds: README.md there, "Token model fit", says why each is what it is.
  const Case c =
      GENERATE(Case{"olmoe-1b-7b-layer0.jsonl", {0.1, 0.2, 0.2}, {0.2, 0.25, 0.25}, 0.15, 0.4},
               Case{"qwen15-moe-a27b-layer0.jsonl", {0.1, 0.25, 0.75}, {0.1, 0.1, 0.2}, 0.05, 0.1});
  const std::filesystem::path path =
      std::filesystem::path(MOESIM_SOURCE_DIR "/../shared/traces") / c.file;
  INFO(path.string());
  std::vector<std::string> warnings;
  const TraceSample loaded = load_trace_sample(path, routing_log_format(path, ""), 0, warnings);
  // The Qwen log names no expert count: 60 routed experts (its README), the ids reach 59.
  REQUIRE(loaded.sample.experts >= 60);
  // The server's start-up profiling batches: thousands of identical rows (README of the traces).
  const std::vector<IdenticalRun> runs = identical_runs(loaded.sample, 256);
  REQUIRE(!runs.empty());
  const RoutingSample sample = without_runs(loaded.sample, runs);
  const int64_t half = sample.tokens() / 2;
  const RoutingSample first = sample.slice(0, half);
  const RoutingSample second = sample.slice(half, sample.tokens());

  TokenModelFitOptions options;
  options.tokens_per_batch = kBatch;
  options.evaluations_per_count = 60;
  const TokenModelFit fit = fit_token_model(first, options);
  const int32_t scales[3] = {1, 4, 16};
  for (int i = 0; i < 3; ++i) {
    const int32_t batch = kBatch * scales[i];
    INFO("batch " << batch);
    const RoutingStatistics real = routing_statistics(second, batch);
    const RoutingStatistics own = routing_statistics(first, batch);
    const int64_t batches = std::max<int64_t>(32, second.tokens() / batch);
    const RoutingStatistics synthetic = routing_statistics(
        synthesize_routing(fit.model, sample.experts, sample.top_k, 1, batch, batches, 2), batch);
    const StatisticsError e = statistics_error(synthetic, real);
    const StatisticsError h = statistics_error(own, real);
    std::printf(
        "| %s | %d | %.2f / %.2f / %.2f | %+.0f%% (%+.0f%%) | %+.0f%% (%+.0f%%) | %.0f%% (%.0f%%) "
        "| %.3f / %.3f / %.3f | %.3f / %.3f / %.3f |\n",
        c.file, batch, real.max_over_mean.mean, synthetic.max_over_mean.mean,
        own.max_over_mean.mean, 100 * e.max_over_mean, 100 * h.max_over_mean,
        100 * e.max_over_mean_stddev, 100 * h.max_over_mean_stddev, 100 * e.load_curve,
        100 * h.load_curve, real.pair_top_share, synthetic.pair_top_share, own.pair_top_share,
        real.follow_fraction, synthetic.follow_fraction, own.follow_fraction);
    CHECK(std::abs(e.max_over_mean) < c.max_over_mean_bound[i]);
    CHECK(e.load_curve < c.load_curve_bound[i]);
    if (i == 0) {
      CHECK(std::abs(synthetic.follow_fraction - real.follow_fraction) < c.follow_bound);
      CHECK(std::abs(e.pair_top_share) < c.pair_bound);
    }
  }
}

}  // namespace moesim
