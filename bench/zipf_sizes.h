// The skewed all-to-all the network benchmarks share: message sizes drawn from a Zipf law, so
// that bench_network and bench_simgrid_compare time the same traffic.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "core/random.h"

namespace moesim::bench {

// Message i -> j carries z tokens of 7 KiB (a 3584-wide bf16 hidden state), z drawn from a
// Zipf law on 1..1024 with exponent 1.2: most messages are a few tokens, a few are large.
// Row-major gpus x gpus, zero on the diagonal.
inline std::vector<int64_t> zipf_sizes(int gpus, uint64_t seed) {
  constexpr int kMaxTokens = 1024;
  std::vector<double> cdf(kMaxTokens);
  double sum = 0.0;
  for (int k = 1; k <= kMaxTokens; ++k) cdf[k - 1] = (sum += std::pow(k, -1.2));
  RandomStream rng(seed, "bench-zipf");
  std::vector<int64_t> sizes(static_cast<size_t>(gpus) * gpus, 0);
  for (int i = 0; i < gpus; ++i) {
    for (int j = 0; j < gpus; ++j) {
      if (i == j) continue;
      const double u = rng.uniform01() * sum;
      const auto k = std::upper_bound(cdf.begin(), cdf.end(), u) - cdf.begin() + 1;
      sizes[static_cast<size_t>(i) * gpus + j] = static_cast<int64_t>(k) * 7168;
    }
  }
  return sizes;
}

}  // namespace moesim::bench
