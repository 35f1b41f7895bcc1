// Expert placement: home ranks by rule or list, least-loaded replica placement, and the choice
// of the copy that serves a token.
#include "models/moe/placement.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace moesim {

namespace {

[[noreturn]] void fail(const std::string& message) {
  throw std::invalid_argument("placement: " + message);
}

}  // namespace

Placement::Placement(const ParallelPlan& plan, int32_t routed_experts, int32_t ep_ranks_per_node)
    : ep_(plan.ep), experts_(routed_experts), ep_ranks_per_node_(std::max(1, ep_ranks_per_node)) {
  if (ep_ <= 0) fail("ep must be positive, got " + std::to_string(ep_));
  // 0: a dense model, which places nothing (every rank holds no expert).
  if (experts_ < 0) fail("routed experts must be >= 0, got " + std::to_string(experts_));

  std::vector<std::vector<int32_t>> ranks(static_cast<size_t>(experts_));
  std::vector<int32_t> load(static_cast<size_t>(ep_), 0);
  switch (plan.placement) {
    case PlacementKind::kContiguous:
    case PlacementKind::kRoundRobin: {
      if (experts_ % ep_ != 0) {
        fail(std::to_string(experts_) + " experts are not divisible by ep " + std::to_string(ep_));
      }
      const int32_t per_rank = experts_ / ep_;
      for (int32_t e = 0; e < experts_; ++e) {
        ranks[e].push_back(plan.placement == PlacementKind::kContiguous ? e / per_rank : e % ep_);
      }
      break;
    }
    case PlacementKind::kExplicit: {
      if (plan.explicit_ep_rank.size() != static_cast<size_t>(experts_)) {
        fail("the explicit list has " + std::to_string(plan.explicit_ep_rank.size()) +
             " entries, expected one per expert (" + std::to_string(experts_) + ")");
      }
      for (int32_t e = 0; e < experts_; ++e) {
        const int32_t r = plan.explicit_ep_rank[e];
        if (r < 0 || r >= ep_) {
          fail("expert " + std::to_string(e) + " is placed on EP rank " + std::to_string(r) +
               ", expected 0.." + std::to_string(ep_ - 1));
        }
        ranks[e].push_back(r);
      }
      break;
    }
  }
  for (int32_t e = 0; e < experts_; ++e) ++load[ranks[e][0]];

  if (!plan.hot_experts.empty()) {
    if (plan.replicas < 1 || plan.replicas > ep_ - 1) {
      fail(std::to_string(plan.replicas) + " replicas per hot expert, expected 1.." +
           std::to_string(ep_ - 1) + " (one copy per other EP rank at most)");
    }
    std::vector<uint8_t> seen(static_cast<size_t>(experts_), 0);
    for (int32_t e : plan.hot_experts) {
      if (e < 0 || e >= experts_) {
        fail("hot expert " + std::to_string(e) + " out of range 0.." +
             std::to_string(experts_ - 1));
      }
      if (seen[e]) fail("hot expert " + std::to_string(e) + " is listed twice");
      seen[e] = 1;
      for (int32_t copy = 0; copy < plan.replicas; ++copy) {
        int32_t best = -1;
        for (int32_t r = 0; r < ep_; ++r) {
          if (std::find(ranks[e].begin(), ranks[e].end(), r) != ranks[e].end()) continue;
          if (best < 0 || load[r] < load[best]) best = r;
        }
        ranks[e].push_back(best);
        ++load[best];
      }
    }
  }

  rank_begin_.reserve(static_cast<size_t>(experts_) + 1);
  rank_begin_.push_back(0);
  std::vector<std::vector<int32_t>> on_rank(static_cast<size_t>(ep_));
  for (int32_t e = 0; e < experts_; ++e) {
    for (int32_t r : ranks[e]) {
      rank_list_.push_back(r);
      on_rank[r].push_back(e);  // e ascending, so each list is sorted
    }
    rank_begin_.push_back(static_cast<int32_t>(rank_list_.size()));
  }
  expert_begin_.reserve(static_cast<size_t>(ep_) + 1);
  expert_begin_.push_back(0);
  for (int32_t r = 0; r < ep_; ++r) {
    expert_list_.insert(expert_list_.end(), on_rank[r].begin(), on_rank[r].end());
    expert_begin_.push_back(static_cast<int32_t>(expert_list_.size()));
  }
}

std::span<const int32_t> Placement::ranks_of(int32_t expert) const {
  if (expert < 0 || expert >= experts_) {
    throw std::out_of_range("placement: expert " + std::to_string(expert) + " out of range");
  }
  return {rank_list_.data() + rank_begin_[expert],
          static_cast<size_t>(rank_begin_[expert + 1] - rank_begin_[expert])};
}

std::span<const int32_t> Placement::experts_on(int32_t rank) const {
  if (rank < 0 || rank >= ep_) {
    throw std::out_of_range("placement: EP rank " + std::to_string(rank) + " out of range");
  }
  return {expert_list_.data() + expert_begin_[rank],
          static_cast<size_t>(expert_begin_[rank + 1] - expert_begin_[rank])};
}

int32_t Placement::local_index(int32_t rank, int32_t expert) const {
  const std::span<const int32_t> local = experts_on(rank);
  const auto it = std::lower_bound(local.begin(), local.end(), expert);
  if (it == local.end() || *it != expert) return -1;
  return static_cast<int32_t>(it - local.begin());
}

int32_t Placement::serving_rank(int32_t expert, int32_t source_rank, int64_t token_index) const {
  const std::span<const int32_t> candidates = ranks_of(expert);
  if (candidates.size() == 1) return candidates[0];
  const int32_t node = source_rank / ep_ranks_per_node_;
  int64_t on_node = 0;
  for (int32_t r : candidates) {
    if (r == source_rank) return r;
    if (r / ep_ranks_per_node_ == node) ++on_node;
  }
  const uint64_t index = static_cast<uint64_t>(token_index);
  if (on_node > 0) {
    int64_t pick = static_cast<int64_t>(index % static_cast<uint64_t>(on_node));
    for (int32_t r : candidates) {
      if (r / ep_ranks_per_node_ == node && pick-- == 0) return r;
    }
  }
  return candidates[index % candidates.size()];
}

}  // namespace moesim
