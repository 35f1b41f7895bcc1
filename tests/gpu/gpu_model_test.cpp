// Tests of the roofline GPU model against hand-computed kernel times and data-sheet presets.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "models/gpu/gpu_model.h"
#include "models/gpu/gpu_spec.h"
#include "models/moe/model_spec.h"

namespace moesim {
namespace {

const GpuSpec& h100() {
  const GpuSpec* g = find_gpu_preset("h100-sxm");
  REQUIRE(g != nullptr);
  return *g;
}

// H100's peaks with the efficiency figures the hand-worked cases below were computed for
// (fixed here so that a recalibration of the preset does not move them).
GpuSpec hand_worked() {
  GpuSpec g = h100();
  g.gemm_efficiency_max = 0.72;
  g.gemm_half_efficiency_rows = 256.0;
  g.attention_efficiency_max = 0.72;
  g.memory_efficiency = 0.85;
  return g;
}

double seconds(Time t) {
  return t.to_s();
}

TEST_CASE("GPU presets carry the data sheets' dense peaks", "[gpu]") {
  // H100 SXM data sheet: 1,979 (BF16) and 3,958 (FP8) TFLOPS with sparsity, halved for dense.
  CHECK(h100().peak_flops_bf16 == Approx(1979e12 / 2).epsilon(1e-3));
  CHECK(h100().peak_flops_fp8 == Approx(3958e12 / 2).epsilon(1e-3));
  CHECK(h100().hbm_bandwidth.bytes_per_second() == Approx(3.35e12));
  CHECK(h100().hbm_capacity == Bytes(80'000'000'000));
  // A100 has no FP8 tensor cores: FP8 GEMMs run at the BF16 rate.
  const GpuSpec* a100 = find_gpu_preset("a100-80gb");
  REQUIRE(a100 != nullptr);
  CHECK(a100->peak_flops(Dtype::kFp8) == a100->peak_flops(Dtype::kBf16));
  CHECK(a100->peak_flops_bf16 == Approx(312e12));
  // FP32 GEMMs at the TF32 rate, half of BF16.
  CHECK(h100().peak_flops(Dtype::kFp32) == Approx(989.4e12 / 2));
  CHECK(find_gpu_preset("h200")->hbm_capacity == Bytes(141'000'000'000));
  CHECK(find_gpu_preset("h200")->hbm_bandwidth.bytes_per_second() == Approx(4.8e12));
  CHECK(find_gpu_preset("b200")->peak_flops_fp8 == Approx(4.5e15));
  CHECK(find_gpu_preset("gb200")->peak_flops_bf16 == Approx(2.5e15));
  CHECK(find_gpu_preset("h800")->peak_flops_bf16 == h100().peak_flops_bf16);
  CHECK(find_gpu_preset("v100") == nullptr);
  CHECK(gpu_presets().size() == 11);
  // Consumer and workstation parts: data-sheet figures, marked uncalibrated.
  for (const char* name : {"a100-40gb-pcie", "l4", "t4", "rtx3060-12gb", "rtx4090"}) {
    const GpuSpec* g = find_gpu_preset(name);
    REQUIRE(g != nullptr);
    CHECK(g->description.find("uncalibrated") != std::string::npos);
  }
  CHECK(find_gpu_preset("rtx3060-12gb")->hbm_capacity == Bytes(12'000'000'000));
  CHECK(find_gpu_preset("rtx3060-12gb")->hbm_bandwidth.bytes_per_second() == Approx(360e9));
  CHECK(find_gpu_preset("rtx4090")->peak_flops_fp8 == Approx(330.3e12));
  CHECK(find_gpu_preset("l4")->peak_flops_bf16 == Approx(121e12));
  CHECK(find_gpu_preset("t4")->hbm_capacity == Bytes(16'000'000'000));
  CHECK(find_gpu_preset("a100-40gb-pcie")->hbm_bandwidth.bytes_per_second() == Approx(1.555e12));
  CHECK(find_gpu_preset("h100-sxm")->description.empty());
}

TEST_CASE("The GEMM efficiency curve rises monotonically toward its plateau", "[gpu]") {
  const GpuModel gpu(h100());
  const double max = h100().gemm_efficiency_max;
  CHECK(gpu.gemm_efficiency(0) == 0.0);
  // At m = m_half the efficiency is half the plateau, by the curve's definition.
  CHECK(gpu.gemm_efficiency(h100().gemm_half_efficiency_rows) == Approx(max / 2));
  double previous = 0.0;
  for (double m = 1; m <= 1 << 20; m *= 1.5) {
    const double eff = gpu.gemm_efficiency(m);
    CHECK(eff > previous);
    CHECK(eff < max);
    previous = eff;
  }
  CHECK(gpu.gemm_efficiency(1e9) == Approx(max).epsilon(1e-6));
}

TEST_CASE("A large GEMM reaches the FLOP roofline at the plateau efficiency", "[gpu]") {
  const GpuModel gpu(h100());
  const int64_t m = 65536, n = 65536, k = 8192;
  const double flops = 2.0 * m * n * k;
  const double roofline_s = flops / (h100().peak_flops_bf16 * h100().gemm_efficiency_max);
  CHECK(seconds(gpu.gemm(m, n, k, Dtype::kBf16)) == Approx(roofline_s).epsilon(0.01));
  // FP8 runs at twice the rate on Hopper.
  CHECK(seconds(gpu.gemm(m, n, k, Dtype::kFp8)) == Approx(roofline_s / 2).epsilon(0.01));
}

TEST_CASE("A tiny GEMM costs its kernel launch", "[gpu]") {
  const GpuModel gpu(h100());
  const Time t = gpu.gemm(16, 16, 16, Dtype::kBf16);
  // 8192 FLOPs and 1.5 kB: well under a nanosecond on either roof, against a 4 us launch.
  CHECK(t > gpu.launch());
  CHECK(t < gpu.launch() + Time::ns(1));
}

TEST_CASE("Decode attention is bound by reading the KV cache", "[gpu]") {
  const GpuModel gpu(hand_worked());
  const ModelSpec* mixtral = find_model_preset("mixtral-8x7b");
  REQUIRE(mixtral != nullptr);
  const AttentionShape shape = attention_shape(*mixtral, 1, true);
  CHECK(shape.kv_elements_per_token == 2 * 8 * 128);
  // 64 sequences x 4096 cached tokens x 2048 elements x 2 bytes = 1 GiB.
  const int64_t kv_bytes = int64_t{64} * 4096 * 2048 * 2;
  REQUIRE(kv_bytes == int64_t{1} << 30);
  const Time t = gpu.attention_decode(64, 4096, shape, Dtype::kBf16);
  // 2^30 B / (3.35e12 B/s * 0.85) = 377.08 us, plus the launch.
  CHECK(t == transfer_time(Bytes(kv_bytes), h100().hbm_bandwidth * 0.85) + gpu.launch());
  CHECK((t - gpu.launch()).to_us() == Approx(377.08).epsilon(1e-4));
}

TEST_CASE("Prefill attention follows 4 L^2 d h FLOPs, halved when causal", "[gpu]") {
  const GpuModel gpu(h100());
  const AttentionShape shape = attention_shape(*find_model_preset("mixtral-8x7b"), 1, false);
  CHECK(shape.heads == 32);
  CHECK(shape.qk_head_dim == 128);
  const double length = 4096;
  const double flops = 4.0 * length * length * 128 * 32;  // one sequence
  const double eff =
      h100().attention_efficiency_max * length / (length + h100().attention_half_efficiency_length);
  const double expected_s = flops / (h100().peak_flops_bf16 * eff);
  const Time full = gpu.attention_prefill(1, 4096, shape, Dtype::kBf16, false);
  const Time causal = gpu.attention_prefill(1, 4096, shape, Dtype::kBf16, true);
  CHECK(seconds(full - gpu.launch()) == Approx(expected_s).epsilon(1e-6));
  CHECK(seconds(causal - gpu.launch()) == Approx(expected_s / 2).epsilon(1e-6));
  // Two sequences cost twice one.
  CHECK(seconds(gpu.attention_prefill(2, 4096, shape, Dtype::kBf16, false) - gpu.launch()) ==
        Approx(2 * expected_s).epsilon(1e-6));
}

TEST_CASE("Grouped expert FFN: all tokens on one expert versus spread evenly", "[gpu]") {
  const GpuModel gpu(hand_worked());
  const int32_t hidden = 4096, ffn = 14336;
  // One expert with 4096 rows: 6 * 4096 * 4096 * 14336 = 1.4431e12 FLOPs at
  // eff(4096) = 0.72 * 4096 / 4352 = 0.67765 of 989.4 TFLOPS = 2.1524 ms (its 352 MB of weights
  // take 0.124 ms: compute-bound).
  const std::vector<int32_t> one = {4096, 0, 0, 0, 0, 0, 0, 0};
  // Eight experts with 512 rows each: the same FLOPs at eff(512) = 0.72 * 512 / 768 = 0.48:
  // 3.0387 ms, and eight experts' weights read (still compute-bound).
  const std::vector<int32_t> spread(8, 512);
  const Time t_one = gpu.grouped_expert_ffn(one, hidden, ffn, Dtype::kBf16, 1);
  const Time t_spread = gpu.grouped_expert_ffn(spread, hidden, ffn, Dtype::kBf16, 1);
  const Time launches = gpu.launch() * 2;
  CHECK((t_one - launches).to_ms() == Approx(2.1524).epsilon(1e-4));
  CHECK((t_spread - launches).to_ms() == Approx(3.0387).epsilon(1e-4));
  // The same FLOPs at a lower efficiency: the ratio is eff(4096) / eff(512).
  CHECK(seconds(t_spread - launches) / seconds(t_one - launches) ==
        Approx((4096.0 / 4352.0) / (512.0 / 768.0)).epsilon(1e-6));
  // No rows at all: only the two launches.
  const std::vector<int32_t> none(8, 0);
  CHECK(gpu.grouped_expert_ffn(none, hidden, ffn, Dtype::kBf16, 1) == launches);
}

TEST_CASE("Grouped expert FFN: few rows are weight-read-bound; TP shards the weights", "[gpu]") {
  // A curve that saturates early (m_half = 16 rows), so that one row's compute, 352M FLOPs at
  // eff(1) = 0.72 / 17, takes 8.4 us against the 124 us weight read.
  GpuSpec spec = hand_worked();
  spec.gemm_half_efficiency_rows = 16;
  const GpuModel gpu(spec);
  // One row through one Mixtral expert: 3 * 4096 * 14336 * 2 B = 352.3 MB of weights plus
  // 4096*2 + 2*14336*2 + 4096*2 = 73,728 B of activations, at 3.35e12 * 0.85 B/s.
  const std::vector<int32_t> one_row = {1};
  const int64_t bytes = int64_t{3} * 4096 * 14336 * 2 + 4096 * 2 + 2 * 14336 * 2 + 4096 * 2;
  const Time expected = transfer_time(Bytes(bytes), h100().hbm_bandwidth * 0.85);
  CHECK(gpu.grouped_expert_ffn(one_row, 4096, 14336, Dtype::kBf16, 1) ==
        expected + gpu.launch() * 2);
  // Split 8 ways, each shard reads an eighth of the weights.
  const int64_t shard_bytes = int64_t{3} * 4096 * 1792 * 2 + 4096 * 2 + 2 * 1792 * 2 + 4096 * 2;
  CHECK(gpu.grouped_expert_ffn(one_row, 4096, 14336, Dtype::kBf16, 8) ==
        transfer_time(Bytes(shard_bytes), h100().hbm_bandwidth * 0.85) + gpu.launch() * 2);
}

TEST_CASE("Grouped expert FFN: the kernel family sets the FP8 plateau, not BF16's", "[gpu]") {
  // The hand-worked curve (0.72, m_half 256) with FP8 plateaus 0.45 (PyTorch's grouped kernel)
  // and 0.60 (DeepGEMM). Eight DeepSeek-V3 experts (hidden 7168, FFN 2048) of 1024 rows each:
  // 2 * 3 * 7168 * 2048 * 1024 = 90.19 GFLOP per expert, compute-bound at every plateau here
  // (the weights, 44 MB in FP8 per expert, stream in 15.5 us; the compute takes 79-160 us).
  GpuSpec spec = hand_worked();
  spec.pytorch_grouped_fp8_efficiency_max = 0.45;
  spec.deepgemm_fp8_efficiency_max = 0.60;
  const std::vector<int32_t> rows(8, 1024);
  const double flops = 8 * 2.0 * 3 * 7168 * 2048 * 1024;
  const double fill = 1024.0 / (1024.0 + 256.0);  // m / (m + m_half)
  auto ffn_s = [&](GroupedGemmKernel k, Dtype d) {
    spec.grouped_gemm_kernel = k;
    const GpuModel gpu(spec);
    return seconds(gpu.grouped_expert_ffn(rows, 7168, 2048, d, 1) - gpu.launch() * 2);
  };
  const double fp8_peak = h100().peak_flops_fp8, bf16_peak = h100().peak_flops_bf16;
  CHECK(ffn_s(GroupedGemmKernel::kCublasDense, Dtype::kFp8) ==
        Approx(flops / (fp8_peak * 0.72 * fill)).epsilon(1e-6));
  CHECK(ffn_s(GroupedGemmKernel::kPytorchGrouped, Dtype::kFp8) ==
        Approx(flops / (fp8_peak * 0.45 * fill)).epsilon(1e-6));
  CHECK(ffn_s(GroupedGemmKernel::kDeepGemm, Dtype::kFp8) ==
        Approx(flops / (fp8_peak * 0.60 * fill)).epsilon(1e-6));
  // BF16 runs at the dense curve in every family.
  for (GroupedGemmKernel k : {GroupedGemmKernel::kCublasDense, GroupedGemmKernel::kPytorchGrouped,
                              GroupedGemmKernel::kDeepGemm}) {
    CHECK(ffn_s(k, Dtype::kBf16) == Approx(flops / (bf16_peak * 0.72 * fill)).epsilon(1e-6));
  }
  // Dense GEMMs keep the dense curve whatever the family.
  spec.grouped_gemm_kernel = GroupedGemmKernel::kPytorchGrouped;
  CHECK(GpuModel(spec).gemm(4096, 4096, 4096, Dtype::kFp8) ==
        GpuModel(hand_worked()).gemm(4096, 4096, 4096, Dtype::kFp8));
  CHECK(grouped_gemm_kernel_from_name("deepgemm") == GroupedGemmKernel::kDeepGemm);
  CHECK(!grouped_gemm_kernel_from_name("cutlass"));
}

TEST_CASE("GPU model rejects impossible shapes", "[gpu]") {
  const GpuModel gpu(h100());
  const std::vector<int32_t> bad = {-1};
  CHECK_THROWS_AS(gpu.grouped_expert_ffn(bad, 4096, 14336, Dtype::kBf16, 1), std::invalid_argument);
  CHECK_THROWS_AS(gpu.gemm(-1, 2, 3, Dtype::kBf16), std::invalid_argument);
  CHECK_THROWS_AS(attention_shape(*find_model_preset("dbrx"), 0, false), std::invalid_argument);
}

TEST_CASE("MLA attention shapes follow DeepSeek-V3's dimensions", "[gpu]") {
  const ModelSpec& ds = *find_model_preset("deepseek-v3");
  const AttentionShape decode = attention_shape(ds, 1, true);
  CHECK(decode.qk_head_dim == 512 + 64);
  CHECK(decode.v_head_dim == 512);
  CHECK(decode.kv_elements_per_token == 576);
  const AttentionShape prefill = attention_shape(ds, 8, false);
  CHECK(prefill.heads == 16);
  CHECK(prefill.qk_head_dim == 192);
  CHECK(prefill.v_head_dim == 128);
}

}  // namespace
}  // namespace moesim
