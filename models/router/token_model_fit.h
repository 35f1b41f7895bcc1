// Fits the synthetic token model (models/router/token_model.h) to observed routing, so that the
// router model's decisions reproduce a trace's identity-free statistics (routing_statistics.h).
#pragma once

#include <cstdint>
#include <vector>

#include "models/router/router_spec.h"
#include "models/router/routing_statistics.h"

namespace moesim {

// Routes `batches` batches of `tokens_per_batch` tokens through the router model with token
// model `model` (logit space, random gate drawn from `seed`, plain top-k; each batch one
// sequence of `model.sequence_tokens` or fewer), `layers` MoE layers, and returns the decisions
// as a stream in batch order with a sequence start at each batch.
RoutingSample synthesize_routing(const TokenModel& model, int32_t experts, int32_t top_k,
                                 int32_t layers, int32_t tokens_per_batch, int64_t batches,
                                 uint64_t seed);

struct TokenModelFitOptions {
  int32_t tokens_per_batch = 0;  // the batch the statistics are taken at; required
  // Hidden size of the synthetic model while fitting. Top-k of logits depends only on their
  // ratios, and with N(0, 1/H) gate entries a token's logits have the scales the parameters
  // give for any H well above the expert count, so the fit holds at the model's own size.
  int32_t hidden = 512;
  uint64_t seed = 1;  // the synthetic draws (common to every candidate, so the loss is smooth)
  // Synthetic tokens per candidate: 0 for max(the sample's tokens, 16 batches) rounded to whole
  // batches. More lowers the synthetic side's noise at a proportional cost.
  int64_t synthetic_tokens = 0;
  // Cluster counts and offset ranks tried; each pair gets its own Nelder-Mead search over the
  // continuous parameters. A low rank correlates a cluster's offsets across experts, so pairs of
  // experts are chosen together without making either hot (zero-mean offsets).
  std::vector<int32_t> cluster_counts = {4, 16, 64};
  std::vector<int32_t> offset_ranks = {2, 16};
  int32_t evaluations_per_count = 200;
};

struct TokenModelFit {
  TokenModel model;  // hidden is the fit's; a scenario sets its own hidden and sequence_tokens
  RoutingStatistics trace;
  RoutingStatistics fitted;  // of the fitted model's synthetic routing at the trace's batch
  // The same at 4x and 16x the batch, those of the two the sample holds two batches of.
  std::vector<RoutingStatistics> trace_larger;
  std::vector<RoutingStatistics> fitted_larger;
  double loss = 0.0;
  int32_t evaluations = 0;
};

// The figure the fit minimises at one batch size: squared relative errors of max/mean's mean,
// co-selection and following, the load curve's mean absolute error (a fraction of the mean
// load), and a quarter weight on max/mean's spread across batches. The fit adds, at 4x and 16x
// the batch (where the sample holds two such batches), max/mean's and the load curve's terms.
double fit_loss(const RoutingStatistics& model, const RoutingStatistics& reference);

// Fits popularity_exponent, offset_scale, isotropic_scale, stay_probability, offset_correlation
// and common_scale (centre_scale fixed at 1: top-k is invariant to scaling every logit, so only
// ratios matter) for each cluster count and offset rank of the options and keeps the best.
// Deterministic for the options. Throws std::invalid_argument when the sample holds fewer than two
// whole batches.
TokenModelFit fit_token_model(const RoutingSample& sample, const TokenModelFitOptions& options);

}  // namespace moesim
