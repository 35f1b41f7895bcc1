// The router's arithmetic on one batch of logits: scores (softmax or sigmoid, noisy gating),
// top-k / group-limited / expert-choice selection, capacity and dropping, and load statistics.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "models/router/router_spec.h"
#include "models/router/routing_decision.h"

namespace moesim {

// The vector width the gating kernels run at. kNative: the widest the CPU has (AVX-512F 16 lanes,
// AVX2 8, else 4); the others run compiled for the baseline instruction set, slowly, so that
// tests can check on any machine that every width gives the same result.
enum class KernelWidth { kNative, kLanes4, kLanes8, kLanes16 };

// Load figures of one routing decision.
struct RouterStats {
  std::vector<int32_t> tokens_per_expert;  // kept pairs per expert
  int64_t routed_pairs = 0;                // token-expert pairs chosen, before capacity
  int64_t dropped_pairs = 0;
  // Switch auxiliary loss E * sum_i f_i P_i, f_i the fraction of chosen pairs (before capacity)
  // going to expert i, P_i the batch mean of i's router probability (sigmoid scores normalised
  // per token to sum to 1). 1 at perfect balance, E at total collapse onto one expert.
  double aux_loss = 0.0;
  double z_loss = 0.0;             // mean over tokens of logsumexp(logits)^2
  double load_entropy_nats = 0.0;  // entropy of the kept-load distribution over experts
  double max_over_mean_load = 0.0;
};

// Makes a batch's rows of logits on demand, a few at a time, so that route_from_logits scores
// each row while it is in the L1 cache instead of writing the batch's logits out to memory and
// reading them back (4 MB for 4096 tokens and 256 experts).
class LogitRowSource {
 public:
  virtual ~LogitRowSource() = default;
  // Writes rows [first, first + count), row i at out + i * stride (stride >= the row width).
  virtual void rows(int32_t first, int32_t count, float* out, int64_t stride) const = 0;
};

// Rows of logits for one batch. Row r holds token token_of_row[r] (row r is token r when the span
// is empty): its first E floats are the gate logits and, for noisy gating, the next E the noise
// logits (x W_noise). The rows are at data, row_stride floats apart, or, when source is set,
// made by it (data is then unused and row_stride is the width of a row).
struct LogitRows {
  const float* data = nullptr;
  int32_t rows = 0;
  int64_t row_stride = 0;  // floats between rows
  std::span<const int32_t> token_of_row;
  const LogitRowSource* source = nullptr;
};

// Per-thread working memory; grows to the largest batch seen and is then reused.
struct GatingScratch {
  std::vector<float> scores;           // expert choice: tokens x E probabilities
  std::vector<float> pair_scores;      // tokens x k router probability of each chosen pair
  std::vector<float> row;              // one row of noisy logits
  std::vector<float> logit_block;      // rows made by a LogitRowSource
  std::vector<float> choice;           // one row of selection scores (score + bias)
  std::vector<float> probability_sum;  // E
  std::vector<int32_t> counts;         // E
  std::vector<int32_t> offsets;        // E + 1
  std::vector<int32_t> pair_index;     // tokens x k
  std::vector<float> candidate_scores;
  std::vector<int32_t> candidate_tokens;
};

// Per-expert capacity ceil(capacity_factor * tokens * top_k / experts); 0 when capacity_factor is
// 0 (no limit).
int32_t expert_capacity(double capacity_factor, int32_t tokens, int32_t top_k, int32_t experts);

// Router scores of one token's logits: softmax or element-wise sigmoid.
void score_row(RouterScoring scoring, std::span<const float> logits, std::span<float> scores);

// The k best experts by score, best first; equal scores go to the lower expert index.
void top_k_row(std::span<const float> scores, std::span<int32_t> ids);

// DeepSeek-V3's group-limited top-k: experts split into `groups` equal groups, the topk_group
// groups with the highest sum of their two best scores are kept, then top-k within them (best
// first, ties to the lower index).
void group_limited_top_k_row(std::span<const float> scores, int32_t groups, int32_t topk_group,
                             std::span<int32_t> ids, KernelWidth width = KernelWidth::kNative);

// Marks pairs over each expert's capacity as dropped and fills tokens_per_expert and
// dropped_pairs. pair_scores parallels out.expert_ids (used by DropPolicy::kByLowestScore).
// capacity 0 keeps every pair.
void apply_capacity(int32_t capacity, DropPolicy policy, std::span<const float> pair_scores,
                    RoutingDecision& out, GatingScratch& scratch);

// Routes one batch from its logits. noise: tokens x E standard normals in token order for noisy
// gating (else empty); bias: the per-expert selection bias (or empty). stats may be null.
void route_from_logits(const RouterSpec& spec, const LogitRows& logits,
                       std::span<const float> noise, std::span<const float> bias,
                       GatingScratch& scratch, RoutingDecision& out, RouterStats* stats,
                       KernelWidth width = KernelWidth::kNative);

}  // namespace moesim
