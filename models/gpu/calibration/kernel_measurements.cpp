// Measured kernel times read back and compared with the GpuModel, by kind of kernel.
#include "models/gpu/calibration/kernel_measurements.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>

namespace moesim::calibration {

namespace {

constexpr std::string_view kHeader = "kind,dtype,m,n,k,groups,dist,time_us,note";

Dtype dtype_of(const KernelMeasurement& r) {
  const auto d = dtype_from_name(r.dtype);
  if (!d) throw std::runtime_error("kernel measurements: unknown dtype '" + r.dtype + "'");
  return *d;
}

std::string describe(const KernelMeasurement& r) {
  std::ostringstream s;
  s << r.kind << " " << r.dtype << " " << r.dist << " m=" << r.m << " n=" << r.n << " k=" << r.k
    << " groups=" << r.groups;
  return s.str();
}

// The gate/up and down grouped GEMMs of one distribution, timed apart.
struct ExpertFfnParts {
  const KernelMeasurement* gate_up = nullptr;
  const KernelMeasurement* down = nullptr;
};

std::vector<KernelCase> expert_ffn_cases(std::span<const KernelMeasurement> measurements,
                                         Dtype dtype, bool several_experts) {
  // Keyed by the distribution without its -gateup / -down suffix and the expert count.
  std::map<std::string, ExpertFfnParts> ffns;
  for (const KernelMeasurement& r : measurements) {
    if (r.kind != "grouped" || dtype_of(r) != dtype || (r.groups > 1) != several_experts) {
      continue;
    }
    const size_t dash = r.dist.rfind('-');
    const std::string product = r.dist.substr(dash + 1);
    ExpertFfnParts& parts = ffns[r.dist.substr(0, dash) + " x" + std::to_string(r.groups)];
    if (product == "gateup") {
      parts.gate_up = &r;
    } else if (product == "down") {
      parts.down = &r;
    } else {
      throw std::runtime_error("kernel measurements: neither gate/up nor down: " + describe(r));
    }
  }
  std::vector<KernelCase> out;
  for (const auto& [key, parts] : ffns) {
    if (!parts.gate_up || !parts.down) {
      throw std::runtime_error("kernel measurements: expert FFN without both products: " + key);
    }
    const KernelMeasurement& up = *parts.gate_up;
    const auto hidden = static_cast<int32_t>(up.k);
    const auto ffn = static_cast<int32_t>(up.n / 2);
    if (parts.down->n != hidden || parts.down->k != ffn) {
      throw std::runtime_error("kernel measurements: gate/up and down shapes disagree: " + key);
    }
    std::vector<int32_t> rows = up.rows_per_expert;
    if (rows.empty()) {
      rows.assign(static_cast<size_t>(up.groups), static_cast<int32_t>(up.m / up.groups));
    }
    out.push_back({std::string(dtype_name(dtype)) + " " + key, up.time_s + parts.down->time_s,
                   [rows, hidden, ffn, dtype](const GpuModel& model) {
                     return model.grouped_expert_ffn(rows, hidden, ffn, dtype, 1);
                   }});
  }
  return out;
}

}  // namespace

std::vector<KernelMeasurement> read_kernel_measurements(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("kernel measurements: cannot read " + path);
  std::string line;
  if (!std::getline(in, line) || line != kHeader) {
    throw std::runtime_error("kernel measurements: " + path + " does not start with " +
                             std::string(kHeader));
  }
  std::vector<KernelMeasurement> out;
  while (std::getline(in, line)) {
    // Eight plain fields, then the free-text note (which may hold quoted commas).
    std::vector<std::string> f;
    size_t from = 0;
    for (int i = 0; i < 8; ++i) {
      const size_t comma = line.find(',', from);
      if (comma == std::string::npos) {
        throw std::runtime_error("kernel measurements: short row in " + path + ": " + line);
      }
      f.push_back(line.substr(from, comma - from));
      from = comma + 1;
    }
    KernelMeasurement r{f[0],
                        f[1],
                        std::stoll(f[2]),
                        std::stoll(f[3]),
                        std::stoll(f[4]),
                        std::stoll(f[5]),
                        f[6],
                        std::stod(f[7]) * 1e-6,
                        {}};
    if (r.kind == "grouped" && r.dist.find("zipf") != std::string::npos) {
      std::istringstream counts(line.substr(from));
      for (int32_t c; counts >> c;) r.rows_per_expert.push_back(c);
      if (static_cast<int64_t>(r.rows_per_expert.size()) != r.groups) {
        throw std::runtime_error("kernel measurements: rows per expert do not match groups: " +
                                 describe(r));
      }
    }
    out.push_back(std::move(r));
  }
  return out;
}

std::string_view kernel_class_label(KernelClass c) {
  switch (c) {
    case KernelClass::kDenseGemmBf16:
      return "dense GEMM, BF16 (cuBLAS), 1-16384 rows";
    case KernelClass::kDenseGemmFp8:
      return "dense GEMM, FP8 (cuBLAS, per-tensor scales), 16-16384 rows";
    case KernelClass::kGroupedGemmBf16:
      return "grouped GEMM, BF16, one product alone, 1-32 experts";
    case KernelClass::kExpertFfnBf16Many:
      return "grouped expert FFN, BF16, 8 or 32 experts per GPU";
    case KernelClass::kExpertFfnBf16One:
      return "grouped expert FFN, BF16, 1 expert per GPU";
    case KernelClass::kExpertFfnFp8Many:
      return "grouped expert FFN, FP8 (row-wise scales), 8 or 32 experts";
    case KernelClass::kExpertFfnFp8One:
      return "grouped expert FFN, FP8, 1 expert";
    case KernelClass::kExpertFfnStreamed:
      return "expert FFNs back to back from a CUDA graph (DeepSeek-V3)";
    case KernelClass::kAttentionPrefill:
      return "causal prefill attention (cuDNN)";
    case KernelClass::kAttentionDecode:
      return "decode attention, BF16 KV cache";
    case KernelClass::kCopy:
      return "device-to-device copy";
  }
  return "?";
}

double Comparison::log_error() const {
  return std::abs(std::log(model_s / measured_s));
}

std::vector<KernelCase> kernel_cases(std::span<const KernelMeasurement> measurements,
                                     KernelClass c) {
  switch (c) {
    case KernelClass::kExpertFfnBf16Many:
      return expert_ffn_cases(measurements, Dtype::kBf16, true);
    case KernelClass::kExpertFfnBf16One:
      return expert_ffn_cases(measurements, Dtype::kBf16, false);
    case KernelClass::kExpertFfnFp8Many:
      return expert_ffn_cases(measurements, Dtype::kFp8, true);
    case KernelClass::kExpertFfnFp8One:
      return expert_ffn_cases(measurements, Dtype::kFp8, false);
    default:
      break;
  }
  std::vector<KernelCase> out;
  for (const KernelMeasurement& r : measurements) {
    std::function<Time(const GpuModel&)> model_time;
    if ((c == KernelClass::kDenseGemmBf16 || c == KernelClass::kDenseGemmFp8) && r.kind == "gemm" &&
        r.dist != "square" &&
        dtype_of(r) == (c == KernelClass::kDenseGemmBf16 ? Dtype::kBf16 : Dtype::kFp8)) {
      model_time = [m = r.m, n = r.n, k = r.k, d = dtype_of(r)](const GpuModel& model) {
        return model.gemm(m, n, k, d);
      };
    } else if (c == KernelClass::kGroupedGemmBf16 && r.kind == "grouped" && r.dtype == "bf16") {
      // One kernel: each expert's product as a dense one at its rows, without its own launch.
      std::vector<int32_t> rows = r.rows_per_expert;
      if (rows.empty()) {
        rows.assign(static_cast<size_t>(r.groups), static_cast<int32_t>(r.m / r.groups));
      }
      model_time = [rows, n = r.n, k = r.k](const GpuModel& model) {
        Time t = model.launch();
        for (int32_t m : rows) t += model.gemm(m, n, k, Dtype::kBf16) - model.launch();
        return t;
      };
    } else if (c == KernelClass::kExpertFfnStreamed && r.kind == "grouped_stream") {
      // Uniform rows; k = hidden and n = 2 x expert FFN, as for the gate/up product.
      const std::vector<int32_t> rows(static_cast<size_t>(r.groups),
                                      static_cast<int32_t>(r.m / r.groups));
      model_time = [rows, hidden = static_cast<int32_t>(r.k), ffn = static_cast<int32_t>(r.n / 2),
                    d = dtype_of(r)](const GpuModel& model) {
        return model.grouped_expert_ffn(rows, hidden, ffn, d, 1);
      };
    } else if (c == KernelClass::kAttentionPrefill && r.kind == "attn_prefill" &&
               r.dist == "causal-cudnn") {
      // m = sequence length, n = heads, k = head dim, groups = sequences; K and V per head.
      const AttentionShape shape{static_cast<int32_t>(r.n), static_cast<int32_t>(r.k),
                                 static_cast<int32_t>(r.k), 2 * r.n * r.k};
      model_time = [shape, sequences = r.groups, length = r.m,
                    d = dtype_of(r)](const GpuModel& model) {
        return model.attention_prefill(sequences, length, shape, d, true);
      };
    } else if (c == KernelClass::kAttentionDecode && r.kind == "attn_decode") {
      // m = context, n = query heads, k = head dim, groups = sequences; 8 KV heads (gqa8).
      const AttentionShape shape{static_cast<int32_t>(r.n), static_cast<int32_t>(r.k),
                                 static_cast<int32_t>(r.k), 2 * 8 * r.k};
      model_time = [shape, sequences = r.groups, context = r.m,
                    d = dtype_of(r)](const GpuModel& model) {
        return model.attention_decode(sequences, context, shape, d);
      };
    } else if (c == KernelClass::kCopy && r.kind == "copy") {
      // m bytes read and m written.
      model_time = [bytes = Bytes(2 * r.m)](const GpuModel& model) {
        return model.memory_bound(bytes);
      };
    } else {
      continue;
    }
    out.push_back({describe(r), r.time_s, std::move(model_time)});
  }
  return out;
}

std::vector<Comparison> compare(const GpuModel& model, std::span<const KernelCase> cases) {
  std::vector<Comparison> out;
  out.reserve(cases.size());
  for (const KernelCase& c : cases) {
    out.push_back({c.label, c.model_time(model).to_s(), c.measured_s});
  }
  return out;
}

double quantile(std::vector<double> values, double q) {
  if (values.empty()) return 0.0;
  const auto at =
      values.begin() + static_cast<std::ptrdiff_t>(q * static_cast<double>(values.size() - 1));
  std::nth_element(values.begin(), at, values.end());
  return *at;
}

ErrorSummary summarize(std::span<const Comparison> comparisons) {
  std::vector<double> errors, ratios;
  for (const Comparison& c : comparisons) {
    errors.push_back(c.log_error());
    ratios.push_back(std::log(c.model_s / c.measured_s));
  }
  ErrorSummary s;
  s.points = comparisons.size();
  s.median = quantile(errors, 0.5);
  s.p90 = quantile(errors, 0.9);
  s.worst = quantile(errors, 1.0);
  s.bias = quantile(ratios, 0.5);
  return s;
}

std::string percent(double log_ratio) {
  return std::to_string(std::lround(100.0 * std::expm1(log_ratio))) + "%";
}

std::string error_table(const GpuModel& model, std::span<const KernelMeasurement> measurements,
                        std::span<const KernelClass> classes) {
  std::ostringstream out;
  out << "| kernels | points | median | 90th pct | worst | bias |\n";
  out << "|---|---|---|---|---|---|\n";
  for (KernelClass c : classes) {
    const ErrorSummary s = summarize(compare(model, kernel_cases(measurements, c)));
    out << "| " << kernel_class_label(c) << " | " << s.points << " | " << percent(s.median) << " | "
        << percent(s.p90) << " | " << percent(s.worst) << " | " << (s.bias > 0.0 ? "+" : "")
        << percent(s.bias) << " |\n";
  }
  return out.str();
}

}  // namespace moesim::calibration
