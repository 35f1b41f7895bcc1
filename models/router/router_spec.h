// Settings of the router model: scoring, selection, capacity, balancing bias, the synthetic token
// model and where tokens and gate weights come from. Plain values; validate() names bad fields.
#pragma once

#include <cstdint>
#include <string>

namespace moesim {

// Softmax over experts (Mixtral, Switch, GShard) or an independent sigmoid per expert
// (DeepSeek-V3).
enum class RouterScoring : uint8_t { kSoftmax, kSigmoid };

// kTopK covers Switch (k = 1) and Mixtral-style top-k; kGroupLimitedTopK is DeepSeek-V3's
// node-limited routing; kExpertChoice lets each expert take its top-C tokens (Zhou et al. 2022).
enum class RouterSelection : uint8_t { kTopK, kGroupLimitedTopK, kExpertChoice };

// Which token-expert pairs an over-full expert drops: the latest tokens (by token index) or the
// pairs with the lowest router score.
enum class DropPolicy : uint8_t { kByArrival, kByLowestScore };

// Where a batch's router logits come from: hidden states made by the cluster token model and
// multiplied by the gate (kHiddenStates), the same token model drawn directly in logit space
// (kLogitSpace, exact for the Gaussian mixture and far cheaper), or hidden states read from a
// .npy file of shape tokens x hidden (kHiddenStatesFile).
enum class TokenSourceKind : uint8_t { kHiddenStates, kLogitSpace, kHiddenStatesFile };

// Gate weights drawn by seed, or read from a .npy file or a .safetensors checkpoint.
enum class GateSourceKind : uint8_t { kRandom, kNpy, kSafetensors };

// How a gate tensor in a file is laid out: torch.nn.Linear stores experts x hidden; moesim's
// own matrices are hidden x experts.
enum class GateLayout : uint8_t { kExpertsByHidden, kHiddenByExperts };

// Where a router's token model parameters come from, so that a result says what its routing
// rests on: the defaults below (calibrated to no routing data), values a scenario gave, values
// `moesim fit` fitted to a trace, or no token model at all (a replayed trace).
enum class TokenModelOrigin : uint8_t { kDefault, kScenario, kFitted, kTrace };

// Hidden states as a mixture of Gaussian clusters: token = centre_c + A_c u [+ sigma_iso eps],
// u ~ N(0, I_rank). Cluster popularity is Zipf(popularity_exponent); along a sequence a token
// keeps its predecessor's cluster with probability stay_probability, and u follows an AR(1)
// with coefficient offset_correlation while the cluster is kept.
// The defaults are NOT calibrated to any routing data: they are a moderate skew chosen by hand,
// the same for every model preset (presets set no token model). They give untrained-looking
// imbalance (per-layer max/mean ~7-13 for DeepSeek-V3 at 4,096 tokens per GPU); `moesim fit`
// fits these parameters to a real trace (README, "Fitting the token model to a trace").
struct TokenModel {
  int32_t hidden = 0;
  int32_t clusters = 16;
  double popularity_exponent = 1.0;  // Zipf exponent s: p_c proportional to 1 / (c + 1)^s
  // Centre entries are N(0, centre_scale^2); with N(0, 1/H) gate entries a centre's logits have
  // standard deviation close to centre_scale, so these are in logit units.
  double centre_scale = 1.0;
  // A centre shared by every cluster (entries N(0, common_scale^2), added to each cluster's):
  // experts every token favours, as a trained router's hot experts. 0: none.
  double common_scale = 0.0;
  int32_t offset_rank = 16;   // r
  double offset_scale = 0.5;  // A_c entries N(0, offset_scale^2 / r): offsets of size ~offset_scale
  double isotropic_scale = 0.0;     // sigma_iso
  double stay_probability = 0.0;    // rho
  double offset_correlation = 0.0;  // AR(1) coefficient phi, in [0, 1)
  int32_t sequence_tokens = 0;      // a fresh sequence every this many tokens; 0: one sequence
};

struct RouterSpec {
  // routed experts E; 0 (with top_k 0 and layers 0) for a dense model, which routes nothing
  int32_t experts = 0;
  int32_t top_k = 1;
  int32_t layers = 1;  // MoE layers, each with its own gate and bias
  RouterScoring scoring = RouterScoring::kSoftmax;
  RouterSelection selection = RouterSelection::kTopK;
  int32_t groups = 1;      // n_group for group-limited top-k
  int32_t topk_group = 1;  // groups kept per token
  // Per-expert capacity ceil(capacity_factor * T * k / E); 0 means no dropping (for expert
  // choice, 0 means a factor of 1).
  double capacity_factor = 0.0;
  DropPolicy drop_policy = DropPolicy::kByArrival;
  // Auxiliary-loss-free balancing: an additive per-expert bias used for selection only, moved by
  // bias_update_rate (gamma) per update_bias() call.
  bool selection_bias = false;
  double bias_update_rate = 0.001;
  bool renormalize = true;      // renormalise the chosen weights to sum to 1
  double routed_scaling = 1.0;  // multiplies the routed weights
  bool noisy = false;           // noisy top-k gating (Shazeer et al. 2017)
  int32_t shared_experts = 0;   // visited by every token; not listed per token

  TokenSourceKind source = TokenSourceKind::kLogitSpace;
  TokenModel tokens;
  TokenModelOrigin token_model_origin = TokenModelOrigin::kDefault;
  std::string token_model_fitted_to;  // kFitted (or kTrace): what the parameters came from
  std::string tokens_file;            // .npy, tokens x hidden, for kHiddenStatesFile

  GateSourceKind gate_source = GateSourceKind::kRandom;
  std::string gate_file;
  // Tensor name in a .safetensors file; "{layer}" is replaced by the MoE layer index. A .npy gate
  // file holds one matrix for every layer or a stack (layers x matrix).
  std::string gate_tensor = "model.layers.{layer}.mlp.gate.weight";
  std::string noise_tensor;  // the W_noise tensor name when noisy and loaded
  GateLayout gate_layout = GateLayout::kExpertsByHidden;

  uint64_t seed = 0;

  // Not the router model's own setting but how a step asks it (sim/simulation.cpp): every
  // micro-batch of a step takes micro-batch 0's routing decisions (the same tokens to the same
  // experts) instead of routing its own tokens, so a step routes 1/micro_batches of the tokens.
  // Off unless a scenario sets router { reuse_routing_across_micro_batches: true }.
  bool reuse_across_micro_batches = false;

  // Throws std::invalid_argument naming the first bad field and what was expected.
  void validate() const;
};

// "default (uncalibrated)", "scenario-given", "fitted" or "trace": the JSON value of the origin.
const char* token_model_origin_name(TokenModelOrigin origin);
// One line for a run's output: which token model routed, e.g. "fitted to X: 16 clusters, ...".
std::string token_model_summary(const RouterSpec& spec);

}  // namespace moesim
