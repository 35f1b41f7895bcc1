// A GPU type as the compute model sees it: dense tensor-core peaks per precision, HBM bandwidth
// and capacity, and the efficiency parameters of the roofline; plus the built-in presets.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "core/units.h"

namespace moesim {

// Element data types of weights, activations and messages.
enum class Dtype : uint8_t { kFp32, kBf16, kFp16, kFp8 };

constexpr int32_t dtype_bytes(Dtype d) {
  switch (d) {
    case Dtype::kFp32:
      return 4;
    case Dtype::kBf16:
      return 2;
    case Dtype::kFp16:
      return 2;
    case Dtype::kFp8:
      return 1;
  }
  return 0;
}
std::string_view dtype_name(Dtype d);
// "fp32", "bf16", "fp16", "fp8"; nullopt for anything else.
std::optional<Dtype> dtype_from_name(std::string_view name);

// The kernel family that runs the routed experts' grouped GEMMs; with the dtype it sets their
// efficiency curve (GpuSpec::grouped_gemm_efficiency_max). BF16 grouped products run at the
// dense curve in every family: on the H100 and H200 torch._grouped_mm with 8 or more experts per
// GPU is within 3% (H100) and 7% (H200) of it at the median (models/gpu/calibration/README.md).
enum class GroupedGemmKernel : uint8_t {
  // Each expert's product at cuBLAS's dense curve (gemm_efficiency_max): the model before the
  // families existed, and the default.
  kCublasDense,
  // PyTorch's grouped kernels: torch._grouped_mm (BF16) and torch._scaled_grouped_mm (FP8 with
  // row-wise scales), the kernels measure_kernels.py timed.
  kPytorchGrouped,
  // DeepSeek's DeepGEMM (github.com/deepseek-ai/DeepGEMM): FP8 grouped GEMMs with 128-element
  // block scales, the kernels DeepSeek-V3's FP8 MoE training and serving run.
  kDeepGemm,
};
// "cublas-dense", "pytorch-grouped", "deepgemm"; nullopt for anything else.
std::string_view grouped_gemm_kernel_name(GroupedGemmKernel k);
std::optional<GroupedGemmKernel> grouped_gemm_kernel_from_name(std::string_view name);

struct GpuSpec {
  std::string name;
  // Where the preset's numbers come from; "uncalibrated" when no kernel was timed on it.
  std::string description;
  // Dense (not 2:4 sparse) tensor-core peaks, FLOP/s. FP16 runs at the BF16 rate; FP32 GEMMs are
  // taken at the TF32 rate, half the BF16 rate on every preset's data sheet.
  double peak_flops_bf16 = 0.0;
  double peak_flops_fp8 = 0.0;
  Bandwidth hbm_bandwidth;
  Bytes hbm_capacity;

  // Matrix-product efficiency with m rows (tokens): eff(m) = gemm_efficiency_max * m /
  // (m + gemm_half_efficiency_rows). A skinny product cannot fill the SMs' tiles, so achieved
  // FLOP/s rise with m toward a plateau below peak.
  double gemm_efficiency_max = 0.70;
  double gemm_half_efficiency_rows = 32.0;
  // Fused attention's efficiency with sequence length L, of the same form: eff(L) =
  // attention_efficiency_max * L / (L + attention_half_efficiency_length). Softmax and causal
  // masking keep it below the GEMMs' at short sequences.
  double attention_efficiency_max = 0.66;
  double attention_half_efficiency_length = 384.0;
  // Achieved over nominal HBM bandwidth for streaming kernels (and GEMMs' weight reads).
  double memory_efficiency = 0.80;
  // Fixed cost of each kernel (launch, pipeline fill, tail), added to every kernel's roofline.
  Time kernel_launch = Time::us(8);
  // The routed experts' grouped GEMMs: the kernel family, and the FP8 plateau of the two
  // families that do not run at the dense curve (same half-efficiency rows as the dense curve;
  // each preset says where its values come from). Without a preset: the H100's.
  GroupedGemmKernel grouped_gemm_kernel = GroupedGemmKernel::kCublasDense;
  double pytorch_grouped_fp8_efficiency_max = 0.43;
  double deepgemm_fp8_efficiency_max = 0.66;

  // Peak FLOP/s for GEMMs in `d`.
  double peak_flops(Dtype d) const;
  // The plateau of the routed experts' grouped GEMMs in `d` with this spec's kernel family:
  // gemm_efficiency_max but for FP8 in the PyTorch and DeepGEMM families.
  double grouped_gemm_efficiency_max(Dtype d) const;
};

// The built-in GPU types: a100-80gb, h100-sxm, h800, h200, b200, gb200, and the consumer and
// workstation parts a100-40gb-pcie, l4, t4, rtx3060-12gb, rtx4090 (uncalibrated).
std::span<const GpuSpec> gpu_presets();
// nullptr when `name` is not a preset.
const GpuSpec* find_gpu_preset(std::string_view name);

}  // namespace moesim
