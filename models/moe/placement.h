// Where routed experts live within an expert-parallel group: each expert's home EP rank by the
// plan's rule, extra copies of hot experts, and which copy serves a given token.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "models/moe/model_spec.h"
#include "models/moe/parallel_plan.h"

namespace moesim {

// Ranks here are EP ranks 0..ep-1 within one EP group; every EP group is laid out alike.
//
// Replicas: hot experts are taken in the plan's order, and each of its `replicas` extra copies
// goes to the EP rank holding the fewest experts so far (homes and copies already placed)
// among those not yet holding that expert; ties go to the lowest rank. Deterministic.
//
// Serving: a token on source EP rank s for expert e is served by s itself if s holds e; else
// by a copy on s's node (EP ranks s / ep_ranks_per_node share a node) if any; else by any copy.
// Among several candidates the token index picks one: candidates[token_index mod count], so
// tokens spread evenly over equal copies.
class Placement {
 public:
  // Throws std::invalid_argument on an inconsistent plan (experts not divisible by ep for the
  // built-in rules, an explicit list of the wrong length or with a rank out of range, a hot
  // expert out of range or repeated, more replicas than other ranks).
  // ep_ranks_per_node: EP ranks sharing one node (gpus_per_node / tp, at least 1).
  Placement(const ParallelPlan& plan, int32_t routed_experts, int32_t ep_ranks_per_node);
  Placement(const ParallelPlan& plan, const ModelSpec& model, int32_t ep_ranks_per_node)
      : Placement(plan, model.routed_experts, ep_ranks_per_node) {}

  int32_t ep_size() const { return ep_; }
  int32_t experts() const { return experts_; }
  int32_t ep_ranks_per_node() const { return ep_ranks_per_node_; }

  // The home rank of an expert.
  int32_t home_rank(int32_t expert) const { return ranks_of(expert)[0]; }
  // Every rank holding an expert: home first, then the copies in placement order.
  std::span<const int32_t> ranks_of(int32_t expert) const;
  // Experts (homes and copies) a rank holds, ascending by expert id: the rank's local experts,
  // whose index in this list is the local expert index.
  std::span<const int32_t> experts_on(int32_t rank) const;
  // The local expert index of `expert` on `rank`, or -1 if the rank does not hold it.
  int32_t local_index(int32_t rank, int32_t expert) const;
  // The rank that computes `expert` for a token of `source_rank` (see the class comment).
  int32_t serving_rank(int32_t expert, int32_t source_rank, int64_t token_index) const;

 private:
  int32_t ep_;
  int32_t experts_;
  int32_t ep_ranks_per_node_;
  // Flattened lists: ranks_of expert e are rank_list_[rank_begin_[e] .. rank_begin_[e + 1]).
  std::vector<int32_t> rank_begin_;
  std::vector<int32_t> rank_list_;
  std::vector<int32_t> expert_begin_;
  std::vector<int32_t> expert_list_;
};

}  // namespace moesim
