// DualPipe (sim/schedule.h, sim/dualpipe_schedule.cpp): its order against DualPipe.step's counts,
// its pipeline bubble on a uniform pipeline against the DeepSeek-V3 report's Table 2 formula,
// and a two-rank case worked by hand with and without overlap, on a cost model whose chunk
// times are set by hand.
#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "models/gpu/gpu_model.h"
#include "models/moe/placement.h"
#include "models/network/network_model.h"
#include "sim/cost_model.h"
#include "sim/executor.h"
#include "sim/memory.h"
#include "sim/pipeline_order.h"
#include "sim/schedule.h"
#include "sim/simulation.h"
#include "tests/scratch_dir.h"
#include "topologies/builders.h"

namespace moesim {
namespace {

TEST_CASE("DualPipe's order: every chunk once, stages by direction, pairs as DualPipe.step",
          "[schedule][dualpipe]") {
  for (const int32_t pp : {2, 4, 6, 8}) {
    for (const int32_t n : {pp, pp + 3}) {
      INFO("pp " << pp << ", " << n << " micro-batches per direction");
      for (int32_t rank = 0; rank < pp; ++rank) {
        const std::vector<PipelineWork> order = dualpipe_order(rank, pp, 2 * n, true);
        REQUIRE(order.size() == static_cast<size_t>(4 * n));
        std::map<std::pair<int32_t, bool>, int32_t> seen;  // (mb, backward) -> times
        int32_t pairs = 0;
        std::array<int32_t, 2> last_forward{-1, -1}, last_backward{-1, -1};
        for (size_t i = 0; i < order.size(); ++i) {
          const PipelineWork& w = order[i];
          const int direction = w.mb >= n ? 1 : 0;
          // Direction 0 runs stage r on rank r, direction 1 stage pp - 1 - r.
          CHECK(w.stage == (direction == 0 ? rank : pp - 1 - rank));
          ++seen[{w.mb, w.backward}];
          // Each direction's forwards and backwards in micro-batch order, a backward after its
          // forward on the same rank only where the rank runs that micro-batch's last stage.
          auto& last = w.backward ? last_backward : last_forward;
          CHECK(w.mb > last[static_cast<size_t>(direction)]);
          last[static_cast<size_t>(direction)] = w.mb;
          if (w.paired) {
            ++pairs;
            CHECK_FALSE(w.backward);
            REQUIRE(i + 1 < order.size());
            CHECK(order[i + 1].backward);
            CHECK((order[i + 1].mb >= n) != (w.mb >= n));  // the other direction's backward
          }
        }
        CHECK(seen.size() == static_cast<size_t>(4 * n));
        for (const auto& [key, times] : seen) CHECK(times == 1);
        // Overlapped pairs, from DualPipe.step's steps 4 and 5: 2(N - pp + h + 1) + (H - h - 1),
        // less the middle ranks' first pair of step 4, run unoverlapped.
        const int32_t h = std::min(rank, pp - 1 - rank);
        const int32_t middle = h == pp / 2 - 1 ? 1 : 0;
        CHECK(pairs == 2 * (n - pp + h + 1) + (pp / 2 - h - 1) - middle);
        // Without overlap: the same order, nothing paired.
        const std::vector<PipelineWork> plain = dualpipe_order(rank, pp, 2 * n, false);
        REQUIRE(plain.size() == order.size());
        for (size_t i = 0; i < plain.size(); ++i) {
          CHECK(plain[i].mb == order[i].mb);
          CHECK(plain[i].backward == order[i].backward);
          CHECK_FALSE(plain[i].paired);
        }
      }
    }
  }
  CHECK_THROWS_AS(dualpipe_order(0, 3, 6, true), std::invalid_argument);
  CHECK_THROWS_AS(dualpipe_order(0, 4, 6, true), std::invalid_argument);  // 3 per direction < 4
  CHECK_THROWS_AS(dualpipe_order(0, 4, 9, true), std::invalid_argument);
}

// Hand-set chunk times. Every kernel of a forward takes the same as in the backward (attention
// a, gate g, expert FFN e; the LM head and the optimizer 0), and every MoE exchange is a uniform
// all-to-all of kExchangeBytes per pair of GPUs on an NVSwitch of 100 GB/s links and no latency,
// X = kExchangeBytes / 100 GB/s. Pipeline sends carry 32 bytes (0.32 ns a hop).
constexpr double kA = 6, kG = 2, kE = 10;  // us
constexpr int64_t kExchangeBytes = 400'000;
constexpr double kLinkBytesPerS = 100e9;
const double kX = kExchangeBytes / kLinkBytesPerS * 1e6;  // 4 us

class HandCost final : public CostModel {
 public:
  using CostModel::CostModel;
  Time kernel_time(const Op& op) override {
    switch (op.kernel) {
      case KernelKind::kAttention:
        return Time::us(kA);
      case KernelKind::kGateAndShared:
        return Time::us(kG);
      case KernelKind::kExpertFfn:
        return Time::us(kE);
      default:
        return Time::zero();
    }
  }
  void launch(const Collective& c, CollectiveObserver& observer, uint64_t tag) override {
    if (c.kind != CollectiveKind::kMoeDispatch && c.kind != CollectiveKind::kMoeCombine) {
      CostModel::launch(c, observer, tag);
      return;
    }
    Collective uniform = c;
    uniform.kind = CollectiveKind::kAllToAll;
    uniform.bytes = Bytes(kExchangeBytes);
    CostModel::launch(uniform, observer, tag);
  }
};

// pp pipeline ranks of two EP ranks each (2 pp GPUs on one NVSwitch), one MoE layer per stage,
// hidden 16 and one token per GPU (32-byte activations), `micro_batches` per step.
struct Pipeline {
  Pipeline(int32_t pp, int32_t micro_batches) : placement(plan_of(pp), model_of(pp), 1) {
    model = model_of(pp);
    plan = plan_of(pp);
    setup.model = &model;
    setup.plan = &plan;
    setup.placement = &placement;
    setup.kind = WorkloadKind::kTraining;
    setup.tokens_per_gpu = 1;
    setup.sequence_length = 1;
    setup.micro_batches = micro_batches;
  }
  static ModelSpec model_of(int32_t pp) {
    ModelSpec m;
    m.layers = pp;
    m.hidden_size = 16;
    m.attention_heads = 1;
    m.kv_heads = 1;
    m.head_dim = 16;
    m.expert_ffn_size = 32;
    m.routed_experts = 4;
    m.top_k = 1;
    m.vocab_size = 64;
    return m;
  }
  static ParallelPlan plan_of(int32_t pp) {
    ParallelPlan p;
    p.ep = 2;
    p.pp = pp;
    return p;
  }
  // Plays the schedule's graph; returns when the last forward or backward chunk's op ended (the
  // pipeline's span, without the gradient reduction and optimizer after it), in us.
  double span_us(const Schedule& schedule, double comm_sm_fraction = 0.0) const {
    const OpGraph g = schedule.build(setup);
    Engine engine;
    const Topology topology =
        build_nvswitch_node({static_cast<int>(plan.world_size()),
                             Bandwidth::bytes_per_s(kLinkBytesPerS), Time::zero()});
    NetworkModel network(engine, topology);
    const GpuModel gpu(*find_gpu_preset("h100-sxm"));
    HandCost cost(network, gpu, CostOptions{comm_sm_fraction});
    Executor executor(engine, cost);
    const Execution x = executor.run(g);
    Time end;
    for (OpId id = 0; id < g.op_count(); ++id) {
      if (g.op(id).micro_batch != kNone) end = std::max(end, x.op_end[static_cast<size_t>(id)]);
    }
    return (end - x.start).to_us();
  }
  ModelSpec model;
  ParallelPlan plan;
  Placement placement;
  StepSetup setup;
};

// Chunk times of this setup. A forward chunk (one MoE layer): attention, gate, dispatch, expert
// FFN, combine, one after another; the backward the same in reverse, with the same hand-set
// kernel times: F = B = a + g + e + 2X. An overlapped pair, from both inputs received (the
// forward's segments [A G] [E] and the backward's [E'] [G' A'] taking turns, the exchanges on the
// comm stream in the order they were emitted: D, C', C, D'): the forward's dispatch runs alone
// after A G; the backward's combine' runs during the forward's expert FFN, the forward's combine
// during the backward's expert FFN; the backward's dispatch' waits for its expert FFN and runs
// alone before G' A'. With X < e: F&B = 2(a + g) + 2e + 2X = F + B - 2X.
const double kF = kA + kG + kE + 2 * kX;
const double kB = kF;
const double kFB = kF + kB - 2 * kX;

TEST_CASE("DualPipe's bubble on a uniform pipeline is the report's (PP/2 - 1)(F&B + B - 3W)",
          "[step][schedule][dualpipe]") {
  // DeepSeek-V3 report, Table 2: DualPipe's bubble (PP/2 - 1)(F&B + B - 3W) against 1F1B's
  // (PP - 1)(F + B). moesim's backward does not split B into its input and weight parts, so the
  // repository's zero-bubble weight chunks are inside the backwards: W = 0 here and B is the full
  // backward. The formula is exact for DualPipe.step's order when F = B (which the hand-set cost
  // model gives; moesim's own backward does twice the forward's matrix work, and an abstract
  // replay of the order with B = 2F finds a bubble min(F, B - F) shorter than the formula's).
  // The bubble is counted on the busiest ranks, the middle two: of their 2N forwards and 2N
  // backwards, 2N - PP - 1 pairs run overlapped and PP + 1 forwards and backwards alone
  // (DualPipe.step's steps 2, 4 and 6), so the step's pipeline span is
  //   (PP + 1)(F + B) + (2N - PP - 1) F&B + (PP/2 - 1)(F&B + B);
  // 1F1B on the same pipeline, 2N micro-batches, nothing overlapped: (2N + PP - 1)(F + B).
  REQUIRE(kX < kE);  // the pair's closed form above assumes it
  for (const int32_t pp : {2, 4, 6}) {
    for (const int32_t n : {pp, pp + 2}) {
      INFO("pp " << pp << ", " << n << " micro-batches per direction");
      const Pipeline p(pp, 2 * n);
      const double busiest = (pp + 1) * (kF + kB) + (2 * n - pp - 1) * kFB;
      const double bubble = (pp / 2 - 1) * (kFB + kB);  // W = 0
      // Pipeline sends of a few ns per hop are the only time not in the closed form.
      CHECK(p.span_us(DualPipeSchedule()) == Approx(busiest + bubble).margin(0.05));
      const double one_f_one_b = (2 * n + pp - 1) * (kF + kB);
      CHECK(p.span_us(OneFOneBSchedule()) == Approx(one_f_one_b).margin(0.05));
      CHECK(one_f_one_b - 2 * n * (kF + kB) == Approx((pp - 1) * (kF + kB)));
    }
  }
}

TEST_CASE("DualPipe on two pipeline ranks: the hand-worked step, the plain sum without overlap",
          "[step][schedule][dualpipe]") {
  // PP 2 (each rank of two EP GPUs), 2 micro-batches from each end. Rank 0's order (rank 1's is
  // the mirror image): F(0) F(2) F(1) B(2) [F(3) with B(0)] B(3) B(1), where 0 and 1 enter at
  // rank 0 and 2 and 3 at rank 1. Each rank runs every chunk of its own micro-batches' path while
  // the other rank runs the other half, so no rank ever waits (PP/2 - 1 = 0: no bubble), and the
  // step is the rank's work: 3 (F + B) alone plus the pair.
  const Pipeline p(2, 4);
  // Overlap off: the pair as its forward then its backward, every op one after another: the sum.
  CHECK(p.span_us(DualPipeSchedule(false)) == Approx(4 * (kF + kB)).margin(0.02));
  // Overlap on, the communication taking no SMs: the pair is max-of-streams F&B = F + B - 2X.
  CHECK(p.span_us(DualPipeSchedule()) == Approx(3 * (kF + kB) + kFB).margin(0.02));
  // The communication kernels holding a share s of the SMs: the two expert FFNs that run beside
  // an exchange (the forward's beside combine', the backward's beside the forward's combine) are
  // each slowed for that exchange's X, by X s of extra time (X (1 - s) of their work done in X).
  const double s = 20.0 / 132.0;
  CHECK(p.span_us(DualPipeSchedule(), s) == Approx(3 * (kF + kB) + kFB + 2 * kX * s).margin(0.02));
  // Without overlap nothing runs beside communication: the SM share changes nothing.
  CHECK(p.span_us(DualPipeSchedule(false), s) == Approx(4 * (kF + kB)).margin(0.02));
}

TEST_CASE("DualPipe's memory: two stages' parameters, pp + 1 chunks of activations",
          "[step][dualpipe]") {
  // The report's Table 2: DualPipe keeps 2x the parameters and PP + 1 micro-batches'
  // activations, 1F1B PP (its first stage). One MoE layer per stage, every stage alike.
  for (const int32_t pp : {2, 4}) {
    INFO("pp " << pp);
    const ModelSpec model = Pipeline::model_of(pp);
    const ParallelPlan plan = Pipeline::plan_of(pp);
    Workload w;
    w.tokens_per_gpu = 16;
    w.sequence_length = 16;
    w.micro_batches = 2 * pp;
    const MemoryPerGpu one = memory_per_gpu(model, plan, w, 8, Bytes(int64_t{80} << 30));
    w.schedule = ScheduleKind::kDualPipe;
    const MemoryPerGpu dual = memory_per_gpu(model, plan, w, 8, Bytes(int64_t{80} << 30));
    // 1F1B's fullest GPU holds one stage (the first, with the embedding, or the last, with the
    // LM head, the same size); a DualPipe rank a stage of each half, the first and last
    // (rank 0) holding both tables.
    CHECK(dual.params == 2 * one.params);
    CHECK(dual.weights == Bytes(2 * one.weights.count()));
    CHECK(dual.optimizer_state == Bytes(2 * one.optimizer_state.count()));
    CHECK(dual.activations.count() * pp == one.activations.count() * (pp + 1));
  }
}

// A four-layer MoE model on EP2 x PP2 (four GPUs on one NVSwitch), four micro-batches routed by
// the token model, as a scenario: DualPipe against 1F1B through the whole simulation.
Scenario routed_scenario(const char* schedule) {
  static const test::ScratchDir dir("dualpipe_test");
  const auto topology = dir / "switch4.pbtxt";
  std::ofstream(topology) << "gpus_per_node: 4\n"
                          << "flat_switch { name: \"sw\" switch_kind: NVSWITCH gpus: 4 bandwidth: "
                             "\"200GB/s\" latency: \"500ns\" link_kind: NVLINK }\n";
  std::ostringstream s;
  s << "name: \"dualpipe\"\n"
    << "model { layers: 4 dense_layers: 0 hidden_size: 512 attention_heads: 4 kv_heads: 4 "
       "head_dim: 128 expert_ffn_size: 256 dense_ffn_size: 1024 routed_experts: 8 "
       "shared_experts: 0 top_k: 2 vocab_size: 64 }\n"
    << "cluster { topology_file: \"" << topology.string() << "\" gpu { preset: \"h100-sxm\" } }\n"
    << "parallelism { ep: 2 pp: 2 }\n"
    << "workload { kind: TRAINING tokens_per_gpu: 256 sequence_length: 256 micro_batches: 4 "
       "steps: 1 schedule: "
    << schedule << " }\n"
    << "seed: 7\n";
  return parse_scenario(s.str(), "dualpipe.pbtxt");
}

TEST_CASE("DualPipe through the simulation: the same work as 1F1B, split over two stages each",
          "[step][dualpipe]") {
  SimulationOptions options;
  options.cost.comm_sm_fraction = 0.0;  // kernels keep their full-speed times
  const SimulationResult one = simulate(routed_scenario("ONE_F_ONE_B"), options);
  const SimulationResult dual = simulate(routed_scenario("DUALPIPE"), options);
  // Every micro-batch passes every layer once under both, routed alike (the same seed and
  // slots): the kernels' time summed over the GPUs is the same, however it is placed. Under
  // 1F1B GPUs 0-1 run layers 0-1 and GPUs 2-3 layers 2-3 (and the LM head); under DualPipe each
  // GPU runs half the micro-batches through each half.
  for (const Phase p : {Phase::kAttention, Phase::kDenseFfn, Phase::kExpertCompute}) {
    double a = 0, b = 0;
    for (int gpu = 0; gpu < 4; ++gpu) {
      a += one.gpu_phase_us[static_cast<size_t>(gpu)][static_cast<int>(p)];
      b += dual.gpu_phase_us[static_cast<size_t>(gpu)][static_cast<int>(p)];
    }
    CHECK(b == Approx(a).epsilon(1e-9));
  }
  // The MoE exchanges: each (micro-batch, layer) slot's dispatch and combine, once forward and
  // once backward, under both.
  CHECK(dual.dispatch_us.size() == one.dispatch_us.size());
  CHECK(dual.expert_compute_us.size() == one.expert_compute_us.size());
  // DualPipe overlaps exchanges with computation; 1F1B hides none.
  double hidden = 0;
  for (int gpu = 0; gpu < 4; ++gpu) {
    hidden += dual.gpu_hidden_us[static_cast<size_t>(gpu)][static_cast<int>(Phase::kDispatch)];
    CHECK(one.gpu_hidden_us[static_cast<size_t>(gpu)][static_cast<int>(Phase::kDispatch)] == 0.0);
  }
  CHECK(hidden > 0.0);
}

}  // namespace
}  // namespace moesim
