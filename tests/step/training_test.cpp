// The training step's options against hand counts and closed forms: ZeRO-1 (distributed
// optimizer) in memory and in the time of the training tail, activation recomputation's extra
// FLOPs and its memory, FP8 GEMM precisions and the backward dispatch format.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "models/moe/placement.h"
#include "scenarios/scenario.h"
#include "sim/memory.h"
#include "sim/schedule.h"
#include "sim/simulation.h"
#include "tests/scratch_dir.h"

namespace moesim {
namespace {

std::filesystem::path write_temp(const std::string& name, const std::string& text) {
  static const test::ScratchDir dir("training_test");
  const auto path = dir / name;
  std::ofstream(path) << text;
  return path;
}

// `gpus` GPUs on one switch, links of `gb_per_s` GB/s and 1 ns each way.
std::filesystem::path switch_topology(int gpus, double gb_per_s) {
  std::ostringstream t;
  t << "gpus_per_node: " << gpus << "\n"
    << "flat_switch { name: \"sw\" switch_kind: NVSWITCH gpus: " << gpus << " bandwidth: \""
    << gb_per_s << "GB/s\" latency: \"1ns\" link_kind: NVLINK }\n";
  return write_temp("switch" + std::to_string(gpus) + ".pbtxt", t.str());
}

// A one-layer MoE model (hidden 1024, 8 heads of 128, 4 experts of FFN 512, top-1, vocabulary
// 64, BF16) on a made-up GPU: `gpu_extra` completes or overrides its fields.
std::string scenario_text(const std::filesystem::path& topology, const std::string& parallel,
                          int tokens, const std::string& workload_extra,
                          const std::string& gpu_extra) {
  std::ostringstream s;
  s << "name: \"training\"\n"
    << "model { layers: 1 hidden_size: 1024 attention_heads: 8 kv_heads: 8 head_dim: 128 "
       "expert_ffn_size: 512 dense_ffn_size: 512 routed_experts: 4 top_k: 1 vocab_size: 64 "
       "weights { dtype: \"bf16\" } dispatch { dtype: \"fp8\" scale_bytes: 4 "
       "scale_block_elements: 128 } combine { dtype: \"bf16\" } }\n"
    << "cluster { topology_file: \"" << topology.string()
    << "\" gpu { peak_tflops_bf16: 100 peak_tflops_fp8: 200 hbm_capacity: \"80GB\" " << gpu_extra
    << " } }\n"
    << "parallelism { " << parallel << " }\n"
    << "workload { kind: TRAINING tokens_per_gpu: " << tokens << " sequence_length: " << tokens
    << " steps: 1 " << workload_extra << " }\n"
    << "seed: 5\n";
  return s.str();
}

// HBM at 1 TB/s with no loss, 5 us per kernel.
const char* kRooflineGpu =
    "hbm_bandwidth: \"1TB/s\" gemm_efficiency_max: 0.5 gemm_half_efficiency_rows: 100 "
    "memory_efficiency: 1.0 kernel_launch: \"5us\"";
// Compute-bound at constant efficiency: every GEMM at 0.5 of its peak whatever its rows,
// attention at 0.4 whatever its length, no fixed cost, HBM fast enough not to matter.
const char* kFlopsGpu =
    "hbm_bandwidth: \"100000TB/s\" gemm_efficiency_max: 0.5 gemm_half_efficiency_rows: 0 "
    "attention_efficiency_max: 0.4 attention_half_efficiency_length: 0 memory_efficiency: 1.0 "
    "kernel_launch: \"0us\"";

double phase_us(const SimulationResult& r, int gpu, Phase p) {
  return r.gpu_phase_us.at(static_cast<size_t>(gpu))[static_cast<int>(p)];
}

// Parameters of the model by hand: attention 4 * 1024 * 1024, the gate 1024 * 4, embedding and
// LM head 64 * 1024 each; one expert 3 * 1024 * 512.
constexpr int64_t kDense = 4 * 1024 * 1024 + 1024 * 4 + 2 * 64 * 1024;  // 4329472
constexpr int64_t kExpert = 3 * 1024 * 512;                             // 1572864

TEST_CASE("ZeRO-1 shards Adam's state over the ranks holding each parameter", "[step][training]") {
  // EP 2, DP 2: each GPU holds the dense parameters (replicated over dp * ep = 4 ranks) and two
  // experts (replicated over dp = 2 ranks).
  const auto topo = switch_topology(4, 100);
  const std::string parallel = "ep: 2 dp: 2";
  const Scenario plain =
      parse_scenario(scenario_text(topo, parallel, 64, "", kRooflineGpu), "plain.pbtxt");
  const Scenario zero = parse_scenario(
      scenario_text(topo, parallel, 64, "distributed_optimizer: true", kRooflineGpu), "zero.pbtxt");
  const MemoryPerGpu a = memory_per_gpu(plain);
  const MemoryPerGpu z = memory_per_gpu(zero);
  const int64_t params = kDense + 2 * kExpert;
  CHECK(a.params == params);
  CHECK(z.params == params);
  CHECK(a.optimizer_state == Bytes(12 * params));
  // 12 bytes per dense parameter over 4 ranks, per expert parameter over 2.
  CHECK(z.optimizer_state == Bytes(12 * kDense / 4 + 12 * 2 * kExpert / 2));
  CHECK(z.optimizer_state == Bytes(31862784));
  // Weights, gradients and activations are not sharded by ZeRO-1.
  CHECK(z.weights == a.weights);
  CHECK(z.gradients == a.gradients);
  CHECK(z.activations == a.activations);
  CHECK(a.total() - z.total() == Bytes(12 * params - 31862784));
}

TEST_CASE("ZeRO-1's training tail: reduce-scatter, Adam on a shard, all-gather",
          "[step][training]") {
  // Two GPUs, DP 2, EP 1: each holds every parameter, kDense + 4 * kExpert; dense and expert
  // gradients are each reduced over both. A two-member ring moves half the buffer each way per
  // step: an all-reduce of X bytes takes 2 steps of X / 2 over the 100 GB/s link, a
  // reduce-scatter or an all-gather of X one step (1 ns wires, 2 per hop, neglected).
  const auto topo = switch_topology(2, 100);
  const std::string parallel = "dp: 2";
  const Scenario plain =
      parse_scenario(scenario_text(topo, parallel, 64, "", kRooflineGpu), "plain.pbtxt");
  const Scenario zero = parse_scenario(
      scenario_text(topo, parallel, 64, "distributed_optimizer: true", kRooflineGpu), "zero.pbtxt");
  const SimulationResult a = simulate(plain);
  const SimulationResult z = simulate(zero);
  const double link = 100e9;
  const double dense_bytes = 2.0 * kDense, expert_bytes = 2.0 * 4 * kExpert;
  // Without ZeRO: two all-reduces, Adam over every parameter (18 bytes each at 1 TB/s + 5 us).
  const double all_reduce_us = 2 * (dense_bytes / 2 + expert_bytes / 2) / link * 1e6;
  const double adam_us = (kDense + 4.0 * kExpert) * 18 / 1e12 * 1e6 + 5.0;
  // ZeRO-1: reduce-scatter then all-gather of each, Adam over half of each.
  const double zero_sync_us = 2 * (dense_bytes / 2 + expert_bytes / 2) / link * 1e6;
  const double zero_adam_us = (kDense / 2 + 4.0 * kExpert / 2) * 18 / 1e12 * 1e6 + 5.0;
  for (int g = 0; g < 2; ++g) {
    CHECK(phase_us(a, g, Phase::kGradientSync) == Approx(all_reduce_us).epsilon(1e-3));
    CHECK(phase_us(a, g, Phase::kOptimizer) == Approx(adam_us).epsilon(1e-9));
    CHECK(phase_us(z, g, Phase::kGradientSync) == Approx(zero_sync_us).epsilon(1e-3));
    CHECK(phase_us(z, g, Phase::kOptimizer) == Approx(zero_adam_us).epsilon(1e-9));
    CHECK(phase_us(z, g, Phase::kIdle) == Approx(phase_us(a, g, Phase::kIdle)).margin(1e-3));
  }
  // The rest of the step is the same: the step is shorter by Adam's halved HBM traffic.
  REQUIRE(a.step_time_us.size() == 1);
  REQUIRE(z.step_time_us.size() == 1);
  CHECK(a.step_time_us[0] - z.step_time_us[0] ==
        Approx(adam_us - zero_adam_us + all_reduce_us - zero_sync_us).margin(0.01));
}

// The forward FLOPs of the model's one layer for T tokens in one sequence, by hand, as time on
// kFlopsGpu (BF16 GEMMs at 0.5 of 100 TFLOP/s, the FP32 gate at 0.5 of 50, attention at 0.4).
struct LayerForwardUs {
  double projections, attention_core, gate, experts;
};
LayerForwardUs layer_forward_us(double tokens) {
  const double bf16 = 0.5 * 100e12, fp32 = 0.5 * 50e12, attention = 0.4 * 100e12;
  LayerForwardUs f;
  // Q, K, V and O projections: 2 * T * 4 * 1024 * 1024 FLOPs.
  f.projections = 2 * tokens * 4 * 1024 * 1024 / bf16 * 1e6;
  // Causal attention: 2 * T^2 * heads * (qk + v) / 2 = T^2 * 8 * 256.
  f.attention_core = tokens * tokens * 8 * 256 / attention * 1e6;
  // The gate: 2 * T * 1024 * 4 in FP32.
  f.gate = 2 * tokens * 1024 * 4 / fp32 * 1e6;
  // Top-1 routed experts: every token through one SwiGLU expert, 2 * 3 * 1024 * 512 per token.
  f.experts = 2 * tokens * 3 * 1024 * 512 / bf16 * 1e6;
  return f;
}

double compute_us(const SimulationResult& r) {
  return phase_us(r, 0, Phase::kAttention) + phase_us(r, 0, Phase::kDenseFfn) +
         phase_us(r, 0, Phase::kExpertCompute);
}

TEST_CASE("recomputation's extra FLOPs follow a hand count of the forward", "[step][training]") {
  // One GPU, 256 tokens in one sequence, compute-bound at constant efficiencies.
  const auto topo = switch_topology(1, 100);
  const int tokens = 256;
  auto run = [&](const std::string& extra) {
    return simulate(parse_scenario(scenario_text(topo, "", tokens, extra, kFlopsGpu), "r.pbtxt"));
  };
  const SimulationResult none = run("");
  const SimulationResult selective = run("recomputation: RECOMPUTATION_SELECTIVE");
  const SimulationResult full = run("recomputation: RECOMPUTATION_FULL");
  const LayerForwardUs f = layer_forward_us(tokens);
  // Forward plus a backward of twice the work, plus the LM head (2 * T * 1024 * 64) thrice.
  const double lm_head = 2.0 * tokens * 1024 * 64 / (0.5 * 100e12) * 1e6;
  const double forward = f.projections + f.attention_core + f.gate + f.experts;
  CHECK(compute_us(none) == Approx(3 * (forward + lm_head)).epsilon(1e-6));
  // Selective: the attention kernel once more; full: the layer's whole forward once more.
  CHECK(compute_us(selective) - compute_us(none) == Approx(f.attention_core).epsilon(1e-6));
  CHECK(phase_us(selective, 0, Phase::kAttention) - phase_us(none, 0, Phase::kAttention) ==
        Approx(f.attention_core).epsilon(1e-6));
  CHECK(compute_us(full) - compute_us(none) == Approx(forward).epsilon(1e-6));
  CHECK(phase_us(full, 0, Phase::kExpertCompute) - phase_us(none, 0, Phase::kExpertCompute) ==
        Approx(f.experts).epsilon(1e-6));
  REQUIRE(full.step_time_us.size() == 1);
  CHECK(full.step_time_us[0] - none.step_time_us[0] == Approx(forward).epsilon(1e-6));
}

TEST_CASE("full recomputation keeps each layer's input and rebuilds one layer",
          "[step][training]") {
  // Two layers at PP 1 with 2 micro-batches: one in flight. Per token per layer by hand: the
  // attention block 2 * 1024 + 2 * 8 * 128 + 2 * 8 * 128 = 6144 elements; the MoE block's
  // input 1024, one dispatched row 1024 and 3 * 512 expert intermediates = 3584; BF16; plus 4
  // FP32 router logits: 19472 bytes.
  const auto topo = switch_topology(1, 100);
  auto text = [&](const std::string& extra) {
    std::string t = scenario_text(topo, "", 64, "micro_batches: 2 " + extra, kRooflineGpu);
    t.replace(t.find("layers: 1 "), 10, "layers: 2 ");
    return t;
  };
  const MemoryPerGpu none = memory_per_gpu(parse_scenario(text(""), "n.pbtxt"));
  const MemoryPerGpu full =
      memory_per_gpu(parse_scenario(text("recomputation: RECOMPUTATION_FULL"), "f.pbtxt"));
  const MemoryPerGpu selective =
      memory_per_gpu(parse_scenario(text("recomputation: RECOMPUTATION_SELECTIVE"), "s.pbtxt"));
  const int64_t per_token_layer = (6144 + 3584) * 2 + 4 * 4;
  CHECK(none.activations == Bytes(64 * 2 * per_token_layer));
  // Full: each of the 2 layers' 1024-element input, plus one layer rebuilt.
  CHECK(full.activations == Bytes(64 * (2 * 1024 * 2 + per_token_layer)));
  CHECK(selective.activations == none.activations);
  CHECK(full.weights == none.weights);
}

TEST_CASE("1F1B with EP overlap holds one more micro-batch's activations", "[step][training]") {
  // PP 1, 3 micro-batches: 1F1B runs F0 B0 F1 B1 F2 B2, one micro-batch in flight; with EP
  // overlap F0, then F1 paired with B0 (F1's activations kept before B0 frees its own), then F2
  // with B1: two in flight. The per-token per-layer bytes of the test above, two layers.
  const auto topo = switch_topology(1, 100);
  auto text = [&](const std::string& extra) {
    std::string t = scenario_text(topo, "", 64, "micro_batches: 3 " + extra, kRooflineGpu);
    t.replace(t.find("layers: 1 "), 10, "layers: 2 ");
    return t;
  };
  const int64_t per_token_layer = (6144 + 3584) * 2 + 4 * 4;
  CHECK(memory_per_gpu(parse_scenario(text(""), "n.pbtxt")).activations ==
        Bytes(64 * 2 * per_token_layer));
  CHECK(memory_per_gpu(parse_scenario(text("schedule: ONE_F_ONE_B_EP_OVERLAP"), "o.pbtxt"))
            .activations == Bytes(2 * 64 * 2 * per_token_layer));
}

TEST_CASE("FP8 GEMM precisions run the chosen GEMMs at the FP8 peak", "[step][training]") {
  // The same compute-bound GPU: FP8 at 200 TFLOP/s, twice BF16. Expert FP8 halves the experts'
  // time; dense FP8 halves the projections', not the attention kernel's nor the FP32 gate's.
  const auto topo = switch_topology(1, 100);
  const int tokens = 256;
  auto run = [&](const std::string& extra) {
    return simulate(parse_scenario(scenario_text(topo, "", tokens, extra, kFlopsGpu), "p.pbtxt"));
  };
  const SimulationResult bf16 = run("");
  const SimulationResult experts = run("expert_gemm_dtype: \"fp8\"");
  const SimulationResult dense = run("dense_gemm_dtype: \"fp8\"");
  const LayerForwardUs f = layer_forward_us(tokens);
  CHECK(phase_us(bf16, 0, Phase::kExpertCompute) - phase_us(experts, 0, Phase::kExpertCompute) ==
        Approx(3 * f.experts / 2).epsilon(1e-6));
  CHECK(phase_us(experts, 0, Phase::kAttention) == phase_us(bf16, 0, Phase::kAttention));
  CHECK(phase_us(bf16, 0, Phase::kAttention) - phase_us(dense, 0, Phase::kAttention) ==
        Approx(3 * f.projections / 2).epsilon(1e-6));
  CHECK(phase_us(dense, 0, Phase::kDenseFfn) == phase_us(bf16, 0, Phase::kDenseFfn));
  CHECK(phase_us(dense, 0, Phase::kExpertCompute) == phase_us(bf16, 0, Phase::kExpertCompute));
}

// The MoE exchanges and data-parallel collectives of a one-layer EP2 training step's graph.
struct GraphCase {
  explicit GraphCase(StepOptions options) : placement(plan_of(), model_of(), 1) {
    model = model_of();
    plan = plan_of();
    setup.model = &model;
    setup.plan = &plan;
    setup.placement = &placement;
    setup.tokens_per_gpu = 8;
    setup.sequence_length = 8;
    setup.options = options;
    graph = OneFOneBSchedule().build(setup);
  }
  static ModelSpec model_of() {
    ModelSpec m;
    m.layers = 1;
    m.hidden_size = 256;
    m.attention_heads = 4;
    m.kv_heads = 4;
    m.head_dim = 64;
    m.expert_ffn_size = 32;
    m.routed_experts = 4;
    m.top_k = 1;
    m.dispatch = {Dtype::kFp8, 4, 128};  // 256 + 2 * 4 = 264 bytes per token
    return m;
  }
  static ParallelPlan plan_of() {
    ParallelPlan p;
    p.ep = 2;
    return p;
  }
  // (kind, backward, bytes per token) of each MoE exchange, in creation order.
  std::vector<std::tuple<CollectiveKind, bool, int64_t>> exchanges() const {
    std::vector<std::tuple<CollectiveKind, bool, int64_t>> out;
    for (const Collective& c : graph.collectives()) {
      if (c.kind == CollectiveKind::kMoeDispatch || c.kind == CollectiveKind::kMoeCombine) {
        out.emplace_back(c.kind, c.backward, c.per_token.count());
      }
    }
    return out;
  }
  ModelSpec model;
  ParallelPlan plan;
  Placement placement;
  StepSetup setup;
  OpGraph graph{0};
};

TEST_CASE("full recomputation replays the layer's exchanges; FP8 backward dispatch",
          "[step][training]") {
  using K = CollectiveKind;
  const GraphCase plain{StepOptions{}};
  // Forward dispatch (FP8 264 B) and combine (BF16 512 B); backward: the combine's gradients
  // to the experts (dispatch way) and the dispatch's back (combine way), both BF16.
  using Row = std::tuple<K, bool, int64_t>;
  CHECK(plain.exchanges() == std::vector<Row>{{K::kMoeDispatch, false, 264},
                                              {K::kMoeCombine, false, 512},
                                              {K::kMoeDispatch, true, 512},
                                              {K::kMoeCombine, true, 512}});
  StepOptions o;
  o.recomputation = Recomputation::kFull;
  o.gradients_in_dispatch_format = true;
  const GraphCase full{o};
  // The recomputed forward's own dispatch and combine, in the forward formats, in the backward
  // pass; the backward dispatch-way gradients in the dispatch format (DeepSeek-V3's FP8).
  CHECK(full.exchanges() == std::vector<Row>{{K::kMoeDispatch, false, 264},
                                             {K::kMoeCombine, false, 512},
                                             {K::kMoeDispatch, true, 264},
                                             {K::kMoeCombine, true, 512},
                                             {K::kMoeDispatch, true, 264},
                                             {K::kMoeCombine, true, 512}});
  // Per GPU: the forward's 4 kernels (attention, gate, expert FFN, LM head), the recomputed
  // 3 and the backward's 4.
  int kernels = 0;
  for (const Op& op : full.graph.ops()) kernels += op.gpu == 0 && op.is_kernel ? 1 : 0;
  CHECK(kernels == 4 + 3 + 4 + 1);  // and the optimizer
}

TEST_CASE("ZeRO-1's tail collectives: reduce-scatter and all-gather per group",
          "[step][training]") {
  StepOptions o;
  o.distributed_optimizer = true;
  const GraphCase zero{o};
  const GraphCase plain{StepOptions{}};
  // EP2, DP1: the dense parameters are held by both EP ranks (a group of 2), each expert by one
  // rank (no group). Dense: 4 * 256 * 256 attention + 256 * 4 gate = 263168 parameters, no
  // vocabulary; BF16.
  std::vector<std::pair<CollectiveKind, int64_t>> got, got_plain;
  for (const Collective& c : zero.graph.collectives()) {
    if (c.phase == Phase::kGradientSync) got.emplace_back(c.kind, c.bytes.count());
  }
  for (const Collective& c : plain.graph.collectives()) {
    if (c.phase == Phase::kGradientSync) got_plain.emplace_back(c.kind, c.bytes.count());
  }
  const int64_t dense = 4 * 256 * 256 + 256 * 4;
  CHECK(got == std::vector<std::pair<CollectiveKind, int64_t>>{
                   {CollectiveKind::kReduceScatter, dense / 2 * 2},
                   {CollectiveKind::kAllGather, dense / 2 * 2}});
  CHECK(got_plain ==
        std::vector<std::pair<CollectiveKind, int64_t>>{{CollectiveKind::kAllReduce, dense * 2}});
}

TEST_CASE("the step options are validated with the field named", "[step][training]") {
  const auto topo = switch_topology(1, 100);
  auto error = [&](const std::string& extra, const char* kind) {
    std::string t = scenario_text(topo, "", 64, extra, kRooflineGpu);
    t.replace(t.find("kind: TRAINING"), 14, std::string("kind: ") + kind);
    try {
      parse_scenario(t, "bad.pbtxt");
    } catch (const ScenarioError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK_THAT(error("distributed_optimizer: true", "PREFILL"),
             Catch::Contains("workload.distributed_optimizer: applies to TRAINING only"));
  CHECK_THAT(error("recomputation: RECOMPUTATION_FULL", "PREFILL"),
             Catch::Contains("workload.recomputation: applies to TRAINING only"));
  CHECK_THAT(error("gradients_in_dispatch_format: true", "PREFILL"),
             Catch::Contains("workload.gradients_in_dispatch_format: applies to TRAINING only"));
  CHECK_THAT(error("overlap_grad_reduce: true", "PREFILL"),
             Catch::Contains("workload.overlap_grad_reduce: applies to TRAINING only"));
  CHECK_THAT(error("expert_gemm_dtype: \"fp16\"", "TRAINING"),
             Catch::Contains("workload.expert_gemm_dtype: unknown GEMM precision 'fp16', "
                             "expected bf16 or fp8"));
  CHECK_THAT(error("dense_gemm_dtype: \"int8\"", "TRAINING"),
             Catch::Contains("workload.dense_gemm_dtype: unknown GEMM precision 'int8'"));
  CHECK_THAT(error("recomputation: RECOMPUTATION_UNSPECIFIED", "TRAINING"),
             Catch::Contains("workload.recomputation: expected RECOMPUTATION_NONE"));
  CHECK_THAT(error("", "TRAINING"), Catch::Contains("no error"));
  // Prefill may choose its GEMM precisions.
  CHECK_THAT(error("expert_gemm_dtype: \"fp8\" dense_gemm_dtype: \"bf16\"", "PREFILL"),
             Catch::Contains("no error"));
  std::string t = scenario_text(topo, "", 64, "", kRooflineGpu);
  t.replace(t.find("hbm_capacity"), 12, "grouped_gemm_kernel: \"cutlass\" hbm_capacity");
  CHECK_THROWS_WITH(parse_scenario(t, "bad.pbtxt"),
                    Catch::Contains("cluster.gpu.grouped_gemm_kernel: unknown kernel family "
                                    "'cutlass', expected cublas-dense, pytorch-grouped or "
                                    "deepgemm"));
}

}  // namespace
}  // namespace moesim
