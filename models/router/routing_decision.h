// What a routing source decides for one batch of tokens at one MoE layer: per token its expert
// slots (id, weight, dropped flag) and per expert its kept-token count. Consumed by the step.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

namespace moesim {

// An empty slot: expert-choice routing gives tokens different numbers of experts, so rows are
// padded to `slots_per_token` with this id.
inline constexpr int32_t kNoExpert = -1;

struct RoutingDecision {
  int32_t tokens = 0;
  int32_t experts = 0;          // routed experts (shared experts are not listed per token)
  int32_t slots_per_token = 0;  // k for top-k routing; the widest row for expert choice
  // Row-major tokens x slots_per_token. weights may be empty when a trace logged none.
  std::vector<int32_t> expert_ids;
  std::vector<float> weights;
  std::vector<uint8_t> dropped;  // 1: over capacity, the pair is not computed nor sent
  // Per expert, the token-expert pairs kept (not dropped).
  std::vector<int32_t> tokens_per_expert;
  int64_t dropped_pairs = 0;
  // Set when only per-expert counts are known (a count-only trace): expert_ids, weights and
  // dropped are empty and tokens_per_expert carries the counts.
  bool counts_only = false;

  std::span<const int32_t> experts_of(int32_t token) const {
    return {expert_ids.data() + static_cast<size_t>(token) * slots_per_token,
            static_cast<size_t>(slots_per_token)};
  }
  // Resizes for a batch, keeping capacity (no allocation per batch once warm).
  void reset(int32_t n_tokens, int32_t n_experts, int32_t n_slots) {
    reset_for_overwrite(n_tokens, n_experts, n_slots);
    std::fill(expert_ids.begin(), expert_ids.end(), kNoExpert);
    std::fill(weights.begin(), weights.end(), 0.0f);
  }
  // reset() for a caller that writes every id and weight itself: they are left as they were
  // (sized, not cleared, saving two passes over the batch's pairs); the rest as reset().
  void reset_for_overwrite(int32_t n_tokens, int32_t n_experts, int32_t n_slots) {
    tokens = n_tokens;
    experts = n_experts;
    slots_per_token = n_slots;
    counts_only = false;
    const size_t pairs = static_cast<size_t>(n_tokens) * n_slots;
    expert_ids.resize(pairs);
    weights.resize(pairs);
    dropped.assign(pairs, 0);
    tokens_per_expert.assign(n_experts, 0);
    dropped_pairs = 0;
  }
};

// Which batch a step asks routing for: one layer, one micro-batch, one data-holding rank.
struct RoutingRequest {
  int32_t layer = 0;        // index among MoE layers
  int64_t micro_batch = 0;  // global index across steps: step * micro_batches + micro_batch
  int32_t rank = 0;         // the rank whose tokens these are
  int32_t ranks = 1;        // how many ranks hold tokens at this layer
  int32_t tokens = 0;       // tokens this rank holds
};

// The router model and a trace reader are two implementations of this; the step cannot tell
// which it has. Given the same request twice, a source returns the same decision.
class RoutingSource {
 public:
  virtual ~RoutingSource() = default;
  virtual int32_t experts() const = 0;
  virtual int32_t top_k() const = 0;
  // Fills `out` for the request. A source may return another token count than asked (a trace
  // holds the tokens it recorded): the step uses out.tokens.
  virtual void route(const RoutingRequest& request, RoutingDecision& out) = 0;
  // Whether route() may be called from several threads at once on this object. A router seeds
  // each request's randomness from (seed, layer, micro_batch, rank) and is; a trace reader,
  // which streams records in order, is not and is asked in (micro_batch, layer, rank) order.
  virtual bool thread_safe() const { return false; }
};

}  // namespace moesim
