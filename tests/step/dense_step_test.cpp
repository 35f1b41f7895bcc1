// A dense model (no routed experts) run by the same step as an MoE model: its step against the
// closed-form roofline of its layers, worked here from the GPU's peak, efficiency curve, HBM
// rate and launch cost, for prefill, decode and training.
#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "models/router/router.h"
#include "scenarios/scenario.h"
#include "sim/memory.h"
#include "sim/simulation.h"
#include "tests/scratch_dir.h"

namespace moesim {
namespace {

// `gpus` GPUs on one switch (fast: no collective is timed here but training's, on one GPU none).
std::filesystem::path switch_topology(int gpus) {
  static const test::ScratchDir dir("dense_step_test");
  const auto path = dir / ("switch" + std::to_string(gpus) + ".pbtxt");
  std::ofstream(path) << "gpus_per_node: " << gpus << "\n"
                      << "flat_switch { name: \"sw\" switch_kind: NVSWITCH gpus: " << gpus
                      << " bandwidth: \"100GB/s\" latency: \"1us\" link_kind: NVLINK }\n";
  return path;
}

// Two dense layers (hidden 1024, 8 heads of 128, 2 KV heads, SwiGLU FFN of 2048, vocab 64,
// BF16) on a made-up GPU: 100 TFLOP/s, 1 TB/s at full efficiency, GEMM efficiency
// 0.5 m / (m + 100), attention efficiency 0.4 L / (L + 512), 5 us per launch.
std::string dense_scenario(int gpus, const std::string& workload) {
  std::ostringstream s;
  s << "name: \"dense\"\n"
    << "model { layers: 2 hidden_size: 1024 attention_heads: 8 kv_heads: 2 head_dim: 128 "
       "dense_ffn_size: 2048 routed_experts: 0 vocab_size: 64 }\n"
    << "cluster { topology_file: \"" << switch_topology(gpus).string()
    << "\" gpu { peak_tflops_bf16: 100 peak_tflops_fp8: 200 hbm_bandwidth: \"1TB/s\" "
       "hbm_capacity: \"80GB\" gemm_efficiency_max: 0.5 gemm_half_efficiency_rows: 100 "
       "memory_efficiency: 1.0 kernel_launch: \"5us\" attention_efficiency_max: 0.4 "
       "attention_half_efficiency_length: 512 } }\n"
    << "parallelism { dp: " << gpus << " }\n"
    << "workload { " << workload << " }\nseed: 3\n";
  return s.str();
}

constexpr double kPeak = 100e12, kHbm = 1e12, kLaunchUs = 5.0;

// C (m x n) = A (m x k) B (k x n) in BF16: the test's own roofline.
double gemm_us(double m, double n, double k) {
  const double eff = 0.5 * std::min(m, n) / (std::min(m, n) + 100.0);
  const double flops = 2.0 * m * n * k;
  const double bytes = (m * k + k * n) * 2 + m * n * 2;
  return std::max(flops / (kPeak * eff), bytes / kHbm) * 1e6 + kLaunchUs;
}

// One layer's projections: q and o (8 x 128 columns each), k and v (2 x 128 each), all from
// hidden 1024: a 2560-column GEMM. The FFN: gate, up and down as one 3 x 2048-column GEMM.
double projections_us(double tokens) {
  return gemm_us(tokens, 2560, 1024);
}
double ffn_us(double tokens) {
  return gemm_us(tokens, 3 * 2048, 1024);
}
double lm_head_us(double tokens) {
  return gemm_us(tokens, 64, 1024);
}

double phase_us(const SimulationResult& r, int gpu, Phase p) {
  return r.gpu_phase_us.at(static_cast<size_t>(gpu))[static_cast<int>(p)];
}

void check_no_moe_work(const SimulationResult& r) {
  for (size_t g = 0; g < r.gpu_phase_us.size(); ++g) {
    for (Phase p : {Phase::kDispatch, Phase::kCombine, Phase::kExpertCompute, Phase::kIdle}) {
      CHECK(phase_us(r, static_cast<int>(g), p) == 0.0);
    }
  }
  CHECK(r.dispatch_us.empty());
  CHECK(r.combine_us.empty());
  CHECK(r.expert_compute_us.empty());
  CHECK(r.tokens_per_expert.empty());
  CHECK(r.routed_pairs == 0);
}

}  // namespace

TEST_CASE("a dense model's prefill step is the roofline of its layers", "[step]") {
  // Two data-parallel GPUs, 256 tokens each in sequences of 128: no collective in prefill.
  const Scenario s = parse_scenario(
      dense_scenario(2, "kind: PREFILL tokens_per_gpu: 256 sequence_length: 128 steps: 1"),
      "dense.pbtxt");
  REQUIRE(s.model.is_dense());
  const SimulationResult r = simulate(s);
  // Causal prefill attention over 2 sequences of 128: QK^T and PV, 2 L^2 heads (128 + 128)
  // FLOPs per sequence, halved; it reads and writes per token the 8 query and output heads and
  // the 2 K and V heads (8 x 256 + 2 x 2 x 128 elements, BF16), at 0.4 x 128 / (128 + 512).
  const double attention_flops = 2 * 0.5 * (2.0 * 128 * 128 * 8 * 256);
  const double attention_bytes = 2.0 * 128 * (8 * 256 + 512) * 2;
  const double attention_eff = 0.4 * 128 / (128 + 512.0);
  const double attention_us =
      std::max(attention_flops / (kPeak * attention_eff), attention_bytes / kHbm) * 1e6 + kLaunchUs;
  const double layer_us = projections_us(256) + attention_us + ffn_us(256);
  const double step_us = 2 * layer_us + lm_head_us(256);
  REQUIRE(r.step_time_us.size() == 1);
  CHECK(r.step_time_us[0] == Approx(step_us).epsilon(1e-7));  // kernels round up to whole ps
  for (int g = 0; g < 2; ++g) {
    CHECK(phase_us(r, g, Phase::kAttention) ==
          Approx(2 * (projections_us(256) + attention_us) + lm_head_us(256)).epsilon(1e-7));
    CHECK(phase_us(r, g, Phase::kDenseFfn) == Approx(2 * ffn_us(256)).epsilon(1e-7));
  }
  check_no_moe_work(r);
  CHECK(r.tokens_per_s_per_gpu == Approx(256 / (step_us * 1e-6)).epsilon(1e-7));
}

TEST_CASE("a prefill with KV-cache hits computes only the missed tokens", "[step]") {
  // As above, with half of each 128-token sequence in the KV cache: 64 cached, 64 computed per
  // sequence, so 128 of the 256 input tokens per GPU go through projections, FFN and LM head.
  const Scenario s = parse_scenario(dense_scenario(2,
                                                   "kind: PREFILL tokens_per_gpu: 256 "
                                                   "sequence_length: 128 steps: 1 "
                                                   "prefix_cache_hit_rate: 0.5"),
                                    "dense.pbtxt");
  const SimulationResult r = simulate(s);
  // Each computed query at position p (64..127) attends over p + 1 keys: ((64 + 64)^2 - 64^2) / 2
  // query-key pairs per sequence (the closed form moesim uses, as L^2 / 2 without a prefix), 2
  // FLOPs per pair per head and head width (8 heads x (128 + 128)); bytes: Q and O of the 64
  // new tokens (8 x 256 elements each) and K, V of all 128 (2 x 2 x 128 each), BF16; efficiency
  // at the 64 queries: 0.4 x 64 / (64 + 512).
  const double pairs = (128.0 * 128 - 64.0 * 64) / 2;
  const double attention_flops = 2 * (2.0 * pairs * 8 * 256);
  const double attention_bytes = 2.0 * (64 * 8 * 256 + 128 * 512) * 2;
  const double attention_eff = 0.4 * 64 / (64 + 512.0);
  const double attention_us =
      std::max(attention_flops / (kPeak * attention_eff), attention_bytes / kHbm) * 1e6 + kLaunchUs;
  const double step_us = 2 * (projections_us(128) + attention_us + ffn_us(128)) + lm_head_us(128);
  REQUIRE(r.step_time_us.size() == 1);
  CHECK(r.step_time_us[0] == Approx(step_us).epsilon(1e-7));
  // Input tokens per second, hits included (DeepSeek's count): 256 per GPU per step; two GPUs
  // per node in this topology.
  CHECK(r.tokens_per_s_per_gpu == Approx(256 / (step_us * 1e-6)).epsilon(1e-7));
  CHECK(r.tokens_per_s_per_node == Approx(2 * 256 / (step_us * 1e-6)).epsilon(1e-7));
  check_no_moe_work(r);
}

TEST_CASE("a dense model's decode step is the roofline of its layers", "[step]") {
  // 32 sequences per GPU, each attending to 1000 cached tokens.
  const Scenario s = parse_scenario(
      dense_scenario(2, "kind: DECODE tokens_per_gpu: 32 kv_context_length: 1000 steps: 1"),
      "dense.pbtxt");
  const SimulationResult r = simulate(s);
  // Decode attention reads the cache (2 KV heads x 2 x 128 BF16 elements per cached token)
  // and does 2 x context x heads x (128 + 128) FLOPs per sequence at 0.4.
  const double attention_bytes = 32.0 * 1000 * 512 * 2;
  const double attention_flops = 2.0 * 32 * 1000 * 8 * 256;
  const double attention_us =
      std::max(attention_flops / (kPeak * 0.4), attention_bytes / kHbm) * 1e6 + kLaunchUs;
  // At 32 rows the GEMM efficiency is 0.5 x 32 / 132: on this GPU even the FFN is bound by its
  // FLOPs (33 us), not by reading its 12.6 MB of weights (13 us).
  CHECK(gemm_us(32, 3 * 2048, 1024) ==
        Approx(2.0 * 32 * 6144 * 1024 / (kPeak * 0.5 * 32 / 132) * 1e6 + kLaunchUs));
  const double step_us = 2 * (projections_us(32) + attention_us + ffn_us(32)) + lm_head_us(32);
  REQUIRE(r.step_time_us.size() == 1);
  CHECK(r.step_time_us[0] == Approx(step_us).epsilon(1e-7));
  // Output tokens per second: one per sequence per step, 32 per GPU, 64 per two-GPU node.
  CHECK(r.tokens_per_s_per_gpu == Approx(32 / (step_us * 1e-6)).epsilon(1e-7));
  CHECK(r.tokens_per_s_per_node == Approx(64 / (step_us * 1e-6)).epsilon(1e-7));
  check_no_moe_work(r);
}

TEST_CASE("a dense model's training step: forward, twice-the-work backward, then Adam", "[step]") {
  // One GPU: no gradient to reduce. 128 tokens in one sequence.
  const Scenario s = parse_scenario(
      dense_scenario(1, "kind: TRAINING tokens_per_gpu: 128 sequence_length: 128 steps: 1"),
      "dense.pbtxt");
  const SimulationResult r = simulate(s);
  const double attention_flops = 0.5 * (2.0 * 128 * 128 * 8 * 256);
  const double attention_bytes = 128.0 * (8 * 256 + 512) * 2;
  const double attention_eff = 0.4 * 128 / (128 + 512.0);
  const double attention_us =
      std::max(attention_flops / (kPeak * attention_eff), attention_bytes / kHbm) * 1e6 + kLaunchUs;
  const double forward_us =
      2 * (projections_us(128) + attention_us + ffn_us(128)) + lm_head_us(128);
  // Adam moves 18 bytes per parameter: per layer the 2560-column projections and the
  // 6144-column FFN of 1024 rows, plus the embedding and LM head (64 x 1024 each).
  const double params = 2 * (2560.0 * 1024 + 6144.0 * 1024) + 2 * 64 * 1024;
  const double optimizer_us = params * 18 / kHbm * 1e6 + kLaunchUs;
  CHECK(phase_us(r, 0, Phase::kOptimizer) == Approx(optimizer_us).epsilon(1e-7));
  CHECK(phase_us(r, 0, Phase::kGradientSync) == 0.0);
  REQUIRE(r.step_time_us.size() == 1);
  CHECK(r.step_time_us[0] == Approx(3 * forward_us + optimizer_us).epsilon(1e-7));
  // Tokens trained per second: 128 per step on the node's one GPU.
  const double step_s = (3 * forward_us + optimizer_us) * 1e-6;
  CHECK(r.tokens_per_s_per_gpu == Approx(128 / step_s).epsilon(1e-7));
  CHECK(r.tokens_per_s_per_node == Approx(128 / step_s).epsilon(1e-7));
  check_no_moe_work(r);
  // Memory: the same parameters, 16 bytes each for weights, gradients and Adam's state.
  const MemoryPerGpu m = memory_per_gpu(s);
  CHECK(m.params == static_cast<int64_t>(params));
  CHECK(m.weights + m.gradients + m.optimizer_state == Bytes(static_cast<int64_t>(params) * 16));
}

TEST_CASE("a dense model's router holds no layer and routes nothing", "[step]") {
  const Scenario s =
      parse_scenario(dense_scenario(2, "kind: PREFILL tokens_per_gpu: 64"), "dense.pbtxt");
  CHECK(s.router.experts == 0);
  CHECK(s.router.top_k == 0);
  CHECK(s.router.layers == 0);
  Router router(s.router);
  RoutingDecision d;
  CHECK_THROWS_AS(router.route(RoutingRequest{0, 0, 0, 1, 64}, d), std::out_of_range);
  // Experts 0 with a top-k is no dense model: refused by name.
  RouterSpec bad = s.router;
  bad.top_k = 1;
  CHECK_THROWS_WITH(bad.validate(), Catch::Contains("top_k"));
}

TEST_CASE("a dense model takes no expert parallelism and no expert fields", "[step]") {
  auto error_of = [](const std::string& text) {
    try {
      (void)parse_scenario(text, "dense.pbtxt");
    } catch (const ScenarioError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  std::string ep2 = dense_scenario(2, "kind: PREFILL tokens_per_gpu: 64");
  ep2.replace(ep2.find("dp: 2"), 5, "ep: 2");
  CHECK_THAT(error_of(ep2), Catch::Contains("parallelism.ep: must be 1 for a dense model"));
  std::string top2 = dense_scenario(2, "kind: PREFILL tokens_per_gpu: 64");
  top2.replace(top2.find("routed_experts: 0"), 17, "routed_experts: 0 top_k: 2");
  CHECK_THAT(error_of(top2), Catch::Contains("model.top_k: must be 0"));
  std::string no_ffn = dense_scenario(2, "kind: PREFILL tokens_per_gpu: 64");
  no_ffn.replace(no_ffn.find("dense_ffn_size: 2048 "), 21, "");
  CHECK_THAT(error_of(no_ffn), Catch::Contains("dense_ffn_size"));
}

}  // namespace moesim
