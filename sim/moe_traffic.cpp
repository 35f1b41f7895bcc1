#include "sim/moe_traffic.h"

#include <stdexcept>
#include <string>

namespace moesim {
namespace {

// Dense accumulation of (src, dst) token counts over the cluster's GPUs, emitted sparsely.
class TransferMatrix {
 public:
  explicit TransferMatrix(int32_t gpus) : gpus_(gpus), counts_(static_cast<size_t>(gpus) * gpus) {}
  void add(int32_t src, int32_t dst, int64_t tokens) {
    counts_[static_cast<size_t>(src) * gpus_ + dst] += tokens;
  }
  std::vector<TokenTransfer> transfers() const {
    std::vector<TokenTransfer> out;
    for (int32_t s = 0; s < gpus_; ++s) {
      for (int32_t d = 0; d < gpus_; ++d) {
        const int64_t n = counts_[static_cast<size_t>(s) * gpus_ + d];
        if (n > 0) out.push_back({s, d, n});
      }
    }
    return out;
  }

 private:
  int32_t gpus_;
  std::vector<int64_t> counts_;
};

}  // namespace

MoeLayerTraffic build_layer_traffic(const ReplicaLayout& layout,
                                    std::span<const RoutingDecision> decisions,
                                    DispatchAlgorithm algorithm) {
  const ParallelPlan& plan = *layout.plan;
  const Placement& placement = *layout.placement;
  const Topology& topology = *layout.topology;
  const int32_t tp = plan.tp;
  const int32_t ep = plan.ep;
  if (decisions.size() != static_cast<size_t>(tp) * ep) {
    throw std::invalid_argument("build_layer_traffic: expected " + std::to_string(tp * ep) +
                                " decisions (TP x EP), got " + std::to_string(decisions.size()));
  }
  const int32_t gpus = topology.gpu_count();
  const int32_t experts = placement.experts();
  const int32_t gpn = topology.gpus_per_node();

  MoeLayerTraffic traffic;
  traffic.tokens_per_local_expert.resize(static_cast<size_t>(gpus));
  traffic.tokens_per_expert.assign(static_cast<size_t>(experts), 0);
  // Lookups hoisted out of the per-pair loop: GPU of (tp, ep) and, for experts with one copy,
  // their rank and local index (replicated experts ask the placement per token).
  std::vector<int32_t> gpu_table(static_cast<size_t>(tp) * ep);
  for (int32_t c = 0; c < ep; ++c) {
    for (int32_t a = 0; a < tp; ++a) {
      gpu_table[static_cast<size_t>(a) * ep + c] =
          plan.gpu_of(a, c, layout.dp_rank, layout.pp_rank);
    }
  }
  auto gpu_of = [&](int32_t tp_rank, int32_t ep_rank) {
    return gpu_table[static_cast<size_t>(tp_rank) * ep + ep_rank];
  };
  std::vector<int32_t> sole_rank(static_cast<size_t>(experts), -1);
  std::vector<int32_t> sole_local(static_cast<size_t>(experts), -1);
  for (int32_t e = 0; e < experts; ++e) {
    if (placement.ranks_of(e).size() == 1) {
      sole_rank[e] = placement.home_rank(e);
      sole_local[e] = placement.local_index(sole_rank[e], e);
    }
  }
  for (int32_t c = 0; c < ep; ++c) {
    const size_t local = placement.experts_on(c).size();
    for (int32_t a = 0; a < tp; ++a) traffic.tokens_per_local_expert[gpu_of(a, c)].assign(local, 0);
  }

  TransferMatrix stage1(gpus);
  TransferMatrix stage2(gpus);
  // Per-token de-duplication stamps: destination EP ranks and destination nodes.
  std::vector<int64_t> rank_stamp(static_cast<size_t>(ep), -1);
  std::vector<int64_t> node_stamp(static_cast<size_t>(topology.node_count()), -1);
  std::vector<int32_t> dest_ranks;
  dest_ranks.reserve(static_cast<size_t>(ep));
  std::vector<int64_t> sole_tokens(static_cast<size_t>(experts), 0);
  // Divisions hoisted out of the per-pair loop.
  std::vector<int32_t> node_of(static_cast<size_t>(gpus)), rail_of(static_cast<size_t>(gpus));
  for (int32_t g = 0; g < gpus; ++g) {
    node_of[static_cast<size_t>(g)] = g / gpn;
    rail_of[static_cast<size_t>(g)] = g % gpn;
  }
  int64_t stamp = 0;

  for (int32_t b = 0; b < ep; ++b) {
    // The EP rank's tokens: its TP ranks' shares in TP order, indexed continuously.
    int64_t token_base = 0;
    for (int32_t holder = 0; holder < tp; ++holder) {
      const RoutingDecision& d = decisions[static_cast<size_t>(b) * tp + holder];
      if (d.experts != experts) {
        throw std::invalid_argument("build_layer_traffic: a decision has " +
                                    std::to_string(d.experts) + " experts, the placement " +
                                    std::to_string(experts));
      }
      traffic.tokens += d.tokens;
      traffic.dropped_pairs += d.dropped_pairs;
      if (d.counts_only) {
        for (int32_t e = 0; e < experts; ++e) {
          const int64_t n = d.tokens_per_expert[static_cast<size_t>(e)];
          traffic.routed_pairs += n;
          traffic.tokens_per_expert[static_cast<size_t>(e)] += n;
          for (int64_t i = 0; i < n; ++i) {
            const int32_t c = placement.serving_rank(e, b, token_base + i);
            const int32_t local = placement.local_index(c, e);
            for (int32_t a = 0; a < tp; ++a) {
              ++traffic.tokens_per_local_expert[gpu_of(a, c)][static_cast<size_t>(local)];
              if (c != b) stage1.add(gpu_of(a, b), gpu_of(a, c), 1);
            }
          }
        }
        token_base += d.tokens;
        continue;
      }
      for (int32_t t = 0; t < d.tokens; ++t, ++stamp) {
        const int64_t token_index = token_base + t;
        dest_ranks.clear();
        const size_t row = static_cast<size_t>(t) * d.slots_per_token;
        for (int32_t j = 0; j < d.slots_per_token; ++j) {
          const int32_t e = d.expert_ids[row + j];
          if (e == kNoExpert) continue;
          ++traffic.routed_pairs;
          if (d.dropped[row + j]) continue;
          ++traffic.tokens_per_expert[static_cast<size_t>(e)];
          int32_t c = sole_rank[e];
          if (c < 0) {
            // A replicated expert: which copy serves the token depends on the token. The
            // tokens of experts with one copy are added to their GPUs after the loop.
            c = placement.serving_rank(e, b, token_index);
            const int32_t local = placement.local_index(c, e);
            for (int32_t a = 0; a < tp; ++a) {
              ++traffic.tokens_per_local_expert[gpu_of(a, c)][static_cast<size_t>(local)];
            }
          } else {
            ++sole_tokens[static_cast<size_t>(e)];
          }
          if (rank_stamp[static_cast<size_t>(c)] != stamp) {
            rank_stamp[static_cast<size_t>(c)] = stamp;
            dest_ranks.push_back(c);
          }
        }
        for (int32_t a = 0; a < tp; ++a) {
          const int32_t src = gpu_of(a, b);
          const int32_t src_node = node_of[static_cast<size_t>(src)];
          // A fresh stamp space per TP column: node stamps are (token, column) pairs.
          const int64_t node_key = stamp * tp + a;
          for (int32_t c : dest_ranks) {
            const int32_t dst = gpu_of(a, c);
            if (dst == src) continue;
            const int32_t dst_node = node_of[static_cast<size_t>(dst)];
            if (algorithm == DispatchAlgorithm::kDirect || dst_node == src_node) {
              stage1.add(src, dst, 1);
              continue;
            }
            // The GPU of the destination's node on the sender's rail.
            const int32_t relay =
                dst - rail_of[static_cast<size_t>(dst)] + rail_of[static_cast<size_t>(src)];
            if (node_stamp[static_cast<size_t>(dst_node)] != node_key) {
              node_stamp[static_cast<size_t>(dst_node)] = node_key;
              stage1.add(src, relay, 1);
            }
            if (dst != relay) stage2.add(relay, dst, 1);
          }
        }
      }
      token_base += d.tokens;
    }
  }
  // Experts with one copy compute every token sent to them (counts-only decisions added theirs
  // token by token above).
  for (int32_t e = 0; e < experts; ++e) {
    if (sole_rank[e] < 0) continue;
    for (int32_t a = 0; a < tp; ++a) {
      traffic
          .tokens_per_local_expert[gpu_of(a, sole_rank[e])][static_cast<size_t>(sole_local[e])] +=
          sole_tokens[e];
    }
  }
  traffic.stage1 = stage1.transfers();
  traffic.stage2 = stage2.transfers();
  return traffic;
}

ExchangeMatrices exchange_matrices(const MoeLayerTraffic& traffic, std::span<const int32_t> members,
                                   const Topology& topology, Bytes bytes_per_token, bool combine) {
  const int n = static_cast<int>(members.size());
  std::vector<int32_t> member(static_cast<size_t>(topology.gpu_count()), -1);
  for (int i = 0; i < n; ++i) member[members[i]] = i;
  auto index_of = [&member](int32_t gpu) {
    if (member[gpu] < 0) {
      throw std::invalid_argument("exchange_matrices: GPU " + std::to_string(gpu) +
                                  " has traffic but is not a member");
    }
    return member[gpu];
  };
  const int gpn = topology.gpus_per_node();
  const int64_t per_token = bytes_per_token.count();
  ExchangeMatrices m{ByteMatrix(n), ByteMatrix(n), ByteMatrix(n), !traffic.stage2.empty()};
  for (const TokenTransfer& x : traffic.stage1) {
    const int s = index_of(x.src_gpu), d = index_of(x.dst_gpu);
    const bool crosses = x.src_gpu / gpn != x.dst_gpu / gpn;
    ByteMatrix& target = !m.staged || !crosses ? m.direct : (combine ? m.second : m.first);
    (combine ? target.at(d, s) : target.at(s, d)) += x.tokens * per_token;
  }
  for (const TokenTransfer& x : traffic.stage2) {
    const int s = index_of(x.src_gpu), d = index_of(x.dst_gpu);
    (combine ? m.first.at(d, s) : m.second.at(s, d)) += x.tokens * per_token;
  }
  return m;
}

}  // namespace moesim
