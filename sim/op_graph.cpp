#include "sim/op_graph.h"

#include <algorithm>
#include <array>
#include <stdexcept>
#include <string>

namespace moesim {

const char* phase_name(Phase phase) {
  switch (phase) {
    case Phase::kAttention:
      return "attention";
    case Phase::kDenseFfn:
      return "dense_ffn";
    case Phase::kTpCollective:
      return "tp_collective";
    case Phase::kDispatch:
      return "dispatch";
    case Phase::kExpertCompute:
      return "expert_compute";
    case Phase::kCombine:
      return "combine";
    case Phase::kPipeline:
      return "pipeline";
    case Phase::kGradientSync:
      return "gradient_sync";
    case Phase::kOptimizer:
      return "optimizer";
    case Phase::kIdle:
      return "idle";
  }
  return "?";
}

CollectiveIdx OpGraph::add_collective(Collective collective) {
  if (finished_) throw std::logic_error("OpGraph: add_collective after finish");
  collective.member_ops.assign(collective.members.size(), kNone);
  collectives_.push_back(std::move(collective));
  return static_cast<CollectiveIdx>(collectives_.size() - 1);
}

OpId OpGraph::push(const Op& op, std::span<const OpId> after) {
  if (finished_) throw std::logic_error("OpGraph: an op added after finish");
  if (op.gpu < 0 || op.gpu >= gpus_) {
    throw std::invalid_argument("OpGraph: GPU " + std::to_string(op.gpu) + " of " +
                                std::to_string(gpus_));
  }
  const auto id = static_cast<OpId>(ops_.size());
  ops_.push_back(op);
  for (OpId before : after) add_dependency(before, id);
  return id;
}

OpId OpGraph::add_kernel(const Op& op, std::span<const OpId> after) {
  Op kernel = op;
  kernel.is_kernel = true;
  kernel.collective = kNone;
  return push(kernel, after);
}

OpId OpGraph::add_member(int32_t gpu, Stream stream, CollectiveIdx collective,
                         std::span<const OpId> after) {
  Collective& c = collectives_.at(static_cast<size_t>(collective));
  const auto position = std::find(c.members.begin(), c.members.end(), gpu) - c.members.begin();
  if (position == static_cast<std::ptrdiff_t>(c.members.size())) {
    throw std::invalid_argument("OpGraph: GPU " + std::to_string(gpu) +
                                " is no member of collective " + std::to_string(collective));
  }
  if (c.member_ops[static_cast<size_t>(position)] != kNone) {
    throw std::invalid_argument("OpGraph: GPU " + std::to_string(gpu) + " joins collective " +
                                std::to_string(collective) + " twice");
  }
  Op op;
  op.gpu = gpu;
  op.stream = stream;
  op.phase = c.phase;
  op.is_kernel = false;
  op.backward = c.backward;
  op.micro_batch = c.micro_batch;
  op.collective = collective;
  const OpId id = push(op, after);
  c.member_ops[static_cast<size_t>(position)] = id;
  return id;
}

void OpGraph::add_dependency(OpId before, OpId op) {
  if (before < 0 || before >= op || op >= op_count()) {
    throw std::invalid_argument("OpGraph: op " + std::to_string(op) + " cannot wait for op " +
                                std::to_string(before) + " (only for one added before it)");
  }
  edges_.emplace_back(before, op);
}

void OpGraph::finish() {
  if (finished_) return;
  // A stream runs its ops in order: each waits for the one before it on its stream.
  std::vector<std::array<OpId, kStreamCount>> last(static_cast<size_t>(gpus_));
  for (auto& l : last) l.fill(kNone);
  for (OpId id = 0; id < op_count(); ++id) {
    const Op& o = ops_[static_cast<size_t>(id)];
    OpId& previous = last[static_cast<size_t>(o.gpu)][static_cast<size_t>(o.stream)];
    if (previous != kNone) edges_.emplace_back(previous, id);
    previous = id;
  }
  for (size_t c = 0; c < collectives_.size(); ++c) {
    for (OpId member : collectives_[c].member_ops) {
      if (member == kNone) {
        throw std::invalid_argument("OpGraph: collective " + std::to_string(c) +
                                    " has a member without an op");
      }
    }
  }
  // Sorted by (after, before): each op's dependents then come out in increasing id.
  std::sort(edges_.begin(), edges_.end(), [](const auto& x, const auto& y) {
    return x.second != y.second ? x.second < y.second : x.first < y.first;
  });
  edges_.erase(std::unique(edges_.begin(), edges_.end()), edges_.end());
  const auto n = static_cast<size_t>(op_count());
  dependency_count_.assign(n, 0);
  dependents_begin_.assign(n + 1, 0);
  for (const auto& [before, after] : edges_) {
    ++dependency_count_[static_cast<size_t>(after)];
    ++dependents_begin_[static_cast<size_t>(before) + 1];
  }
  for (size_t i = 0; i < n; ++i) dependents_begin_[i + 1] += dependents_begin_[i];
  dependents_.assign(edges_.size(), kNone);
  std::vector<uint32_t> fill(dependents_begin_.begin(), dependents_begin_.end() - 1);
  for (const auto& [before, after] : edges_)
    dependents_[fill[static_cast<size_t>(before)]++] = after;
  for (OpId id = 0; id < op_count(); ++id) {
    if (dependency_count_[static_cast<size_t>(id)] == 0) roots_.push_back(id);
  }
  edges_.clear();
  edges_.shrink_to_fit();
  finished_ = true;
}

}  // namespace moesim
