// The synthetic token source: a Zipf-popular mixture of low-rank Gaussian clusters in hidden
// space with sequence correlation, drawn either as hidden states or exactly in logit space.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/random.h"
#include "models/router/gating.h"
#include "models/router/router_spec.h"

namespace moesim {

// A batch's cluster structure: each token's cluster and its offset coordinates u (rank r),
// with the tokens stably sorted by cluster so that each cluster's rows are contiguous.
struct TokenStructure {
  std::vector<int32_t> cluster_of_token;
  std::vector<int32_t> token_of_row;     // row r of the sorted layout holds this token
  std::vector<int32_t> cluster_offsets;  // rows of cluster c: [offsets[c], offsets[c + 1])
  std::vector<float> offsets_sorted;     // rows x r, u of token_of_row[row]
  std::vector<float> normals;            // working space
};

// Logit-space parameters of one layer for gate W (hidden x width; width is E, or 2E with the
// noise gate): cluster mean logits centre_c W, offset factors A_c^T W, and a factor F of the
// isotropic part's covariance sigma^2 W^T W (F^T F equals it).
struct LogitSpaceLayer {
  int32_t width = 0;
  std::vector<float> mean_logits;    // clusters x width
  std::vector<float> offset_factor;  // clusters x (r x width)
  int32_t isotropic_rows = 0;        // rows of F: min(hidden, width), or 0 without isotropic part
  std::vector<float> isotropic_factor;  // isotropic_rows x width
};

class ClusterTokenModel {
 public:
  // Centres and offset bases are drawn from (seed, "router.tokens"). Throws std::invalid_argument
  // on bad parameters.
  ClusterTokenModel(const TokenModel& model, uint64_t seed);

  const TokenModel& model() const { return model_; }
  // Cumulative Zipf popularity of the clusters.
  std::span<const double> cumulative_popularity() const { return cumulative_; }

  // Draws the batch's clusters and offsets (sequence model) from `stream`.
  void draw_structure(RandomStream& stream, int32_t tokens, TokenStructure& out) const;

  // Hidden states of the sorted rows (rows x hidden), isotropic noise from `isotropic`.
  void hidden_states(const TokenStructure& structure, RandomStream& isotropic,
                     std::span<float> rows_out) const;

  // The exact logit-space description of this token model under gate W (hidden x width).
  LogitSpaceLayer logit_space(std::span<const float> gate, int32_t width) const;

  // Logits of the sorted rows (rows x width): mean + u B_c [+ z F], z ~ N(0, I) from
  // `isotropic`; `normals` is working space. The mean + u B_c part is logit_rows().
  static void draw_logits(const LogitSpaceLayer& layer, const TokenStructure& structure,
                          int32_t rank, RandomStream& isotropic, std::vector<float>& normals,
                          std::span<float> rows_out);

  // Rows [first, first + count) of the sorted layout without the isotropic part, mean_c + u B_c,
  // row i at out + i * out_stride. Each logit is one chain of fused multiply-adds over the rank
  // in order, from zero, then added to the cluster mean: the rounding of OpenBLAS's FMA sgemm
  // kernels (the Haswell and SkylakeX ones), which computed these before, and the same bits on
  // every CPU and kernel width. `kernel` picks the instruction set as the gating kernels do
  // (kNative: AVX-512F, else AVX2 with FMA, else scalar std::fma; the others: scalar).
  static void logit_rows(const LogitSpaceLayer& layer, const TokenStructure& structure,
                         int32_t rank, int32_t first, int32_t count, float* out, int64_t out_stride,
                         KernelWidth kernel = KernelWidth::kNative);

 private:
  TokenModel model_;
  std::vector<double> cumulative_;
  std::vector<float> centres_;  // clusters x hidden
  std::vector<float> bases_;    // clusters x (r x hidden): A_c^T
};

}  // namespace moesim
