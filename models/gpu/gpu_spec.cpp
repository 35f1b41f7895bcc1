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

double GpuSpec::grouped_gemm_efficiency_max(Dtype d) const {
  if (d != Dtype::kFp8) return gemm_efficiency_max;
  switch (grouped_gemm_kernel) {
    case GroupedGemmKernel::kCublasDense:
      return gemm_efficiency_max;
    case GroupedGemmKernel::kPytorchGrouped:
      return pytorch_grouped_fp8_efficiency_max;
    case GroupedGemmKernel::kDeepGemm:
      return deepgemm_fp8_efficiency_max;
  }
  return gemm_efficiency_max;
}

std::string_view grouped_gemm_kernel_name(GroupedGemmKernel k) {
  switch (k) {
    case GroupedGemmKernel::kCublasDense:
      return "cublas-dense";
    case GroupedGemmKernel::kPytorchGrouped:
      return "pytorch-grouped";
    case GroupedGemmKernel::kDeepGemm:
      return "deepgemm";
  }
  return "?";
}

std::optional<GroupedGemmKernel> grouped_gemm_kernel_from_name(std::string_view name) {
  for (GroupedGemmKernel k : {GroupedGemmKernel::kCublasDense, GroupedGemmKernel::kPytorchGrouped,
                              GroupedGemmKernel::kDeepGemm}) {
    if (grouped_gemm_kernel_name(k) == name) return k;
  }
  return std::nullopt;
}

namespace {

// H100 and H800 (the same chip; H800 only has NVLink cut): calibrated on an H100 SXM
// (models/gpu/calibration/README.md has the method, the 673 measurements and the fit). Dense
// cuBLAS BF16 and FP8 GEMMs and BF16 grouped (torch._grouped_mm) GEMMs at DeepSeek-V3, Qwen3 and
// Mixtral expert shapes, 1 to 16384 rows, L2 flushed between repetitions: the roofline with
// eff_max 0.70, m_half 32, memory efficiency 0.80 and 8 us per kernel has a median error of 8%
// (90th percentile 21%) over these 500 GEMM points (the old uncalibrated 0.72 / 256 / 0.85 /
// 4 us: 15% and 53%). A 2 GiB copy moved 3.02 TB/s (0.90 of 3.35); GEMMs stream weights at
// 2.5-2.8 TB/s, decode attention reads KV at 2.8-3.1 TB/s: one memory efficiency of 0.80 sits
// between them. Causal prefill attention (cuDNN, head dim 128) reached 0.36, 0.47, 0.55, 0.56
// and 0.64 of peak at L = 512 to 8192: eff_max 0.66, L_half 384. 8 us per kernel is the fitted
// fixed cost of a kernel timed on its own (launch, pipeline fill, tail); back-to-back tiny
// kernels cost 1.0 us each from a CUDA graph and 10 us each from eager PyTorch (CPU-bound). FP8
// grouped GEMMs (PyTorch's row-wise kernel) run 30-40% slower than this: see the kernel families
// below.
// H200: the same 673 kernels measured on one lent H200 SXM (models/gpu/calibration/h200.csv,
// 2026-12-04: 132 SMs, driver 580.159.04, PyTorch 2.11 with CUDA 13.0) and fitted by the same
// grid search (fit_gpu_efficiency there): eff_max 0.71, m_half 32, memory efficiency 0.66, 7 us
// per kernel, attention eff_max 0.65 and L_half 352. Over the 500 GEMM points: median 7%, 90th
// percentile 20% (the H100 fit: 10% and 31%); grouped BF16 expert FFNs with 8 or 32 experts per
// GPU 7% (17%), where the H100 fit borrowed with H200's bandwidth gave 8% (36%), model too fast.
// Mixtral's expert weights stream at 3.45 TB/s (gate/up) and 2.8 TB/s (down), 1.4x the H100's,
// the ratio of the two HBMs; the fitted 0.66 of 4.8 TB/s (3.17) sits among such rates with the
// fixed cost, and the borrowed 0.80 (3.84 TB/s) read weights faster than the H200 does. Copies
// (4.24 TB/s) and decode KV reads (up to 4.6 TB/s) run faster than the one memory efficiency.
//
// Not calibrated (no such GPU lent to this project), from public figures:
// - A100: cuBLAS BF16 reaches about 250-270 of 312 TFLOPS (0.80-0.85) on large GEMMs (NVIDIA's
//   published MLPerf-era figures); smaller tiles saturate earlier: m_half 128. HBM: 0.85.
// - Blackwell (B200/GB200): our assumption, with no public grouped-GEMM curve to cite: its
//   2-CTA MMA tiles are 256 rows, so more rows are needed to fill them (m_half 384), and a
//   plateau like Hopper's (0.70); HBM 0.85.
// For these attention takes the GEMM curve and a kernel costs 4 us.
//
// FP8 grouped GEMMs by kernel family (GroupedGemmKernel; BF16 grouped products take the dense
// curve in every family, which the BF16 grouped expert FFNs above follow):
// - cublas-dense: the dense plateau (gemm_max), what the model used for every grouped GEMM before
//   the families, and the default.
// - pytorch-grouped (torch._scaled_grouped_mm, row-wise scales): its plateau fitted by
//   fit_gpu_efficiency on each GPU's own FP8 grouped expert FFNs with 8 or 32 experts (48
//   points), the other parameters the preset's: 0.43 on both (median error 18% on the H100, 19%
//   on the H200; 90th percentile 47%, 49%; cublas-dense's plateau: 42% and 44%, 129% and 125%).
//   Each GPU's fit gives the same 0.43, so the H100's value, held out on the H200's
//   measurements, has the H200 fit's errors. The H200 borrows DeepGEMM's H800 figure (the same
//   SMs and clocks).
// - deepgemm: DeepGEMM's FP8 grouped kernels were not available on the lent machines. Its plateau
//   is fitted to one figure of DeepGEMM's README (first release, H800, NVCC 12.8): the contiguous
//   grouped GEMM of 8 groups of 4096 rows, n 4096, k 7168 at 1288 TFLOPS, with the H100's m_half
//   and fixed cost: 0.66 of the FP8 peak. The README's other grouped figures are held out
//   (models/gpu/calibration/README.md, "Kernel families").
// Presets without FP8 measurements borrow the H100's FP8 plateaus: a100-80gb (no FP8 tensor
// cores: FP8 runs at the BF16 rate anyway), b200 and gb200 (no Blackwell measurement; expect
// at least the H100's FP8 grouped errors, README's tables).
struct Efficiency {
  double gemm_max;
  double gemm_half_rows;
  double attention_max;
  double attention_half_length;
  double memory;
  Time kernel;
  double pytorch_grouped_fp8_max;
  double deepgemm_fp8_max;
};

constexpr double kDeepGemmFp8Max = 0.66;
constexpr Efficiency kH100Measured{0.70, 32.0,        0.66, 384.0,
                                   0.80, Time::us(8), 0.43, kDeepGemmFp8Max};
constexpr Efficiency kH200Measured{0.71, 32.0,        0.65, 352.0,
                                   0.66, Time::us(7), 0.43, kDeepGemmFp8Max};
constexpr Efficiency kA100Assumed{
    0.82,           128.0, 0.82, 128.0, 0.85, Time::us(4), kH100Measured.pytorch_grouped_fp8_max,
    kDeepGemmFp8Max};
constexpr Efficiency kBlackwellAssumed{
    0.70,           384.0, 0.70, 384.0, 0.85, Time::us(4), kH100Measured.pytorch_grouped_fp8_max,
    kDeepGemmFp8Max};

GpuSpec make(std::string name, double bf16_tflops, double fp8_tflops, double hbm_tb_per_s,
             int64_t hbm_gb, const Efficiency& eff) {
  GpuSpec g;
  g.name = std::move(name);
  g.peak_flops_bf16 = bf16_tflops * 1e12;
  g.peak_flops_fp8 = fp8_tflops * 1e12;
  g.hbm_bandwidth = Bandwidth::gigabytes_per_s(hbm_tb_per_s * 1e3);
  g.hbm_capacity = Bytes(hbm_gb * 1'000'000'000);
  g.gemm_efficiency_max = eff.gemm_max;
  g.gemm_half_efficiency_rows = eff.gemm_half_rows;
  g.attention_efficiency_max = eff.attention_max;
  g.attention_half_efficiency_length = eff.attention_half_length;
  g.memory_efficiency = eff.memory;
  g.kernel_launch = eff.kernel;
  g.pytorch_grouped_fp8_efficiency_max = eff.pytorch_grouped_fp8_max;
  g.deepgemm_fp8_efficiency_max = eff.deepgemm_fp8_max;
  return g;
}

GpuSpec uncalibrated(GpuSpec g, const char* sheet) {
  g.description = std::string("uncalibrated: ") + sheet;
  return g;
}

// Consumer and workstation parts for serving with offloaded experts: data-sheet peaks, no
// kernel timed on any of them, so the A100's assumed efficiencies (GDDR6/GDDR6X streams at a
// similar fraction of its nominal rate as HBM2e). GeForce cards run BF16/FP16 tensor math with
// FP32 accumulation at half their FP16-accumulate rate; that half is the figure taken. No FP8
// tensor cores before Ada: FP8 at the BF16 rate.
constexpr Efficiency kWorkstationAssumed = kA100Assumed;

std::array<GpuSpec, 11> make_presets() {
  return {
      // NVIDIA A100 Tensor Core GPU data sheet, 80GB SXM: BF16 312 TFLOPS dense, HBM2e
      // 2,039 GB/s. No FP8 tensor cores: FP8 is taken at the BF16 rate.
      make("a100-80gb", 312.0, 312.0, 2.039, 80, kA100Assumed),
      // NVIDIA H100 Tensor Core GPU data sheet, H100 SXM: BF16 1,979 and FP8 3,958 TFLOPS with
      // sparsity, so 989.4 and 1,978.9 dense; HBM3 3.35 TB/s, 80 GB.
      make("h100-sxm", 989.4, 1978.9, 3.35, 80, kH100Measured),
      // H800 SXM (the export variant of H100 SXM: same SMs and HBM, NVLink cut to 400 GB/s,
      // which is the topology's business); DeepSeek-V3 report's training GPU.
      make("h800", 989.4, 1978.9, 3.35, 80, kH100Measured),
      // NVIDIA H200 Tensor Core GPU data sheet, H200 SXM: H100's compute, HBM3e 4.8 TB/s,
      // 141 GB.
      make("h200", 989.4, 1978.9, 4.8, 141, kH200Measured),
      // NVIDIA HGX B200 data sheet: 8 GPUs give 36 PFLOPS FP16/BF16 and 72 PFLOPS FP8 with
      // sparsity, so 2.25 and 4.5 PFLOPS dense per GPU; 1.4 TB HBM3e (180 GB per GPU), 64 TB/s
      // (8 TB/s per GPU).
      make("b200", 2250.0, 4500.0, 8.0, 180, kBlackwellAssumed),
      // NVIDIA GB200 NVL72 data sheet: 72 GPUs give 360 PFLOPS FP16/BF16 and 720 PFLOPS FP8
      // with sparsity, so 2.5 and 5 PFLOPS dense per GPU; GB200 superchip: 384 GB HBM3e and
      // 16 TB/s for its two GPUs, so 192 GB and 8 TB/s per GPU.
      make("gb200", 2500.0, 5000.0, 8.0, 192, kBlackwellAssumed),
      // NVIDIA A100 Tensor Core GPU data sheet, 40GB PCIe: BF16 312 TFLOPS dense, HBM2
      // 1,555 GB/s.
      uncalibrated(make("a100-40gb-pcie", 312.0, 312.0, 1.555, 40, kWorkstationAssumed),
                   "A100 40GB PCIe data sheet"),
      // NVIDIA L4 data sheet: BF16 242 and FP8 485 TFLOPS with sparsity (121 and 242.5 dense),
      // GDDR6 300 GB/s, 24 GB.
      uncalibrated(make("l4", 121.0, 242.5, 0.300, 24, kWorkstationAssumed), "L4 data sheet"),
      // NVIDIA T4 data sheet: 65 TFLOPS FP16 mixed precision (dense; Turing has no BF16, taken
      // at the FP16 rate), GDDR6 320 GB/s, 16 GB.
      uncalibrated(make("t4", 65.0, 65.0, 0.320, 16, kWorkstationAssumed), "T4 data sheet"),
      // GeForce RTX 3060 12 GB (GA106, NVIDIA Ampere GA10x architecture whitepaper's table
      // scaled to 28 SMs at 1.777 GHz): FP16 tensor with FP32 accumulate 25.6 TFLOPS dense;
      // GDDR6 192-bit at 15 Gbps, 360 GB/s.
      uncalibrated(make("rtx3060-12gb", 25.6, 25.6, 0.360, 12, kWorkstationAssumed),
                   "GeForce RTX 3060 12GB specifications, Ampere GA10x whitepaper"),
      // GeForce RTX 4090 (NVIDIA Ada Lovelace architecture whitepaper, appendix table): FP16
      // tensor with FP32 accumulate 165.2 and FP8 330.3 TFLOPS dense; GDDR6X 1,008 GB/s, 24 GB.
      uncalibrated(make("rtx4090", 165.2, 330.3, 1.008, 24, kWorkstationAssumed),
                   "Ada Lovelace architecture whitepaper"),
  };
}

}  // namespace

std::span<const GpuSpec> gpu_presets() {
  static const std::array<GpuSpec, 11> presets = make_presets();
  return presets;
}

const GpuSpec* find_gpu_preset(std::string_view name) {
  for (const GpuSpec& g : gpu_presets()) {
    if (g.name == name) return &g;
  }
  return nullptr;
}

}  // namespace moesim
