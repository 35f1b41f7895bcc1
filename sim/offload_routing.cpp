// The decoded tokens' routing for sim/offload.h: independent layers or one residual stream.
#include "sim/offload_routing.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace moesim {

OffloadRouting route_independent_layers(RoutingSource& routing, int32_t moe_layers,
                                        int32_t tokens) {
  OffloadRouting r;
  r.chosen.resize(static_cast<size_t>(moe_layers));
  r.guessed.resize(static_cast<size_t>(moe_layers));
  for (int32_t m = 0; m < moe_layers; ++m) {
    RoutingRequest req;
    req.layer = m;
    req.tokens = tokens;
    routing.route(req, r.chosen[static_cast<size_t>(m)]);
    if (r.chosen[static_cast<size_t>(m)].counts_only) {
      throw std::invalid_argument("offload: the routing source gives counts only, not tokens");
    }
  }
  return r;
}

OffloadRouting route_residual_stream(Router& router, int32_t moe_layers, int32_t tokens,
                                     double similarity, bool keep_hidden) {
  if (!(similarity >= 0.0 && similarity <= 1.0)) {
    throw std::invalid_argument("offload.residual_similarity: expected in [0, 1]");
  }
  if (router.spec().source == TokenSourceKind::kLogitSpace) {
    throw std::invalid_argument(
        "offload.residual_similarity: needs hidden states (router token_source SYNTHETIC_HIDDEN "
        "or NPY_FILE); LOGIT_SPACE draws logits only");
  }
  const bool file = router.spec().source == TokenSourceKind::kHiddenStatesFile;
  const auto H = static_cast<size_t>(router.spec().tokens.hidden);
  OffloadRouting r;
  r.chosen.resize(static_cast<size_t>(moe_layers));
  r.guessed.resize(static_cast<size_t>(moe_layers));
  if (keep_hidden) r.hidden.resize(static_cast<size_t>(moe_layers));
  auto request = [&](int32_t layer, int64_t micro_batch) {
    RoutingRequest req;
    req.layer = layer;
    req.micro_batch = micro_batch;
    req.tokens = tokens;
    return req;
  };
  // The stream's fixed point: the mean hidden state of every independent draw the run makes
  // (each layer's own tokens, as route_independent_layers would route them).
  std::vector<double> mean(H, 0.0);
  std::vector<float> h, z;
  auto draw = [&](int32_t m, std::vector<float>& out) {
    router.token_hidden_states(request(m, file ? m : 0), out);
  };
  for (int32_t m = 0; m < moe_layers; ++m) {
    draw(m, z);
    for (int32_t t = 0; t < tokens; ++t) {
      for (size_t i = 0; i < H; ++i) mean[i] += z[static_cast<size_t>(t) * H + i];
    }
  }
  for (double& v : mean) v /= static_cast<double>(moe_layers) * tokens;
  // h_{m+1} = mu + s (h_m - mu) + sqrt(1 - s^2) (z - mu) = s h_m + a z + b mu.
  const double a = std::sqrt(std::max(0.0, 1.0 - similarity * similarity));
  const double b = 1.0 - similarity - a;
  double cosine_sum = 0.0;
  draw(0, h);
  for (int32_t m = 0; m < moe_layers; ++m) {
    if (m > 0) {
      // The guess, from the previous layer's hidden state still in h.
      router.route_hidden_states(request(m, 1), h, r.guessed[static_cast<size_t>(m)], nullptr);
      draw(m, z);
      for (int32_t t = 0; t < tokens; ++t) {
        float* ht = h.data() + static_cast<size_t>(t) * H;
        const float* zt = z.data() + static_cast<size_t>(t) * H;
        double old_new = 0.0, old_old = 0.0, new_new = 0.0;
        for (size_t i = 0; i < H; ++i) {
          const double before = ht[i];
          const auto after = static_cast<float>(similarity * before + a * zt[i] + b * mean[i]);
          old_new += before * after;
          old_old += before * before;
          new_new += static_cast<double>(after) * after;
          ht[i] = after;
        }
        cosine_sum += old_old > 0.0 && new_new > 0.0 ? old_new / std::sqrt(old_old * new_new) : 0.0;
      }
    }
    router.route_hidden_states(request(m, 0), h, r.chosen[static_cast<size_t>(m)], nullptr);
    if (keep_hidden) r.hidden[static_cast<size_t>(m)] = h;
  }
  r.similarity = similarity;
  if (moe_layers > 1 && tokens > 0) {
    r.mean_cosine = cosine_sum / (static_cast<double>(moe_layers - 1) * tokens);
  }
  return r;
}

}  // namespace moesim
