#include "sim/moe_traffic.h"

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

namespace moesim {
namespace {

// (src, dst) token counts accumulated densely over `global_of`'s GPUs (ascending global ids),
// emitted sparsely with global ids, in (src, dst) order.
std::vector<TokenTransfer> sparse_transfers(std::span<const int64_t> counts,
                                            std::span<const int32_t> global_of) {
  std::vector<TokenTransfer> out;
  const size_t n_local = global_of.size();
  for (size_t s = 0; s < n_local; ++s) {
    for (size_t d = 0; d < n_local; ++d) {
      const int64_t n = counts[s * n_local + d];
      if (n > 0) out.push_back({global_of[s], global_of[d], n});
    }
  }
  return out;
}

}  // namespace

std::string_view to_string(DispatchAlgorithm algorithm) {
  switch (algorithm) {
    case DispatchAlgorithm::kDirect:
      return "direct";
    case DispatchAlgorithm::kHierarchical:
      return "hierarchical";
    case DispatchAlgorithm::kPerExpert:
      return "per-expert (low latency)";
  }
  return "?";
}

LayerTrafficBuilder::LayerTrafficBuilder(const ReplicaLayout& layout, DispatchAlgorithm algorithm)
    : layout_(layout),
      algorithm_(algorithm),
      tp_(layout.plan->tp),
      ep_(layout.plan->ep),
      gpus_(layout.topology->gpu_count()),
      experts_(layout.placement->experts()) {
  const ParallelPlan& plan = *layout.plan;
  const Placement& placement = *layout.placement;
  const Topology& topology = *layout.topology;
  const int32_t gpn = topology.gpus_per_node();
  traffic_.tokens_per_local_expert.resize(static_cast<size_t>(gpus_));
  traffic_.tokens_per_expert.assign(static_cast<size_t>(experts_), 0);
  // Lookups hoisted out of the per-pair loop: GPU of (tp, ep) and, for experts with one copy,
  // their rank and local index (replicated experts ask the placement per token).
  gpu_table_.resize(static_cast<size_t>(tp_) * ep_);
  for (int32_t c = 0; c < ep_; ++c) {
    for (int32_t a = 0; a < tp_; ++a) {
      gpu_table_[static_cast<size_t>(a) * ep_ + c] =
          plan.gpu_of(a, c, layout.dp_rank, layout.pp_rank);
    }
  }
  sole_rank_.assign(static_cast<size_t>(experts_), -1);
  sole_local_.assign(static_cast<size_t>(experts_), -1);
  for (int32_t e = 0; e < experts_; ++e) {
    if (placement.ranks_of(e).size() == 1) {
      sole_rank_[e] = placement.home_rank(e);
      sole_local_[e] = placement.local_index(sole_rank_[e], e);
    }
  }
  for (int32_t c = 0; c < ep_; ++c) {
    const size_t local = placement.experts_on(c).size();
    for (int32_t a = 0; a < tp_; ++a)
      traffic_.tokens_per_local_expert[gpu_of(a, c)].assign(local, 0);
  }
  // The replica's nodes, ascending, and every GPU on them: senders, receivers and relays.
  const int32_t nodes = (gpus_ + gpn - 1) / gpn;  // GPU g is on node g / gpn
  std::vector<uint8_t> spanned(static_cast<size_t>(nodes), 0);
  for (const int32_t g : gpu_table_) spanned[static_cast<size_t>(g / gpn)] = 1;
  local_of_.assign(static_cast<size_t>(gpus_), -1);
  global_of_.clear();
  for (int32_t node = 0; node < nodes; ++node) {
    if (!spanned[static_cast<size_t>(node)]) continue;
    for (int32_t r = 0; r < gpn && node * gpn + r < gpus_; ++r) {
      const int32_t g = node * gpn + r;
      local_of_[static_cast<size_t>(g)] = static_cast<int32_t>(global_of_.size());
      global_of_.push_back(g);
    }
  }
  local_ = static_cast<int32_t>(global_of_.size());
  stage1_.assign(static_cast<size_t>(local_) * local_, 0);
  stage2_.assign(static_cast<size_t>(local_) * local_, 0);
  rank_stamp_.assign(static_cast<size_t>(ep_), -1);
  node_stamp_.assign(static_cast<size_t>(topology.node_count()), -1);
  dest_ranks_.assign(static_cast<size_t>(ep_), 0);  // a token reaches each EP rank at most once
  sole_tokens_.assign(static_cast<size_t>(experts_), 0);
  // Divisions hoisted out of the per-pair loop.
  node_of_.resize(static_cast<size_t>(gpus_));
  rail_of_.resize(static_cast<size_t>(gpus_));
  for (int32_t g = 0; g < gpus_; ++g) {
    node_of_[static_cast<size_t>(g)] = g / gpn;
    rail_of_[static_cast<size_t>(g)] = g % gpn;
  }
  if (algorithm_ == DispatchAlgorithm::kPerExpert) {
    local_pairs_.assign(static_cast<size_t>(gpus_), 0);
  } else {
    sm_tokens_.assign(static_cast<size_t>(gpus_), 0);
  }
  if (algorithm_ == DispatchAlgorithm::kHierarchical) {
    for (int32_t g : gpu_table_) {
      rdma_staged_ = rdma_staged_ || node_of_[static_cast<size_t>(g)] != node_of_[gpu_table_[0]];
    }
  }
}

void LayerTrafficBuilder::add(int32_t ep_rank, int32_t tp_rank, const RoutingDecision& d) {
  if (next_ >= tp_ * ep_ || ep_rank != next_ / tp_ || tp_rank != next_ % tp_) {
    throw std::logic_error(
        "layer traffic: decisions must come in EP-rank, then TP-rank order, "
        "once each; got (ep " +
        std::to_string(ep_rank) + ", tp " + std::to_string(tp_rank) + ") out of turn");
  }
  if (d.experts != experts_) {
    throw std::invalid_argument("build_layer_traffic: a decision has " + std::to_string(d.experts) +
                                " experts, the placement " + std::to_string(experts_));
  }
  ++next_;
  const Placement& placement = *layout_.placement;
  const int32_t b = ep_rank;
  // The EP rank's tokens: its TP ranks' shares in TP order, indexed continuously.
  if (tp_rank == 0) token_base_ = 0;
  traffic_.tokens += d.tokens;
  traffic_.dropped_pairs += d.dropped_pairs;
  if (d.counts_only) {
    for (int32_t e = 0; e < experts_; ++e) {
      const int64_t n = d.tokens_per_expert[static_cast<size_t>(e)];
      traffic_.routed_pairs += n;
      traffic_.tokens_per_expert[static_cast<size_t>(e)] += n;
      for (int64_t i = 0; i < n; ++i) {
        const int32_t c = placement.serving_rank(e, b, token_base_ + i);
        const int32_t local = placement.local_index(c, e);
        for (int32_t a = 0; a < tp_; ++a) {
          const int32_t src = gpu_of(a, b), dst = gpu_of(a, c);
          ++traffic_.tokens_per_local_expert[dst][static_cast<size_t>(local)];
          if (c != b) ++stage1_[static_cast<size_t>(local_of_[src]) * local_ + local_of_[dst]];
          // No per-token destinations: each pair counts as one token written and received.
          if (!sm_tokens_.empty()) {
            ++sm_tokens_[src];
            ++sm_tokens_[dst];
          } else if (c == b) {
            ++local_pairs_[src];
          }
        }
      }
    }
    token_base_ += d.tokens;
    return;
  }
  // The loop's arrays and stamp held in locals: its counts are int64 stores, which may alias the
  // builder's int64 members (stamp_, token_base_), and a push_back may reallocate; either makes
  // the compiler reload members inside the loop.
  const int32_t* const ids = d.expert_ids.data();
  const uint8_t* const dropped = d.dropped.data();
  const int32_t* const sole_rank = sole_rank_.data();
  const int32_t* const node_of = node_of_.data();
  const int32_t* const rail_of = rail_of_.data();
  int64_t* const tokens_per_expert = traffic_.tokens_per_expert.data();
  int64_t* const sole_tokens = sole_tokens_.data();
  int64_t* const rank_stamp = rank_stamp_.data();
  int64_t* const node_stamp = node_stamp_.data();
  int64_t* const stage1 = stage1_.data();
  int64_t* const stage2 = stage2_.data();
  int32_t* const dest_ranks = dest_ranks_.data();
  int64_t* const sm_tokens = sm_tokens_.data();
  const bool direct = algorithm_ == DispatchAlgorithm::kDirect;
  const bool per_expert = algorithm_ == DispatchAlgorithm::kPerExpert;
  const bool rdma_staged = rdma_staged_;
  const int32_t* const local_of = local_of_.data();
  const size_t n_local = static_cast<size_t>(local_);
  int64_t routed = 0, stamp = stamp_;
  for (int32_t t = 0; t < d.tokens; ++t, ++stamp) {
    const int64_t token_index = token_base_ + t;
    int32_t dests = 0;
    const size_t row = static_cast<size_t>(t) * d.slots_per_token;
    for (int32_t j = 0; j < d.slots_per_token; ++j) {
      const int32_t e = ids[row + j];
      if (e == kNoExpert) continue;
      ++routed;
      if (dropped[row + j]) continue;
      ++tokens_per_expert[e];
      int32_t c = sole_rank[e];
      if (c < 0) {
        // A replicated expert: which copy serves the token depends on the token. The
        // tokens of experts with one copy are added to their GPUs in finish().
        c = placement.serving_rank(e, b, token_index);
        const int32_t local = placement.local_index(c, e);
        for (int32_t a = 0; a < tp_; ++a) {
          ++traffic_.tokens_per_local_expert[gpu_of(a, c)][static_cast<size_t>(local)];
        }
      } else {
        ++sole_tokens[e];
      }
      if (per_expert) {
        // One message per (token, expert) pair, to the expert's GPU in each TP column.
        for (int32_t a = 0; a < tp_; ++a) {
          const int32_t src = gpu_of(a, b), dst = gpu_of(a, c);
          if (src == dst) {
            ++local_pairs_[static_cast<size_t>(src)];
          } else {
            ++stage1[static_cast<size_t>(local_of[src]) * n_local + local_of[dst]];
          }
        }
        continue;
      }
      if (rank_stamp[c] != stamp) {
        rank_stamp[c] = stamp;
        dest_ranks[dests++] = c;
      }
    }
    for (int32_t a = 0; a < tp_; ++a) {
      const int32_t src = gpu_of(a, b);
      const int32_t src_node = node_of[src];
      int64_t* const src_row = stage1 + static_cast<size_t>(local_of[src]) * n_local;
      // A fresh stamp space per TP column: node stamps are (token, column) pairs.
      const int64_t node_key = stamp * tp_ + a;
      for (int32_t i = 0; i < dests; ++i) {
        const int32_t dst = gpu_of(a, dest_ranks[i]);
        const int32_t dst_node = node_of[dst];
        // The normal kernels' copies: the token received by dst, written by the sender (its own
        // node, or one node in all) or by the GPU of dst's node on the sender's rail, and sent
        // over RDMA once per destination node (its own included) when staged.
        const int32_t relay = dst - rail_of[dst] + rail_of[src];
        ++sm_tokens[dst];
        ++sm_tokens[direct || dst_node == src_node ? src : relay];
        if (rdma_staged && node_stamp[dst_node] != node_key) {
          node_stamp[dst_node] = node_key;
          ++sm_tokens[src];
          if (dst_node != src_node) ++src_row[local_of[relay]];
        }
        if (dst == src) continue;
        if (direct || dst_node == src_node) {
          ++src_row[local_of[dst]];
          continue;
        }
        // Another node: the replica spans nodes, so rdma_staged sent the token to the relay.
        if (dst != relay) ++stage2[static_cast<size_t>(local_of[relay]) * n_local + local_of[dst]];
      }
    }
  }
  stamp_ = stamp;
  traffic_.routed_pairs += routed;
  token_base_ += d.tokens;
}

MoeLayerTraffic LayerTrafficBuilder::finish() {
  if (finished_ || next_ != tp_ * ep_) {
    throw std::logic_error("layer traffic: finish() after " + std::to_string(next_) + " of " +
                           std::to_string(tp_ * ep_) + " decisions");
  }
  finished_ = true;
  // Experts with one copy compute every token sent to them (counts-only decisions added theirs
  // token by token).
  for (int32_t e = 0; e < experts_; ++e) {
    if (sole_rank_[e] < 0) continue;
    for (int32_t a = 0; a < tp_; ++a) {
      traffic_
          .tokens_per_local_expert[gpu_of(a, sole_rank_[e])][static_cast<size_t>(sole_local_[e])] +=
          sole_tokens_[e];
    }
  }
  traffic_.stage1 = sparse_transfers(stage1_, global_of_);
  traffic_.stage2 = sparse_transfers(stage2_, global_of_);
  traffic_.sm_tokens = std::move(sm_tokens_);
  traffic_.local_pairs = std::move(local_pairs_);
  return std::move(traffic_);
}

MoeLayerTraffic build_layer_traffic(const ReplicaLayout& layout,
                                    std::span<const RoutingDecision> decisions,
                                    DispatchAlgorithm algorithm) {
  const int32_t tp = layout.plan->tp;
  const int32_t ep = layout.plan->ep;
  if (decisions.size() != static_cast<size_t>(tp) * ep) {
    throw std::invalid_argument("build_layer_traffic: expected " + std::to_string(tp * ep) +
                                " decisions (TP x EP), got " + std::to_string(decisions.size()));
  }
  LayerTrafficBuilder builder(layout, algorithm);
  for (int32_t b = 0; b < ep; ++b) {
    for (int32_t a = 0; a < tp; ++a) builder.add(b, a, decisions[static_cast<size_t>(b) * tp + a]);
  }
  return builder.finish();
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

namespace moesim {

std::vector<CommKernelLoad> exchange_kernel_loads(const MoeLayerTraffic& traffic,
                                                  std::span<const int32_t> members,
                                                  const Topology& topology, Bytes bytes_per_token,
                                                  bool combine, bool all_through_nic) {
  const int n = static_cast<int>(members.size());
  std::vector<int32_t> member(static_cast<size_t>(topology.gpu_count()), -1);
  for (int i = 0; i < n; ++i) member[static_cast<size_t>(members[i])] = i;
  auto index_of = [&member](int32_t gpu) {
    if (member[static_cast<size_t>(gpu)] < 0) {
      throw std::invalid_argument("exchange_kernel_loads: GPU " + std::to_string(gpu) +
                                  " has traffic but is not a member");
    }
    return member[static_cast<size_t>(gpu)];
  };
  const auto per_token = static_cast<double>(bytes_per_token.count());
  const int32_t gpn = topology.gpus_per_node();
  std::vector<CommKernelLoad> loads(static_cast<size_t>(n));
  // The link bytes of a transfer: NVLink inside a node, the NICs at both ends across nodes.
  auto add_link_bytes = [&](int32_t from, int32_t to, double bytes, int64_t messages) {
    CommKernelLoad& f = loads[static_cast<size_t>(index_of(from))];
    CommKernelLoad& t = loads[static_cast<size_t>(index_of(to))];
    if (all_through_nic || from / gpn != to / gpn) {
      f.nic_bytes_out += bytes;
      t.nic_bytes_in += bytes;
      f.nic_messages_out += messages;
      t.nic_messages_in += messages;
    } else {
      f.nvlink_bytes_out += bytes;
      t.nvlink_bytes_in += bytes;
      f.sm_nvlink_bytes += messages > 0 ? bytes : 0.0;
    }
  };
  if (!traffic.local_pairs.empty()) {
    // Low latency: each pair is one message of the sender's warps; the combine sends them back
    // from the experts' GPUs.
    for (size_t g = 0; g < traffic.local_pairs.size(); ++g) {
      if (traffic.local_pairs[g] > 0) {
        loads[static_cast<size_t>(index_of(static_cast<int32_t>(g)))].sm_messages +=
            traffic.local_pairs[g];
      }
    }
    for (const TokenTransfer& x : traffic.stage1) {
      const int32_t from = combine ? x.dst_gpu : x.src_gpu;
      const int32_t to = combine ? x.src_gpu : x.dst_gpu;
      loads[static_cast<size_t>(index_of(from))].sm_messages += x.tokens;
      add_link_bytes(from, to, static_cast<double>(x.tokens) * per_token, x.tokens);
    }
    return loads;
  }
  for (size_t g = 0; g < traffic.sm_tokens.size(); ++g) {
    if (traffic.sm_tokens[g] > 0) {
      loads[static_cast<size_t>(index_of(static_cast<int32_t>(g)))].sm_bytes +=
          static_cast<double>(traffic.sm_tokens[g]) * per_token;
    }
  }
  for (const auto* stage : {&traffic.stage1, &traffic.stage2}) {
    for (const TokenTransfer& x : *stage) {
      add_link_bytes(combine ? x.dst_gpu : x.src_gpu, combine ? x.src_gpu : x.dst_gpu,
                     static_cast<double>(x.tokens) * per_token, 0);
    }
  }
  return loads;
}

}  // namespace moesim
