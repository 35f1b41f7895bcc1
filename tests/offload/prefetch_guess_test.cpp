// The prefetch's guess from the router's own gate on a residual stream (sim/offload_routing.h):
// exact when consecutive hidden states are equal, the independent layers at similarity 0, a
// hand-worked 3-expert case, and the sources that cannot give it.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "analysis/offload_output.h"
#include "models/router/router.h"
#include "scenarios/scenario.h"
#include "sim/offload.h"
#include "sim/offload_routing.h"
#include "tests/offload/fixtures.h"
#include "tests/scratch_dir.h"

namespace moesim {
namespace {

// A float32 .npy file of the given shape, C order, as numpy writes it (header padded to 64).
void write_npy(const std::filesystem::path& path, const std::vector<int64_t>& shape,
               const std::vector<float>& values) {
  std::string dims;
  for (const int64_t d : shape) dims += std::to_string(d) + ", ";
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  const size_t total = 10 + header.size() + 1;
  header += std::string((64 - total % 64) % 64, ' ') + "\n";
  std::ofstream out(path, std::ios::binary);
  out.write("\x93NUMPY\x01\x00", 8);
  const auto len = static_cast<uint16_t>(header.size());
  const char len_bytes[2] = {static_cast<char>(len & 0xff), static_cast<char>(len >> 8)};
  out.write(len_bytes, 2);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  out.write(reinterpret_cast<const char*>(values.data()),
            static_cast<std::streamsize>(values.size() * sizeof(float)));
}

using test::small_offload_model;

OffloadConfig gate_config(int32_t cache, int32_t tokens, double similarity) {
  OffloadConfig c = test::lru_offload_config(cache, tokens);
  c.prefetch = true;
  c.prefetch_guess = PrefetchGuess::kGate;
  c.residual_similarity = similarity;
  return c;
}

RouterSpec hidden_router(int32_t layers) {
  RouterSpec spec;
  spec.experts = 8;
  spec.top_k = 2;
  spec.layers = layers;
  spec.source = TokenSourceKind::kHiddenStates;
  spec.tokens.hidden = 64;
  spec.tokens.stay_probability = 0.5;
  spec.seed = 11;
  return spec;
}

std::vector<int32_t> row(const RoutingDecision& d, int32_t t) {
  const auto ids = d.experts_of(t);
  std::vector<int32_t> v(ids.begin(), ids.end());
  std::sort(v.begin(), v.end());
  return v;
}

TEST_CASE("offload: with similarity 1 the gate's guess is exact") {
  const int32_t layers = 4;
  const int32_t tokens = 64;
  SECTION("random gates, one per layer") {
    Router router(hidden_router(layers));
    const OffloadRouting r = route_residual_stream(router, layers, tokens, 1.0);
    for (int32_t m = 1; m < layers; ++m) {
      for (int32_t t = 0; t < tokens; ++t) {
        CHECK(row(r.guessed[static_cast<size_t>(m)], t) ==
              row(r.chosen[static_cast<size_t>(m)], t));
      }
    }
    const OffloadResult result =
        simulate_offload(small_offload_model(layers, 8, 2), *find_gpu_preset("l4"),
                         gate_config(2, tokens, 1.0), router, 1);
    CHECK(result.prefetch_guess == PrefetchGuess::kGate);
    CHECK(result.guess_targets == int64_t{tokens} * (layers - 1) * 2);
    CHECK(result.guess_accuracy() == 1.0);
    // Every guess used: layers after the first always hit.
    for (int32_t m = 1; m < layers; ++m)
      CHECK(result.misses_per_layer[static_cast<size_t>(m)] == 0);
  }
  SECTION("one gate for every layer: every layer chooses as the first") {
    test::ScratchDir dir("offload_gate");
    RouterSpec spec = hidden_router(layers);
    std::vector<float> gate(static_cast<size_t>(8) * 64);
    for (size_t i = 0; i < gate.size(); ++i) gate[i] = static_cast<float>(std::sin(0.37 * i));
    write_npy(dir / "gate.npy", {8, 64}, gate);
    spec.gate_source = GateSourceKind::kNpy;
    spec.gate_file = (dir / "gate.npy").string();
    Router router(spec);
    const OffloadRouting r = route_residual_stream(router, layers, tokens, 1.0);
    for (int32_t m = 1; m < layers; ++m) {
      for (int32_t t = 0; t < tokens; ++t) {
        CHECK(row(r.chosen[static_cast<size_t>(m)], t) == row(r.chosen[0], t));
        CHECK(row(r.guessed[static_cast<size_t>(m)], t) == row(r.chosen[0], t));
      }
    }
  }
}

TEST_CASE("offload: the residual stream at similarity 0 is the independent layers' tokens") {
  // h_{m+1} - mu = 0 (h_m - mu) + (z_m - mu): every layer routes its own draw, as without a
  // residual stream.
  const int32_t layers = 4;
  const int32_t tokens = 64;
  Router router(hidden_router(layers));
  const OffloadRouting stream = route_residual_stream(router, layers, tokens, 0.0);
  const OffloadRouting independent = route_independent_layers(router, layers, tokens);
  for (int32_t m = 0; m < layers; ++m) {
    for (int32_t t = 0; t < tokens; ++t) {
      CHECK(row(stream.chosen[static_cast<size_t>(m)], t) ==
            row(independent.chosen[static_cast<size_t>(m)], t));
    }
  }
}

// Hand-worked: hidden size 2, 3 experts, top-1, 2 MoE layers, 2 tokens, similarity s = 0.6
// (sqrt(1 - s^2) = 0.8), hidden states from a file (rows 0-1: layer 0; rows 2-3, the file's
// second window: layer 1's own draws z), gates from a file (experts x hidden per layer).
//   rows (1, 0), (0, 2), (-1, 1), (0, 1): the mean mu = (0, 1).
//   token 0: h0 - mu = (1, -1), z - mu = (-1, 0): h1 = mu + 0.6 (1, -1) + 0.8 (-1, 0) = (-0.2, 0.4)
//   token 1: h0 - mu = (0, 1), z - mu = (0, 0): h1 = mu + 0.6 (0, 1) = (0, 1.6)
//   Cosines of (h0, h1): token 0 -0.2 / sqrt(0.2) = -0.4472; token 1: 1. Mean 0.2764.
//   layer 0 gate rows (experts): (1, 0), (0, 1), (-1, -1); layer 1: (1, 0), (0, 1), (-1, 0.8).
//   layer 0 chooses: token 0 logits (1, 0, -1) -> 0; token 1 (0, 2, -2) -> 1.
//   guess for layer 1 (its gate on h0): token 0 (1, 0, -1) -> 0; token 1 (0, 2, 1.6) -> 1.
//   layer 1 chooses (its gate on h1): token 0 (-0.2, 0.4, 0.52) -> 2; token 1 (0, 1.6, 1.28)
//            -> 1. So the guess is right for token 1 only: accuracy 1/2.
// Through an LRU cache of 1 expert per layer, preloaded with expert 0 in both layers:
//   token 0: layer 0 hits 0; the guess 0 for layer 1 is resident (no copy); layer 1 misses 2.
//   token 1: layer 0 misses 1; the guess 1 is copied (evicting 2); layer 1 hits it, used.
//   Hits (1, 1), misses (1, 1), 3 copies over the link of which 1 is a prefetch.
TEST_CASE("offload: the gate's guess on a hand-worked 3-expert case") {
  test::ScratchDir dir("offload_hand");
  write_npy(dir / "tokens.npy", {4, 2}, {1, 0, 0, 2, -1, 1, 0, 1});
  write_npy(dir / "gates.npy", {2, 3, 2}, {1, 0, 0, 1, -1, -1, 1, 0, 0, 1, -1, 0.8f});
  RouterSpec spec;
  spec.experts = 3;
  spec.top_k = 1;
  spec.layers = 2;
  spec.source = TokenSourceKind::kHiddenStatesFile;
  spec.tokens_file = (dir / "tokens.npy").string();
  spec.gate_source = GateSourceKind::kNpy;
  spec.gate_file = (dir / "gates.npy").string();
  Router router(spec);

  const OffloadRouting r = route_residual_stream(router, 2, 2, 0.6, true);
  CHECK(r.hidden[1][0] == Approx(-0.2));
  CHECK(r.hidden[1][1] == Approx(0.4));
  CHECK(r.hidden[1][2] == Approx(0.0).margin(1e-6));
  CHECK(r.hidden[1][3] == Approx(1.6));
  CHECK(r.mean_cosine == Approx((1.0 - 0.2 / std::sqrt(0.2)) / 2));
  CHECK(r.chosen[0].expert_ids == std::vector<int32_t>{0, 1});
  CHECK(r.guessed[1].expert_ids == std::vector<int32_t>{0, 1});
  CHECK(r.chosen[1].expert_ids == std::vector<int32_t>{2, 1});

  const OffloadResult result = simulate_offload(
      small_offload_model(2, 3, 1), *find_gpu_preset("l4"), gate_config(1, 2, 0.6), router, 1);
  CHECK(result.guess_targets == 2);
  CHECK(result.guess_hits == 1);
  CHECK(result.guess_accuracy() == 0.5);
  CHECK(result.hits_per_layer == std::vector<int64_t>{1, 1});
  CHECK(result.misses_per_layer == std::vector<int64_t>{1, 1});
  CHECK(result.prefetch_copies == 1);
  CHECK(result.prefetch_used == 1);
  CHECK(result.link_bytes == result.expert_bytes * 3);
  CHECK(*result.residual_cosine == Approx(r.mean_cosine));

  // The output says which guess was used and what it measured: here the gate, right 1 of 2.
  Scenario scenario;
  scenario.name = "hand";
  scenario.cluster.gpu = *find_gpu_preset("l4");
  scenario.router = spec;
  scenario.offload = gate_config(1, 2, 0.6);
  std::ostringstream json;
  write_offload_json(json, scenario, result);
  CHECK_THAT(json.str(), Catch::Contains("\"guess\": \"gate\", \"accuracy\": null, "
                                         "\"measured_accuracy\": 0.5, \"why_not_gate\": null"));
  CHECK_THAT(json.str(),
             Catch::Contains("\"residual_similarity\": 0.6, \"residual_cosine\": 0.276"));
  std::ostringstream table;
  print_offload_table(table, scenario, result);
  CHECK_THAT(table.str(), Catch::Contains("guessed by its gate on this layer's hidden state; "
                                          "measured accuracy 50.0%"));
}

TEST_CASE("offload: sources without hidden states cannot give the gate's guess") {
  RouterSpec spec = hidden_router(2);
  spec.source = TokenSourceKind::kLogitSpace;
  Router logit(spec);
  // They take the accuracy parameter, whose measured accuracy is 1 at 1 and 0 at 0 (every
  // chosen expert then replaced by one not chosen), and say why.
  for (const double accuracy : {0.0, 1.0}) {
    OffloadConfig config = gate_config(2, 16, 0.9);
    config.prefetch_guess = PrefetchGuess::kAccuracy;
    config.prefetch_accuracy = accuracy;
    config.residual_similarity.reset();
    const OffloadResult result =
        simulate_offload(small_offload_model(2, 8, 2), *find_gpu_preset("l4"), config, logit, 1);
    CHECK(result.guess_targets == 16 * 2);
    CHECK(result.guess_accuracy() == accuracy);
    CHECK(!result.residual_cosine);
    Scenario scenario;
    scenario.name = "logit";
    scenario.cluster.gpu = *find_gpu_preset("l4");
    scenario.router = spec;
    scenario.offload = config;
    std::ostringstream json;
    write_offload_json(json, scenario, result);
    CHECK_THAT(json.str(), Catch::Contains("\"guess\": \"accuracy_parameter\""));
    CHECK_THAT(json.str(),
               Catch::Contains("\"why_not_gate\": \"logit-space tokens have no hidden state\""));
  }
  CHECK_THROWS_WITH(route_residual_stream(logit, 2, 8, 0.9),
                    Catch::Contains("offload.residual_similarity: needs hidden states"));
  Router hidden(hidden_router(2));
  CHECK_THROWS_WITH(route_residual_stream(hidden, 2, 8, 1.5),
                    Catch::Contains("offload.residual_similarity: expected in [0, 1]"));
  // The gate's guess without a residual stream: the layers' tokens are independent.
  OffloadConfig config = gate_config(2, 8, 0.9);
  config.residual_similarity.reset();
  CHECK_THROWS_WITH(
      simulate_offload(small_offload_model(2, 8, 2), *find_gpu_preset("l4"), config, hidden, 1),
      Catch::Contains("offload.prefetch_guess: GATE needs the gate's guesses"));
}

}  // namespace
}  // namespace moesim
