// The roofline kernel-time model: GEMMs, grouped expert FFNs, prefill and decode attention and
// memory-bound kernels.
#include "models/gpu/gpu_model.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace moesim {

namespace {

// Seconds to whole picoseconds, rounded up so that work never takes zero time.
Time ceil_ps(double seconds) {
  if (!(seconds > 0.0)) return Time::zero();
  return Time::ps(static_cast<int64_t>(std::ceil(seconds * 1e12)));
}

// max * size / (size + half): rises with the size toward max, half of it at `half`; 0 for no size.
double saturating(double max, double half, double size) {
  if (!(size > 0.0)) return 0.0;
  return max * size / (size + half);
}

// GEMM outputs are written in BF16 (FP32 for FP32 GEMMs).
int32_t output_bytes(Dtype d) {
  return d == Dtype::kFp32 ? 4 : 2;
}

}  // namespace

double GpuModel::gemm_efficiency(double rows) const {
  return saturating(spec_.gemm_efficiency_max, spec_.gemm_half_efficiency_rows, rows);
}

double GpuModel::grouped_gemm_efficiency(double rows, Dtype dtype) const {
  return saturating(spec_.grouped_gemm_efficiency_max(dtype), spec_.gemm_half_efficiency_rows,
                    rows);
}

double GpuModel::attention_efficiency(double length) const {
  return saturating(spec_.attention_efficiency_max, spec_.attention_half_efficiency_length, length);
}

Time GpuModel::compute_time(double flops, Dtype dtype, double efficiency) const {
  if (!(flops > 0.0)) return Time::zero();
  if (!(efficiency > 0.0)) {
    throw std::invalid_argument("GpuModel: FLOPs with efficiency " + std::to_string(efficiency));
  }
  return ceil_ps(flops / (spec_.peak_flops(dtype) * efficiency));
}

Time GpuModel::memory_time(Bytes bytes) const {
  if (bytes.count() <= 0) return Time::zero();
  return transfer_time(bytes, spec_.hbm_bandwidth * spec_.memory_efficiency);
}

Time GpuModel::gemm(int64_t m, int64_t n, int64_t k, Dtype dtype) const {
  if (m < 0 || n < 0 || k < 0) throw std::invalid_argument("GpuModel::gemm: negative size");
  const double flops =
      2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  const int64_t in = dtype_bytes(dtype);
  const Bytes bytes((m * k + k * n) * in + m * n * output_bytes(dtype));
  const double eff = gemm_efficiency(static_cast<double>(std::min(m, n)));
  if (flops == 0.0) return memory_time(bytes) + launch();
  return roofline(flops, bytes, dtype, eff) + launch();
}

Time GpuModel::grouped_expert_ffn(std::span<const int32_t> tokens_per_local_expert, int32_t hidden,
                                  int32_t ffn, Dtype dtype, int32_t tp_shards,
                                  int32_t ffn_matrices) const {
  if (hidden <= 0 || ffn <= 0 || tp_shards <= 0 || ffn_matrices < 2) {
    throw std::invalid_argument(
        "GpuModel::grouped_expert_ffn: hidden, ffn, tp_shards must be "
        "positive and ffn_matrices >= 2");
  }
  const int64_t ffn_shard = (int64_t{ffn} + tp_shards - 1) / tp_shards;
  const int64_t in = dtype_bytes(dtype);
  const int64_t weight_bytes = int64_t{ffn_matrices} * hidden * ffn_shard * in;
  // Per row: the input, the activated intermediate written then read, the BF16 output.
  const int64_t bytes_per_row = hidden * in + 2 * ffn_shard * in + int64_t{hidden} * 2;
  const double flops_per_row = 2.0 * ffn_matrices * static_cast<double>(hidden) * ffn_shard;
  Time total = launch() * 2;
  for (int32_t rows : tokens_per_local_expert) {
    if (rows < 0) throw std::invalid_argument("GpuModel::grouped_expert_ffn: negative row count");
    if (rows == 0) continue;
    total += roofline(flops_per_row * rows, Bytes(weight_bytes + bytes_per_row * rows), dtype,
                      grouped_gemm_efficiency(rows, dtype));
  }
  return total;
}

Time GpuModel::attention_prefill(int64_t sequences, int64_t sequence_length,
                                 const AttentionShape& shape, Dtype dtype, bool causal,
                                 int64_t cached_prefix) const {
  if (sequences < 0 || sequence_length < 0 || cached_prefix < 0) {
    throw std::invalid_argument("GpuModel::attention_prefill: negative size");
  }
  if (cached_prefix > 0 && !causal) {
    throw std::invalid_argument("GpuModel::attention_prefill: a cached prefix needs causal");
  }
  const double length = static_cast<double>(sequence_length);
  const double per_sequence =
      2.0 * length * length * shape.heads * (shape.qk_head_dim + shape.v_head_dim);
  double flops = static_cast<double>(sequences) * per_sequence * (causal ? 0.5 : 1.0);
  if (cached_prefix > 0) {
    // Causal after P cached tokens: ((P + L)^2 - P^2) / 2 query-key pairs instead of L^2 / 2.
    const double prefix = static_cast<double>(cached_prefix);
    const double end = prefix + length;
    flops = static_cast<double>(sequences) * (end * end - prefix * prefix) * shape.heads *
            (shape.qk_head_dim + shape.v_head_dim);
  }
  const int64_t q_and_o_per_token = int64_t{shape.heads} * (shape.qk_head_dim + shape.v_head_dim);
  const Bytes bytes(sequences *
                    (sequence_length * q_and_o_per_token +
                     (cached_prefix + sequence_length) * shape.kv_elements_per_token) *
                    dtype_bytes(dtype));
  if (flops == 0.0) return memory_time(bytes) + launch();
  return roofline(flops, bytes, dtype, attention_efficiency(length)) + launch();
}

Time GpuModel::attention_decode(int64_t sequences, int64_t context_length,
                                const AttentionShape& shape, Dtype kv_dtype) const {
  if (sequences < 0 || context_length < 0) {
    throw std::invalid_argument("GpuModel::attention_decode: negative size");
  }
  const Bytes bytes(sequences * context_length * shape.kv_elements_per_token *
                    dtype_bytes(kv_dtype));
  const double flops = 2.0 * static_cast<double>(sequences) * static_cast<double>(context_length) *
                       shape.heads * (shape.qk_head_dim + shape.v_head_dim);
  // The KV cache's dtype is the compute dtype only for FP8 caches; BF16 otherwise.
  const Dtype compute = kv_dtype == Dtype::kFp8 ? Dtype::kFp8 : Dtype::kBf16;
  return roofline(flops, bytes, compute, spec_.attention_efficiency_max) + launch();
}

}  // namespace moesim
