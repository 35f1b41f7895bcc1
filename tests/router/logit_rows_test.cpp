// The logit-space rows made a block at a time (ClusterTokenModel::logit_rows): each logit is the
// FMA chain over the rank then the cluster mean, on every kernel width, and routing from rows
// made on demand equals routing from the whole batch's rows written out first.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <span>
#include <vector>

#include "models/router/gating.h"
#include "models/router/normal.h"
#include "models/router/router.h"
#include "models/router/token_model.h"

namespace moesim {
namespace {

TokenModel model(int32_t rank) {
  TokenModel m;
  m.hidden = 64;
  m.clusters = 5;
  m.offset_rank = rank;
  m.stay_probability = 0.3;
  m.offset_correlation = 0.5;
  return m;
}

std::vector<float> random_gate(int32_t hidden, int32_t width, uint64_t seed) {
  std::vector<float> gate(static_cast<size_t>(hidden) * width);
  RandomStream stream(seed, "gate");
  fill_standard_normal(stream, gate);
  for (float& v : gate) v *= 0.125f;
  return gate;
}

TEST_CASE("logit_rows is the FMA chain plus the mean on every width", "[router][logit_rows]") {
  // Widths with whole 16-lane vectors, a whole 8-lane one only, and ragged tails.
  for (const int32_t width : {256, 8, 24, 5, 200}) {
    for (const int32_t rank : {16, 3}) {
      INFO("width " << width << ", rank " << rank);
      const ClusterTokenModel tokens(model(rank), 7);
      const LogitSpaceLayer layer = tokens.logit_space(random_gate(64, width, 3), width);
      TokenStructure s;
      RandomStream stream(9, "tokens");
      tokens.draw_structure(stream, 97, s);
      // By hand, element by element.
      std::vector<float> expected(static_cast<size_t>(97) * width);
      for (int32_t row = 0; row < 97; ++row) {
        const int32_t c = s.cluster_of_token[s.token_of_row[row]];
        for (int32_t e = 0; e < width; ++e) {
          float acc = 0.0f;
          for (int32_t j = 0; j < rank; ++j) {
            acc =
                std::fma(s.offsets_sorted[static_cast<size_t>(row) * rank + j],
                         layer.offset_factor[(static_cast<size_t>(c) * rank + j) * width + e], acc);
          }
          expected[static_cast<size_t>(row) * width + e] =
              layer.mean_logits[static_cast<size_t>(c) * width + e] + acc;
        }
      }
      for (const KernelWidth kernel : {KernelWidth::kNative, KernelWidth::kLanes4}) {
        // Rows 10..90 into a wider stride, the rest of each row untouched.
        const int32_t stride = width + 3;
        std::vector<float> out(static_cast<size_t>(80) * stride, -7.0f);
        ClusterTokenModel::logit_rows(layer, s, rank, 10, 80, out.data(), stride, kernel);
        int32_t wrong = 0, clobbered = 0;
        for (int32_t i = 0; i < 80; ++i) {
          for (int32_t e = 0; e < width; ++e) {
            wrong += out[static_cast<size_t>(i) * stride + e] !=
                     expected[static_cast<size_t>(i + 10) * width + e];
          }
          for (int32_t e = width; e < stride; ++e) {
            clobbered += out[static_cast<size_t>(i) * stride + e] != -7.0f;
          }
        }
        CHECK(wrong == 0);
        CHECK(clobbered == 0);
      }
      std::vector<float> out(static_cast<size_t>(width));
      CHECK_THROWS(ClusterTokenModel::logit_rows(layer, s, rank, 90, 8, out.data(), width));
      CHECK_THROWS(ClusterTokenModel::logit_rows(layer, s, rank, 0, 1, out.data(), width - 1));
    }
  }
}

RouterSpec spec(RouterSelection selection, bool noisy) {
  RouterSpec r;
  r.experts = 64;
  r.top_k = 6;
  r.layers = 2;
  r.scoring = RouterScoring::kSigmoid;
  r.selection = selection;
  r.groups = 8;
  r.topk_group = 3;
  r.selection_bias = selection != RouterSelection::kExpertChoice;
  r.capacity_factor = 1.1;
  r.noisy = noisy;
  r.tokens = model(16);
  r.seed = 4;
  return r;
}

TEST_CASE("routing from rows made on demand equals routing the written-out batch",
          "[router][logit_rows]") {
  for (const auto selection : {RouterSelection::kGroupLimitedTopK, RouterSelection::kTopK,
                               RouterSelection::kExpertChoice}) {
    for (const bool noisy : {false, true}) {
      INFO("selection " << static_cast<int>(selection) << ", noisy " << noisy);
      const RouterSpec r = spec(selection, noisy);
      Router router(r);
      RoutingDecision on_demand;
      RouterStats on_demand_stats;
      // 100 tokens: three whole blocks of 32 rows and a short one.
      const RoutingRequest request{1, 3, 2, 4, 100};
      router.route_with_stats(request, on_demand, &on_demand_stats);

      // The same batch by hand: structure, every row written out, then the gating.
      const ClusterTokenModel tokens(r.tokens, r.seed);
      const LogitSpaceLayer layer = tokens.logit_space(router.gate(1), noisy ? 128 : 64);
      char name[64];
      std::snprintf(name, sizeof(name), "l%d/m%lld/r%d", 1, 3LL, 2);
      RandomStream stream = RandomStream(r.seed, "router").fork(name);
      RandomStream token_stream = stream.fork("tokens");
      TokenStructure s;
      tokens.draw_structure(token_stream, 100, s);
      std::vector<float> logits(static_cast<size_t>(100) * layer.width);
      RandomStream isotropic = stream.fork("isotropic");
      std::vector<float> normals;
      ClusterTokenModel::draw_logits(layer, s, 16, isotropic, normals, logits);
      std::vector<float> noise;
      if (noisy) {
        RandomStream noise_stream = stream.fork("noise");
        noise.resize(static_cast<size_t>(100) * 64);
        fill_standard_normal(noise_stream, noise);
      }
      GatingScratch scratch;
      RoutingDecision written;
      RouterStats written_stats;
      route_from_logits(r, LogitRows{logits.data(), 100, layer.width, s.token_of_row}, noise,
                        r.selection_bias ? router.bias(1) : std::span<const float>(), scratch,
                        written, &written_stats);
      CHECK(on_demand.expert_ids == written.expert_ids);
      CHECK(on_demand.weights == written.weights);
      CHECK(on_demand.dropped == written.dropped);
      CHECK(on_demand.tokens_per_expert == written.tokens_per_expert);
      CHECK(on_demand_stats.aux_loss == written_stats.aux_loss);
      CHECK(on_demand_stats.z_loss == written_stats.z_loss);
      // And the decision is a real one: every token has its experts.
      CHECK(on_demand.dropped_pairs < static_cast<int64_t>(on_demand.expert_ids.size()));
    }
  }
}

}  // namespace
}  // namespace moesim
