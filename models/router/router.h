// The router model as a RoutingSource: per MoE layer a gate (random or loaded), tokens from the
// cluster model (as hidden states or in logit space) or a .npy file, and the gating arithmetic.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "models/router/gating.h"
#include "models/router/router_spec.h"
#include "models/router/routing_decision.h"
#include "models/router/token_model.h"

namespace moesim {

class Router final : public RoutingSource {
 public:
  // Validates the spec (std::invalid_argument naming the field) and reads the token file if any.
  // Gate weights and logit-space factors are made per layer on first use.
  explicit Router(const RouterSpec& spec);
  ~Router() override;

  int32_t experts() const override { return spec_.experts; }
  int32_t top_k() const override { return spec_.top_k; }
  int32_t shared_experts() const { return spec_.shared_experts; }
  const RouterSpec& spec() const { return spec_; }
  bool thread_safe() const override { return true; }

  // Deterministic in the request: randomness comes from (seed, layer, micro_batch, rank).
  void route(const RoutingRequest& request, RoutingDecision& out) override {
    route_with_stats(request, out, nullptr);
  }
  // route() that also fills `stats` (when not null).
  void route_with_stats(const RoutingRequest& request, RoutingDecision& out, RouterStats* stats);

  // Routes given hidden states (tokens x hidden, row-major) at request.layer; the request seeds
  // the noisy gate's draws.
  void route_hidden_states(const RoutingRequest& request, std::span<const float> hidden,
                           RoutingDecision& out, RouterStats* stats);

  // The hidden states route() would multiply by the gate for `request`, in token order (tokens
  // x hidden, into `out`): the token model's draw, or the file's window. Throws
  // std::invalid_argument for a logit-space source, which has no hidden states.
  void token_hidden_states(const RoutingRequest& request, std::vector<float>& out);

  // Auxiliary-loss-free balancing between steps: bias_i -= gamma * sign(load_i - mean load).
  // Not to be called while route() runs on another thread.
  void update_bias(int32_t layer, std::span<const int32_t> tokens_per_expert);
  std::span<const float> bias(int32_t layer) const;

  // The layer's gate (hidden x width, width E or 2E with the noise gate), made on first use.
  std::span<const float> gate(int32_t layer);

 private:
  struct LayerState;
  LayerState& layer_state(int32_t layer, bool need_gate);
  std::vector<float> make_gate(int32_t layer) const;
  int32_t gate_width() const { return spec_.noisy ? 2 * spec_.experts : spec_.experts; }
  void check_layer(int32_t layer) const;
  // kHiddenStatesFile: the request's window of the file's rows into out (tokens x hidden).
  void read_file_window(const RoutingRequest& request, std::span<float> out) const;

  RouterSpec spec_;
  std::unique_ptr<ClusterTokenModel> token_model_;
  std::vector<float> file_tokens_;  // kHiddenStatesFile: rows x hidden
  int64_t file_rows_ = 0;
  std::vector<std::vector<float>> bias_;  // per layer, E each
  std::vector<std::unique_ptr<LayerState>> layers_;
  std::unique_ptr<std::once_flag[]> gate_once_;
  std::unique_ptr<std::once_flag[]> logit_once_;
};

}  // namespace moesim
