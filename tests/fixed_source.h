// A routing source fixed by the test: rank r's token t goes to experts_by_rank[r][t] (top-1),
// so that a step's traffic and loads can be worked by hand; shared by the step tests.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "models/router/routing_decision.h"

namespace moesim::test {

class FixedSource final : public RoutingSource {
 public:
  FixedSource(int32_t experts, std::vector<std::vector<int32_t>> experts_by_rank)
      : experts_(experts), by_rank_(std::move(experts_by_rank)) {}
  int32_t experts() const override { return experts_; }
  int32_t top_k() const override { return 1; }
  void route(const RoutingRequest& request, RoutingDecision& out) override {
    const auto& ids = by_rank_.at(static_cast<size_t>(request.rank));
    out.reset(static_cast<int32_t>(ids.size()), experts_, 1);
    for (size_t t = 0; t < ids.size(); ++t) {
      out.expert_ids[t] = ids[t];
      out.weights[t] = 1.0f;
      ++out.tokens_per_expert[static_cast<size_t>(ids[t])];
    }
  }

 private:
  int32_t experts_;
  std::vector<std::vector<int32_t>> by_rank_;
};

}  // namespace moesim::test
