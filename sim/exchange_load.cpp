#include "sim/exchange_load.h"

#include <span>
#include <stdexcept>
#include <string>

namespace moesim {

std::optional<ExchangeLoad> exchange_load(const MoeLayerTraffic& traffic) {
  ExchangeLoad load;
  int64_t pairs = 0;
  for (size_t e = 0; e < traffic.tokens_per_expert.size(); ++e) {
    const int64_t n = traffic.tokens_per_expert[e];
    pairs += n;
    if (n > load.hottest_expert_pairs || load.hottest_expert < 0) {
      load.hottest_expert = static_cast<int32_t>(e);
      load.hottest_expert_pairs = n;
    }
  }
  if (pairs <= 0) return std::nullopt;
  load.expert_max_over_mean = static_cast<double>(load.hottest_expert_pairs) *
                              static_cast<double>(traffic.tokens_per_expert.size()) /
                              static_cast<double>(pairs);
  int64_t rows = 0;
  int32_t gpus = 0;
  for (size_t g = 0; g < traffic.tokens_per_local_expert.size(); ++g) {
    const auto& local = traffic.tokens_per_local_expert[g];
    if (local.empty()) continue;  // outside the replica, or no routed expert here
    int64_t n = 0;
    for (int32_t r : local) n += r;
    rows += n;
    ++gpus;
    if (n > load.busiest_gpu_rows || load.busiest_gpu < 0) {
      load.busiest_gpu = static_cast<int32_t>(g);
      load.busiest_gpu_rows = n;
    }
  }
  if (rows > 0) {
    load.mean_gpu_rows = static_cast<double>(rows) / gpus;
    load.gpu_max_over_mean = static_cast<double>(load.busiest_gpu_rows) / load.mean_gpu_rows;
  }
  return load;
}

ExchangeStraggler exchange_straggler(const OpGraph& graph, const Execution& played,
                                     CollectiveIdx dispatch, CollectiveIdx combine,
                                     const MoeLayerTraffic& traffic, const Placement& placement,
                                     int32_t tp) {
  const Collective& c = graph.collective(combine);
  ExchangeStraggler s;
  s.micro_batch = c.micro_batch;
  s.moe_layer = c.moe_layer;
  s.replica = c.dp_rank;
  // Members are in increasing GPU order; a later member takes over only when strictly later.
  Time last;
  for (size_t i = 0; i < c.members.size(); ++i) {
    const Time arrival = played.op_start[static_cast<size_t>(c.member_ops[i])];
    if (s.gpu < 0 || arrival > last) {
      s.gpu = c.members[i];
      last = arrival;
    }
  }
  const auto d = static_cast<size_t>(dispatch);
  const auto k = static_cast<size_t>(combine);
  s.time = played.collective_finish[k] - played.collective_launch[d];
  s.alltoall_time = (played.collective_finish[d] - played.collective_launch[d]) +
                    (played.collective_finish[k] - played.collective_launch[k]);
  if (s.gpu < 0) return s;  // a combine without members: nothing waited
  const std::span<const int32_t> experts = placement.experts_on((s.gpu / tp) % placement.ep_size());
  const auto& all = traffic.tokens_per_local_expert;
  const std::span<const int32_t> local = static_cast<size_t>(s.gpu) < all.size()
                                             ? std::span<const int32_t>(all[size_t(s.gpu)])
                                             : std::span<const int32_t>();
  if (local.size() != experts.size()) {
    throw std::logic_error("exchange_straggler: GPU " + std::to_string(s.gpu) + " has " +
                           std::to_string(local.size()) + " expert counts in the traffic, " +
                           std::to_string(experts.size()) + " local experts in the placement");
  }
  for (size_t i = 0; i < local.size(); ++i) {
    s.rows += local[i];
    if (s.hottest_expert < 0 || local[i] > s.hottest_expert_rows) {
      s.hottest_expert = experts[i];
      s.hottest_expert_rows = local[i];
    }
  }
  return s;
}

}  // namespace moesim
