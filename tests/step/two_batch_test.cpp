// Two-batch overlap (sim/schedule.h TwoBatchOverlapSchedule) against a hand-worked timeline on
// two GPUs, and against the same step laid out without overlap (1F1B: every op in sequence).
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

}  // namespace
}  // namespace moesim
