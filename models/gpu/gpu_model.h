// Kernel times on one GPU from a roofline: max(FLOPs / (peak * efficiency), bytes / achieved
// HBM bandwidth) plus a fixed launch overhead, with matrix-product efficiency rising with rows.
#pragma once

#include <cstdint>
#include <span>

#include "core/units.h"
#include "models/gpu/gpu_spec.h"

namespace moesim {

// One GPU's share of an attention layer (after tensor parallelism).
struct AttentionShape {
  int32_t heads = 0;        // query heads on this GPU
  int32_t qk_head_dim = 0;  // width of a query/key head in QK^T
  int32_t v_head_dim = 0;   // width of a value head in PV
  // Elements of K and V (or of MLA's latent) one token stores on this GPU, per layer.
  int64_t kv_elements_per_token = 0;
};

class GpuModel {
 public:
  explicit GpuModel(GpuSpec spec) : spec_(std::move(spec)) {}
  const GpuSpec& spec() const { return spec_; }

  // eff(m) = gemm_efficiency_max * m / (m + gemm_half_efficiency_rows); 0 for m <= 0.
  double gemm_efficiency(double rows) const;
  // The routed experts' grouped GEMMs: spec().grouped_gemm_efficiency_max(dtype) * m /
  // (m + gemm_half_efficiency_rows); 0 for m <= 0.
  double grouped_gemm_efficiency(double rows, Dtype dtype) const;
  // eff(L) = attention_efficiency_max * L / (L + attention_half_efficiency_length); 0 for L <= 0.
  double attention_efficiency(double length) const;
  // FLOPs at the `dtype` peak times `efficiency`, rounded up to whole ps (0 for no FLOPs).
  Time compute_time(double flops, Dtype dtype, double efficiency) const;
  // Bytes at the achieved HBM rate (hbm_bandwidth * memory_efficiency), rounded up.
  Time memory_time(Bytes bytes) const;
  // max(compute_time, memory_time), no launch.
  Time roofline(double flops, Bytes bytes, Dtype dtype, double efficiency) const {
    const Time c = compute_time(flops, dtype, efficiency);
    const Time m = memory_time(bytes);
    return c > m ? c : m;
  }
  Time launch() const { return spec_.kernel_launch; }

  // C (m x n) = A (m x k) B (k x n), operands in `dtype`, C in BF16 (FP32 for fp32). One kernel;
  // the efficiency is that of the narrower of m and n (the side a tile cannot fill).
  Time gemm(int64_t m, int64_t n, int64_t k, Dtype dtype) const;

  // One MoE layer's routed experts on this GPU as grouped GEMMs: tokens_per_local_expert[i]
  // rows go through local expert i, an FFN of `ffn_matrices` hidden x (ffn / tp_shards)
  // matrices (3: SwiGLU, 2 * 3 * m * hidden * ffn FLOPs forward). Per expert with m > 0 rows:
  // its roofline at grouped_gemm_efficiency(m, dtype) (the spec's kernel family), reading its
  // weights once plus the rows' input (dtype), the activated intermediate (written and read, dtype)
  // and the output (BF16); experts with no rows are skipped (no weight reads). Two launches: the
  // gate/up grouped GEMM with the activation in its epilogue, and the down grouped GEMM; launched
  // even when no rows arrive. Training's backward pass is two such passes of the same shapes (input
  // gradients and weight gradients, each the forward's FLOPs), as for gemm().
  Time grouped_expert_ffn(std::span<const int32_t> tokens_per_local_expert, int32_t hidden,
                          int32_t ffn, Dtype dtype, int32_t tp_shards,
                          int32_t ffn_matrices = 3) const;

  // Fused (flash) attention of `sequences` sequences of `sequence_length` tokens: FLOPs
  // 2 * L^2 * heads * (qk + v) per sequence (4 * L^2 * head_dim * heads when qk = v), halved
  // when causal (masked tiles are skipped); bytes: Q, the KV of each token, and O once each.
  // Efficiency attention_efficiency(L). The QKV and output projections are separate gemm() calls.
  // With a `cached_prefix` of P tokens (a prefix-cache hit; causal only), the L queries follow
  // P tokens already in the KV cache and attend over them too: FLOPs 2 * ((P + L)^2 - P^2) / 2 *
  // heads * (qk + v) per sequence, bytes Q and O of the L tokens and the KV of all P + L,
  // efficiency still attention_efficiency(L) (the query tiles are what fills the GPU).
  Time attention_prefill(int64_t sequences, int64_t sequence_length, const AttentionShape& shape,
                         Dtype dtype, bool causal, int64_t cached_prefix = 0) const;

  // One new token for each of `sequences` sequences attending to `context_length` cached
  // tokens: reads every cached KV element once (sequences * context * kv_elements_per_token in
  // kv_dtype; the single query and output row are negligible and not counted); FLOPs
  // 2 * context * heads * (qk + v) per sequence at attention_efficiency_max (decode kernels batch
  // all heads of a KV group into one tile). Usually KV-read-bound.
  Time attention_decode(int64_t sequences, int64_t context_length, const AttentionShape& shape,
                        Dtype kv_dtype) const;

  // An elementwise or otherwise memory-bound kernel moving `bytes` (reads plus writes).
  Time memory_bound(Bytes bytes) const { return memory_time(bytes) + launch(); }

 private:
  GpuSpec spec_;
};

}  // namespace moesim
