#include "models/router/router.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <optional>
#include <stdexcept>
#include <string>

#include "models/router/normal.h"
#include "models/router/tensor_file.h"

namespace moesim {
namespace {

[[noreturn]] void bad_field(const std::string& field, const std::string& expected) {
  throw std::invalid_argument("router spec: " + field + ": expected " + expected);
}

// Working memory of one thread; grows to the largest batch and is reused, so route() allocates
// nothing once warm and two threads never share buffers.
struct RouterScratch {
  TokenStructure structure;
  std::vector<float> hidden;
  std::vector<float> logits;
  std::vector<float> noise;
  std::vector<float> normals;
  GatingScratch gating;
};

RouterScratch& thread_scratch() {
  thread_local RouterScratch scratch;
  return scratch;
}

// The request's own stream: a child of (seed, "router") named by layer, micro-batch and rank.
RandomStream request_stream(uint64_t seed, const RoutingRequest& request) {
  char name[80];
  const int n = std::snprintf(name, sizeof(name), "l%d/m%lld/r%d", request.layer,
                              static_cast<long long>(request.micro_batch), request.rank);
  return RandomStream(seed, "router").fork(std::string_view(name, static_cast<size_t>(n)));
}

// The logit-space rows of a batch's structure, made on demand for route_from_logits.
class StructureLogitRows final : public LogitRowSource {
 public:
  StructureLogitRows(const LogitSpaceLayer& layer, const TokenStructure& structure, int32_t rank)
      : layer_(layer), structure_(structure), rank_(rank) {}
  void rows(int32_t first, int32_t count, float* out, int64_t stride) const override {
    ClusterTokenModel::logit_rows(layer_, structure_, rank_, first, count, out, stride);
  }

 private:
  const LogitSpaceLayer& layer_;
  const TokenStructure& structure_;
  int32_t rank_;
};

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace

void RouterSpec::validate() const {
  if (experts == 0) {
    // A dense model's router: no MoE layer, so nothing is ever routed (route() rejects every
    // layer), but the step can hold one like any other routing source.
    if (top_k != 0) bad_field("top_k", "0 with no experts (a dense model)");
    if (layers != 0) bad_field("layers", "0 with no experts (a dense model)");
  } else {
    if (experts < 1) bad_field("experts", ">= 0");
    if (top_k < 1 || top_k > std::min(experts, 64))
      bad_field("top_k", "1 <= top_k <= min(experts, 64)");
    if (layers < 1) bad_field("layers", ">= 1");
  }
  if (selection == RouterSelection::kGroupLimitedTopK) {
    if (groups < 1 || groups > 256 || experts % groups != 0) {
      bad_field("groups", "a divisor of experts, at most 256");
    }
    if (topk_group < 1 || topk_group > groups) bad_field("topk_group", "1 <= topk_group <= groups");
    if (top_k > topk_group * (experts / groups)) {
      bad_field("top_k", "at most topk_group * experts / groups");
    }
  }
  if (!(capacity_factor >= 0.0) || !std::isfinite(capacity_factor)) {
    bad_field("capacity_factor", "a finite number >= 0");
  }
  if (selection_bias && selection == RouterSelection::kExpertChoice) {
    bad_field("selection_bias", "false with expert-choice routing (the bias steers top-k)");
  }
  if (!(bias_update_rate >= 0.0) || !std::isfinite(bias_update_rate)) {
    bad_field("bias_update_rate", "a finite number >= 0");
  }
  if (!(routed_scaling > 0.0) || !std::isfinite(routed_scaling)) {
    bad_field("routed_scaling", "a finite number > 0");
  }
  if (shared_experts < 0) bad_field("shared_experts", ">= 0");
  if (source == TokenSourceKind::kHiddenStatesFile) {
    if (tokens_file.empty()) bad_field("tokens_file", "a .npy path for kHiddenStatesFile");
  } else if (tokens.hidden < 1) {
    bad_field("tokens.hidden", ">= 1");
  }
  if (gate_source != GateSourceKind::kRandom && gate_file.empty()) {
    bad_field("gate_file", "a path when gate weights are loaded");
  }
  if (gate_source == GateSourceKind::kSafetensors && gate_tensor.empty()) {
    bad_field("gate_tensor", "a tensor name");
  }
}

struct Router::LayerState {
  std::vector<float> gate;  // hidden x width
  LogitSpaceLayer logit;
};

Router::Router(const RouterSpec& spec) : spec_(spec) {
  spec_.validate();
  if (spec_.source == TokenSourceKind::kHiddenStatesFile) {
    FloatTensor t = load_npy(spec_.tokens_file);
    if (t.shape.size() != 2 || t.shape[0] < 1 || t.shape[1] < 1) {
      throw std::runtime_error(spec_.tokens_file + ": hidden states must have shape [tokens, " +
                               "hidden], got " + shape_text(t.shape));
    }
    if (spec_.tokens.hidden != 0 && spec_.tokens.hidden != t.shape[1]) {
      throw std::runtime_error(spec_.tokens_file + ": hidden size " + std::to_string(t.shape[1]) +
                               " differs from tokens.hidden " +
                               std::to_string(spec_.tokens.hidden));
    }
    spec_.tokens.hidden = static_cast<int32_t>(t.shape[1]);
    file_rows_ = t.shape[0];
    file_tokens_ = std::move(t.values);
  } else {
    token_model_ = std::make_unique<ClusterTokenModel>(spec_.tokens, spec_.seed);
  }
  bias_.assign(spec_.layers, std::vector<float>(spec_.experts, 0.0f));
  layers_.resize(spec_.layers);
  for (auto& l : layers_) l = std::make_unique<LayerState>();
  gate_once_ = std::make_unique<std::once_flag[]>(spec_.layers);
  logit_once_ = std::make_unique<std::once_flag[]>(spec_.layers);
}

Router::~Router() = default;

void Router::check_layer(int32_t layer) const {
  if (layer < 0 || layer >= spec_.layers) {
    throw std::out_of_range("router: layer " + std::to_string(layer) + " outside [0, " +
                            std::to_string(spec_.layers) + ")");
  }
}

std::vector<float> Router::make_gate(int32_t layer) const {
  const int32_t H = spec_.tokens.hidden;
  const int32_t E = spec_.experts;
  const int32_t width = gate_width();
  std::vector<float> gate(static_cast<size_t>(H) * width);
  RandomStream stream =
      RandomStream(spec_.seed, "router.gate").fork("layer " + std::to_string(layer));
  // N(0, 1/H) entries: a token with entries of unit variance gets logits of unit variance, the
  // O(1) scale of a trained router's logits.
  const auto scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(H)));
  const auto fill_random = [&](int32_t column0) {
    std::vector<float> block(static_cast<size_t>(H) * E);
    fill_standard_normal(stream, block);
    for (int32_t h = 0; h < H; ++h) {
      for (int32_t e = 0; e < E; ++e) {
        gate[static_cast<size_t>(h) * width + column0 + e] =
            scale * block[static_cast<size_t>(h) * E + e];
      }
    }
  };
  const auto place = [&](const FloatTensor& t, const std::string& what, int32_t column0) {
    std::vector<int64_t> shape = t.shape;
    size_t offset = 0;
    if (shape.size() == 3) {
      if (shape[0] <= layer) {
        throw std::runtime_error(spec_.gate_file + ": " + what + " stack has " +
                                 std::to_string(shape[0]) + " layers; layer " +
                                 std::to_string(layer) + " needed");
      }
      offset = static_cast<size_t>(layer) * shape[1] * shape[2];
      shape.erase(shape.begin());
    }
    const bool experts_first = spec_.gate_layout == GateLayout::kExpertsByHidden;
    const std::vector<int64_t> expected =
        experts_first ? std::vector<int64_t>{E, H} : std::vector<int64_t>{H, E};
    if (shape != expected) {
      throw std::runtime_error(spec_.gate_file + ": " + what + " has shape " + shape_text(t.shape) +
                               "; expected " + shape_text(expected) +
                               (experts_first ? " (experts x hidden)" : " (hidden x experts)"));
    }
    for (int32_t h = 0; h < H; ++h) {
      for (int32_t e = 0; e < E; ++e) {
        const size_t src =
            experts_first ? static_cast<size_t>(e) * H + h : static_cast<size_t>(h) * E + e;
        gate[static_cast<size_t>(h) * width + column0 + e] = t.values[offset + src];
      }
    }
  };
  const auto tensor_name = [&](std::string name) {
    const std::string key = "{layer}";
    for (size_t at = name.find(key); at != std::string::npos; at = name.find(key)) {
      name.replace(at, key.size(), std::to_string(layer));
    }
    return name;
  };
  switch (spec_.gate_source) {
    case GateSourceKind::kRandom:
      fill_random(0);
      if (spec_.noisy) fill_random(E);
      return gate;
    case GateSourceKind::kNpy:
      place(load_npy(spec_.gate_file), "gate", 0);
      break;
    case GateSourceKind::kSafetensors: {
      const std::string name = tensor_name(spec_.gate_tensor);
      place(load_safetensors(spec_.gate_file, name), "tensor '" + name + "'", 0);
      break;
    }
  }
  if (spec_.noisy) {
    if (spec_.gate_source == GateSourceKind::kSafetensors && !spec_.noise_tensor.empty()) {
      const std::string name = tensor_name(spec_.noise_tensor);
      place(load_safetensors(spec_.gate_file, name), "tensor '" + name + "'", E);
    } else {
      fill_random(E);
    }
  }
  for (const float v : gate) {
    if (!std::isfinite(v)) throw std::runtime_error(spec_.gate_file + ": gate holds NaN or inf");
  }
  return gate;
}

Router::LayerState& Router::layer_state(int32_t layer, bool need_gate) {
  check_layer(layer);
  LayerState& state = *layers_[layer];
  if (need_gate) {
    std::call_once(gate_once_[layer], [&] { state.gate = make_gate(layer); });
  } else {
    std::call_once(logit_once_[layer], [&] {
      // Keep only the small logit-space factors; the gate itself is dropped.
      state.logit = token_model_->logit_space(make_gate(layer), gate_width());
    });
  }
  return state;
}

std::span<const float> Router::gate(int32_t layer) {
  return layer_state(layer, true).gate;
}

std::span<const float> Router::bias(int32_t layer) const {
  check_layer(layer);
  return bias_[layer];
}

void Router::update_bias(int32_t layer, std::span<const int32_t> tokens_per_expert) {
  check_layer(layer);
  if (tokens_per_expert.size() != static_cast<size_t>(spec_.experts)) {
    throw std::invalid_argument("update_bias: need one load per expert");
  }
  double total = 0.0;
  for (const int32_t c : tokens_per_expert) total += c;
  const double mean = total / spec_.experts;
  const auto gamma = static_cast<float>(spec_.bias_update_rate);
  for (int32_t e = 0; e < spec_.experts; ++e) {
    const double d = tokens_per_expert[e] - mean;
    bias_[layer][e] -= gamma * static_cast<float>((d > 0.0) - (d < 0.0));
  }
}

void Router::route_hidden_states(const RoutingRequest& request, std::span<const float> hidden,
                                 RoutingDecision& out, RouterStats* stats) {
  const int32_t H = spec_.tokens.hidden;
  if (hidden.size() % H != 0) {
    throw std::invalid_argument("route_hidden_states: hidden states must be tokens x " +
                                std::to_string(H));
  }
  const auto T = static_cast<int32_t>(hidden.size() / H);
  const int32_t E = spec_.experts;
  const int32_t width = gate_width();
  std::span<const float> gate_weights = layer_state(request.layer, true).gate;
  RouterScratch& sc = thread_scratch();
  RandomStream stream = request_stream(spec_.seed, request);
  if (spec_.noisy) {
    RandomStream noise = stream.fork("noise");
    sc.noise.resize(static_cast<size_t>(T) * E);
    fill_standard_normal(noise, sc.noise);
  }
  sc.logits.resize(static_cast<size_t>(T) * width);
  if (T > 0) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, width, H, 1.0f, hidden.data(), H,
                gate_weights.data(), width, 0.0f, sc.logits.data(), width);
  }
  const LogitRows rows{sc.logits.data(), T, width, {}};
  route_from_logits(spec_, rows,
                    spec_.noisy ? std::span<const float>(sc.noise) : std::span<const float>(),
                    spec_.selection_bias ? std::span<const float>(bias_[request.layer])
                                         : std::span<const float>(),
                    sc.gating, out, stats);
}

void Router::route_with_stats(const RoutingRequest& request, RoutingDecision& out,
                              RouterStats* stats) {
  check_layer(request.layer);
  if (request.tokens < 0) throw std::invalid_argument("router: negative token count");
  const int32_t T = request.tokens;
  const int32_t E = spec_.experts;
  const int32_t H = spec_.tokens.hidden;
  const int32_t width = gate_width();
  RouterScratch& sc = thread_scratch();
  RandomStream stream = request_stream(spec_.seed, request);

  if (spec_.source == TokenSourceKind::kHiddenStatesFile) {
    sc.hidden.resize(static_cast<size_t>(T) * H);
    read_file_window(request, sc.hidden);
    route_hidden_states(request, sc.hidden, out, stats);
    return;
  }

  RandomStream token_stream = stream.fork("tokens");
  RandomStream isotropic = stream.fork("isotropic");
  token_model_->draw_structure(token_stream, T, sc.structure);
  LogitRows rows{nullptr, T, width, sc.structure.token_of_row};
  std::optional<StructureLogitRows> block_rows;
  if (spec_.source == TokenSourceKind::kLogitSpace) {
    const LayerState& state = layer_state(request.layer, false);
    if (state.logit.isotropic_rows == 0) {
      // Rows made a block at a time while the gating scores them (no isotropic part to add by
      // a GEMM over the whole batch).
      block_rows.emplace(state.logit, sc.structure, spec_.tokens.offset_rank);
      rows.source = &*block_rows;
    } else {
      sc.logits.resize(static_cast<size_t>(T) * width);
      ClusterTokenModel::draw_logits(state.logit, sc.structure, spec_.tokens.offset_rank, isotropic,
                                     sc.normals, sc.logits);
      rows.data = sc.logits.data();
    }
  } else {
    std::span<const float> gate_weights = layer_state(request.layer, true).gate;
    sc.hidden.resize(static_cast<size_t>(T) * H);
    token_model_->hidden_states(sc.structure, isotropic, sc.hidden);
    sc.logits.resize(static_cast<size_t>(T) * width);
    if (T > 0) {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, width, H, 1.0f, sc.hidden.data(), H,
                  gate_weights.data(), width, 0.0f, sc.logits.data(), width);
    }
    rows.data = sc.logits.data();
  }
  if (spec_.noisy) {
    RandomStream noise = stream.fork("noise");
    sc.noise.resize(static_cast<size_t>(T) * E);
    fill_standard_normal(noise, sc.noise);
  }
  route_from_logits(spec_, rows,
                    spec_.noisy ? std::span<const float>(sc.noise) : std::span<const float>(),
                    spec_.selection_bias ? std::span<const float>(bias_[request.layer])
                                         : std::span<const float>(),
                    sc.gating, out, stats);
}

// Each (micro-batch, rank) reads the next window of the file, wrapping around.
void Router::read_file_window(const RoutingRequest& request, std::span<float> out) const {
  const int32_t T = request.tokens;
  const int32_t H = spec_.tokens.hidden;
  const int64_t first =
      ((request.micro_batch * request.ranks + request.rank) * static_cast<int64_t>(T)) % file_rows_;
  for (int32_t t = 0; t < T; ++t) {
    const int64_t row = (first + t) % file_rows_;
    std::copy_n(file_tokens_.data() + row * H, H, out.data() + static_cast<size_t>(t) * H);
  }
}

void Router::token_hidden_states(const RoutingRequest& request, std::vector<float>& out) {
  check_layer(request.layer);
  if (request.tokens < 0) throw std::invalid_argument("router: negative token count");
  const int32_t T = request.tokens;
  const int32_t H = spec_.tokens.hidden;
  out.resize(static_cast<size_t>(T) * H);
  if (spec_.source == TokenSourceKind::kLogitSpace) {
    throw std::invalid_argument(
        "router: a logit-space token source draws logits, not hidden states");
  }
  if (spec_.source == TokenSourceKind::kHiddenStatesFile) {
    read_file_window(request, out);  // the window route() reads for this request
    return;
  }
  // The same streams and draws as route(); the rows come sorted by cluster, so put them back in
  // token order.
  RandomStream stream = request_stream(spec_.seed, request);
  RandomStream token_stream = stream.fork("tokens");
  RandomStream isotropic = stream.fork("isotropic");
  TokenStructure structure;
  token_model_->draw_structure(token_stream, T, structure);
  std::vector<float> sorted(static_cast<size_t>(T) * H);
  token_model_->hidden_states(structure, isotropic, sorted);
  for (int32_t row = 0; row < T; ++row) {
    std::copy_n(sorted.data() + static_cast<size_t>(row) * H, H,
                out.data() + static_cast<size_t>(structure.token_of_row[row]) * H);
  }
}

const char* token_model_origin_name(TokenModelOrigin origin) {
  switch (origin) {
    case TokenModelOrigin::kDefault:
      return "default (uncalibrated)";
    case TokenModelOrigin::kScenario:
      return "scenario-given";
    case TokenModelOrigin::kFitted:
      return "fitted";
    case TokenModelOrigin::kTrace:
      return "trace";
  }
  return "?";
}

std::string token_model_summary(const RouterSpec& spec) {
  if (spec.token_model_origin == TokenModelOrigin::kTrace) {
    return "none: routing replayed from " + spec.token_model_fitted_to;
  }
  if (spec.source == TokenSourceKind::kHiddenStatesFile) {
    return "none: hidden states read from " + spec.tokens_file;
  }
  const TokenModel& t = spec.tokens;
  char params[256];
  std::snprintf(params, sizeof(params),
                "%d clusters, zipf %.3g, centre %.3g, common centre %.3g, spread %.3g, isotropic "
                "%.3g, sequence correlation %.3g, offset correlation %.3g",
                t.clusters, t.popularity_exponent, t.centre_scale, t.common_scale, t.offset_scale,
                t.isotropic_scale, t.stay_probability, t.offset_correlation);
  std::string text = token_model_origin_name(spec.token_model_origin);
  if (spec.token_model_origin == TokenModelOrigin::kFitted) {
    text += " to " + spec.token_model_fitted_to;
  } else if (spec.token_model_origin == TokenModelOrigin::kDefault) {
    text = "default, calibrated to no routing data";
  }
  return text + " (" + params + ")";
}

}  // namespace moesim
