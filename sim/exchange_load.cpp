#include "sim/exchange_load.h"

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

}  // namespace moesim
