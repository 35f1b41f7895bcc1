// Kernel times measured by measure_kernels.py (h100-sxm.csv, h200.csv) read back, and a GpuModel's
// errors against them by kind of kernel: shared by the calibration tests and the fit program.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "models/gpu/gpu_model.h"

namespace moesim::calibration {

// One row of a measurement file: kind,dtype,m,n,k,groups,dist,time_us,note.
struct KernelMeasurement {
  std::string kind;  // gemm, grouped, grouped_stream, attn_prefill, attn_decode, copy, ...
  std::string dtype;
  int64_t m = 0, n = 0, k = 0, groups = 0;
  std::string dist;
  double time_s = 0.0;
  // Rows per expert of a skewed (zipf) grouped GEMM, from the note; empty otherwise.
  std::vector<int32_t> rows_per_expert;
};

// Reads a file written by measure_kernels.py; throws std::runtime_error when it cannot be read
// or a row is malformed.
std::vector<KernelMeasurement> read_kernel_measurements(const std::string& path);

// The kinds of kernel the calibration compares, one row of the README's error tables each.
enum class KernelClass {
  kDenseGemmBf16,      // cuBLAS BF16 products of expert shapes (not the square ones)
  kDenseGemmFp8,       // cuBLAS FP8 products of expert shapes
  kGroupedGemmBf16,    // each BF16 grouped product (gate/up or down) alone, 1 to 32 experts
  kExpertFfnBf16Many,  // BF16 grouped expert FFNs with 8 or 32 experts per GPU
  kExpertFfnBf16One,   // BF16 grouped expert FFNs of a single expert
  kExpertFfnFp8Many,   // FP8 (row-wise scaled) grouped expert FFNs, 8 or 32 experts
  kExpertFfnFp8One,    // FP8 grouped expert FFNs of a single expert
  kExpertFfnStreamed,  // DeepSeek-V3 expert FFNs back to back from a CUDA graph, time per FFN
  kAttentionPrefill,   // cuDNN causal prefill attention
  kAttentionDecode,    // one query per sequence over a BF16 KV cache
  kCopy,               // device-to-device copies
};
std::string_view kernel_class_label(KernelClass c);

// One measured kernel (or expert FFN) and how to ask the model for its time.
struct KernelCase {
  std::string label;  // what was measured, for messages
  double measured_s = 0.0;
  std::function<Time(const GpuModel&)> model_time;
};

// Every measurement of class `c` as a case. An expert FFN is the measured gate/up plus down
// grouped GEMMs of one distribution against one grouped_expert_ffn (activation fused), its hidden
// size and expert FFN width read from the gate/up product (k = hidden, n = 2 x FFN).
std::vector<KernelCase> kernel_cases(std::span<const KernelMeasurement> measurements,
                                     KernelClass c);

// One case's modelled against its measured time.
struct Comparison {
  std::string label;
  double model_s = 0.0;
  double measured_s = 0.0;
  // |ln(model / measured)|: 0.1 is about 10% either way.
  double log_error() const;
};
std::vector<Comparison> compare(const GpuModel& model, std::span<const KernelCase> cases);

// Errors of a set of comparisons, as |ln(model / measured)| (median, 90th percentile, worst) and
// the median of ln(model / measured) (bias: below 0 when the model is too fast).
struct ErrorSummary {
  size_t points = 0;
  double median = 0.0;
  double p90 = 0.0;
  double worst = 0.0;
  double bias = 0.0;
};
ErrorSummary summarize(std::span<const Comparison> comparisons);

// The value at quantile q of `values` (the element at floor(q * (n - 1)) once sorted); 0 if empty.
double quantile(std::vector<double> values, double q);

// ln(model / measured) as the percentage model / measured - 1 it stands for, rounded: "12%",
// "-3%".
std::string percent(double log_ratio);

// The README's error table (| kernels | points | median | 90th pct | worst | bias |) of `model`
// over `classes`.
std::string error_table(const GpuModel& model, std::span<const KernelMeasurement> measurements,
                        std::span<const KernelClass> classes);

}  // namespace moesim::calibration
