// Dtype names and the built-in GPU presets, each from its NVIDIA data sheet (dense, not 2:4
// sparse, tensor-core peaks; sheets print the sparse figure, twice the dense one).
#include "models/gpu/gpu_spec.h"

#include <array>

namespace moesim {

std::string_view dtype_name(Dtype d) {
  switch (d) {
    case Dtype::kFp32:
      return "fp32";
    case Dtype::kBf16:
      return "bf16";
    case Dtype::kFp16:
      return "fp16";
    case Dtype::kFp8:
      return "fp8";
  }
  return "?";
}

std::optional<Dtype> dtype_from_name(std::string_view name) {
  for (Dtype d : {Dtype::kFp32, Dtype::kBf16, Dtype::kFp16, Dtype::kFp8}) {
    if (dtype_name(d) == name) return d;
  }
  return std::nullopt;
}

double GpuSpec::peak_flops(Dtype d) const {
  switch (d) {
    case Dtype::kFp8:
      return peak_flops_fp8;
    case Dtype::kBf16:
    case Dtype::kFp16:
      return peak_flops_bf16;
    case Dtype::kFp32:
      return peak_flops_bf16 / 2.0;  // TF32 tensor cores
  }
  return 0.0;
}

namespace {

// The efficiency parameters are not calibrated by us (no GPU in this project's sessions); they
// come from public measurements:
// - Hopper (H100/H800/H200): DeepGEMM's README (deepseek-ai/DeepGEMM, H800, FP8) reports about
//   1,350-1,550 TFLOPS for large dense GEMMs (0.70-0.78 of the 1,979 peak) and about 206 and
//   352 TFLOPS for m = 64 and 128 at n = 2112, k = 7168. eff_max * m / (m + m_half) with
//   eff_max 0.72 gives m_half near 380 from both small-m points; for the wider n of expert
//   FFNs tiles fill better, so we take m_half = 256. cuBLAS BF16 on H100 reaches 700-750 of
//   989 TFLOPS on large squares, consistent with 0.72. STREAM-like copies reach about 2.9 of
//   3.35 TB/s: memory efficiency 0.85.
// - A100: cuBLAS BF16 reaches about 250-270 of 312 TFLOPS (0.80-0.85) on large GEMMs (NVIDIA's
//   published MLPerf-era figures); smaller tiles saturate earlier: m_half 128. HBM: 0.85.
// - Blackwell (B200/GB200): our assumption, with no public grouped-GEMM curve to cite: its
//   2-CTA MMA tiles are 256 rows, so more rows are needed to fill them (m_half 384), and a
//   plateau like Hopper's (0.70); HBM 0.85.
// The figures above are quoted from memory of the cited pages; recheck them on a GPU.
// Kernel launch plus tail: about 4 us per kernel without CUDA graphs on every generation.
GpuSpec make(std::string name, double bf16_tflops, double fp8_tflops, double hbm_tb_per_s,
             int64_t hbm_gb, double eff_max, double m_half) {
  GpuSpec g;
  g.name = std::move(name);
  g.peak_flops_bf16 = bf16_tflops * 1e12;
  g.peak_flops_fp8 = fp8_tflops * 1e12;
  g.hbm_bandwidth = Bandwidth::gigabytes_per_s(hbm_tb_per_s * 1e3);
  g.hbm_capacity = Bytes(hbm_gb * 1'000'000'000);
  g.gemm_efficiency_max = eff_max;
  g.gemm_half_efficiency_rows = m_half;
  g.memory_efficiency = 0.85;
  g.kernel_launch = Time::us(4);
  return g;
}

std::array<GpuSpec, 6> make_presets() {
  return {
      // NVIDIA A100 Tensor Core GPU data sheet, 80GB SXM: BF16 312 TFLOPS dense, HBM2e
      // 2,039 GB/s. No FP8 tensor cores: FP8 is taken at the BF16 rate.
      make("a100-80gb", 312.0, 312.0, 2.039, 80, 0.82, 128.0),
      // NVIDIA H100 Tensor Core GPU data sheet, H100 SXM: BF16 1,979 and FP8 3,958 TFLOPS with
      // sparsity, so 989.4 and 1,978.9 dense; HBM3 3.35 TB/s, 80 GB.
      make("h100-sxm", 989.4, 1978.9, 3.35, 80, 0.72, 256.0),
      // H800 SXM (the export variant of H100 SXM: same SMs and HBM, NVLink cut to 400 GB/s,
      // which is the topology's business); DeepSeek-V3 report's training GPU.
      make("h800", 989.4, 1978.9, 3.35, 80, 0.72, 256.0),
      // NVIDIA H200 Tensor Core GPU data sheet, H200 SXM: H100's compute, HBM3e 4.8 TB/s,
      // 141 GB.
      make("h200", 989.4, 1978.9, 4.8, 141, 0.72, 256.0),
      // NVIDIA HGX B200 data sheet: 8 GPUs give 36 PFLOPS FP16/BF16 and 72 PFLOPS FP8 with
      // sparsity, so 2.25 and 4.5 PFLOPS dense per GPU; 1.4 TB HBM3e (180 GB per GPU), 64 TB/s
      // (8 TB/s per GPU).
      make("b200", 2250.0, 4500.0, 8.0, 180, 0.70, 384.0),
      // NVIDIA GB200 NVL72 data sheet: 72 GPUs give 360 PFLOPS FP16/BF16 and 720 PFLOPS FP8
      // with sparsity, so 2.5 and 5 PFLOPS dense per GPU; GB200 superchip: 384 GB HBM3e and
      // 16 TB/s for its two GPUs, so 192 GB and 8 TB/s per GPU.
      make("gb200", 2500.0, 5000.0, 8.0, 192, 0.70, 384.0),
  };
}

}  // namespace

std::span<const GpuSpec> gpu_presets() {
  static const std::array<GpuSpec, 6> presets = make_presets();
  return presets;
}

const GpuSpec* find_gpu_preset(std::string_view name) {
  for (const GpuSpec& g : gpu_presets()) {
    if (g.name == name) return &g;
  }
  return nullptr;
}

}  // namespace moesim
