#include "models/router/token_model.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "models/router/normal.h"

namespace moesim {

ClusterTokenModel::ClusterTokenModel(const TokenModel& model, uint64_t seed) : model_(model) {
  const auto bad = [](const std::string& what) {
    throw std::invalid_argument("token model: " + what);
  };
  if (model.hidden < 1) bad("hidden must be >= 1");
  if (model.clusters < 1) bad("clusters must be >= 1");
  if (model.offset_rank < 1) bad("offset_rank must be >= 1");
  if (!(model.popularity_exponent >= 0.0)) bad("popularity_exponent must be >= 0");
  if (!(model.centre_scale >= 0.0)) bad("centre_scale must be >= 0");
  if (!(model.common_scale >= 0.0)) bad("common_scale must be >= 0");
  if (!(model.offset_scale >= 0.0)) bad("offset_scale must be >= 0");
  if (!(model.isotropic_scale >= 0.0)) bad("isotropic_scale must be >= 0");
  if (!(model.stay_probability >= 0.0 && model.stay_probability <= 1.0)) {
    bad("stay_probability must be in [0, 1]");
  }
  if (!(model.offset_correlation >= 0.0 && model.offset_correlation < 1.0)) {
    bad("offset_correlation must be in [0, 1)");
  }
  if (model.sequence_tokens < 0) bad("sequence_tokens must be >= 0");

  double total = 0.0;
  cumulative_.resize(model.clusters);
  for (int32_t c = 0; c < model.clusters; ++c) {
    total += 1.0 / std::pow(c + 1.0, model.popularity_exponent);
    cumulative_[c] = total;
  }
  for (double& v : cumulative_) v /= total;
  cumulative_.back() = 1.0;

  RandomStream stream(seed, "router.tokens");
  const size_t H = model.hidden;
  const size_t r = model.offset_rank;
  centres_.resize(model.clusters * H);
  fill_standard_normal(stream, centres_);
  for (float& v : centres_) v *= static_cast<float>(model.centre_scale);
  if (model.common_scale > 0.0) {
    // Its own stream, so the clusters' draws stay as they were without it.
    RandomStream common_stream(seed, "router.tokens.common");
    std::vector<float> common(H);
    fill_standard_normal(common_stream, common);
    for (size_t c = 0; c < static_cast<size_t>(model.clusters); ++c) {
      for (size_t h = 0; h < H; ++h) {
        centres_[c * H + h] += static_cast<float>(model.common_scale) * common[h];
      }
    }
  }
  bases_.resize(model.clusters * r * H);
  fill_standard_normal(stream, bases_);
  const auto base_scale = static_cast<float>(model.offset_scale / std::sqrt(double(r)));
  for (float& v : bases_) v *= base_scale;
}

void ClusterTokenModel::draw_structure(RandomStream& stream, int32_t tokens,
                                       TokenStructure& out) const {
  const int32_t C = model_.clusters;
  const int32_t r = model_.offset_rank;
  const auto phi = static_cast<float>(model_.offset_correlation);
  const auto innovation =
      static_cast<float>(std::sqrt(1.0 - model_.offset_correlation * model_.offset_correlation));
  out.cluster_of_token.resize(tokens);
  out.normals.resize(static_cast<size_t>(tokens) * r);
  fill_standard_normal(stream, out.normals);
  // u in token order first (AR(1) needs the predecessor), kept in `normals`.
  float* u = out.normals.data();
  for (int32_t t = 0; t < tokens; ++t) {
    const bool sequence_start =
        t == 0 || (model_.sequence_tokens > 0 && t % model_.sequence_tokens == 0);
    const bool stay = !sequence_start && stream.uniform01() < model_.stay_probability;
    if (stay) {
      out.cluster_of_token[t] = out.cluster_of_token[t - 1];
      float* cur = u + static_cast<size_t>(t) * r;
      const float* prev = cur - r;
      for (int32_t j = 0; j < r; ++j) cur[j] = phi * prev[j] + innovation * cur[j];
    } else {
      const double x = stream.uniform01();
      out.cluster_of_token[t] = static_cast<int32_t>(
          std::upper_bound(cumulative_.begin(), cumulative_.end(), x) - cumulative_.begin());
      out.cluster_of_token[t] = std::min(out.cluster_of_token[t], C - 1);
    }
  }
  // Stable counting sort by cluster.
  out.cluster_offsets.assign(C + 1, 0);
  for (const int32_t c : out.cluster_of_token) ++out.cluster_offsets[c + 1];
  for (int32_t c = 0; c < C; ++c) out.cluster_offsets[c + 1] += out.cluster_offsets[c];
  out.token_of_row.resize(tokens);
  out.offsets_sorted.resize(static_cast<size_t>(tokens) * r);
  // Positions are assigned in token order, so each cluster's rows keep token order.
  for (int32_t t = 0; t < tokens; ++t) {
    out.token_of_row[out.cluster_offsets[out.cluster_of_token[t]]++] = t;
  }
  // cluster_offsets now hold the ends; shift back to starts.
  for (int32_t c = C; c > 0; --c) out.cluster_offsets[c] = out.cluster_offsets[c - 1];
  out.cluster_offsets[0] = 0;
  for (int32_t row = 0; row < tokens; ++row) {
    const int32_t t = out.token_of_row[row];
    std::copy_n(u + static_cast<size_t>(t) * r, r,
                out.offsets_sorted.data() + static_cast<size_t>(row) * r);
  }
}

void ClusterTokenModel::hidden_states(const TokenStructure& s, RandomStream& isotropic,
                                      std::span<float> rows_out) const {
  const int32_t H = model_.hidden;
  const int32_t r = model_.offset_rank;
  const auto tokens = static_cast<int32_t>(s.token_of_row.size());
  if (rows_out.size() != static_cast<size_t>(tokens) * H) {
    throw std::invalid_argument("hidden_states: output must be tokens x hidden");
  }
  for (int32_t c = 0; c < model_.clusters; ++c) {
    const int32_t begin = s.cluster_offsets[c];
    const int32_t n = s.cluster_offsets[c + 1] - begin;
    if (n == 0) continue;
    float* block = rows_out.data() + static_cast<size_t>(begin) * H;
    for (int32_t i = 0; i < n; ++i) {
      std::copy_n(centres_.data() + static_cast<size_t>(c) * H, H,
                  block + static_cast<size_t>(i) * H);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, H, r, 1.0f,
                s.offsets_sorted.data() + static_cast<size_t>(begin) * r, r,
                bases_.data() + static_cast<size_t>(c) * r * H, H, 1.0f, block, H);
  }
  if (model_.isotropic_scale > 0.0) {
    const auto sigma = static_cast<float>(model_.isotropic_scale);
    // Chunks of one row keep the working set small.
    float eps[1024];
    for (size_t i = 0; i < rows_out.size(); i += 1024) {
      const size_t n = std::min<size_t>(1024, rows_out.size() - i);
      fill_standard_normal(isotropic, std::span<float>(eps, n));
      for (size_t j = 0; j < n; ++j) rows_out[i + j] += sigma * eps[j];
    }
  }
}

LogitSpaceLayer ClusterTokenModel::logit_space(std::span<const float> gate, int32_t width) const {
  const int32_t H = model_.hidden;
  const int32_t r = model_.offset_rank;
  const int32_t C = model_.clusters;
  if (gate.size() != static_cast<size_t>(H) * width) {
    throw std::invalid_argument("logit_space: gate must be hidden x width");
  }
  LogitSpaceLayer layer;
  layer.width = width;
  layer.mean_logits.resize(static_cast<size_t>(C) * width);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, C, width, H, 1.0f, centres_.data(), H,
              gate.data(), width, 0.0f, layer.mean_logits.data(), width);
  layer.offset_factor.resize(static_cast<size_t>(C) * r * width);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, C * r, width, H, 1.0f, bases_.data(), H,
              gate.data(), width, 0.0f, layer.offset_factor.data(), width);
  if (model_.isotropic_scale <= 0.0) return layer;

  const double sigma = model_.isotropic_scale;
  if (H <= width) {
    // sigma W itself is an exact (hidden x width) factor and no larger than a Cholesky factor.
    layer.isotropic_rows = H;
    layer.isotropic_factor.assign(gate.begin(), gate.end());
    for (float& v : layer.isotropic_factor) v *= static_cast<float>(sigma);
    return layer;
  }
  // Cholesky of sigma^2 W^T W (width x width, positive definite when W has full column rank).
  std::vector<float> gram(static_cast<size_t>(width) * width);
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, width, width, H, 1.0f, gate.data(), width,
              gate.data(), width, 0.0f, gram.data(), width);
  std::vector<double> L(static_cast<size_t>(width) * width, 0.0);
  for (int32_t i = 0; i < width; ++i) {
    for (int32_t j = 0; j <= i; ++j) {
      double acc = sigma * sigma * gram[static_cast<size_t>(i) * width + j];
      for (int32_t p = 0; p < j; ++p) {
        acc -= L[static_cast<size_t>(i) * width + p] * L[static_cast<size_t>(j) * width + p];
      }
      if (i == j) {
        if (!(acc > 0.0)) {
          throw std::runtime_error(
              "logit_space: the gate's Gram matrix W^T W is not positive definite (gate "
              "columns linearly dependent); use isotropic_scale 0");
        }
        L[static_cast<size_t>(i) * width + i] = std::sqrt(acc);
      } else {
        L[static_cast<size_t>(i) * width + j] = acc / L[static_cast<size_t>(j) * width + j];
      }
    }
  }
  layer.isotropic_rows = width;
  layer.isotropic_factor.resize(static_cast<size_t>(width) * width);
  for (int32_t i = 0; i < width; ++i) {
    for (int32_t j = 0; j < width; ++j) {
      // F = L^T, so F^T F = L L^T.
      layer.isotropic_factor[static_cast<size_t>(i) * width + j] =
          static_cast<float>(L[static_cast<size_t>(j) * width + i]);
    }
  }
  return layer;
}

void ClusterTokenModel::draw_logits(const LogitSpaceLayer& layer, const TokenStructure& s,
                                    int32_t rank, RandomStream& isotropic,
                                    std::vector<float>& normals, std::span<float> rows_out) {
  const int32_t width = layer.width;
  const auto tokens = static_cast<int32_t>(s.token_of_row.size());
  const auto clusters = static_cast<int32_t>(s.cluster_offsets.size()) - 1;
  if (rows_out.size() != static_cast<size_t>(tokens) * width) {
    throw std::invalid_argument("draw_logits: output must be tokens x width");
  }
  for (int32_t c = 0; c < clusters; ++c) {
    const int32_t begin = s.cluster_offsets[c];
    const int32_t n = s.cluster_offsets[c + 1] - begin;
    if (n == 0) continue;
    float* block = rows_out.data() + static_cast<size_t>(begin) * width;
    const float* mean = layer.mean_logits.data() + static_cast<size_t>(c) * width;
    for (int32_t i = 0; i < n; ++i)
      std::copy_n(mean, width, block + static_cast<size_t>(i) * width);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, width, rank, 1.0f,
                s.offsets_sorted.data() + static_cast<size_t>(begin) * rank, rank,
                layer.offset_factor.data() + static_cast<size_t>(c) * rank * width, width, 1.0f,
                block, width);
  }
  if (layer.isotropic_rows > 0) {
    const int32_t q = layer.isotropic_rows;
    normals.resize(static_cast<size_t>(tokens) * q);
    fill_standard_normal(isotropic, normals);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, tokens, width, q, 1.0f, normals.data(),
                q, layer.isotropic_factor.data(), width, 1.0f, rows_out.data(), width);
  }
}

}  // namespace moesim
