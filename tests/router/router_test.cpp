// The Router as a RoutingSource: determinism and thread independence, the balancing bias,
// logit-space against hidden-state tokens, and gates loaded from files.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include "models/router/router.h"

namespace moesim {
namespace {

RouterSpec base_spec() {
  RouterSpec spec;
  spec.experts = 16;
  spec.top_k = 2;
  spec.layers = 3;
  spec.tokens.hidden = 64;
  spec.tokens.clusters = 8;
  spec.tokens.popularity_exponent = 1.0;
  spec.tokens.offset_rank = 4;
  spec.tokens.offset_scale = 0.7;
  spec.tokens.stay_probability = 0.5;
  spec.tokens.offset_correlation = 0.6;
  spec.seed = 42;
  return spec;
}

struct LoadMoments {
  std::vector<double> mean, sd;
};

LoadMoments load_moments(Router& router, int32_t requests, int32_t tokens) {
  const int32_t E = router.experts();
  std::vector<double> s1(E, 0.0), s2(E, 0.0);
  RoutingDecision d;
  for (int32_t i = 0; i < requests; ++i) {
    router.route(RoutingRequest{0, i, 0, 1, tokens}, d);
    for (int32_t e = 0; e < E; ++e) {
      s1[e] += d.tokens_per_expert[e];
      s2[e] += double(d.tokens_per_expert[e]) * d.tokens_per_expert[e];
    }
  }
  LoadMoments m;
  for (int32_t e = 0; e < E; ++e) {
    const double mean = s1[e] / requests;
    m.mean.push_back(mean);
    m.sd.push_back(std::sqrt(std::max(0.0, s2[e] / requests - mean * mean)));
  }
  return m;
}

bool same(const RoutingDecision& a, const RoutingDecision& b) {
  return a.tokens == b.tokens && a.expert_ids == b.expert_ids && a.weights == b.weights &&
         a.dropped == b.dropped && a.tokens_per_expert == b.tokens_per_expert;
}

}  // namespace

TEST_CASE("logit-space and hidden-state sources give the same load distribution", "[router]") {
  for (const double isotropic : {0.0, 0.3}) {
    INFO("isotropic_scale " << isotropic);
    RouterSpec spec = base_spec();
    spec.tokens.isotropic_scale = isotropic;
    spec.source = TokenSourceKind::kHiddenStates;
    Router hidden(spec);
    spec.source = TokenSourceKind::kLogitSpace;
    Router logit(spec);
    const int32_t requests = 300, tokens = 128;
    const LoadMoments a = load_moments(hidden, requests, tokens);
    const LoadMoments b = load_moments(logit, requests, tokens);
    double spread = 0.0;
    for (int32_t e = 0; e < spec.experts; ++e) {
      // Two independent means of `requests` batches: their difference over its standard error.
      const double se = std::sqrt((a.sd[e] * a.sd[e] + b.sd[e] * b.sd[e]) / requests);
      CHECK(std::abs(a.mean[e] - b.mean[e]) < 4.5 * se + 1e-9);
      CHECK(b.sd[e] < 1.35 * a.sd[e] + 0.5);
      CHECK(a.sd[e] < 1.35 * b.sd[e] + 0.5);
      spread = std::max(spread, a.mean[e] / (tokens * spec.top_k / double(spec.experts)));
    }
    // The Zipf clusters make the load visibly skewed, so the comparison is not of flat loads.
    CHECK(spread > 1.3);
  }
}

TEST_CASE("without an isotropic part both sources give the same logits and decisions", "[router]") {
  RouterSpec spec = base_spec();
  spec.source = TokenSourceKind::kHiddenStates;
  Router hidden(spec);
  spec.source = TokenSourceKind::kLogitSpace;
  Router logit(spec);
  RoutingDecision a, b;
  int64_t equal = 0, total = 0;
  for (int64_t mb = 0; mb < 20; ++mb) {
    const RoutingRequest request{1, mb, 3, 8, 256};
    hidden.route(request, a);
    logit.route(request, b);
    for (size_t i = 0; i < a.expert_ids.size(); ++i) equal += a.expert_ids[i] == b.expert_ids[i];
    total += static_cast<int64_t>(a.expert_ids.size());
  }
  // Only float rounding separates them: a near-tie may flip, nothing else.
  CHECK(equal >= total * 995 / 1000);
}

TEST_CASE("router is deterministic per request and independent of threads", "[router]") {
  RouterSpec spec = base_spec();
  spec.noisy = true;
  spec.capacity_factor = 1.0;
  spec.drop_policy = DropPolicy::kByLowestScore;
  spec.tokens.isotropic_scale = 0.2;
  for (const auto source : {TokenSourceKind::kLogitSpace, TokenSourceKind::kHiddenStates}) {
    spec.source = source;
    Router one(spec), two(spec);
    std::vector<RoutingRequest> requests;
    for (int32_t i = 0; i < 24; ++i) requests.push_back({i % 3, i / 3, i % 4, 4, 64 + 8 * i});
    std::vector<RoutingDecision> serial(requests.size());
    for (size_t i = 0; i < requests.size(); ++i) one.route(requests[i], serial[i]);
    // The same request again, on another Router with the same seed.
    RoutingDecision again;
    two.route(requests[5], again);
    CHECK(same(again, serial[5]));
    one.route(requests[5], again);
    CHECK(same(again, serial[5]));
    // Two threads, each taking every other request, on one Router made fresh (layers lazily built
    // under contention).
    Router shared(spec);
    REQUIRE(shared.thread_safe());
    std::vector<RoutingDecision> parallel(requests.size());
    auto work = [&](size_t first) {
      for (size_t i = first; i < requests.size(); i += 2) shared.route(requests[i], parallel[i]);
    };
    std::thread t0(work, 0), t1(work, 1);
    t0.join();
    t1.join();
    for (size_t i = 0; i < requests.size(); ++i) CHECK(same(parallel[i], serial[i]));
    // Different seeds give different decisions.
    RouterSpec other = spec;
    other.seed = 43;
    Router different(other);
    different.route(requests[5], again);
    CHECK_FALSE(same(again, serial[5]));
  }
}

TEST_CASE("the bias rule moves a skewed load toward balance", "[router]") {
  RouterSpec spec = base_spec();
  spec.experts = 32;
  spec.top_k = 4;
  spec.scoring = RouterScoring::kSigmoid;
  spec.selection = RouterSelection::kGroupLimitedTopK;
  spec.groups = 4;
  spec.topk_group = 2;
  spec.selection_bias = true;
  spec.bias_update_rate = 0.01;
  spec.tokens.popularity_exponent = 1.5;
  Router router(spec);
  RoutingDecision d;
  RouterStats stats;
  router.route_with_stats(RoutingRequest{0, 0, 0, 1, 2048}, d, &stats);
  const double initial = stats.max_over_mean_load;
  CHECK(initial > 2.0);
  // Batch-to-batch sampling noise stays, so compare the mean of the last 10 steps.
  double late = 0.0;
  for (int64_t step = 1; step <= 80; ++step) {
    router.update_bias(0, d.tokens_per_expert);
    router.route_with_stats(RoutingRequest{0, step, 0, 1, 2048}, d, &stats);
    if (step > 70) late += stats.max_over_mean_load / 10.0;
  }
  CHECK(late < 0.6 * initial);
  // Layer 1 was never updated.
  for (const float b : router.bias(1)) CHECK(b == 0.0f);
  // The bias steers selection only: weights stay renormalised sigmoid scores.
  float sum = 0.0f;
  for (int32_t j = 0; j < spec.top_k; ++j) sum += d.weights[j];
  CHECK(sum == Approx(1.0f).epsilon(1e-5));
}

TEST_CASE("a gate loaded from safetensors routes as x W^T by hand", "[router]") {
  // 3 experts, hidden 2, torch layout experts x hidden: W = [[1, 0], [0, 1], [1, 1]].
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("moesim_router_gate_" + std::to_string(::getpid()) + ".safetensors"))
                               .string();
  const std::string json =
      "{\"model.layers.0.mlp.gate.weight\": {\"dtype\": \"F32\", \"shape\": [3, 2], "
      "\"data_offsets\": [0, 24]}}";
  std::string bytes;
  for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<char>((json.size() >> (8 * i)) & 0xff));
  bytes += json;
  const float w[6] = {1, 0, 0, 1, 1, 1};
  bytes.append(reinterpret_cast<const char*>(w), sizeof(w));
  std::ofstream(path, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));

  RouterSpec spec;
  spec.experts = 3;
  spec.top_k = 1;
  spec.layers = 1;
  spec.tokens.hidden = 2;
  spec.gate_source = GateSourceKind::kSafetensors;
  spec.gate_file = path;
  spec.source = TokenSourceKind::kHiddenStates;
  Router router(spec);
  // Token (2, -1): logits (2, -1, 1) -> expert 0. Token (-1, 2): (-1, 2, 1) -> expert 1.
  // Token (1, 1): (1, 1, 2) -> expert 2.
  const std::vector<float> hidden = {2, -1, -1, 2, 1, 1};
  RoutingDecision d;
  router.route_hidden_states(RoutingRequest{0, 0, 0, 1, 3}, hidden, d, nullptr);
  CHECK(d.expert_ids == std::vector<int32_t>{0, 1, 2});

  // A checkpoint whose gate has the wrong shape names the file, tensor and shapes.
  spec.experts = 4;
  Router wrong(spec);
  try {
    wrong.gate(0);
    FAIL("expected an error");
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    CHECK(what.find(path) != std::string::npos);
    CHECK(what.find("model.layers.0.mlp.gate.weight") != std::string::npos);
    CHECK(what.find("[3, 2]; expected [4, 2]") != std::string::npos);
  }
  std::remove(path.c_str());
}

TEST_CASE("router spec validation names the bad field", "[router]") {
  RouterSpec spec = base_spec();
  spec.selection = RouterSelection::kGroupLimitedTopK;
  spec.groups = 5;
  CHECK_THROWS_WITH(Router(spec), Catch::Contains("groups"));
  spec = base_spec();
  spec.top_k = 17;
  CHECK_THROWS_WITH(Router(spec), Catch::Contains("top_k"));
  spec = base_spec();
  spec.capacity_factor = -1;
  CHECK_THROWS_WITH(Router(spec), Catch::Contains("capacity_factor"));
  Router ok(base_spec());
  RoutingDecision d;
  CHECK_THROWS_WITH(ok.route(RoutingRequest{3, 0, 0, 1, 8}, d), Catch::Contains("layer 3"));
}

}  // namespace moesim
