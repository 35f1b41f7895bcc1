// Router throughput: tokens routed per second from hidden states (gate GEMM + gating) and from
// the logit-space source, for DeepSeek-V3's and Mixtral 8x7B's router shapes, beside the bare
// cblas_sgemm of the same shape. OpenBLAS runs on one thread so figures are per core.
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <cmath>
#include <span>
#include <vector>

#include "bench/blas_main.h"
#include "models/router/normal.h"
#include "models/router/router.h"

namespace moesim {
namespace {

constexpr int32_t kTokens = 4096;

RouterSpec deepseek_v3(TokenSourceKind source) {
  RouterSpec spec;
  spec.experts = 256;
  spec.top_k = 8;
  spec.layers = 1;
  spec.scoring = RouterScoring::kSigmoid;
  spec.selection = RouterSelection::kGroupLimitedTopK;
  spec.groups = 8;
  spec.topk_group = 4;
  spec.selection_bias = true;
  spec.routed_scaling = 2.5;
  spec.shared_experts = 1;
  spec.capacity_factor = 1.25;
  spec.tokens.hidden = 7168;
  spec.tokens.clusters = 16;
  spec.tokens.offset_rank = 16;
  spec.tokens.stay_probability = 0.3;
  spec.tokens.offset_correlation = 0.5;
  spec.source = source;
  spec.seed = 1;
  return spec;
}

RouterSpec mixtral(TokenSourceKind source) {
  RouterSpec spec;
  spec.experts = 8;
  spec.top_k = 2;
  spec.layers = 1;
  spec.scoring = RouterScoring::kSoftmax;
  spec.capacity_factor = 1.25;
  spec.tokens.hidden = 4096;
  spec.tokens.clusters = 16;
  spec.tokens.offset_rank = 16;
  spec.source = source;
  spec.seed = 1;
  return spec;
}

RouterSpec shape(int64_t which, TokenSourceKind source) {
  return which == 0 ? deepseek_v3(source) : mixtral(source);
}
const char* shape_name(int64_t which) {
  return which == 0 ? "DeepSeek-V3" : "Mixtral-8x7B";
}

void set_rates(benchmark::State& state) {
  const double tokens = static_cast<double>(state.iterations()) * kTokens;
  state.SetItemsProcessed(static_cast<int64_t>(tokens));
  state.counters["ns_per_token"] =
      benchmark::Counter(tokens * 1e-9, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

void BM_BareSgemm(benchmark::State& state) {
  openblas_set_num_threads(1);
  const RouterSpec spec = shape(state.range(0), TokenSourceKind::kHiddenStates);
  const int32_t H = spec.tokens.hidden, E = spec.experts;
  std::vector<float> x(static_cast<size_t>(kTokens) * H), w(static_cast<size_t>(H) * E),
      logits(static_cast<size_t>(kTokens) * E);
  RandomStream rng(5, "bench");
  fill_standard_normal(rng, x);
  fill_standard_normal(rng, w);
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, kTokens, E, H, 1.0f, x.data(), H,
                w.data(), E, 0.0f, logits.data(), E);
    benchmark::DoNotOptimize(logits.data());
  }
  state.SetLabel(shape_name(state.range(0)));
  set_rates(state);
}

// Hidden states given (as a caller with recorded tokens has them): GEMM, scores, selection,
// capacity and statistics.
void BM_RouteHiddenStates(benchmark::State& state) {
  openblas_set_num_threads(1);
  const RouterSpec spec = shape(state.range(0), TokenSourceKind::kHiddenStates);
  Router router(spec);
  std::vector<float> x(static_cast<size_t>(kTokens) * spec.tokens.hidden);
  RandomStream rng(5, "bench");
  fill_standard_normal(rng, x);
  RoutingDecision d;
  RouterStats stats;
  router.route_hidden_states(RoutingRequest{0, 0, 0, 1, kTokens}, x, d, &stats);  // warm
  int64_t mb = 0;
  for (auto _ : state) {
    router.route_hidden_states(RoutingRequest{0, mb++, 0, 1, kTokens}, x, d, &stats);
    benchmark::DoNotOptimize(d.expert_ids.data());
  }
  state.SetLabel(shape_name(state.range(0)));
  set_rates(state);
}

// The logit-space source end to end: cluster/sequence draws, logits from the r x E factors,
// gating, capacity, and statistics when range(1) is 1.
void BM_RouteLogitSpace(benchmark::State& state) {
  openblas_set_num_threads(1);
  const RouterSpec spec = shape(state.range(0), TokenSourceKind::kLogitSpace);
  Router router(spec);
  RoutingDecision d;
  RouterStats stats;
  RouterStats* want = state.range(1) ? &stats : nullptr;
  router.route_with_stats(RoutingRequest{0, 0, 0, 1, kTokens}, d, want);  // warm
  int64_t mb = 1;
  for (auto _ : state) {
    router.route_with_stats(RoutingRequest{0, mb++, 0, 1, kTokens}, d, want);
    benchmark::DoNotOptimize(d.expert_ids.data());
  }
  state.SetLabel(std::string(shape_name(state.range(0))) +
                 (state.range(1) ? " +stats" : " decision only"));
  set_rates(state);
}

// DeepSeek-V3's selection alone (8 groups of 32, top-4 groups, k 8) on rows of sigmoid-like
// scores plus a small bias: group scores, kept groups and the k best, per token.
void BM_GroupLimitedRow(benchmark::State& state) {
  constexpr int32_t E = 256;
  // range(0) rows, cycled: 4096 rows (4 MB) stream from memory, 256 rows stay in L2.
  const auto rows = static_cast<int32_t>(state.range(0));
  std::vector<float> scores(static_cast<size_t>(rows) * E);
  RandomStream rng(5, "bench");
  fill_standard_normal(rng, scores);
  for (size_t i = 0; i < scores.size(); ++i) {
    scores[i] = 1.0f / (1.0f + std::exp(-scores[i])) + 0.001f * static_cast<float>(i % E % 7);
  }
  std::vector<int32_t> ids(static_cast<size_t>(kTokens) * 8);
  for (auto _ : state) {
    for (int32_t t = 0; t < kTokens; ++t) {
      const auto row = static_cast<size_t>(t % rows);
      group_limited_top_k_row(std::span<const float>(scores).subspan(row * E, E), 8, 4,
                              std::span<int32_t>(ids).subspan(static_cast<size_t>(t) * 8, 8));
    }
    benchmark::DoNotOptimize(ids.data());
  }
  set_rates(state);
}

BENCHMARK(BM_BareSgemm)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_RouteHiddenStates)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_GroupLimitedRow)->Arg(4096)->Arg(256)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_RouteLogitSpace)
    ->Args({0, 0})
    ->Args({0, 1})
    ->Args({1, 0})
    ->Args({1, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace moesim

int main(int argc, char** argv) {
  return moesim::run_benchmarks_on_fitting_blas(argc, argv);
}
