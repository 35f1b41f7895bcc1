// The operation graph a schedule emits and the executor plays: kernels and collective members,
// per GPU, each on a named stream, with explicit dependencies; ops and collectives by dense ids.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/units.h"

namespace moesim {

// Where a GPU's time goes; every op names the phase its time is booked to.
enum class Phase : uint8_t {
  kAttention,     // attention projections and kernel (and the LM head on the last stage)
  kDenseFfn,      // dense layers' FFN, the router gate, shared experts
  kTpCollective,  // tensor-parallel all-gather / reduce-scatter
  kDispatch,
  kExpertCompute,
  kCombine,
  kPipeline,      // activations between pipeline stages
  kGradientSync,  // data-parallel gradient reduction
  kOptimizer,
  kIdle,  // waiting for peers at a collective
};
inline constexpr int kPhaseCount = 10;
const char* phase_name(Phase phase);

// A GPU's streams. Ops on one stream run in the order they were added, one at a time (CUDA
// stream semantics); ops on different streams of a GPU may overlap unless a dependency orders
// them. kGradComm carries the data-parallel gradient reductions that overlap the backward
// (StepOptions::overlap_grad_reduce): PyTorch's ProcessGroupNCCL runs each process group's
// collectives on a stream of its own, so the data-parallel group's reductions run beside the
// expert-parallel group's all-to-alls rather than queued behind them.
enum class Stream : uint8_t { kCompute, kComm, kGradComm };
inline constexpr int kStreamCount = 3;

using OpId = int32_t;           // dense, in the order ops were added
using CollectiveIdx = int32_t;  // dense, in the order collectives were added
inline constexpr int32_t kNone = -1;

// What a kernel computes; the cost model turns it into a duration when the op starts.
enum class KernelKind : uint8_t {
  kFixed,        // Op::fixed_time, as given
  kMemoryBound,  // streams Op::bytes through HBM (the optimizer)
  kAttention,    // a layer's attention (projections and kernel) for one micro-batch
  // The same split in two, for schedules that overlap between them (decode's two-batch
  // overlap): the projection GEMMs, and the attention kernel alone (also what selective
  // recomputation runs again); together kAttention's time.
  kAttentionProjections,
  kAttentionCore,
  kLmHead,         // the LM head for one micro-batch
  kDenseFfn,       // a dense layer's FFN
  kGateAndShared,  // an MoE layer's router gate and shared experts
  kExpertFfn,      // the GPU's grouped expert FFN for one (micro-batch, MoE layer) slot
};

// Which gradients a backward kernel computes. moesim prices a backward kernel at twice its
// forward's work: the input gradient (dgrad GEMMs, B) and the weight gradient (wgrad GEMMs, W),
// one forward's work each. Zero-bubble schedules (DualPipe's weight chunks) run them apart:
// kInput first, kWeight later. See StepCostModel::kernel_time for what each part costs.
enum class GradPart : uint8_t {
  kWhole,   // forward kernels, and backward kernels computing both gradients (work_scale 2)
  kInput,   // the input gradient only (work_scale 1)
  kWeight,  // the weight gradient only (work_scale 1)
};

enum class CollectiveKind : uint8_t {
  kAllGather,      // ring; Collective::bytes per member
  kReduceScatter,  // ring; Collective::bytes per member
  kAllReduce,      // ring; Collective::bytes is the buffer
  kSendRecv,       // members {sender, receiver}: the sender posts and goes on (see Executor)
  kAllToAll,       // every ordered pair of members exchanges Collective::bytes
  kMoeDispatch,    // a (micro-batch, MoE layer, replica) slot's routed traffic, dispatch way
  kMoeCombine,     // the same slot's traffic played back, combine way
};

// One op: a kernel, or one GPU's membership in a collective.
struct Op {
  int32_t gpu = 0;
  Stream stream = Stream::kCompute;
  Phase phase = Phase::kIdle;
  bool is_kernel = true;
  bool backward = false;
  KernelKind kernel = KernelKind::kFixed;
  int32_t micro_batch = kNone;
  int32_t layer = kNone;             // model layer, kNone outside layers
  CollectiveIdx collective = kNone;  // members only
  int32_t work_scale = 1;            // kernels: the forward's work times this (backward: 2)
  GradPart grad = GradPart::kWhole;  // backward kernels: both gradients or one part
  Time fixed_time;                   // kFixed
  Bytes bytes;                       // kMemoryBound
};

// A collective: its members (global GPU ids, in the order they are handed to Collectives) and
// what it moves; each member joins it through one op of its own.
struct Collective {
  CollectiveKind kind = CollectiveKind::kAllToAll;
  Phase phase = Phase::kIdle;
  bool backward = false;
  int32_t micro_batch = kNone;
  std::vector<int32_t> members;
  std::vector<OpId> member_ops;  // [member position], filled as the members' ops are added
  Bytes bytes;                   // see CollectiveKind
  // kMoeDispatch / kMoeCombine: the traffic slot and the bytes per token moved.
  int32_t moe_layer = kNone;
  int32_t dp_rank = kNone;
  Bytes per_token;
};

// Append-only while a schedule builds it; finish() then freezes it for the executor. Adding a
// kernel or a dependency is O(1) amortised, a member O(its collective's members) (it finds the
// GPU's position); finish() is O(E log E) for E dependencies (one sort); dependents(op) is then
// O(1), a span in increasing op id.
class OpGraph {
 public:
  explicit OpGraph(int32_t gpus) : gpus_(gpus) {}

  int32_t gpus() const { return gpus_; }
  bool finished() const { return finished_; }

  CollectiveIdx add_collective(Collective collective);
  // A kernel; depends on `after` (ops already added).
  OpId add_kernel(const Op& op, std::span<const OpId> after = {});
  // GPU `gpu`'s membership in `collective`, on `stream`; depends on `after`. A member must not
  // join the same collective twice.
  OpId add_member(int32_t gpu, Stream stream, CollectiveIdx collective,
                  std::span<const OpId> after = {});
  // `op` may start only once `before` has finished.
  void add_dependency(OpId before, OpId op);

  // Adds each op's stream predecessor as a dependency (a stream is in order), drops duplicate
  // dependencies, checks every collective has all its members, and builds the dependents lists.
  void finish();

  int32_t op_count() const { return static_cast<int32_t>(ops_.size()); }
  int32_t collective_count() const { return static_cast<int32_t>(collectives_.size()); }
  const Op& op(OpId id) const { return ops_[static_cast<size_t>(id)]; }
  const Collective& collective(CollectiveIdx c) const {
    return collectives_[static_cast<size_t>(c)];
  }
  std::span<const Op> ops() const { return ops_; }
  std::span<const Collective> collectives() const { return collectives_; }

  // After finish(): how many ops `op` waits for, and the ops waiting for it (increasing id).
  int32_t dependency_count(OpId op) const { return dependency_count_[static_cast<size_t>(op)]; }
  std::span<const OpId> dependents(OpId op) const {
    const auto i = static_cast<size_t>(op);
    return std::span<const OpId>(dependents_)
        .subspan(dependents_begin_[i], dependents_begin_[i + 1] - dependents_begin_[i]);
  }
  // Ops depending on nothing, in increasing id: where the executor starts.
  std::span<const OpId> roots() const { return roots_; }

 private:
  OpId push(const Op& op, std::span<const OpId> after);

  int32_t gpus_;
  std::vector<Op> ops_;
  std::vector<Collective> collectives_;
  std::vector<std::pair<OpId, OpId>> edges_;  // (before, after), while building
  bool finished_ = false;
  std::vector<int32_t> dependency_count_;
  std::vector<uint32_t> dependents_begin_;
  std::vector<OpId> dependents_;
  std::vector<OpId> roots_;
};

}  // namespace moesim
