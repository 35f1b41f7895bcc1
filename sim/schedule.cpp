#include "sim/schedule.h"

#include <algorithm>
#include <array>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "models/moe/parameter_count.h"
#include "sim/pipeline_order.h"

namespace moesim {

std::vector<int32_t> stage_first_layers(int32_t layers, int32_t stages) {
  std::vector<int32_t> first{0};
  for (int32_t st = 0; st < stages; ++st) {
    first.push_back(first.back() + layers / stages + (st < layers % stages ? 1 : 0));
  }
  return first;
}

std::vector<PipelineWork> one_f_one_b_order(int32_t rank, int32_t pp, int32_t micro_batches,
                                            bool training, bool ep_overlap) {
  std::vector<PipelineWork> order;
  if (!training) {
    for (int32_t m = 0; m < micro_batches; ++m) order.push_back({m, false, false, rank});
    return order;
  }
  const int32_t warmup = std::min(pp - rank - (ep_overlap ? 0 : 1), micro_batches);
  int32_t next_forward = 0;
  int32_t next_backward = 0;
  for (; next_forward < warmup; ++next_forward) order.push_back({next_forward, false, false, rank});
  while (next_forward < micro_batches) {
    order.push_back({next_forward++, false, ep_overlap, rank});
    order.push_back({next_backward++, true, false, rank});
  }
  while (next_backward < micro_batches) order.push_back({next_backward++, true, false, rank});
  return order;
}

std::vector<PipelineWork> one_f_one_b_rank_order(int32_t rank, int32_t pp, int32_t chunks,
                                                 int32_t micro_batches, bool training,
                                                 bool ep_overlap) {
  return chunks > 1 ? interleaved_order(rank, pp, chunks, micro_batches, training, ep_overlap)
                    : one_f_one_b_order(rank, pp, micro_batches, training, ep_overlap);
}

namespace {

// 1F1B's layout (with or without Megatron-Core's EP overlap): one stage per rank, or
// setup.virtual_stages interleaved.
PipelineLayout one_f_one_b_layout(const StepSetup& setup, bool ep_overlap) {
  PipelineLayout layout;
  layout.pp = setup.plan->pp;
  layout.stages = layout.pp * setup.virtual_stages;
  layout.micro_batches = setup.micro_batches;
  const bool training = setup.kind == WorkloadKind::kTraining;
  for (int32_t s = 0; s < layout.pp; ++s) {
    layout.order.push_back(one_f_one_b_rank_order(s, layout.pp, setup.virtual_stages,
                                                  setup.micro_batches, training, ep_overlap));
  }
  return layout;
}

// Where a tensor-parallel collective sits in a layer, in forward order (the backward pass runs
// the same four in reverse, each the other kind).
enum class TpSlot : uint8_t { kBeforeAttention, kAfterAttention, kBeforeFfn, kAfterFfn };
inline constexpr int32_t kTpSlots = 4;
// Passes a collective can belong to: forward, backward, forward recomputed in the backward.
inline constexpr size_t kPasses = 3;

// Lays out a pipeline step (1F1B, interleaved, with EP overlap, DualPipe) from its layout: each
// rank's chunks in order, each a forward or backward through one model stage, a pair overlapped.
// The collectives the step shares between GPUs are found by their keys in dense tables (one
// entry per possible collective, O(1) lookup): the first member to reach one creates it.
class OneFOneBBuilder {
 public:
  OneFOneBBuilder(const StepSetup& setup, PipelineLayout layout)
      : layout_(std::move(layout)),
        setup_(setup),
        plan_(*setup.plan),
        model_(*setup.model),
        graph_(static_cast<int32_t>(setup.plan->world_size())),
        stage_first_layer_(stage_first_layers(setup.model->layers, layout_.stages)) {
    const int32_t layers = model_.layers;
    moe_index_of_layer_.assign(static_cast<size_t>(layers), kNone);
    int32_t moe = 0;
    for (int32_t l = 0; l < layers; ++l) {
      if (model_.is_moe_layer(l)) moe_index_of_layer_[static_cast<size_t>(l)] = moe++;
    }
    moe_layers_ = moe;
    const auto mb = static_cast<size_t>(setup.micro_batches);
    if (plan_.tp > 1) tp_.assign(mb * layers * kPasses * kTpSlots * plan_.ep * plan_.dp, kNone);
    if (plan_.ep > 1) exchange_.assign(mb * moe_layers_ * kPasses * 2 * plan_.dp, kNone);
    if (plan_.pp > 1) pipeline_.assign(mb * layout_.stages * 2 * positions(), kNone);
    dense_gradients_.assign(static_cast<size_t>(plan_.tp) * plan_.pp, kNone);
    expert_gradients_.assign(static_cast<size_t>(plan_.tp) * plan_.pp * plan_.ep, kNone);
    dense_parameters_.assign(dense_gradients_.size(), kNone);
    expert_parameters_.assign(expert_gradients_.size(), kNone);
    if (setup.options.overlap_grad_reduce) {
      dense_layer_gradients_.assign(static_cast<size_t>(layers) * plan_.tp, kNone);
      expert_layer_gradients_.assign(static_cast<size_t>(layers) * plan_.tp * plan_.ep, kNone);
    }
  }

  OpGraph build() && {
    const bool training = setup_.kind == WorkloadKind::kTraining;
    for (int32_t s = 0; s < plan_.pp; ++s) {
      const std::vector<PipelineWork>& order = layout_.order[static_cast<size_t>(s)];
      for (int32_t d = 0; d < plan_.dp; ++d) {
        for (int32_t b = 0; b < plan_.ep; ++b) {
          for (int32_t a = 0; a < plan_.tp; ++a) {
            gpu_ = plan_.gpu_of(a, b, d, s);
            a_ = a, b_ = b, d_ = d, s_ = s;
            previous_ = also_ = kNone;
            last_gradient_.assign(static_cast<size_t>(model_.layers), kNone);
            for (size_t i = 0; i < order.size(); ++i) {
              const PipelineWork& w = order[i];
              if (w.paired) {
                add_pair(w, order[++i]);
              } else if (w.grad == GradPart::kWeight) {
                add_weight(w.mb, w.stage);
              } else if (w.backward) {
                add_backward(w.mb, w.stage, w.grad);
              } else {
                add_forward(w.mb, w.stage);
              }
            }
            if (training) add_gradient_sync_and_optimizer();
          }
        }
      }
    }
    graph_.finish();
    return std::move(graph_);
  }

 private:
  // What the GPU's next op waits for: its last op, and after an overlapped pair the pair's other
  // chain's last op too.
  std::span<const OpId> after() {
    waits_ = {previous_, also_};
    const size_t n = (previous_ != kNone) + (also_ != kNone);
    if (previous_ == kNone) waits_[0] = also_;
    return std::span<const OpId>(waits_.data(), n);
  }
  void kernel(Phase phase, KernelKind kind, bool backward, int32_t mb, int32_t layer) {
    Op op;
    op.gpu = gpu_;
    op.stream = Stream::kCompute;
    op.phase = phase;
    op.kernel = kind;
    // A recomputed forward kernel is part of the backward pass at the forward's work.
    op.backward = backward || recomputing_;
    op.micro_batch = mb;
    op.layer = layer;
    op.work_scale = backward ? 2 : 1;  // the backward pass does twice the matrix work
    if (backward && grad_ != GradPart::kWhole) {
      op.grad = grad_;  // one of the two gradients: one forward's work (StepCostModel prices it)
      op.work_scale = 1;
    }
    if (capture_ != nullptr) {
      capture_->push_back({op, kNone, false, false});
      return;
    }
    previous_ = graph_.add_kernel(op, after());
    also_ = kNone;
    note_gradient(op, previous_);
  }
  // Whether a kernel computes weight gradients of its layer: a backward computing both
  // gradients (at twice the forward's work, unlike a forward recomputed in the backward pass) or
  // a weight part.
  static bool computes_weight_gradient(const Op& op) {
    return op.backward && op.layer != kNone &&
           (op.grad == GradPart::kWeight || (op.grad == GradPart::kWhole && op.work_scale == 2));
  }
  // Remembers the last kernel of this GPU computing layer gradients: the layer's gradients are
  // complete when it ends (the reduction that overlaps the backward waits for it).
  void note_gradient(const Op& op, OpId id) {
    if (computes_weight_gradient(op)) last_gradient_[static_cast<size_t>(op.layer)] = id;
  }
  void join(CollectiveIdx c) {
    if (capture_ != nullptr) {
      capture_->push_back({Op{}, c, false, receiving_});
      return;
    }
    previous_ = graph_.add_member(gpu_, Stream::kComm, c, after());
    also_ = kNone;
  }
  // Which pass a collective belongs to, for its key: forward, backward, or a forward
  // recomputed in the backward pass (its own collectives, moving what the forward's did).
  size_t pass(bool backward) const { return recomputing_ ? 2 : (backward ? 1 : 0); }
  // The table's collective, created by `make` if this is its first member.
  template <typename Make>
  CollectiveIdx find(std::vector<CollectiveIdx>& table, size_t key, Make make) {
    CollectiveIdx& c = table[key];
    if (c == kNone) c = graph_.add_collective(make());
    return c;
  }

  Bytes activation_bytes() const {
    return Bytes(int64_t{setup_.tokens_per_gpu} * model_.hidden_size * 2);
  }

  void tp_collective(int32_t mb, int32_t layer, bool backward, TpSlot slot) {
    if (plan_.tp == 1) return;
    // Forward: all-gather before attention and FFN, reduce-scatter after; backward the reverse.
    const bool gather =
        (slot == TpSlot::kBeforeAttention || slot == TpSlot::kBeforeFfn) != backward;
    const size_t key =
        ((((static_cast<size_t>(mb) * model_.layers + layer) * kPasses + pass(backward)) *
              kTpSlots +
          static_cast<size_t>(slot)) *
             plan_.dp +
         d_) *
            plan_.ep +
        b_;
    join(find(tp_, key, [&] {
      Collective c;
      c.kind = gather ? CollectiveKind::kAllGather : CollectiveKind::kReduceScatter;
      c.phase = Phase::kTpCollective;
      c.backward = backward || recomputing_;
      c.micro_batch = mb;
      for (int32_t a = 0; a < plan_.tp; ++a) c.members.push_back(plan_.gpu_of(a, b_, d_, s_));
      c.bytes = activation_bytes();
      return c;
    }));
  }

  void exchange(bool dispatch_pattern, Phase phase, int32_t mb, int32_t layer, bool backward) {
    if (plan_.ep == 1) return;
    const int32_t moe = moe_index_of_layer_[static_cast<size_t>(layer)];
    const size_t key =
        (((static_cast<size_t>(mb) * moe_layers_ + moe) * kPasses + pass(backward)) * 2 +
         dispatch_pattern) *
            plan_.dp +
        d_;
    join(find(exchange_, key, [&] {
      Collective c;
      c.kind = dispatch_pattern ? CollectiveKind::kMoeDispatch : CollectiveKind::kMoeCombine;
      c.phase = phase;
      c.backward = backward || recomputing_;
      c.micro_batch = mb;
      c.moe_layer = moe;
      c.dp_rank = d_;
      // Forward dispatch sends activations in the dispatch format; everything else (combine
      // and both backward exchanges, which carry gradients) in the combine format, but the
      // backward dispatch-way gradients where the scenario sends them in the dispatch format.
      const bool dispatch_format =
          dispatch_pattern && (!backward || setup_.options.gradients_in_dispatch_format);
      c.per_token =
          dispatch_format ? model_.dispatch_bytes_per_token() : model_.combine_bytes_per_token();
      for (int32_t e = 0; e < plan_.ep; ++e) {
        for (int32_t a = 0; a < plan_.tp; ++a) c.members.push_back(plan_.gpu_of(a, e, d_, s_));
      }
      return c;
    }));
  }

  // GPUs per pipeline rank, and a GPU's place among its rank's.
  int32_t positions() const { return plan_.tp * plan_.ep * plan_.dp; }
  int32_t position(int32_t gpu) const { return gpu % positions(); }
  // GPU (a_, b_, d_) of the rank running micro-batch mb's stage `stage`.
  int32_t gpu_at(int32_t mb, int32_t stage) const {
    return plan_.gpu_of(a_, b_, d_, layout_.rank_of(mb, stage));
  }

  // A pipeline transfer of micro-batch mb from `from` (running stage `from_stage`) to `to`: the
  // sender posts it and goes on (as 1F1B needs: a stage sending its next activation must not
  // wait for a peer that is itself sending a gradient back), so the sender's next op does not
  // wait for the send.
  void send_recv(int32_t from, int32_t to, int32_t mb, int32_t from_stage, bool backward) {
    const size_t key =
        ((static_cast<size_t>(mb) * layout_.stages + from_stage) * 2 + backward) * positions() +
        position(from);
    const CollectiveIdx c = find(pipeline_, key, [&] {
      Collective p;
      p.kind = CollectiveKind::kSendRecv;
      p.phase = Phase::kPipeline;
      p.backward = backward;
      p.micro_batch = mb;
      p.members = {from, to};
      p.bytes = activation_bytes();
      return p;
    });
    if (gpu_ == from) {
      if (capture_ != nullptr) {
        capture_->push_back({Op{}, c, true, false});
        return;
      }
      graph_.add_member(gpu_, Stream::kComm, c, after());
    } else {
      receiving_ = true;
      join(c);
      receiving_ = false;
    }
  }

  // One layer's forward: in the forward pass, or recomputed at the start of its backward.
  void forward_layer(int32_t mb, int32_t l) {
    tp_collective(mb, l, false, TpSlot::kBeforeAttention);
    kernel(Phase::kAttention, KernelKind::kAttention, false, mb, l);
    tp_collective(mb, l, false, TpSlot::kAfterAttention);
    tp_collective(mb, l, false, TpSlot::kBeforeFfn);
    if (model_.is_moe_layer(l)) {
      kernel(Phase::kDenseFfn, KernelKind::kGateAndShared, false, mb, l);
      exchange(true, Phase::kDispatch, mb, l, false);
      kernel(Phase::kExpertCompute, KernelKind::kExpertFfn, false, mb, l);
      exchange(false, Phase::kCombine, mb, l, false);
    } else {
      kernel(Phase::kDenseFfn, KernelKind::kDenseFfn, false, mb, l);
    }
    tp_collective(mb, l, false, TpSlot::kAfterFfn);
  }

  // Micro-batch mb's forward through model stage `stage` (on this GPU).
  void add_forward(int32_t mb, int32_t stage) {
    const auto st = static_cast<size_t>(stage);
    const int32_t first = stage_first_layer_[st];
    const int32_t last = stage_first_layer_[st + 1];
    const bool last_stage = stage == layout_.stages - 1;
    if (stage > 0) send_recv(gpu_at(mb, stage - 1), gpu_, mb, stage - 1, false);
    for (int32_t l = first; l < last; ++l) forward_layer(mb, l);
    if (last_stage) kernel(Phase::kAttention, KernelKind::kLmHead, false, mb, kNone);
    if (!last_stage) send_recv(gpu_, gpu_at(mb, stage + 1), mb, stage, false);
  }

  // Micro-batch mb's backward through model stage `stage`: both gradients (kWhole), or the input
  // gradient only (kInput: a zero-bubble backward, its weight part left for add_weight). The
  // gradient for the previous stage is sent at its end either way.
  void add_backward(int32_t mb, int32_t stage, GradPart grad = GradPart::kWhole) {
    const auto st = static_cast<size_t>(stage);
    const int32_t first = stage_first_layer_[st];
    const int32_t last = stage_first_layer_[st + 1];
    const bool last_stage = stage == layout_.stages - 1;
    grad_ = grad;
    if (!last_stage) send_recv(gpu_at(mb, stage + 1), gpu_, mb, stage + 1, true);
    if (last_stage) kernel(Phase::kAttention, KernelKind::kLmHead, true, mb, kNone);
    for (int32_t l = last - 1; l >= first; --l) {
      if (setup_.options.recomputation == Recomputation::kFull) {
        recomputing_ = true;
        forward_layer(mb, l);
        recomputing_ = false;
      }
      tp_collective(mb, l, true, TpSlot::kAfterFfn);
      if (model_.is_moe_layer(l)) {
        exchange(true, Phase::kCombine, mb, l, true);
        kernel(Phase::kExpertCompute, KernelKind::kExpertFfn, true, mb, l);
        exchange(false, Phase::kDispatch, mb, l, true);
        kernel(Phase::kDenseFfn, KernelKind::kGateAndShared, true, mb, l);
      } else {
        kernel(Phase::kDenseFfn, KernelKind::kDenseFfn, true, mb, l);
      }
      tp_collective(mb, l, true, TpSlot::kBeforeFfn);
      tp_collective(mb, l, true, TpSlot::kAfterAttention);
      if (setup_.options.recomputation == Recomputation::kSelective) {
        recomputing_ = true;
        kernel(Phase::kAttention, KernelKind::kAttentionCore, false, mb, l);
        recomputing_ = false;
      }
      kernel(Phase::kAttention, KernelKind::kAttention, true, mb, l);
      tp_collective(mb, l, true, TpSlot::kBeforeAttention);
    }
    grad_ = GradPart::kWhole;
    if (stage > 0) send_recv(gpu_, gpu_at(mb, stage - 1), mb, stage, true);
  }

  // A weight chunk (DualPipe's _weight_chunk): the weight gradients of micro-batch mb's earlier
  // input-only backward through `stage`, in the order that backward ran its layers (the order
  // WeightGradStore queued them): wgrad GEMMs only, no communication (the weight gradients of a
  // TP-sharded or expert GEMM are local to the GPU).
  void add_weight(int32_t mb, int32_t stage) {
    const auto st = static_cast<size_t>(stage);
    const int32_t first = stage_first_layer_[st];
    const int32_t last = stage_first_layer_[st + 1];
    grad_ = GradPart::kWeight;
    if (stage == layout_.stages - 1)
      kernel(Phase::kAttention, KernelKind::kLmHead, true, mb, kNone);
    for (int32_t l = last - 1; l >= first; --l) {
      if (model_.is_moe_layer(l)) {
        kernel(Phase::kExpertCompute, KernelKind::kExpertFfn, true, mb, l);
        kernel(Phase::kDenseFfn, KernelKind::kGateAndShared, true, mb, l);
      } else {
        kernel(Phase::kDenseFfn, KernelKind::kDenseFfn, true, mb, l);
      }
      kernel(Phase::kAttention, KernelKind::kAttention, true, mb, l);
    }
    grad_ = GradPart::kWhole;
  }

  // A data-parallel collective of the training tail over the GPUs holding the same dense
  // parameters (the dp * ep ranks of this (tp, pp) position) or the same routed experts (the dp
  // ranks of this EP rank), on every pipeline rank holding a copy of them (DualPipe: two);
  // found in `table` by that group's key (its first pipeline rank's).
  void data_parallel(std::vector<CollectiveIdx>& table, bool experts, CollectiveKind kind,
                     Bytes bytes) {
    const size_t key = (static_cast<size_t>(layout_.replica_ranks(s_).front()) * plan_.tp + a_) *
                           (experts ? plan_.ep : 1) +
                       (experts ? b_ : 0);
    join(data_parallel_collective(table, key, experts, kind, bytes));
  }
  // The data-parallel collective of `table` at `key` over this GPU's group (see data_parallel),
  // created by its first member.
  CollectiveIdx data_parallel_collective(std::vector<CollectiveIdx>& table, size_t key,
                                         bool experts, CollectiveKind kind, Bytes bytes) {
    const std::vector<int32_t> ranks = layout_.replica_ranks(s_);
    return find(table, key, [&] {
      Collective c;
      c.kind = kind;
      c.phase = Phase::kGradientSync;
      for (const int32_t s : ranks) {
        for (int32_t dd = 0; dd < plan_.dp; ++dd) {
          if (experts) {
            c.members.push_back(plan_.gpu_of(a_, b_, dd, s));
            continue;
          }
          for (int32_t bb = 0; bb < plan_.ep; ++bb) {
            c.members.push_back(plan_.gpu_of(a_, bb, dd, s));
          }
        }
      }
      c.bytes = bytes;
      return c;
    });
  }

  // Gradient reduction overlapping the backward (StepOptions::overlap_grad_reduce; Megatron-Core's
  // overlap_grad_reduce, PyTorch DDP's buckets): one bucket per model layer the GPU holds, its
  // dense and its routed experts' gradients each reduced over their data-parallel group on the
  // kGradComm stream as soon as the GPU's last kernel computing the layer's weight gradients
  // ended, in that order, beside the rest of the backward. A stage's embedding joins the bucket
  // of its first layer, the LM head that of its last. With ZeRO-1 each bucket is
  // reduce-scattered, each member receiving ceil(bucket / group) of it. Returns the last member
  // (the stream runs them in order, so the optimizer waits for that one), kNone if none.
  OpId add_overlapped_reductions(bool zero, int64_t dense_group, int64_t expert_group,
                                 CollectiveKind reduce) {
    ParallelPlan staged = plan_;
    staged.pp = layout_.stages;
    const auto experts_here = static_cast<int64_t>(setup_.placement->experts_on(b_).size());
    std::vector<std::pair<OpId, int32_t>> ready;  // (last gradient kernel, layer)
    std::vector<GpuParameterCount> bucket(static_cast<size_t>(model_.layers));
    for (const int32_t stage : layout_.stages_of(s_)) {
      const auto st = static_cast<size_t>(stage);
      const int32_t first = stage_first_layer_[st], end = stage_first_layer_[st + 1];
      const auto count = [&](int32_t to) {
        return gpu_parameter_count(model_, staged, stage, first, to, experts_here);
      };
      // The tables alone (an empty layer range), then each layer's count as the difference of
      // two prefixes (the tables cancel).
      GpuParameterCount previous = count(first);
      const GpuParameterCount tables = previous;
      for (int32_t l = first; l < end; ++l) {
        const GpuParameterCount upto = count(l + 1);
        GpuParameterCount& b = bucket[static_cast<size_t>(l)];
        b.dense = upto.dense - previous.dense;
        b.routed_experts = upto.routed_experts - previous.routed_experts;
        previous = upto;
        const OpId op = last_gradient_[static_cast<size_t>(l)];
        if (op == kNone) {
          throw std::logic_error("overlapped gradient reduction: layer " + std::to_string(l) +
                                 " has no backward on GPU " + std::to_string(gpu_));
        }
        ready.emplace_back(op, l);
      }
      const bool lm_head_only = stage == layout_.stages - 1 && stage != 0;
      bucket[static_cast<size_t>(lm_head_only ? end - 1 : first)].dense += tables.dense;
    }
    std::sort(ready.begin(), ready.end());
    const auto shard = [&](int64_t n, int64_t group) { return zero ? (n + group - 1) / group : n; };
    OpId last = kNone;
    for (const auto& [op, l] : ready) {
      const GpuParameterCount& b = bucket[static_cast<size_t>(l)];
      const size_t layer_key = static_cast<size_t>(l) * plan_.tp + a_;
      if (dense_group > 1 && b.dense > 0) {
        const CollectiveIdx c =
            data_parallel_collective(dense_layer_gradients_, layer_key, false, reduce,
                                     Bytes(shard(b.dense, dense_group) * 2));
        last = graph_.add_member(gpu_, Stream::kGradComm, c, std::span<const OpId>(&op, 1));
      }
      if (expert_group > 1 && b.routed_experts > 0) {
        const CollectiveIdx c =
            data_parallel_collective(expert_layer_gradients_, layer_key * plan_.ep + b_, true,
                                     reduce, Bytes(shard(b.routed_experts, expert_group) * 2));
        last = graph_.add_member(gpu_, Stream::kGradComm, c, std::span<const OpId>(&op, 1));
      }
    }
    return last;
  }

  // The training tail: gradients reduced over the data-parallel ranks holding each parameter,
  // then Adam. Without the distributed optimizer: one BF16 all-reduce of the dense gradients
  // (over dp * ep ranks) and one of the routed experts' (over dp), then Adam on every parameter
  // the GPU holds. With it (ZeRO-1): the same groups reduce-scatter the BF16 gradients, Adam
  // updates the GPU's shard (ceil(parameters / group size) of each kind), and the BF16
  // parameters are all-gathered back. A ring reduce-scatter plus all-gather moves what a ring
  // all-reduce does; what shrinks is Adam's HBM traffic, by the group size.
  void add_gradient_sync_and_optimizer() {
    GpuParameterCount params;
    ParallelPlan staged = plan_;  // the embedding on stage 0, the LM head on the last
    staged.pp = layout_.stages;
    for (const int32_t stage : layout_.stages_of(s_)) {
      const auto st = static_cast<size_t>(stage);
      const GpuParameterCount c = gpu_parameter_count(
          *setup_.model, staged, stage, stage_first_layer_[st], stage_first_layer_[st + 1],
          static_cast<int64_t>(setup_.placement->experts_on(b_).size()));
      params.dense += c.dense;
      params.routed_experts += c.routed_experts;
    }
    const bool zero = setup_.options.distributed_optimizer;
    const auto copies = static_cast<int64_t>(layout_.replica_ranks(s_).size());
    const int64_t dense_group = int64_t{plan_.ep} * plan_.dp * copies;
    const int64_t expert_group = int64_t{plan_.dp} * copies;
    const bool sync_dense = dense_group > 1;
    const bool sync_experts = expert_group > 1 && params.routed_experts > 0;
    // Each GPU's shard of a group's parameters (the whole when it is not sharded).
    const auto shard = [&](int64_t n, int64_t group) { return zero ? (n + group - 1) / group : n; };
    const int64_t dense_shard = shard(params.dense, dense_group);
    const int64_t expert_shard = shard(params.routed_experts, expert_group);
    // Gradients are reduced in BF16 (2 bytes per parameter): the whole buffer for an
    // all-reduce, each member's shard for a reduce-scatter.
    const CollectiveKind reduce =
        zero ? CollectiveKind::kReduceScatter : CollectiveKind::kAllReduce;
    OpId reduced = kNone;  // overlapped: the last bucket's reduction
    if (setup_.options.overlap_grad_reduce) {
      reduced = add_overlapped_reductions(zero, sync_dense ? dense_group : 1,
                                          sync_experts ? expert_group : 1, reduce);
    } else {
      if (sync_dense) data_parallel(dense_gradients_, false, reduce, Bytes(dense_shard * 2));
      if (sync_experts) data_parallel(expert_gradients_, true, reduce, Bytes(expert_shard * 2));
    }
    // Adam with FP32 master weights and moments: read and write about 16 bytes per parameter
    // (weight, gradient, two moments) plus the BF16 copy.
    Op op;
    op.gpu = gpu_;
    op.phase = Phase::kOptimizer;
    op.kernel = KernelKind::kMemoryBound;
    op.bytes = Bytes((dense_shard + expert_shard) * 18);
    std::array<OpId, 3> waits{kNone, kNone, kNone};
    size_t n = 0;
    for (const OpId w : after()) waits[n++] = w;
    if (reduced != kNone) waits[n++] = reduced;
    previous_ = graph_.add_kernel(op, std::span<const OpId>(waits.data(), n));
    also_ = kNone;
    if (!zero) return;
    // The updated BF16 parameters, each member's shard, gathered to every member.
    if (sync_dense) {
      data_parallel(dense_parameters_, false, CollectiveKind::kAllGather, Bytes(dense_shard * 2));
    }
    if (sync_experts) {
      data_parallel(expert_parameters_, true, CollectiveKind::kAllGather, Bytes(expert_shard * 2));
    }
  }

  // An overlapped pair (Megatron-Core's EP overlap, DualPipe's F&B): forward `f` and backward
  // `b` of the GPU, each laid out as 1F1B would (captured, not added), cut into segments that
  // end at a collective the chain waits for (an exchange, a TP collective), and emitted taking
  // turns: forward segment, backward segment, ... Each keeps its own chain (an op waits for its
  // micro-batch's previous op), the streams keep the order of emission, so one's exchange runs on
  // the comm stream while the other's kernels run. As DualPipe's overlapped chunk does
  // (dualpipe.py, _forward_backward_chunk), the pair first receives both chunks' inputs and
  // both chains wait for both, and it sends both outputs once both chains are done. What comes
  // after the pair waits for both chains.
  struct Captured {
    Op kernel;  // when `collective` is kNone
    CollectiveIdx collective;
    bool posted;   // a pipeline send: nothing waits for it
    bool receive;  // a pipeline receive
  };
  void add_pair(const PipelineWork& f, const PipelineWork& b) {
    std::array<std::vector<Captured>, 2> items;
    capture_ = &items[0];
    add_forward(f.mb, f.stage);
    capture_ = &items[1];
    add_backward(b.mb, b.stage, b.grad);
    capture_ = nullptr;
    std::array<OpId, 2> chain{previous_, previous_};
    if (also_ != kNone) chain = {previous_, also_};
    std::array<size_t, 2> next{0, 0};
    auto chain_after = [&](int x) {
      return chain[x] == kNone ? std::span<const OpId>() : std::span<const OpId>(&chain[x], 1);
    };
    // The inputs: each chain's receive, then each chain's first op waits for both.
    std::array<OpId, 2> received{kNone, kNone};
    for (int x = 0; x < 2; ++x) {
      if (items[x].empty() || !items[x][0].receive) continue;
      received[x] = graph_.add_member(gpu_, Stream::kComm, items[x][0].collective, chain_after(x));
      chain[x] = received[x];
      next[x] = 1;
    }
    std::array<bool, 2> first{true, true};
    const auto emitted = [&](int x, OpId op) {
      if (first[x] && received[1 - x] != kNone) graph_.add_dependency(received[1 - x], op);
      first[x] = false;
    };
    std::vector<CollectiveIdx> sends;
    while (next[0] < items[0].size() || next[1] < items[1].size()) {
      for (int x = 0; x < 2; ++x) {
        // One segment of item x: its kernels up to and including the next awaited collective.
        while (next[x] < items[x].size()) {
          const Captured& step = items[x][next[x]++];
          if (step.posted) {
            sends.push_back(step.collective);
            continue;
          }
          if (step.collective == kNone) {
            const OpId op = graph_.add_kernel(step.kernel, chain_after(x));
            emitted(x, op);
            note_gradient(step.kernel, op);
            chain[x] = op;
            continue;
          }
          const OpId member =
              graph_.add_member(gpu_, Stream::kComm, step.collective, chain_after(x));
          emitted(x, member);
          chain[x] = member;
          break;
        }
      }
    }
    // The outputs, posted once both chains are done.
    std::array<OpId, 2> both{kNone, kNone};
    size_t n = 0;
    for (const OpId op : chain) {
      if (op != kNone && (n == 0 || both[0] != op)) both[n++] = op;
    }
    for (const CollectiveIdx c : sends) {
      graph_.add_member(gpu_, Stream::kComm, c, std::span<const OpId>(both.data(), n));
    }
    previous_ = chain[0];
    also_ = chain[1] != chain[0] ? chain[1] : kNone;
  }

  PipelineLayout layout_;
  std::vector<Captured>* capture_ = nullptr;  // add_pair's capture, else null
  bool receiving_ = false;                    // capturing a pipeline receive
  const StepSetup& setup_;
  const ParallelPlan& plan_;
  const ModelSpec& model_;
  OpGraph graph_;
  std::vector<int32_t> stage_first_layer_;
  std::vector<int32_t> moe_index_of_layer_;
  int32_t moe_layers_ = 0;
  // Keyed collectives, kNone until created.
  std::vector<CollectiveIdx> tp_;                 // [mb][layer][backward][slot][dp][ep]
  std::vector<CollectiveIdx> exchange_;           // [mb][moe layer][backward][dispatch way][dp]
  std::vector<CollectiveIdx> pipeline_;           // [mb][backward][sender]
  std::vector<CollectiveIdx> dense_gradients_;    // [stage][tp]
  std::vector<CollectiveIdx> expert_gradients_;   // [stage][tp][ep]
  std::vector<CollectiveIdx> dense_parameters_;   // [stage][tp], ZeRO-1's all-gathers
  std::vector<CollectiveIdx> expert_parameters_;  // [stage][tp][ep]
  // Overlapped gradient reduction, per layer bucket (add_overlapped_reductions).
  std::vector<CollectiveIdx> dense_layer_gradients_;   // [layer][tp]
  std::vector<CollectiveIdx> expert_layer_gradients_;  // [layer][tp][ep]
  // Laying out a forward recomputed in the backward pass (activation recomputation).
  bool recomputing_ = false;
  // The gradients the backward kernels being laid out compute (add_backward, add_weight).
  GradPart grad_ = GradPart::kWhole;
  // Per model layer: the GPU's last kernel computing its weight gradients, kNone if none.
  std::vector<OpId> last_gradient_;
  // The GPU being laid out and its coordinates, and its last op (what the next one waits for).
  int32_t gpu_ = 0, a_ = 0, b_ = 0, d_ = 0, s_ = 0;
  OpId previous_ = kNone;
  OpId also_ = kNone;  // after an overlapped pair: the other chain's last op
  std::array<OpId, 2> waits_{kNone, kNone};
};

// Two-batch overlap (see TwoBatchOverlapSchedule): each layer of each micro-batch is a list of
// segments, a segment some kernels in order and then, perhaps, an exchange; the pair's two
// micro-batches take turns segment by segment.
class TwoBatchBuilder {
 public:
  explicit TwoBatchBuilder(const StepSetup& setup)
      : setup_(setup),
        plan_(*setup.plan),
        model_(*setup.model),
        graph_(static_cast<int32_t>(setup.plan->world_size())) {
    moe_index_of_layer_.assign(static_cast<size_t>(model_.layers), kNone);
    for (int32_t l = 0; l < model_.layers; ++l) {
      if (model_.is_moe_layer(l)) moe_index_of_layer_[static_cast<size_t>(l)] = moe_layers_++;
    }
    if (plan_.ep > 1) {
      exchange_.assign(static_cast<size_t>(setup.micro_batches) * moe_layers_ * 2 * plan_.dp,
                       kNone);
    }
  }

  OpGraph build() && {
    const bool decode = setup_.kind == WorkloadKind::kDecode;
    for (int32_t d = 0; d < plan_.dp; ++d) {
      for (int32_t b = 0; b < plan_.ep; ++b) {
        gpu_ = plan_.gpu_of(0, b, d, 0);
        d_ = d;
        for (int32_t pair = 0; pair < setup_.micro_batches / 2; ++pair) {
          pending_ = {kNone, kNone};
          for (int32_t l = 0; l < model_.layers; ++l) {
            for (const Segment& seg : segments(l, decode)) {
              for (int32_t x = 0; x < 2; ++x) add_segment(seg, 2 * pair + x, x, l);
            }
          }
          const Segment head{{{Phase::kAttention, KernelKind::kLmHead}}, Way::kNone};
          for (int32_t x = 0; x < 2; ++x) add_segment(head, 2 * pair + x, x, kNone);
        }
      }
    }
    graph_.finish();
    return std::move(graph_);
  }

 private:
  enum class Way : uint8_t { kNone, kDispatch, kCombine };
  struct Segment {
    std::vector<std::pair<Phase, KernelKind>> kernels;
    Way then;  // the exchange the segment ends with
  };

  std::vector<Segment> segments(int32_t layer, bool decode) const {
    if (!model_.is_moe_layer(layer)) {
      return {
          {{{Phase::kAttention, KernelKind::kAttention}, {Phase::kDenseFfn, KernelKind::kDenseFfn}},
           Way::kNone}};
    }
    const Segment experts{{{Phase::kExpertCompute, KernelKind::kExpertFfn}}, Way::kCombine};
    if (!decode) {
      return {{{{Phase::kAttention, KernelKind::kAttention},
                {Phase::kDenseFfn, KernelKind::kGateAndShared}},
               Way::kDispatch},
              experts};
    }
    return {{{{Phase::kAttention, KernelKind::kAttentionProjections}}, Way::kNone},
            {{{Phase::kAttention, KernelKind::kAttentionCore},
              {Phase::kDenseFfn, KernelKind::kGateAndShared}},
             Way::kDispatch},
            experts};
  }

  // Micro-batch mb (the pair's x-th) runs the segment: its first kernel waits for the
  // micro-batch's last exchange (the data it computes on), its exchange for its last kernel.
  void add_segment(const Segment& seg, int32_t mb, int32_t x, int32_t layer) {
    OpId last = kNone;
    for (const auto& [phase, kind] : seg.kernels) {
      Op op;
      op.gpu = gpu_;
      op.stream = Stream::kCompute;
      op.phase = phase;
      op.kernel = kind;
      op.micro_batch = mb;
      op.layer = layer;
      OpId& wait = pending_[static_cast<size_t>(x)];
      last = wait == kNone ? graph_.add_kernel(op) : graph_.add_kernel(op, std::span(&wait, 1));
      wait = kNone;
    }
    if (seg.then == Way::kNone || plan_.ep == 1) return;
    const bool dispatch = seg.then == Way::kDispatch;
    const int32_t moe = moe_index_of_layer_[static_cast<size_t>(layer)];
    const size_t key =
        ((static_cast<size_t>(mb) * moe_layers_ + moe) * 2 + dispatch) * plan_.dp + d_;
    CollectiveIdx& c = exchange_[key];
    if (c == kNone) {
      Collective e;
      e.kind = dispatch ? CollectiveKind::kMoeDispatch : CollectiveKind::kMoeCombine;
      e.phase = dispatch ? Phase::kDispatch : Phase::kCombine;
      e.micro_batch = mb;
      e.moe_layer = moe;
      e.dp_rank = d_;
      e.per_token = dispatch ? model_.dispatch_bytes_per_token() : model_.combine_bytes_per_token();
      for (int32_t b = 0; b < plan_.ep; ++b) e.members.push_back(plan_.gpu_of(0, b, d_, 0));
      c = graph_.add_collective(std::move(e));
    }
    pending_[static_cast<size_t>(x)] =
        graph_.add_member(gpu_, Stream::kComm, c, std::span(&last, 1));
  }

  const StepSetup& setup_;
  const ParallelPlan& plan_;
  const ModelSpec& model_;
  OpGraph graph_;
  std::vector<int32_t> moe_index_of_layer_;
  int32_t moe_layers_ = 0;
  std::vector<CollectiveIdx> exchange_;  // [mb][moe layer][dispatch way][dp], kNone until made
  int32_t gpu_ = 0, d_ = 0;
  std::array<OpId, 2> pending_{kNone, kNone};  // per micro-batch of the pair: its last exchange
};

}  // namespace

OpGraph TwoBatchOverlapSchedule::build(const StepSetup& setup) const {
  if (setup.kind == WorkloadKind::kTraining) {
    throw std::invalid_argument("two-batch overlap: for serving (prefill, decode), not training");
  }
  if (setup.micro_batches % 2 != 0) {
    throw std::invalid_argument("two-batch overlap: needs an even number of micro-batches, got " +
                                std::to_string(setup.micro_batches));
  }
  if (setup.plan->tp != 1 || setup.plan->pp != 1) {
    throw std::invalid_argument("two-batch overlap: lays out tp 1 and pp 1 only");
  }
  return TwoBatchBuilder(setup).build();
}

std::unique_ptr<Schedule> make_schedule(ScheduleKind kind) {
  switch (kind) {
    case ScheduleKind::kOneFOneB:
      return std::make_unique<OneFOneBSchedule>();
    case ScheduleKind::kTwoBatchOverlap:
      return std::make_unique<TwoBatchOverlapSchedule>();
    case ScheduleKind::kOneFOneBEpOverlap:
      return std::make_unique<OneFOneBSchedule>(true);
    case ScheduleKind::kDualPipe:
      return std::make_unique<DualPipeSchedule>();
  }
  return std::make_unique<OneFOneBSchedule>();
}

OpGraph OneFOneBSchedule::build(const StepSetup& setup) const {
  if (setup.plan->pp > setup.model->layers) {
    throw std::invalid_argument("1F1B: more pipeline stages than layers");
  }
  if (ep_overlap_ && setup.plan->pp > 1 && setup.virtual_stages == 1) {
    throw std::invalid_argument(
        "1F1B with EP overlap: pp > 1 needs virtual pipeline stages (interleaved)");
  }
  if (setup.virtual_stages < 1 ||
      int64_t{setup.plan->pp} * setup.virtual_stages > setup.model->layers) {
    throw std::invalid_argument("interleaved 1F1B: " + std::to_string(setup.virtual_stages) +
                                " virtual stages of pp " + std::to_string(setup.plan->pp) +
                                " need at least as many layers");
  }
  return OneFOneBBuilder(setup, one_f_one_b_layout(setup, ep_overlap_)).build();
}

OpGraph DualPipeSchedule::build(const StepSetup& setup) const {
  const int32_t pp = setup.plan->pp;
  if (setup.kind != WorkloadKind::kTraining) {
    throw std::invalid_argument("DualPipe: pairs forwards with backwards, for training only");
  }
  if (pp > setup.model->layers) {
    throw std::invalid_argument("DualPipe: more pipeline stages than layers");
  }
  if (setup.virtual_stages != 1) {
    throw std::invalid_argument("DualPipe: two stages per rank by construction, not interleaved");
  }
  PipelineLayout layout;
  layout.pp = layout.stages = pp;
  layout.bidirectional = true;
  layout.micro_batches = setup.micro_batches;
  for (int32_t rank = 0; rank < pp; ++rank) {
    layout.order.push_back(dualpipe_order(rank, pp, setup.micro_batches, overlap_));
  }
  return OneFOneBBuilder(setup, std::move(layout)).build();
}

}  // namespace moesim
