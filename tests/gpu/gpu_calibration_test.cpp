// The h100-sxm preset against kernel times measured on an H100 SXM
// (models/gpu/calibration/h100-sxm.csv, written by measure_kernels.py there).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "models/gpu/gpu_model.h"
#include "models/gpu/gpu_spec.h"

namespace moesim {
namespace {

struct Measurement {
  std::string kind, dtype;
  int64_t m = 0, n = 0, k = 0, groups = 0;
  std::string dist;
  double time_s = 0.0;
  std::vector<int32_t> counts;  // rows per expert, for skewed grouped GEMMs
};

std::vector<Measurement> read_measurements() {
  const std::string path = std::string(MOESIM_SOURCE_DIR) + "/models/gpu/calibration/h100-sxm.csv";
  std::ifstream in(path);
  REQUIRE(in.good());
  std::string line;
  std::getline(in, line);
  REQUIRE(line == "kind,dtype,m,n,k,groups,dist,time_us,note");
  std::vector<Measurement> out;
  while (std::getline(in, line)) {
    // Eight plain fields, then the free-text note (which may hold quoted commas).
    std::vector<std::string> f;
    size_t from = 0;
    for (int i = 0; i < 8; ++i) {
      const size_t comma = line.find(',', from);
      REQUIRE(comma != std::string::npos);
      f.push_back(line.substr(from, comma - from));
      from = comma + 1;
    }
    f.push_back(line.substr(from));
    Measurement r{f[0],
                  f[1],
                  std::stoll(f[2]),
                  std::stoll(f[3]),
                  std::stoll(f[4]),
                  std::stoll(f[5]),
                  f[6],
                  std::stod(f[7]) * 1e-6,
                  {}};
    if (r.kind == "grouped" && r.dist.find("zipf") != std::string::npos) {
      std::stringstream cs(f[8]);
      for (int32_t c; cs >> c;) r.counts.push_back(c);
    }
    out.push_back(std::move(r));
  }
  return out;
}

double quantile(std::vector<double> v, double q) {
  REQUIRE(!v.empty());
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(q * static_cast<double>(v.size() - 1))];
}

// |ln(model / measured)|: 0.1 is about 10% either way.
double log_error(Time model, double measured_s) {
  return std::abs(std::log(model.to_s() / measured_s));
}

const GpuModel& h100() {
  static const GpuModel model(*find_gpu_preset("h100-sxm"));
  return model;
}

Dtype dtype_of(const std::string& name) {
  const auto d = dtype_from_name(name);
  REQUIRE(d.has_value());
  return *d;
}

TEST_CASE("h100-sxm matches measured dense GEMMs of expert shapes", "[gpu][calibration]") {
  std::vector<double> errors;
  for (const Measurement& r : read_measurements()) {
    if (r.kind != "gemm" || r.dist == "square") continue;
    errors.push_back(log_error(h100().gemm(r.m, r.n, r.k, dtype_of(r.dtype)), r.time_s));
  }
  // 4 models x 2 products x (22 BF16 + 18 FP8 row counts).
  CHECK(errors.size() == 320);
  CHECK(quantile(errors, 0.5) < 0.10);
  CHECK(quantile(errors, 0.9) < 0.25);
}

TEST_CASE("h100-sxm matches measured grouped expert FFNs with several experts per GPU",
          "[gpu][calibration]") {
  // A measured FFN is the gate/up grouped GEMM plus the down grouped GEMM of one distribution.
  const std::map<std::string, std::pair<int32_t, int32_t>> shapes = {
      {"deepseek-v3", {7168, 2048}}, {"qwen3-235b", {4096, 1536}}, {"mixtral-8x7b", {4096, 14336}}};
  std::map<std::string, std::pair<double, Measurement>> ffns;
  for (const Measurement& r : read_measurements()) {
    if (r.kind != "grouped" || r.dtype != "bf16" || r.groups < 2) continue;
    const std::string key = r.dist.substr(0, r.dist.rfind('-')) + "/" + std::to_string(r.groups);
    auto& [seconds, first] = ffns[key];
    seconds += r.time_s;
    first = r;
  }
  std::vector<double> errors;
  for (const auto& [key, entry] : ffns) {
    const auto& [seconds, r] = entry;
    const std::string model = key.substr(
        0, key.find("-uniform") != std::string::npos ? key.find("-uniform") : key.find("-zipf"));
    const auto [hidden, ffn] = shapes.at(model);
    std::vector<int32_t> counts = r.counts;
    if (counts.empty()) counts.assign(static_cast<size_t>(r.groups), int32_t(r.m / r.groups));
    INFO(key);
    const Time t = h100().grouped_expert_ffn(counts, hidden, ffn, Dtype::kBf16, 1);
    errors.push_back(log_error(t, seconds));
    CHECK(errors.back() < 0.35);
  }
  // DeepSeek-V3 and Qwen3-235B at 8 and 32 experts per GPU, Mixtral at 8: 10 uniform row counts
  // each, and two skewed ones.
  CHECK(errors.size() == 60);
  CHECK(quantile(errors, 0.5) < 0.08);
  CHECK(quantile(errors, 0.9) < 0.20);
}

TEST_CASE("h100-sxm matches expert FFNs streamed back to back", "[gpu][calibration]") {
  // DeepSeek-V3 experts, 20 FFNs replayed from a CUDA graph: the fixed cost per kernel a step
  // pays, rather than that of a kernel timed alone.
  int32_t streams = 0;
  for (const Measurement& r : read_measurements()) {
    if (r.kind != "grouped_stream") continue;
    INFO(r.dist << " groups=" << r.groups);
    const std::vector<int32_t> counts(static_cast<size_t>(r.groups), int32_t(r.m / r.groups));
    CHECK(log_error(h100().grouped_expert_ffn(counts, 7168, 2048, Dtype::kBf16, 1), r.time_s) <
          0.10);
    ++streams;
  }
  CHECK(streams == 5);
}

TEST_CASE("h100-sxm matches measured attention, copies and decode KV reads", "[gpu][calibration]") {
  int32_t prefill = 0, decode = 0, copies = 0;
  for (const Measurement& r : read_measurements()) {
    INFO(r.kind << " " << r.dist << " m=" << r.m << " groups=" << r.groups);
    if (r.kind == "attn_prefill" && r.dist == "causal-cudnn") {
      // m = sequence length, n = heads, k = head dim, groups = sequences.
      AttentionShape shape{int32_t(r.n), int32_t(r.k), int32_t(r.k), 2 * r.n * r.k};
      CHECK(log_error(h100().attention_prefill(r.groups, r.m, shape, Dtype::kBf16, true),
                      r.time_s) < 0.10);
      ++prefill;
    } else if (r.kind == "attn_decode") {
      // 32 query heads over 8 KV heads of 128.
      AttentionShape shape{int32_t(r.n), int32_t(r.k), int32_t(r.k), 2 * 8 * r.k};
      CHECK(log_error(h100().attention_decode(r.groups, r.m, shape, Dtype::kBf16), r.time_s) <
            0.30);
      ++decode;
    } else if (r.kind == "copy") {
      // m bytes read and m written; the model's one memory efficiency sits below a pure copy's.
      CHECK(log_error(h100().memory_bound(Bytes(2 * r.m)), r.time_s) < 0.20);
      ++copies;
    }
  }
  CHECK(prefill == 5);
  CHECK(decode == 6);
  CHECK(copies == 3);
}

}  // namespace
}  // namespace moesim
