// The 1F1B schedule's operation graph on small cases worked by hand: which ops each GPU runs,
// on which stream, after what, and which collectives they share.
#include <algorithm>
#include <catch2/catch.hpp>
#include <utility>
#include <vector>

#include "models/moe/placement.h"
#include "sim/schedule.h"

namespace moesim {
namespace {

// Two layers (one dense, one MoE), four experts, on 2 GPUs as EP2 or PP2.
struct Case {
  explicit Case(ParallelPlan p, WorkloadKind kind, int32_t micro_batches)
      : plan(std::move(p)), placement(plan, model_spec(), 1) {
    model = model_spec();
    setup.model = &model;
    setup.plan = &plan;
    setup.placement = &placement;
    setup.kind = kind;
    setup.tokens_per_gpu = 8;
    setup.sequence_length = 8;
    setup.micro_batches = micro_batches;
  }
  static ModelSpec model_spec() {
    ModelSpec m;
    m.layers = 2;
    m.dense_layers = 1;
    m.hidden_size = 64;
    m.attention_heads = 4;
    m.kv_heads = 4;
    m.head_dim = 16;
    m.expert_ffn_size = 32;
    m.dense_ffn_size = 128;
    m.routed_experts = 4;
    m.top_k = 1;
    return m;
  }
  ModelSpec model;
  ParallelPlan plan;
  Placement placement;
  StepSetup setup;
};

ParallelPlan plan_of(int32_t ep, int32_t pp) {
  ParallelPlan p;
  p.ep = ep;
  p.pp = pp;
  return p;
}

std::vector<OpId> ops_of(const OpGraph& g, int32_t gpu) {
  std::vector<OpId> ids;
  for (OpId id = 0; id < g.op_count(); ++id) {
    if (g.op(id).gpu == gpu) ids.push_back(id);
  }
  return ids;
}

TEST_CASE("1F1B prefill on EP2: one sequence per GPU, kernels and exchanges on two streams",
          "[schedule]") {
  Case c(plan_of(2, 1), WorkloadKind::kPrefill, 1);
  const OpGraph g = OneFOneBSchedule().build(c.setup);
  REQUIRE(g.collective_count() == 2);  // the MoE layer's dispatch and combine
  CHECK(g.collective(0).kind == CollectiveKind::kMoeDispatch);
  CHECK(g.collective(1).kind == CollectiveKind::kMoeCombine);
  CHECK(g.collective(0).members == std::vector<int32_t>{0, 1});
  const std::vector<KernelKind> kernels{KernelKind::kAttention, KernelKind::kDenseFfn,
                                        KernelKind::kAttention, KernelKind::kGateAndShared,
                                        KernelKind::kExpertFfn, KernelKind::kLmHead};
  for (int32_t gpu = 0; gpu < 2; ++gpu) {
    const std::vector<OpId> ids = ops_of(g, gpu);
    REQUIRE(ids.size() == 8);
    // attention, dense FFN (layer 0); attention, gate, dispatch, expert FFN, combine (layer 1);
    // the LM head (the last stage)
    const std::vector<bool> is_kernel{true, true, true, true, false, true, false, true};
    size_t kernel = 0;
    for (size_t i = 0; i < ids.size(); ++i) {
      const Op& op = g.op(ids[i]);
      CHECK(op.is_kernel == is_kernel[i]);
      CHECK(op.stream == (is_kernel[i] ? Stream::kCompute : Stream::kComm));
      if (op.is_kernel) CHECK(op.kernel == kernels[kernel++]);
      // Each op waits for the one before it on its GPU and the one before it on its stream
      // (the same op, or one already waited for through the first), and for nothing else.
      size_t previous_on_stream = i;
      for (size_t j = i; j-- > 0;) {
        if (g.op(ids[j]).stream == op.stream) {
          previous_on_stream = j;
          break;
        }
      }
      const int32_t expected =
          i == 0 ? 0 : (previous_on_stream == i || previous_on_stream == i - 1 ? 1 : 2);
      CHECK(g.dependency_count(ids[i]) == expected);
      if (i > 0) {
        const auto after = g.dependents(ids[i - 1]);
        CHECK(std::find(after.begin(), after.end(), ids[i]) != after.end());
      }
    }
    CHECK(g.collective(0).member_ops[static_cast<size_t>(gpu)] == ids[4]);
    CHECK(g.collective(1).member_ops[static_cast<size_t>(gpu)] == ids[6]);
  }
  CHECK(g.roots().size() == 2);
}

TEST_CASE("1F1B training on PP2: posted sends nobody on the sender waits for", "[schedule]") {
  Case c(plan_of(1, 2), WorkloadKind::kTraining, 2);
  const OpGraph g = OneFOneBSchedule().build(c.setup);
  // Stage 0 (GPU 0): one warm-up forward, then F1, B0, B1. Its forward sends go to GPU 1 and
  // its backward receives come from it; two of each, one per micro-batch.
  int32_t sends = 0, receives = 0;
  for (const Collective& p : g.collectives()) {
    if (p.kind != CollectiveKind::kSendRecv) continue;
    CHECK(p.phase == Phase::kPipeline);
    CHECK(p.members == (p.backward ? std::vector<int32_t>{1, 0} : std::vector<int32_t>{0, 1}));
    ++(p.backward ? receives : sends);
    if (p.backward) continue;
    // The op after GPU 0's send waits for the op before the send. After micro-batch 0's send
    // comes F1's attention kernel, which does not wait for the send; after micro-batch 1's
    // comes B0's receive, which does, but only as the next op on the comm stream.
    const OpId send = p.member_ops[0];
    const OpId next = send + 1;
    REQUIRE(g.op(next).gpu == 0);
    const auto after_before = g.dependents(send - 1);
    CHECK(std::find(after_before.begin(), after_before.end(), next) != after_before.end());
    const auto after_send = g.dependents(send);
    const bool waits_for_send =
        std::find(after_send.begin(), after_send.end(), next) != after_send.end();
    CHECK(waits_for_send == (p.micro_batch == 1));
    CHECK(g.op(next).stream == (p.micro_batch == 1 ? Stream::kComm : Stream::kCompute));
    CHECK(g.dependency_count(next) == (p.micro_batch == 1 ? 2 : 1));
  }
  CHECK(sends == 2);
  CHECK(receives == 2);
  // No gradient all-reduce with EP x DP = 1; each GPU ends with its optimizer step.
  for (int32_t gpu = 0; gpu < 2; ++gpu) {
    const Op& last = g.op(ops_of(g, gpu).back());
    CHECK(last.kernel == KernelKind::kMemoryBound);
    CHECK(last.phase == Phase::kOptimizer);
  }
}

}  // namespace
}  // namespace moesim
