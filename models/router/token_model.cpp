#include "models/router/token_model.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "models/router/normal.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

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
  if (rows_out.size() != static_cast<size_t>(tokens) * width) {
    throw std::invalid_argument("draw_logits: output must be tokens x width");
  }
  logit_rows(layer, s, rank, 0, tokens, rows_out.data(), width);
  if (layer.isotropic_rows > 0) {
    const int32_t q = layer.isotropic_rows;
    normals.resize(static_cast<size_t>(tokens) * q);
    fill_standard_normal(isotropic, normals);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, tokens, width, q, 1.0f, normals.data(),
                q, layer.isotropic_factor.data(), width, 1.0f, rows_out.data(), width);
  }
}

namespace {

struct LogitRowsArgs {
  const float* offsets;  // rows x rank, the sorted layout's u
  const int32_t* cluster_of_token;
  const int32_t* token_of_row;
  const float* mean_logits;    // clusters x width
  const float* offset_factor;  // clusters x (rank x width)
  int32_t rank, width, first, count;
  float* out;
  int64_t out_stride;
};

// One logit: the FMA chain over the rank from zero, then the mean added (one rounding each).
inline float logit_scalar(const float* u, const float* factor, int32_t rank, int64_t width,
                          float mean) {
  float acc = 0.0f;
  for (int32_t j = 0; j < rank; ++j) acc = std::fma(u[j], factor[j * width], acc);
  return mean + acc;
}

// Columns [from, width) of every row by logit_scalar: the scalar kernel and the vectors' tail.
void logit_rows_scalar(const LogitRowsArgs& a, int32_t from) {
  for (int32_t i = 0; i < a.count; ++i) {
    const int32_t row = a.first + i;
    const int32_t c = a.cluster_of_token[a.token_of_row[row]];
    const float* u = a.offsets + static_cast<size_t>(row) * a.rank;
    const float* factor = a.offset_factor + static_cast<size_t>(c) * a.rank * a.width;
    const float* mean = a.mean_logits + static_cast<size_t>(c) * a.width;
    float* out = a.out + i * a.out_stride;
    for (int32_t e = from; e < a.width; ++e) {
      out[e] = logit_scalar(u, factor + e, a.rank, a.width, mean[e]);
    }
  }
}

#if defined(__x86_64__) && defined(__GNUC__)
// Per row, kBlock vectors of columns at a time so that kBlock FMA chains run side by side (an FMA
// waits about four cycles for its chain's previous one, and two issue per cycle). V, the
// vector type and its operations, as a set of functions on one instruction set.
#define MOESIM_LOGIT_ROWS_BODY(V, kN, LOAD, STORE, SPLAT, FMA, ADD, ZERO, TAIL)           \
  const int32_t whole = a.width - a.width % (kN);                                         \
  for (int32_t i = 0; i < a.count; ++i) {                                                 \
    const int32_t row = a.first + i;                                                      \
    const int32_t c = a.cluster_of_token[a.token_of_row[row]];                            \
    const float* u = a.offsets + static_cast<size_t>(row) * a.rank;                       \
    const float* factor = a.offset_factor + static_cast<size_t>(c) * a.rank * a.width;    \
    const float* mean = a.mean_logits + static_cast<size_t>(c) * a.width;                 \
    float* out = a.out + i * a.out_stride;                                                \
    int32_t e = 0;                                                                        \
    constexpr int kBlock = 8;                                                             \
    for (; e + kBlock * (kN) <= whole; e += kBlock * (kN)) {                              \
      V acc[kBlock];                                                                      \
      _Pragma("GCC unroll 8") for (int b = 0; b < kBlock; ++b) acc[b] = ZERO;             \
      for (int32_t j = 0; j < a.rank; ++j) {                                              \
        const V uj = SPLAT(u[j]);                                                         \
        const float* f = factor + static_cast<size_t>(j) * a.width + e;                   \
        _Pragma("GCC unroll 8") for (int b = 0; b < kBlock; ++b) acc[b] =                 \
            FMA(uj, LOAD(f + b * (kN)), acc[b]);                                          \
      }                                                                                   \
      _Pragma("GCC unroll 8") for (int b = 0; b < kBlock; ++b)                            \
          STORE(out + e + b * (kN), ADD(LOAD(mean + e + b * (kN)), acc[b]));              \
    }                                                                                     \
    for (; e < whole; e += (kN)) {                                                        \
      V acc = ZERO;                                                                       \
      for (int32_t j = 0; j < a.rank; ++j) {                                              \
        acc = FMA(SPLAT(u[j]), LOAD(factor + static_cast<size_t>(j) * a.width + e), acc); \
      }                                                                                   \
      STORE(out + e, ADD(LOAD(mean + e), acc));                                           \
    }                                                                                     \
    TAIL                                                                                  \
  }

// The last width % 16 columns as one vector with the other lanes masked off (Mixtral's 8).
#define MOESIM_LOGIT_TAIL_AVX512                                                             \
  if (whole < a.width) {                                                                     \
    const auto m = static_cast<__mmask16>((1u << (a.width - whole)) - 1);                    \
    __m512 acc = _mm512_setzero_ps();                                                        \
    for (int32_t j = 0; j < a.rank; ++j) {                                                   \
      acc = _mm512_fmadd_ps(                                                                 \
          _mm512_set1_ps(u[j]),                                                              \
          _mm512_maskz_loadu_ps(m, factor + static_cast<size_t>(j) * a.width + whole), acc); \
    }                                                                                        \
    _mm512_mask_storeu_ps(out + whole, m,                                                    \
                          _mm512_add_ps(_mm512_maskz_loadu_ps(m, mean + whole), acc));       \
  }
// The last width % 8 columns one by one, as the scalar kernel makes them (inlined here, its
// std::fma is the FMA instruction).
#define MOESIM_LOGIT_TAIL_SCALAR                                          \
  for (int32_t col = whole; col < a.width; ++col) {                       \
    out[col] = logit_scalar(u, factor + col, a.rank, a.width, mean[col]); \
  }

__attribute__((target("avx512f"))) void logit_rows_avx512(const LogitRowsArgs& a) {
  MOESIM_LOGIT_ROWS_BODY(__m512, 16, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps,
                         _mm512_fmadd_ps, _mm512_add_ps, _mm512_setzero_ps(),
                         MOESIM_LOGIT_TAIL_AVX512)
}
__attribute__((target("avx2,fma"))) void logit_rows_avx2(const LogitRowsArgs& a) {
  MOESIM_LOGIT_ROWS_BODY(__m256, 8, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps,
                         _mm256_fmadd_ps, _mm256_add_ps, _mm256_setzero_ps(),
                         MOESIM_LOGIT_TAIL_SCALAR)
}
#undef MOESIM_LOGIT_TAIL_AVX512
#undef MOESIM_LOGIT_TAIL_SCALAR
#undef MOESIM_LOGIT_ROWS_BODY
#endif

}  // namespace

void ClusterTokenModel::logit_rows(const LogitSpaceLayer& layer, const TokenStructure& s,
                                   int32_t rank, int32_t first, int32_t count, float* out,
                                   int64_t out_stride, KernelWidth kernel) {
  const auto rows = static_cast<int32_t>(s.token_of_row.size());
  if (first < 0 || count < 0 || first > rows - count || out_stride < layer.width ||
      s.offsets_sorted.size() != static_cast<size_t>(rows) * rank) {
    throw std::invalid_argument("logit_rows: rows outside the batch or a short output stride");
  }
  const LogitRowsArgs args{s.offsets_sorted.data(),
                           s.cluster_of_token.data(),
                           s.token_of_row.data(),
                           layer.mean_logits.data(),
                           layer.offset_factor.data(),
                           rank,
                           layer.width,
                           first,
                           count,
                           out,
                           out_stride};
#if defined(__x86_64__) && defined(__GNUC__)
  if (kernel == KernelWidth::kNative) {
    if (__builtin_cpu_supports("avx512f")) {
      logit_rows_avx512(args);
      return;
    }
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
      logit_rows_avx2(args);
      return;
    }
  }
#else
  (void)kernel;
#endif
  logit_rows_scalar(args, 0);
}

}  // namespace moesim
