// The overlapping schedules (sim/schedule.h: two-batch overlap, 1F1B with EP overlap) against
// hand-worked timelines on two GPUs, and against the same step laid out without overlap (1F1B:
// every op in sequence, the sum).
#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "models/router/routing_decision.h"
#include "scenarios/scenario.h"
#include "sim/simulation.h"
#include "tests/scratch_dir.h"

namespace moesim {
namespace {

// Rank r's token t goes to expert t % experts (top-1): every GPU sends and computes the same.
class RoundRobinSource final : public RoutingSource {
 public:
  explicit RoundRobinSource(int32_t experts) : experts_(experts) {}
  int32_t experts() const override { return experts_; }
  int32_t top_k() const override { return 1; }
  void route(const RoutingRequest& request, RoutingDecision& out) override {
    out.reset(static_cast<int32_t>(request.tokens), experts_, 1);
    for (int32_t t = 0; t < request.tokens; ++t) {
      out.expert_ids[static_cast<size_t>(t)] = t % experts_;
      out.weights[static_cast<size_t>(t)] = 1.0f;
      ++out.tokens_per_expert[static_cast<size_t>(t % experts_)];
    }
  }

 private:
  int32_t experts_;
};

std::filesystem::path switch_topology() {
  static const test::ScratchDir dir("two_batch_test");
  const auto path = dir / "switch2.pbtxt";
  std::ofstream(path) << "gpus_per_node: 2\n"
                      << "flat_switch { name: \"sw\" switch_kind: NVSWITCH gpus: 2 bandwidth: "
                         "\"100GB/s\" latency: \"1000ns\" link_kind: NVLINK }\n";
  return path;
}

// One MoE layer of four experts on two GPUs (EP2), two micro-batches of 64 tokens (decode: 64
// sequences), on a made-up GPU whose kernels take longer than the exchanges (a dispatch moves
// 32 tokens of 2 KiB each way: about 2.7 us; every kernel pays a 5 us launch).
Scenario scenario(const char* kind, const char* schedule) {
  std::ostringstream s;
  s << "name: \"tbo\"\n"
    << "model { layers: 1 dense_layers: 0 hidden_size: 1024 attention_heads: 8 kv_heads: 8 "
       "head_dim: 128 expert_ffn_size: 512 dense_ffn_size: 512 routed_experts: 4 "
       "shared_experts: 0 top_k: 1 vocab_size: 64 "
       "weights { dtype: \"bf16\" } dispatch { dtype: \"bf16\" } combine { dtype: \"bf16\" } }\n"
    << "cluster { topology_file: \"" << switch_topology().string()
    << "\" gpu { peak_tflops_bf16: 100 peak_tflops_fp8: 200 hbm_bandwidth: \"1TB/s\" "
       "hbm_capacity: \"80GB\" gemm_efficiency_max: 0.5 gemm_half_efficiency_rows: 100 "
       "memory_efficiency: 1.0 kernel_launch: \"5us\" } }\n"
    << "parallelism { ep: 2 }\n"
    << "workload { kind: " << kind << " tokens_per_gpu: 64 micro_batches: 2 steps: 1 "
    << (std::string(kind) == "DECODE" ? "kv_context_length: 256" : "sequence_length: 64")
    << " schedule: " << schedule << " }\n"
    << "seed: 3\n";
  return parse_scenario(s.str(), "tbo.pbtxt");
}

double phase_us(const SimulationResult& r, int gpu, Phase p) {
  return r.gpu_phase_us.at(static_cast<size_t>(gpu))[static_cast<int>(p)];
}
double hidden_us(const SimulationResult& r, int gpu, Phase p) {
  return r.gpu_hidden_us.at(static_cast<size_t>(gpu))[static_cast<int>(p)];
}

TEST_CASE("two-batch overlap: the step is the hand-worked timeline, without overlap the sum",
          "[step][schedule][tbo]") {
  for (const char* kind : {"PREFILL", "DECODE"}) {
    INFO(kind);
    SimulationOptions options;
    options.cost.comm_sm_fraction = 0.0;  // kernels beside communication keep full speed
    RoundRobinSource source(4);
    // Without overlap: per micro-batch attention A, gate G, dispatch D, experts E, combine C
    // and the LM head H, one after another on each GPU, both micro-batches: the sum.
    const SimulationResult serial = simulate(scenario(kind, "ONE_F_ONE_B"), source, options);
    REQUIRE(serial.dispatch_us.size() == 2);
    const double a = serial.attention_us[0];
    const double h = phase_us(serial, 0, Phase::kAttention) / 2 - a;
    const double g = phase_us(serial, 0, Phase::kDenseFfn) / 2;
    const double e = serial.expert_compute_us[0];
    const double d = serial.dispatch_us[0];
    const double c = serial.combine_us[0];
    REQUIRE(h > 0.0);
    CHECK(serial.step_time_us[0] == Approx(2 * (a + g + d + e + c + h)).margin(1e-3));
    // Compute is longer than communication here, which the closed form below assumes.
    REQUIRE(d < std::min(a + g, e));
    REQUIRE(c < e);

    // With overlap (P = A + G; decode's two attention halves and the gate add up to the same):
    //   compute  A.P B.P A.E B.E A.H B.H;   comm  A.D (beside B.P)  B.D (beside A.E)
    //   A.C (beside B.E)  B.C (beside A.H).
    // Every exchange hides behind the other micro-batch's compute but the last combine, which
    // hides behind A's LM head only: step = 2P + 2E + H + max(H, C), and the exposed all-to-all
    // is max(0, C - H), at the pair's edge.
    const SimulationResult tbo = simulate(scenario(kind, "TWO_BATCH_OVERLAP"), source, options);
    const double p = a + g;
    CHECK(tbo.step_time_us[0] == Approx(2 * p + 2 * e + h + std::max(h, c)).margin(1e-3));
    CHECK(tbo.attention_us == serial.attention_us);  // decode: its two halves add up
    for (int gpu = 0; gpu < 2; ++gpu) {
      CHECK(phase_us(tbo, gpu, Phase::kDispatch) == Approx(2 * d).margin(1e-3));
      CHECK(hidden_us(tbo, gpu, Phase::kDispatch) == Approx(2 * d).margin(1e-3));
      CHECK(hidden_us(tbo, gpu, Phase::kCombine) == Approx(c + std::min(c, h)).margin(1e-3));
      CHECK(phase_us(tbo, gpu, Phase::kIdle) == Approx(0.0).margin(1e-3));
      // Without overlap nothing is hidden.
      CHECK(hidden_us(serial, gpu, Phase::kDispatch) == 0.0);
      CHECK(hidden_us(serial, gpu, Phase::kCombine) == 0.0);
    }

    // With communication taking its SMs the overlapped kernels slow down: the step lies between
    // the free-SM timeline and the serial sum.
    SimulationOptions with_sms;
    const SimulationResult slowed = simulate(scenario(kind, "TWO_BATCH_OVERLAP"), source, with_sms);
    CHECK(slowed.step_time_us[0] > tbo.step_time_us[0]);
    CHECK(slowed.step_time_us[0] < serial.step_time_us[0]);
  }
}

TEST_CASE("1F1B with EP overlap: a forward and the next backward interleave by layer",
          "[step][schedule][ep_overlap]") {
  SimulationOptions options;
  options.cost.comm_sm_fraction = 0.0;
  RoundRobinSource source(4);
  // Without overlap (pp 1): F0 B0 F1 B1, then the gradient all-reduce R and the optimizer O.
  // Forward: attention A, gate G, dispatch X, experts E, combine X, LM head H; backward the
  // same in reverse at twice the kernel work, its exchanges X too (BF16 both ways, the same
  // tokens moved).
  const SimulationResult serial = simulate(scenario("TRAINING", "ONE_F_ONE_B"), source, options);
  const double a = serial.attention_us[0];
  const double h = phase_us(serial, 0, Phase::kAttention) / 6 - a;
  const double g = phase_us(serial, 0, Phase::kDenseFfn) / 6;
  const double e = serial.expert_compute_us[0];
  const double x = serial.dispatch_us[0];
  const double r = phase_us(serial, 0, Phase::kGradientSync);
  const double o = phase_us(serial, 0, Phase::kOptimizer);
  REQUIRE(serial.combine_us[0] == Approx(x).margin(1e-6));
  const double forward = a + g + x + e + x + h;
  const double backward = 2 * h + x + 2 * e + x + 2 * g + 2 * a;
  CHECK(serial.step_time_us[0] == Approx(2 * forward + 2 * backward + r + o).margin(1e-3));
  REQUIRE(x < e);

  // With overlap: one more warm-up forward (F0), then F1 paired with B0, then B1. The pair's
  // chains take turns by segment, each segment ending at an exchange:
  //   compute  F1:[A G] B0:[2H] F1:[E] B0:[2E] F1:[H] B0:[2G 2A]
  //   comm     F1:dispatch B0:combine' F1:combine B0:dispatch'
  // Each op starts when its stream and its own micro-batch's previous op are both done.
  const double t0 = forward;                             // F0 ends
  const double p = a + g;                                // F1's attention and gate
  const double s1 = t0 + p + std::max(2 * h, x);         // B0's combine' and F1's experts start
  const double f1_experts_end = s1 + e;                  // F1's combine: [s1 + E, s1 + E + X]
  const double b0_experts_end = f1_experts_end + 2 * e;  // B0's dispatch' then takes X
  const double f1_head_end = b0_experts_end + h;         // F1's combine long done (X < 2E)
  const double b0_end = std::max(b0_experts_end + x, f1_head_end) + 2 * g + 2 * a;
  const double expected = b0_end + backward + r + o;  // B1 after both chains, then the tail
  const SimulationResult overlap =
      simulate(scenario("TRAINING", "ONE_F_ONE_B_EP_OVERLAP"), source, options);
  CHECK(overlap.step_time_us[0] == Approx(expected).margin(1e-3));
  CHECK(overlap.step_time_us[0] < serial.step_time_us[0]);
  // Hidden: F1's dispatch (beside B0's LM head backward, min(X, 2H)), B0's combine' (beside
  // F1's experts), F1's combine (beside B0's experts), B0's dispatch' (beside F1's LM head,
  // min(X, H)); F0's and B1's exchanges are exposed.
  const double hidden = std::min(x, 2 * h) + x + x + std::min(x, h);
  for (int gpu = 0; gpu < 2; ++gpu) {
    CHECK(hidden_us(overlap, gpu, Phase::kDispatch) + hidden_us(overlap, gpu, Phase::kCombine) ==
          Approx(hidden).margin(1e-3));
    CHECK(phase_us(overlap, gpu, Phase::kDispatch) + phase_us(overlap, gpu, Phase::kCombine) ==
          Approx(8 * x).margin(1e-3));
  }
}

}  // namespace
}  // namespace moesim
