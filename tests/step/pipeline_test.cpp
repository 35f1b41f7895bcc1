// The pipeline schedules with chunks (sim/pipeline_order.h): DualPipe (sim/dualpipe_schedule.cpp)
// and interleaved 1F1B (sim/interleaved_schedule.cpp). Their orders against their sources'
// counts; their bubbles on a uniform pipeline against the published closed forms (DualPipe: the
// DeepSeek-V3 report's Table 2; interleaved 1F1B: Narayanan et al. 2021); a two-rank DualPipe
// case worked by hand with and without overlap, on a cost model whose chunk times are set by
// hand; their memory; DualPipe through the whole simulation.
#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <tuple>
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

// With `scale_backward`, backward kernels take twice as long (op.work_scale), as moesim's do.
class HandCost final : public CostModel {
 public:
  HandCost(FlowNetwork& network, const GpuModel& gpu, CostOptions options, bool scale_backward)
      : CostModel(network, gpu, options), scale_(scale_backward) {}
  Time kernel_time(const Op& op) override {
    const int64_t k = scale_ ? op.work_scale : 1;
    switch (op.kernel) {
      case KernelKind::kAttention:
        return Time::us(kA) * k;
      case KernelKind::kGateAndShared:
        return Time::us(kG) * k;
      case KernelKind::kExpertFfn:
        return Time::us(kE) * k;
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

 private:
  bool scale_;
};

// pp pipeline ranks of two EP ranks each (2 pp GPUs on one NVSwitch), one MoE layer per model
// stage (pp x `chunks` stages), hidden 16 and one token per GPU (32-byte activations),
// `micro_batches` per step.
struct Pipeline {
  Pipeline(int32_t pp, int32_t micro_batches, int32_t chunks = 1)
      : placement(plan_of(pp), model_of(pp * chunks), 1) {
    model = model_of(pp * chunks);
    plan = plan_of(pp);
    setup.model = &model;
    setup.plan = &plan;
    setup.placement = &placement;
    setup.kind = WorkloadKind::kTraining;
    setup.tokens_per_gpu = 1;
    setup.sequence_length = 1;
    setup.micro_batches = micro_batches;
    setup.virtual_stages = chunks;
  }
  static ModelSpec model_of(int32_t layers) {
    ModelSpec m;
    m.layers = layers;
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
  double span_us(const Schedule& schedule, double comm_sm_fraction = 0.0,
                 bool scale_backward = false) const {
    const OpGraph g = schedule.build(setup);
    Engine engine;
    const Topology topology =
        build_nvswitch_node({static_cast<int>(plan.world_size()),
                             Bandwidth::bytes_per_s(kLinkBytesPerS), Time::zero()});
    NetworkModel network(engine, topology);
    const GpuModel gpu(*find_gpu_preset("h100-sxm"));
    HandCost cost(network, gpu, CostOptions{comm_sm_fraction}, scale_backward);
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

TEST_CASE("interleaved 1F1B's order: every chunk once, stages by chunk, Megatron's warm-up",
          "[schedule][interleaved]") {
  for (const int32_t pp : {2, 4}) {
    for (const int32_t v : {2, 3}) {
      for (const int32_t m : {pp, 2 * pp, 3 * pp}) {
        INFO("pp " << pp << ", v " << v << ", " << m << " micro-batches");
        for (int32_t rank = 0; rank < pp; ++rank) {
          const std::vector<PipelineWork> order = interleaved_order(rank, pp, v, m, true);
          REQUIRE(order.size() == static_cast<size_t>(2 * m * v));
          std::map<std::tuple<int32_t, int32_t, bool>, int32_t> seen;
          for (const PipelineWork& w : order) {
            CHECK(w.stage % pp == rank);  // rank r holds stages r, r + pp, ...
            CHECK_FALSE(w.paired);
            ++seen[{w.mb, w.stage, w.backward}];
          }
          CHECK(seen.size() == static_cast<size_t>(2 * m * v));
          // Warm-up: (pp - rank - 1) x 2 + (v - 1) x pp forwards, all of them when m = pp.
          const size_t warmup =
              m == pp ? static_cast<size_t>(m * v)
                      : static_cast<size_t>(std::min((pp - rank - 1) * 2 + (v - 1) * pp, m * v));
          size_t leading = 0;
          while (leading < order.size() && !order[leading].backward) ++leading;
          CHECK(leading == std::min(order.size(), warmup + (warmup < static_cast<size_t>(m * v))));
          // The first pp forwards run the first chunk on micro-batches 0..pp-1, the next pp the
          // second chunk on the same micro-batches.
          CHECK(order[0].mb == 0);
          CHECK(order[0].stage == rank);
          if (order.size() > static_cast<size_t>(pp) && m > 1) {
            CHECK(order[static_cast<size_t>(pp)].mb == 0);
            CHECK(order[static_cast<size_t>(pp)].stage == rank + pp);
          }
        }
      }
    }
  }
  CHECK_THROWS_AS(interleaved_order(0, 4, 2, 6, true), std::invalid_argument);
}

TEST_CASE("interleaved 1F1B's bubble is 1F1B's over the virtual stages, (p - 1)(tf + tb) / v",
          "[step][schedule][interleaved]") {
  // Narayanan et al. 2021, section 2.2.2: with v model chunks per rank the bubble of 1F1B,
  // (p - 1)(tf + tb), shrinks to (p - 1)(tf + tb) / v, tf and tb the forward and backward of a
  // whole rank's layers. Here one MoE layer per chunk, run one op after another: a chunk's
  // forward is a + g + e + 2X, its backward 2(a + g + e) + 2X (backward kernels at twice the
  // work, as moesim's), so tf = v (a + g + e + 2X) and tb = v (2(a + g + e) + 2X); each rank
  // computes m (tf + tb) and the step is that plus the bubble.
  const double fc = kA + kG + kE + 2 * kX;
  const double bc = 2 * (kA + kG + kE) + 2 * kX;
  for (const int32_t pp : {2, 4}) {
    for (const int32_t v : {1, 2, 3}) {
      for (const int32_t m : {pp, 2 * pp}) {
        INFO("pp " << pp << ", v " << v << ", " << m << " micro-batches");
        const Pipeline p(pp, m, v);
        const double tf = v * fc, tb = v * bc;
        const double expected = m * (tf + tb) + (pp - 1) * (tf + tb) / v;
        CHECK(p.span_us(OneFOneBSchedule(), 0.0, true) == Approx(expected).margin(0.05));
      }
    }
  }
}

TEST_CASE("interleaved 1F1B's memory: its chunks' parameters, Megatron's warm-up in flight",
          "[step][interleaved]") {
  // pp 2, v 2, 4 micro-batches, one layer per chunk (4 layers). 1F1B's first stage holds layers
  // 0-1 for 2 micro-batches in flight: 4 layer-micro-batches. Interleaved, rank 0 holds layers 0
  // and 2; its warm-up is (2 - 0 - 1) x 2 + (2 - 1) x 2 = 4 forwards, and the steady state's
  // next forward comes before the first backward: 5 chunks of one layer.
  const ModelSpec model = Pipeline::model_of(4);
  const ParallelPlan plan = Pipeline::plan_of(2);
  Workload w;
  w.tokens_per_gpu = 16;
  w.sequence_length = 16;
  w.micro_batches = 4;
  const MemoryPerGpu one = memory_per_gpu(model, plan, w, 8, Bytes(int64_t{80} << 30));
  w.virtual_pipeline_stages = 2;
  const MemoryPerGpu interleaved = memory_per_gpu(model, plan, w, 8, Bytes(int64_t{80} << 30));
  CHECK(interleaved.activations.count() * 4 == one.activations.count() * 5);
  // Rank 0 holds two layers either way, and the embedding; rank 1 the LM head: the same size.
  CHECK(interleaved.params == one.params);
}

}  // namespace
}  // namespace moesim
