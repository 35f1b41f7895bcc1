// fit_gpu_efficiency MEASUREMENTS.csv PRESET [FROM]: fits a GPU preset's efficiency parameters
// to kernel times measured by measure_kernels.py, by the grid search of this folder's README.
//
// The preset gives the peaks and the HBM bandwidth; the efficiency parameters start from those of
// preset FROM (default PRESET), whose errors are printed first, and are replaced by the
// grid point minimising the median plus the 90th percentile of |ln(model / measured)| over the
// dense GEMMs (BF16 and FP8) and the BF16 grouped expert FFNs with several experts per GPU:
// eff_max, m_half, memory efficiency and the fixed cost per kernel k0 together. The attention
// curve (eff_max, L_half) is then fitted the same way on causal prefill attention, with the
// memory efficiency and k0 just fitted. Times come from GpuModel itself, so the fit and the
// simulator share one set of formulas. Prints the error table of the preset as it is, the fitted
// parameters and the error table with them. First, the FP8 plateau of PyTorch's grouped kernel
// (GpuSpec::pytorch_grouped_fp8_efficiency_max) is fitted the same way on the FP8 grouped expert
// FFNs with 8 or 32 experts per GPU, with the other parameters of FROM as they are (the
// preset's, not the refit's: a preset keeps the curve its figures were built on).
#include <algorithm>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "models/gpu/calibration/kernel_measurements.h"
#include "models/gpu/gpu_model.h"
#include "models/gpu/gpu_spec.h"

namespace moesim::calibration {
namespace {

// The kinds of kernel the GEMM parameters are fitted on: the products the simulator times with
// gemm() and grouped_expert_ffn() and that the model is meant to follow (one-expert and FP8
// grouped kernels are known misses, see the README, and would pull the plateau toward them).
constexpr KernelClass kGemmFitClasses[] = {KernelClass::kDenseGemmBf16, KernelClass::kDenseGemmFp8,
                                           KernelClass::kGroupedGemmBf16};
constexpr KernelClass kTableClasses[] = {KernelClass::kDenseGemmBf16,
                                         KernelClass::kDenseGemmFp8,
                                         KernelClass::kGroupedGemmBf16,
                                         KernelClass::kExpertFfnBf16Many,
                                         KernelClass::kExpertFfnBf16One,
                                         KernelClass::kExpertFfnFp8Many,
                                         KernelClass::kExpertFfnFp8One,
                                         KernelClass::kExpertFfnStreamed,
                                         KernelClass::kAttentionPrefill,
                                         KernelClass::kAttentionDecode,
                                         KernelClass::kCopy};

// The grid, in whole steps so that every point prints as written.
constexpr int kEffMaxPercentFrom = 50, kEffMaxPercentTo = 95;  // step 0.01
constexpr int kFp8EffMaxPercentFrom = 20;  // the FP8 grouped plateau: 0.20-0.95, step 0.01
constexpr double kHalfRows[] = {4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512};
constexpr int kMemoryPercentFrom = 60, kMemoryPercentTo = 98;  // step 0.01
constexpr int kKernelHalfUsTo = 32;                            // 0 to 16 us, step 0.5 us
constexpr size_t kWorstShown = 3;
constexpr int kAttentionHalfLengthStep = 32, kAttentionHalfLengthTo = 2048;

// Median plus 90th percentile of the log errors of `model` over `cases`.
double objective(const GpuModel& model, const std::vector<KernelCase>& cases,
                 std::vector<double>& errors) {
  errors.clear();
  for (const KernelCase& c : cases) {
    errors.push_back(Comparison{{}, c.model_time(model).to_s(), c.measured_s}.log_error());
  }
  return quantile(errors, 0.5) + quantile(errors, 0.9);
}

void print_fit(const char* what, const GpuModel& model, const std::vector<KernelCase>& cases) {
  const ErrorSummary s = summarize(compare(model, cases));
  std::printf("%s: %zu points, |ln(model / measured)| median %.4f + 90th percentile %.4f = %.4f\n",
              what, s.points, s.median, s.p90, s.median + s.p90);
}

void print_parameters(const GpuSpec& g) {
  std::printf(
      "gemm_efficiency_max %.2f, gemm_half_efficiency_rows %g, memory_efficiency %.2f, "
      "kernel_launch %g us; attention_efficiency_max %.2f, attention_half_efficiency_length %g\n",
      g.gemm_efficiency_max, g.gemm_half_efficiency_rows, g.memory_efficiency,
      g.kernel_launch.to_us(), g.attention_efficiency_max, g.attention_half_efficiency_length);
}

int run(const std::string& path, const std::string& preset, const std::string& from) {
  const std::vector<KernelMeasurement> measurements = read_kernel_measurements(path);
  const GpuSpec* chip = find_gpu_preset(preset);
  const GpuSpec* parameters = find_gpu_preset(from);
  if (!chip || !parameters) {
    std::fprintf(stderr, "no GPU preset '%s'\n", (chip ? from : preset).c_str());
    return 2;
  }
  GpuSpec start = *parameters;
  start.name = chip->name;
  start.peak_flops_bf16 = chip->peak_flops_bf16;
  start.peak_flops_fp8 = chip->peak_flops_fp8;
  start.hbm_bandwidth = chip->hbm_bandwidth;
  start.hbm_capacity = chip->hbm_capacity;
  std::printf("%s: %zu measurements; preset %s with the efficiency parameters of %s\n\n",
              path.c_str(), measurements.size(), preset.c_str(), from.c_str());
  std::printf("Before: ");
  print_parameters(start);
  std::printf("\n%s\n", error_table(GpuModel(start), measurements, kTableClasses).c_str());

  std::vector<double> errors;
  GpuSpec fp8 = start;
  fp8.grouped_gemm_kernel = GroupedGemmKernel::kPytorchGrouped;
  const std::vector<KernelCase> fp8_cases =
      kernel_cases(measurements, KernelClass::kExpertFfnFp8Many);
  double best_fp8 = 1e300;
  double best_fp8_max = fp8.pytorch_grouped_fp8_efficiency_max;
  for (int eff = kFp8EffMaxPercentFrom; eff <= kEffMaxPercentTo; ++eff) {
    fp8.pytorch_grouped_fp8_efficiency_max = eff / 100.0;
    const double o = objective(GpuModel(fp8), fp8_cases, errors);
    if (o < best_fp8) {
      best_fp8 = o;
      best_fp8_max = fp8.pytorch_grouped_fp8_efficiency_max;
    }
  }
  fp8.pytorch_grouped_fp8_efficiency_max = best_fp8_max;
  std::printf("\nPyTorch grouped FP8 plateau, with %s's other parameters: %.2f\n", from.c_str(),
              best_fp8_max);
  print_fit("FP8 grouped expert FFN fit, the best grid point", GpuModel(fp8), fp8_cases);
  constexpr KernelClass kFp8Classes[] = {KernelClass::kExpertFfnFp8Many,
                                         KernelClass::kExpertFfnFp8One};
  std::printf("\n%s", error_table(GpuModel(fp8), measurements, kFp8Classes).c_str());

  std::vector<KernelCase> gemm_cases;
  for (KernelClass c : kGemmFitClasses) {
    for (KernelCase& k : kernel_cases(measurements, c)) gemm_cases.push_back(std::move(k));
  }
  GpuSpec best = start;
  double best_objective = objective(GpuModel(best), gemm_cases, errors);
  print_fit("GEMM fit over the dense and grouped GEMMs, the preset as it is", GpuModel(best),
            gemm_cases);
  GpuSpec g = start;
  for (int eff = kEffMaxPercentFrom; eff <= kEffMaxPercentTo; ++eff) {
    g.gemm_efficiency_max = eff / 100.0;
    for (double half : kHalfRows) {
      g.gemm_half_efficiency_rows = half;
      for (int mem = kMemoryPercentFrom; mem <= kMemoryPercentTo; ++mem) {
        g.memory_efficiency = mem / 100.0;
        for (int half_us = 0; half_us <= kKernelHalfUsTo; ++half_us) {
          g.kernel_launch = Time::ns(500 * half_us);
          const double o = objective(GpuModel(g), gemm_cases, errors);
          if (o < best_objective) {
            best_objective = o;
            best = g;
          }
        }
      }
    }
  }
  print_fit("GEMM fit, the best grid point", GpuModel(best), gemm_cases);

  const std::vector<KernelCase> attention_cases =
      kernel_cases(measurements, KernelClass::kAttentionPrefill);
  print_fit("attention fit, as it is", GpuModel(best), attention_cases);
  double best_attention = objective(GpuModel(best), attention_cases, errors);
  g = best;
  for (int eff = kEffMaxPercentFrom; eff <= kEffMaxPercentTo; ++eff) {
    g.attention_efficiency_max = eff / 100.0;
    for (int half = kAttentionHalfLengthStep; half <= kAttentionHalfLengthTo;
         half += kAttentionHalfLengthStep) {
      g.attention_half_efficiency_length = half;
      const double o = objective(GpuModel(g), attention_cases, errors);
      if (o < best_attention) {
        best_attention = o;
        best.attention_efficiency_max = g.attention_efficiency_max;
        best.attention_half_efficiency_length = g.attention_half_efficiency_length;
      }
    }
  }
  print_fit("attention fit, the best grid point", GpuModel(best), attention_cases);
  std::printf("\nFitted: ");
  print_parameters(best);
  std::printf("\n%s", error_table(GpuModel(best), measurements, kTableClasses).c_str());
  std::printf("\nThe %zu worst points of each kind with the fitted parameters:\n", kWorstShown);
  for (KernelClass c : kTableClasses) {
    std::vector<Comparison> worst = compare(GpuModel(best), kernel_cases(measurements, c));
    std::sort(worst.begin(), worst.end(), [](const Comparison& a, const Comparison& b) {
      return a.log_error() > b.log_error();
    });
    if (worst.size() > kWorstShown) worst.resize(kWorstShown);
    for (const Comparison& w : worst) {
      std::printf("  %-60s model %9.1f us, measured %9.1f us\n", w.label.c_str(), w.model_s * 1e6,
                  w.measured_s * 1e6);
    }
  }

  return 0;
}

}  // namespace
}  // namespace moesim::calibration

int main(int argc, char** argv) {
  if (argc != 3 && argc != 4) {
    std::fprintf(stderr, "usage: %s MEASUREMENTS.csv PRESET [FROM]\n", argv[0]);
    return 2;
  }
  try {
    return moesim::calibration::run(argv[1], argv[2], argv[argc - 1]);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
