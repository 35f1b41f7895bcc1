// The routing an offloaded decode plays: each MoE layer's choices for the decoded tokens and,
// from the router's own gate on a residual stream, the prefetch's guess of the next layer's.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "models/router/router.h"
#include "models/router/routing_decision.h"

namespace moesim {

// Per MoE layer m, `chosen[m]`: the experts each decoded token (row t) goes to. With a residual
// stream, `guessed[m]` (m >= 1): the top-k of layer m's gate applied to layer m-1's hidden
// state, the guess Mixtral-offloading's speculative loading makes one layer ahead; guessed[0]
// and, without a residual stream, every entry are empty (tokens 0).
struct OffloadRouting {
  std::vector<RoutingDecision> chosen;
  std::vector<RoutingDecision> guessed;
  // Kept only when asked (route_residual_stream's keep_hidden): per MoE layer, tokens x hidden.
  std::vector<std::vector<float>> hidden;
  // With a residual stream: its similarity s, and the mean over tokens and consecutive MoE layers
  // of cos(h_m, h_{m+1}) as drawn.
  std::optional<double> similarity;
  double mean_cosine = 0.0;
};

// Each MoE layer draws its tokens on its own: layer m's choices are row t of one request of
// `tokens` tokens (layer m, micro-batch 0, rank 0). No guesses. Throws std::invalid_argument
// when the source gives counts only.
OffloadRouting route_independent_layers(RoutingSource& routing, int32_t moe_layers, int32_t tokens);

// The decoded tokens as residual streams through the MoE layers. Layer 0's hidden states are
// the ones the router would route at layer 0 (Router::token_hidden_states; for a .npy token file,
// its first window). Then h_{m+1} = h_m + delta_m with
//   delta_m = (s - 1) (h_m - mu) + sqrt(1 - s^2) (z_m - mu),
// i.e. h_{m+1} - mu = s (h_m - mu) + sqrt(1 - s^2) (z_m - mu): an AR(1) across layers of each
// token's deviation from mu, the mean hidden state. z_m is an independent draw, the hidden
// states the router would route at layer m+1 by itself (for the token file, its window m+1,
// other recorded tokens), and mu the mean of all the run's such draws (every layer's). So every
// layer's hidden states keep the token model's mean and covariance (a stream that simply
// accumulated updates would drift toward the popular clusters' mean and make routing more
// skewed with depth), consecutive tokens stay as correlated as the router's sequence model
// makes them, s = 1 is one hidden state for every layer and s = 0 is exactly
// route_independent_layers' tokens. s is the correlation of consecutive layers' deviations
// from the mean; the raw cosine of consecutive hidden states, which the mean raises, is
// measured (mean_cosine).
//
// Why a residual stream: a transformer adds each block's output to its input, so a token's
// consecutive layer inputs are close, which is what makes the next layer's gate on the current
// hidden state a good guess (Eliseev & Mazur 2023, section 3.2). Figures for s (recalled, not
// checked against the papers): Liu et al. 2023 (Deja Vu, ICML) measure a cosine similarity of
// about 0.95 or more between consecutive blocks' inputs for most layers of OPT-175B; Gromov et
// al. 2024 ("The Unreasonable Ineffectiveness of the Deeper Layers") find the angular distance
// arccos(cos)/pi between one layer's input and the next's at about 0.1 or less (cos >= 0.95) in
// most layers of the Llama-2 family. Both are raw cosines of the whole residual stream, which a
// shared mean and a few large outlier dimensions inflate; taking them for s (the deviations'
// correlation) makes the guess, if anything, too good.
//
// Each layer is routed by Router::route_hidden_states (request layer m, micro-batch 0), its
// guess by the same on h_{m-1} (request layer m, micro-batch 1: the noisy gate's draw is its
// own). Throws std::invalid_argument for a logit-space source or s outside [0, 1].
OffloadRouting route_residual_stream(Router& router, int32_t moe_layers, int32_t tokens,
                                     double similarity, bool keep_hidden = false);

}  // namespace moesim
