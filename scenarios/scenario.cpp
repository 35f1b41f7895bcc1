// Scenario loading: the protobuf text parser with an error collector for syntax errors, then
// resolution of every field into the plain structs, with semantic errors located by the
// parser's ParseInfoTree (file:line:column of the offending field).
#include "scenarios/scenario.h"

#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <fstream>
#include <sstream>
#include <system_error>

#include "models/moe/placement.h"
#include "models/network/comm_kernel.h"
#include "models/network/network_tier.h"
#include "scenarios/scenario.pb.h"
#include "scenarios/topology_file.h"
#include "scenarios/units_parse.h"
#include "topologies/presets.h"

namespace moesim {

namespace {

namespace pb = google::protobuf;
using ParseInfoTree = pb::TextFormat::ParseInfoTree;

constexpr std::array<std::string_view, 8> kSweepAxes = {"capacity_factor", "top_k",        "ep",
                                                        "tokens_per_gpu",  "topology",     "gpu",
                                                        "drop_policy",     "zipf_exponent"};

class SyntaxErrors final : public pb::io::ErrorCollector {
 public:
  explicit SyntaxErrors(std::string file) : file_(std::move(file)) {}
  void AddError(int line, pb::io::ColumnNumber column, const std::string& message) override {
    if (!first_.empty()) return;
    first_ =
        file_ + ":" + std::to_string(line + 1) + ":" + std::to_string(column + 1) + ": " + message;
  }
  const std::string& first() const { return first_; }

 private:
  std::string file_;
  std::string first_;
};

// A message of the scenario being resolved, with where it came from for error messages.
struct Node {
  const pb::Message* message = nullptr;
  const ParseInfoTree* tree = nullptr;     // null where the text did not set the message
  std::string path;                        // "parallelism", "cluster.gpu"
  pb::TextFormat::ParseLocation location;  // of the message itself; line -1 if unknown
};

class Resolver {
 public:
  Resolver(std::string file, std::filesystem::path base_dir, const ParseInfoTree* root_tree)
      : file_(std::move(file)), base_dir_(std::move(base_dir)), root_tree_(root_tree) {}

  Scenario resolve(const proto::Scenario& in, bool derive_dp) const;

 private:
  Node root(const proto::Scenario& in) const {
    return Node{&in, root_tree_, "", pb::TextFormat::ParseLocation(0, 0)};
  }
  Node child(const Node& parent, std::string_view field) const {
    const pb::FieldDescriptor* fd =
        parent.message->GetDescriptor()->FindFieldByName(std::string(field));
    Node n;
    n.message = &parent.message->GetReflection()->GetMessage(*parent.message, fd);
    n.path = parent.path.empty() ? std::string(field) : parent.path + "." + std::string(field);
    if (parent.tree != nullptr) {
      n.location = parent.tree->GetLocation(fd, -1);
      if (n.location.line >= 0) n.tree = parent.tree->GetTreeForNested(fd, -1);
    }
    if (n.location.line < 0) n.location = parent.location;
    return n;
  }

  // "file:line:col: path.field: what", pointing at the field if the text set it, else at the
  // enclosing message.
  [[noreturn]] void fail(const Node& n, std::string_view field, const std::string& what,
                         int index = -1) const {
    pb::TextFormat::ParseLocation loc = n.location;
    if (!field.empty() && n.tree != nullptr) {
      const pb::FieldDescriptor* fd =
          n.message->GetDescriptor()->FindFieldByName(std::string(field));
      if (fd != nullptr) {
        // The tree wants -1 for a singular field and an index for a repeated one.
        if (fd->is_repeated() && index < 0) index = 0;
        if (!fd->is_repeated()) index = -1;
        const pb::TextFormat::ParseLocation at = n.tree->GetLocation(fd, index);
        if (at.line >= 0) loc = at;
      }
    }
    std::string where = file_;
    if (loc.line >= 0) {
      where += ":" + std::to_string(loc.line + 1) + ":" + std::to_string(loc.column + 1);
    }
    std::string name = n.path;
    if (!field.empty()) name += (name.empty() ? "" : ".") + std::string(field);
    throw ScenarioError(where + ": " + (name.empty() ? "" : name + ": ") + what);
  }

  int32_t positive_int(const Node& n, std::string_view field, bool has, int32_t value) const {
    if (has && value <= 0) {
      fail(n, field, "must be positive, got " + std::to_string(value));
    }
    return value;
  }
  std::filesystem::path resolve_path(const std::string& text) const {
    std::filesystem::path p(text);
    if (p.is_relative()) p = base_dir_ / p;
    return p.lexically_normal();
  }
  std::filesystem::path existing_file(const Node& n, std::string_view field,
                                      const std::string& text) const {
    if (text.empty()) fail(n, field, "is empty, expected a file path");
    std::filesystem::path p = resolve_path(text);
    std::error_code ec;
    if (!std::filesystem::is_regular_file(p, ec)) {
      fail(n, field, "no such file: " + p.string());
    }
    return p;
  }

  ElementFormat element_format(const Node& parent, std::string_view field) const;
  ModelSpec model(const Node& n) const;
  GpuSpec gpu(const Node& n) const;
  ClusterSpec cluster(const Node& n) const;
  ParallelPlan parallel(const Node& n, const ModelSpec& model, const ClusterSpec& cluster,
                        bool derive_dp) const;
  Workload workload(const Node& n, const ParallelPlan& plan) const;
  OffloadConfig offload(const Node& n, const ModelSpec& model, const Workload& workload,
                        const RouterSpec& router) const;
  RouterSpec router(const Node& n, const ModelSpec& model, const Workload& workload,
                    uint64_t seed) const;

  std::string file_;
  std::filesystem::path base_dir_;
  const ParseInfoTree* root_tree_;
};

std::string list_names(std::span<const std::string_view> names) {
  std::string out;
  for (std::string_view n : names) out += (out.empty() ? "" : ", ") + std::string(n);
  return out;
}

template <typename Presets>
std::string preset_names(const Presets& presets) {
  std::string out;
  for (const auto& p : presets) out += (out.empty() ? "" : ", ") + p.name;
  return out;
}

ElementFormat Resolver::element_format(const Node& parent, std::string_view field) const {
  const Node n = child(parent, field);
  const auto& in = static_cast<const proto::ElementFormat&>(*n.message);
  ElementFormat f;
  if (!in.has_dtype()) fail(n, "dtype", "is required: fp32, bf16, fp16 or fp8");
  const std::optional<Dtype> d = dtype_from_name(in.dtype());
  if (!d) fail(n, "dtype", "unknown dtype '" + in.dtype() + "', expected fp32, bf16, fp16 or fp8");
  f.dtype = *d;
  if (in.has_scale_bytes() != in.has_scale_block_elements()) {
    fail(n, in.has_scale_bytes() ? "scale_bytes" : "scale_block_elements",
         "scale_bytes and scale_block_elements go together");
  }
  if (in.has_scale_bytes()) {
    f.scale_bytes = positive_int(n, "scale_bytes", true, in.scale_bytes());
    f.scale_block_elements =
        positive_int(n, "scale_block_elements", true, in.scale_block_elements());
  }
  return f;
}

ModelSpec Resolver::model(const Node& n) const {
  const auto& in = static_cast<const proto::Model&>(*n.message);
  ModelSpec m;
  const bool preset = in.has_preset();
  if (preset) {
    const ModelSpec* p = find_model_preset(in.preset());
    if (p == nullptr) {
      fail(n, "preset",
           "unknown model preset '" + in.preset() + "'; presets: " + preset_names(model_presets()));
    }
    m = *p;
  } else {
    m.name = "custom";
    const std::pair<bool, std::string_view> required[] = {
        {in.has_layers(), "layers"},
        {in.has_hidden_size(), "hidden_size"},
        {in.has_attention_heads(), "attention_heads"},
        {in.has_routed_experts(), "routed_experts"},
        {in.has_vocab_size(), "vocab_size"}};
    for (const auto& [has, name] : required) {
      if (!has) fail(n, "", std::string(name) + " is required when no preset is named");
    }
    // routed_experts 0 is a dense model: no experts to size or pick.
    if (in.routed_experts() > 0) {
      if (!in.has_expert_ffn_size()) {
        fail(n, "", "expert_ffn_size is required when no preset is named");
      }
      if (!in.has_top_k()) fail(n, "", "top_k is required when no preset is named");
    }
  }
  // Each set field overrides the preset's value after a sign check; cross-field rules follow.
  auto take = [&](bool has, int32_t value, std::string_view field, int32_t& out, bool zero_ok) {
    if (!has) return;
    if (value < 0 || (value == 0 && !zero_ok)) {
      fail(n, field,
           std::string(zero_ok ? "must be >= 0" : "must be positive") + ", got " +
               std::to_string(value));
    }
    out = value;
  };
  take(in.has_layers(), in.layers(), "layers", m.layers, false);
  take(in.has_dense_layers(), in.dense_layers(), "dense_layers", m.dense_layers, true);
  take(in.has_hidden_size(), in.hidden_size(), "hidden_size", m.hidden_size, false);
  take(in.has_attention_heads(), in.attention_heads(), "attention_heads", m.attention_heads, false);
  take(in.has_kv_heads(), in.kv_heads(), "kv_heads", m.kv_heads, false);
  take(in.has_head_dim(), in.head_dim(), "head_dim", m.head_dim, false);
  take(in.has_expert_ffn_size(), in.expert_ffn_size(), "expert_ffn_size", m.expert_ffn_size, false);
  take(in.has_dense_ffn_size(), in.dense_ffn_size(), "dense_ffn_size", m.dense_ffn_size, false);
  take(in.has_routed_experts(), in.routed_experts(), "routed_experts", m.routed_experts, true);
  take(in.has_shared_experts(), in.shared_experts(), "shared_experts", m.shared_experts, true);
  take(in.has_top_k(), in.top_k(), "top_k", m.top_k, m.is_dense());
  take(in.has_expert_groups(), in.expert_groups(), "expert_groups", m.expert_groups, false);
  take(in.has_topk_groups(), in.topk_groups(), "topk_groups", m.topk_groups, false);
  take(in.has_vocab_size(), in.vocab_size(), "vocab_size", m.vocab_size, false);
  take(in.has_kv_lora_rank(), in.kv_lora_rank(), "kv_lora_rank", m.kv_lora_rank, true);
  take(in.has_q_lora_rank(), in.q_lora_rank(), "q_lora_rank", m.q_lora_rank, true);
  take(in.has_qk_rope_head_dim(), in.qk_rope_head_dim(), "qk_rope_head_dim", m.qk_rope_head_dim,
       true);
  take(in.has_v_head_dim(), in.v_head_dim(), "v_head_dim", m.v_head_dim, false);
  take(in.has_moe_layer_interval(), in.moe_layer_interval(), "moe_layer_interval",
       m.moe_layer_interval, false);
  take(in.has_ffn_matrices(), in.ffn_matrices(), "ffn_matrices", m.ffn_matrices, false);
  if (!preset) {
    if (!in.has_kv_heads()) m.kv_heads = m.attention_heads;
    if (!in.has_head_dim()) {
      if (m.hidden_size % m.attention_heads != 0) {
        fail(n, "head_dim",
             "is required: hidden_size " + std::to_string(m.hidden_size) +
                 " is not divisible by attention_heads " + std::to_string(m.attention_heads));
      }
      m.head_dim = m.hidden_size / m.attention_heads;
    }
  }
  if (in.has_scoring()) {
    if (in.scoring() == proto::SCORING_UNSPECIFIED)
      fail(n, "scoring", "expected SOFTMAX or SIGMOID");
    m.scoring = in.scoring() == proto::SIGMOID ? Scoring::kSigmoid : Scoring::kSoftmax;
  }
  if (in.has_routed_scaling_factor()) {
    if (!(in.routed_scaling_factor() > 0.0)) {
      fail(n, "routed_scaling_factor", "must be positive");
    }
    m.routed_scaling_factor = in.routed_scaling_factor();
  }
  if (in.has_normalize_topk()) m.normalize_topk = in.normalize_topk();
  if (in.has_weights()) m.weights = element_format(n, "weights");
  if (in.has_dispatch()) m.dispatch = element_format(n, "dispatch");
  if (in.has_combine()) m.combine = element_format(n, "combine");

  if (m.is_dense()) {
    // A dense model (routed_experts 0): the expert fields would describe nothing, so a value
    // that would matter for an MoE model is an error rather than ignored.
    if (m.top_k != 0) {
      fail(n, "top_k",
           "must be 0 (or left out) for a dense model (routed_experts 0), got " +
               std::to_string(m.top_k));
    }
    if (m.shared_experts != 0) {
      fail(n, "shared_experts", "must be 0 for a dense model (routed_experts 0)");
    }
    if (m.expert_groups != 1 || m.topk_groups != 1) {
      fail(n, m.expert_groups != 1 ? "expert_groups" : "topk_groups",
           "must be 1 (or left out) for a dense model (routed_experts 0)");
    }
    if (m.dense_ffn_size <= 0) {
      fail(n, "dense_ffn_size", "is required: a dense model (routed_experts 0) has dense FFNs");
    }
  } else if (m.dense_layers >= m.layers && m.layers > 0) {
    fail(n, "dense_layers",
         std::to_string(m.dense_layers) + " dense layers leave no MoE layer among " +
             std::to_string(m.layers));
  }
  if (m.ffn_matrices != 2 && m.ffn_matrices != 3) {
    fail(n, "ffn_matrices",
         "expected 2 (plain FFN) or 3 (gated FFN), got " + std::to_string(m.ffn_matrices));
  }
  if (!m.is_dense() && m.moe_layer_count() == 0) {
    fail(n, "moe_layer_interval",
         "leaves no MoE layer among " + std::to_string(m.layers - m.dense_layers) +
             " layers after the dense ones");
  }
  if (m.moe_layer_count() < m.layers && m.dense_ffn_size <= 0) {
    fail(n, "dense_ffn_size", "is required: the model has dense FFN layers");
  }
  if (m.kv_lora_rank > 0) {
    m.attention = AttentionKind::kMla;
    if (m.qk_rope_head_dim <= 0) fail(n, "qk_rope_head_dim", "is required with kv_lora_rank (MLA)");
    if (m.v_head_dim <= 0) fail(n, "v_head_dim", "is required with kv_lora_rank (MLA)");
  } else {
    m.attention = AttentionKind::kGqa;
    m.q_lora_rank = 0;
    if (m.attention_heads % m.kv_heads != 0) {
      fail(n, "kv_heads",
           "attention_heads " + std::to_string(m.attention_heads) +
               " is not divisible by kv_heads " + std::to_string(m.kv_heads));
    }
  }
  if (m.top_k > m.routed_experts) {
    fail(n, "top_k",
         "top_k " + std::to_string(m.top_k) + " exceeds routed_experts " +
             std::to_string(m.routed_experts));
  }
  if (m.routed_experts % m.expert_groups != 0) {
    fail(n, "expert_groups",
         "routed_experts " + std::to_string(m.routed_experts) + " is not divisible by " +
             std::to_string(m.expert_groups) + " expert groups");
  }
  if (m.topk_groups > m.expert_groups) {
    fail(n, "topk_groups",
         "topk_groups " + std::to_string(m.topk_groups) + " exceeds expert_groups " +
             std::to_string(m.expert_groups));
  }
  if (m.expert_groups > 1 && m.top_k > m.topk_groups * (m.routed_experts / m.expert_groups)) {
    fail(n, "top_k",
         "top_k " + std::to_string(m.top_k) + " exceeds the " +
             std::to_string(m.topk_groups * (m.routed_experts / m.expert_groups)) +
             " experts in the topk_groups selected groups");
  }
  if (m.weights.dtype == Dtype::kFp32) {
    fail(n, "weights", "fp32 weights are not modelled; expected bf16, fp16 or fp8");
  }
  return m;
}

GpuSpec Resolver::gpu(const Node& n) const {
  const auto& in = static_cast<const proto::Gpu&>(*n.message);
  GpuSpec g;
  if (in.has_preset()) {
    const GpuSpec* p = find_gpu_preset(in.preset());
    if (p == nullptr) {
      fail(n, "preset",
           "unknown GPU preset '" + in.preset() + "'; presets: " + preset_names(gpu_presets()));
    }
    g = *p;
  } else {
    g.name = "custom";
    const std::pair<bool, std::string_view> required[] = {
        {in.has_peak_tflops_bf16(), "peak_tflops_bf16"},
        {in.has_hbm_bandwidth(), "hbm_bandwidth"},
        {in.has_hbm_capacity(), "hbm_capacity"}};
    for (const auto& [has, name] : required) {
      if (!has) fail(n, "", std::string(name) + " is required when no preset is named");
    }
  }
  if (in.has_peak_tflops_bf16()) {
    if (!(in.peak_tflops_bf16() > 0.0)) fail(n, "peak_tflops_bf16", "must be positive");
    g.peak_flops_bf16 = in.peak_tflops_bf16() * 1e12;
    if (!in.has_preset() && !in.has_peak_tflops_fp8()) g.peak_flops_fp8 = g.peak_flops_bf16;
  }
  if (in.has_peak_tflops_fp8()) {
    if (!(in.peak_tflops_fp8() > 0.0)) fail(n, "peak_tflops_fp8", "must be positive");
    g.peak_flops_fp8 = in.peak_tflops_fp8() * 1e12;
  }
  try {
    if (in.has_hbm_bandwidth()) g.hbm_bandwidth = parse_bandwidth(in.hbm_bandwidth());
  } catch (const std::invalid_argument& e) {
    fail(n, "hbm_bandwidth", e.what());
  }
  if (in.has_hbm_bandwidth() && !(g.hbm_bandwidth.bytes_per_second() > 0.0)) {
    fail(n, "hbm_bandwidth", "must be positive");
  }
  try {
    if (in.has_hbm_capacity()) g.hbm_capacity = parse_bytes(in.hbm_capacity());
  } catch (const std::invalid_argument& e) {
    fail(n, "hbm_capacity", e.what());
  }
  if (in.has_hbm_capacity() && g.hbm_capacity.count() <= 0)
    fail(n, "hbm_capacity", "must be positive");
  // The efficiency model's fields: fractions in (0, 1] and half-efficiency sizes >= 0.
  const auto fraction = [&](bool has, double value, const char* field, double& out) {
    if (!has) return;
    if (!(value > 0.0 && value <= 1.0)) fail(n, field, "expected a value in (0, 1]");
    out = value;
  };
  const auto non_negative = [&](bool has, double value, const char* field, double& out) {
    if (!has) return;
    if (!(value >= 0.0)) fail(n, field, "must be >= 0");
    out = value;
  };
  fraction(in.has_gemm_efficiency_max(), in.gemm_efficiency_max(), "gemm_efficiency_max",
           g.gemm_efficiency_max);
  non_negative(in.has_gemm_half_efficiency_rows(), in.gemm_half_efficiency_rows(),
               "gemm_half_efficiency_rows", g.gemm_half_efficiency_rows);
  fraction(in.has_attention_efficiency_max(), in.attention_efficiency_max(),
           "attention_efficiency_max", g.attention_efficiency_max);
  non_negative(in.has_attention_half_efficiency_length(), in.attention_half_efficiency_length(),
               "attention_half_efficiency_length", g.attention_half_efficiency_length);
  fraction(in.has_memory_efficiency(), in.memory_efficiency(), "memory_efficiency",
           g.memory_efficiency);
  if (in.has_kernel_launch()) {
    try {
      g.kernel_launch = parse_time(in.kernel_launch());
    } catch (const std::invalid_argument& e) {
      fail(n, "kernel_launch", e.what());
    }
  }
  if (in.has_grouped_gemm_kernel()) {
    const std::optional<GroupedGemmKernel> k =
        grouped_gemm_kernel_from_name(in.grouped_gemm_kernel());
    if (!k) {
      fail(n, "grouped_gemm_kernel",
           "unknown kernel family '" + in.grouped_gemm_kernel() +
               "', expected cublas-dense, pytorch-grouped or deepgemm");
    }
    g.grouped_gemm_kernel = *k;
  }
  return g;
}

ClusterSpec Resolver::cluster(const Node& n) const {
  const auto& in = static_cast<const proto::Cluster&>(*n.message);
  ClusterSpec c;
  if (in.has_topology() == in.has_topology_file()) {
    fail(n, in.has_topology() ? "topology_file" : "",
         "set exactly one of topology (a preset) and topology_file");
  }
  if (!in.has_gpu()) fail(n, "", "gpu is required (a preset or explicit figures)");
  c.gpu = gpu(child(n, "gpu"));
  if (in.has_completion_tolerance()) {
    if (!(in.completion_tolerance() >= 0.0 && in.completion_tolerance() < 1.0)) {
      fail(n, "completion_tolerance", "expected a fraction in [0, 1) (0 is exact max-min)");
    }
    c.completion_tolerance = in.completion_tolerance();
  }
  if (in.has_network_model()) {
    switch (in.network_model()) {
      case proto::EXACT:
        c.network_tier = NetworkTier::kExact;
        break;
      case proto::FAST:
        if (c.completion_tolerance > 0.0) {
          fail(n, "network_model",
               "FAST takes no completion_tolerance (it applies to the EXACT model only)");
        }
        c.network_tier = NetworkTier::kFast;
        break;
      default:
        fail(n, "network_model",
             "expected EXACT or FAST (or leave it out: EXACT below " +
                 std::to_string(kFastTierFromGpus) + " GPUs, FAST from there on)");
    }
  }

  if (in.has_comm_sms()) {
    if (in.comm_sms() < 1 || in.comm_sms() >= kDefaultCommKernel.gpu_sms) {
      fail(n, "comm_sms",
           "expected SMs in [1, " + std::to_string(kDefaultCommKernel.gpu_sms) +
               ") (of an H800's " + std::to_string(kDefaultCommKernel.gpu_sms) + "), got " +
               std::to_string(in.comm_sms()));
    }
    c.comm_sms = in.comm_sms();
  }
  if (in.has_exchange_kernels()) {
    switch (in.exchange_kernels()) {
      case proto::NORMAL:
        c.low_latency_exchanges = false;
        break;
      case proto::LOW_LATENCY:
        c.low_latency_exchanges = true;
        break;
      default:
        fail(n, "exchange_kernels", "expected NORMAL or LOW_LATENCY (or leave it out: NORMAL)");
    }
  }

  if (in.has_topology_file()) {
    for (std::string_view f :
         {"nodes", "nic_bandwidth", "oversubscription", "fabric_routing", "spines"}) {
      const pb::FieldDescriptor* fd = in.GetDescriptor()->FindFieldByName(std::string(f));
      if (in.GetReflection()->HasField(in, fd)) {
        fail(n, f, "applies to topology presets only, not to a topology_file");
      }
    }
    c.topology_file = existing_file(n, "topology_file", in.topology_file());
    try {
      const Topology topology = load_topology_file(c.topology_file);
      c.gpu_count = topology.gpu_count();
      c.gpus_per_node = topology.gpus_per_node();
    } catch (const std::exception& e) {
      fail(n, "topology_file", e.what());
    }
    return c;
  }

  c.topology_preset = in.topology();
  if (in.has_nodes()) c.nodes = positive_int(n, "nodes", true, in.nodes());
  if (in.has_nic_bandwidth()) {
    try {
      c.nic_gbps = parse_bandwidth(in.nic_bandwidth()).gigabits_per_second();
    } catch (const std::invalid_argument& e) {
      fail(n, "nic_bandwidth", e.what());
    }
    if (!(*c.nic_gbps > 0.0)) fail(n, "nic_bandwidth", "must be positive");
  }
  if (in.has_oversubscription()) {
    if (!(in.oversubscription() >= 1.0)) {
      fail(n, "oversubscription", "expected >= 1 (1 is non-blocking)");
    }
    c.oversubscription = in.oversubscription();
  }
  if (in.has_fabric_routing()) {
    switch (in.fabric_routing()) {
      case proto::ADAPTIVE:
        c.fabric_routing = FabricRouting::kAdaptive;
        break;
      case proto::ECMP:
        c.fabric_routing = FabricRouting::kEcmp;
        break;
      default:
        fail(n, "fabric_routing",
             "expected ADAPTIVE or ECMP (or leave it out: " +
                 std::string(to_string(kDefaultFabricRouting)) + ")");
    }
  }
  if (in.has_spines()) {
    c.spines = positive_int(n, "spines", true, in.spines());
    if (c.fabric_routing != FabricRouting::kEcmp) {
      fail(n, "spines",
           "a spine count applies to fabric_routing: ECMP; adaptive routing spreads packets over "
           "every spine, modelled as one");
    }
  }
  try {
    ClusterOptions options;
    options.preset = c.topology_preset;
    options.nodes = c.nodes;
    options.nic_gbps = c.nic_gbps;
    options.oversubscription = c.oversubscription;
    options.routing = c.fabric_routing;
    options.spines = c.spines;
    const Topology topology = build_cluster(options);
    c.gpu_count = topology.gpu_count();
    c.gpus_per_node = topology.gpus_per_node();
  } catch (const std::invalid_argument& e) {
    fail(n, "topology", e.what());
  }
  return c;
}

ParallelPlan Resolver::parallel(const Node& n, const ModelSpec& model, const ClusterSpec& cluster,
                                bool derive_dp) const {
  const auto& in = static_cast<const proto::Parallelism&>(*n.message);
  ParallelPlan p;
  p.tp = in.has_tp() ? positive_int(n, "tp", true, in.tp()) : 1;
  p.ep = in.has_ep() ? positive_int(n, "ep", true, in.ep()) : 1;
  p.dp = in.has_dp() ? positive_int(n, "dp", true, in.dp()) : 1;
  p.pp = in.has_pp() ? positive_int(n, "pp", true, in.pp()) : 1;
  if (derive_dp) {
    const int64_t others = int64_t{p.tp} * p.ep * p.pp;
    if (cluster.gpu_count % others != 0) {
      fail(n, "ep",
           "tp*ep*pp = " + std::to_string(others) + " does not divide the cluster's " +
               std::to_string(cluster.gpu_count) + " GPUs");
    }
    p.dp = static_cast<int32_t>(cluster.gpu_count / others);
  }
  if (p.world_size() != cluster.gpu_count) {
    fail(n, "",
         "tp*ep*dp*pp = " + std::to_string(p.tp) + "*" + std::to_string(p.ep) + "*" +
             std::to_string(p.dp) + "*" + std::to_string(p.pp) + " = " +
             std::to_string(p.world_size()) + " but the cluster has " +
             std::to_string(cluster.gpu_count) + " GPUs");
  }
  if (model.attention_heads % p.tp != 0) {
    fail(n, "tp",
         "attention_heads " + std::to_string(model.attention_heads) + " is not divisible by tp " +
             std::to_string(p.tp));
  }
  if (p.pp > model.layers) {
    fail(n, "pp",
         "pp " + std::to_string(p.pp) + " exceeds the model's " + std::to_string(model.layers) +
             " layers");
  }
  if (in.has_placement()) {
    switch (in.placement()) {
      case proto::CONTIGUOUS:
        p.placement = PlacementKind::kContiguous;
        break;
      case proto::ROUND_ROBIN:
        p.placement = PlacementKind::kRoundRobin;
        break;
      case proto::EXPLICIT:
        p.placement = PlacementKind::kExplicit;
        break;
      default:
        fail(n, "placement", "expected CONTIGUOUS, ROUND_ROBIN or EXPLICIT");
    }
  }
  if (model.is_dense() && p.ep != 1) {
    fail(n, "ep",
         "must be 1 for a dense model (" + model.name +
             " has no routed experts); use dp for more replicas");
  }
  if (p.placement != PlacementKind::kExplicit) {
    if (in.expert_ep_rank_size() > 0) {
      fail(n, "expert_ep_rank", "is only read with placement: EXPLICIT", 0);
    }
    if (model.routed_experts % p.ep != 0) {
      fail(n, "ep",
           "routed_experts " + std::to_string(model.routed_experts) + " is not divisible by ep " +
               std::to_string(p.ep));
    }
  } else {
    if (in.expert_ep_rank_size() != model.routed_experts) {
      fail(n, "expert_ep_rank",
           "has " + std::to_string(in.expert_ep_rank_size()) +
               " entries, expected one EP rank per routed expert (" +
               std::to_string(model.routed_experts) + ")");
    }
    for (int i = 0; i < in.expert_ep_rank_size(); ++i) {
      const int32_t r = in.expert_ep_rank(i);
      if (r < 0 || r >= p.ep) {
        fail(n, "expert_ep_rank",
             "expert " + std::to_string(i) + " is placed on EP rank " + std::to_string(r) +
                 ", expected 0.." + std::to_string(p.ep - 1),
             i);
      }
      p.explicit_ep_rank.push_back(r);
    }
  }
  std::vector<uint8_t> seen(static_cast<size_t>(model.routed_experts), 0);
  for (int i = 0; i < in.hot_experts_size(); ++i) {
    const int32_t e = in.hot_experts(i);
    if (e < 0 || e >= model.routed_experts) {
      fail(n, "hot_experts",
           "expert " + std::to_string(e) + " out of range 0.." +
               std::to_string(model.routed_experts - 1),
           i);
    }
    if (seen[e]) fail(n, "hot_experts", "expert " + std::to_string(e) + " is listed twice", i);
    seen[e] = 1;
    p.hot_experts.push_back(e);
  }
  if (in.has_replicas() && p.hot_experts.empty()) {
    fail(n, "replicas", "is set but hot_experts is empty");
  }
  if (!p.hot_experts.empty()) {
    p.replicas = in.has_replicas() ? in.replicas() : 1;
    if (p.replicas < 1 || p.replicas > p.ep - 1) {
      fail(n, "replicas",
           std::to_string(p.replicas) + " extra copies per hot expert, expected 1.." +
               std::to_string(p.ep - 1) + " (one per other EP rank at most)");
    }
  }
  try {
    Placement check(p, model, p.ep_ranks_per_node(cluster.gpus_per_node));
  } catch (const std::invalid_argument& e) {
    fail(n, "", e.what());
  }
  return p;
}

Workload Resolver::workload(const Node& n, const ParallelPlan& plan) const {
  const auto& in = static_cast<const proto::Workload&>(*n.message);
  Workload w;
  if (!in.has_kind() || in.kind() == proto::WORKLOAD_UNSPECIFIED) {
    fail(n, "kind", "is required: TRAINING, PREFILL or DECODE");
  }
  w.kind = in.kind() == proto::TRAINING  ? WorkloadKind::kTraining
           : in.kind() == proto::PREFILL ? WorkloadKind::kPrefill
                                         : WorkloadKind::kDecode;
  if (!in.has_tokens_per_gpu()) fail(n, "", "tokens_per_gpu is required");
  w.tokens_per_gpu = positive_int(n, "tokens_per_gpu", true, in.tokens_per_gpu());
  w.micro_batches =
      in.has_micro_batches() ? positive_int(n, "micro_batches", true, in.micro_batches()) : 1;
  w.steps = in.has_steps() ? positive_int(n, "steps", true, in.steps()) : 1;
  if (in.has_warmup_steps()) {
    if (in.warmup_steps() < 0 || in.warmup_steps() >= w.steps) {
      fail(n, "warmup_steps",
           std::to_string(in.warmup_steps()) + " warm-up steps, expected 0.." +
               std::to_string(w.steps - 1) + " (fewer than steps " + std::to_string(w.steps) + ")");
    }
    w.warmup_steps = in.warmup_steps();
  }
  if (w.kind == WorkloadKind::kDecode) {
    if (in.has_sequence_length()) {
      fail(n, "sequence_length",
           "is not used by DECODE (each sequence adds one token); use "
           "kv_context_length");
    }
    if (!in.has_kv_context_length()) fail(n, "", "kv_context_length is required for DECODE");
    w.kv_context_length = positive_int(n, "kv_context_length", true, in.kv_context_length());
    w.sequence_length = 1;
  } else {
    if (in.has_kv_context_length()) {
      fail(n, "kv_context_length", "applies to DECODE only");
    }
    w.sequence_length = in.has_sequence_length()
                            ? positive_int(n, "sequence_length", true, in.sequence_length())
                            : w.tokens_per_gpu;
    if (w.tokens_per_gpu % w.sequence_length != 0) {
      fail(n, "sequence_length",
           "tokens_per_gpu " + std::to_string(w.tokens_per_gpu) +
               " is not a whole number of sequences of " + std::to_string(w.sequence_length));
    }
  }
  if (in.has_prefix_cache_hit_rate()) {
    const double rate = in.prefix_cache_hit_rate();
    if (w.kind != WorkloadKind::kPrefill) {
      fail(n, "prefix_cache_hit_rate",
           "applies to PREFILL only (input tokens found in a KV cache)");
    }
    if (!(rate >= 0.0 && rate < 1.0)) {
      fail(n, "prefix_cache_hit_rate", "expected a share in [0, 1)");
    }
    w.prefix_cache_hit_rate = rate;
    w.cached_prefix_tokens = static_cast<int32_t>(std::llround(rate * w.sequence_length));
    if (w.cached_prefix_tokens >= w.sequence_length) {
      fail(n, "prefix_cache_hit_rate",
           "caches round(" + std::to_string(rate) + " x " + std::to_string(w.sequence_length) +
               ") tokens, the whole sequence; at least one token per sequence must be computed");
    }
  }
  if (in.has_schedule() && in.schedule() != proto::Workload::SCHEDULE_UNSPECIFIED) {
    w.schedule = in.schedule() == proto::Workload::TWO_BATCH_OVERLAP
                     ? ScheduleKind::kTwoBatchOverlap
                 : in.schedule() == proto::Workload::ONE_F_ONE_B_EP_OVERLAP
                     ? ScheduleKind::kOneFOneBEpOverlap
                 : in.schedule() == proto::Workload::DUALPIPE ? ScheduleKind::kDualPipe
                                                              : ScheduleKind::kOneFOneB;
  }
  if (w.schedule == ScheduleKind::kTwoBatchOverlap) {
    const char* name = "TWO_BATCH_OVERLAP";
    if (w.kind == WorkloadKind::kTraining) {
      fail(n, "schedule",
           std::string(name) + " is for serving (PREFILL or DECODE); training uses ONE_F_ONE_B");
    }
    if (w.micro_batches % 2 != 0) {
      fail(n, "schedule",
           std::string(name) + " overlaps micro-batches in pairs (2k, 2k+1): micro_batches " +
               std::to_string(w.micro_batches) + " is odd, expected an even number");
    }
    if (plan.tp != 1 || plan.pp != 1) {
      fail(n, "schedule",
           std::string(name) + " lays out tp 1 and pp 1 (DeepSeek's serving layout), got tp " +
               std::to_string(plan.tp) + " pp " + std::to_string(plan.pp));
    }
  }
  // The step options (StepOptions); the training-only ones are refused elsewhere, not ignored.
  const bool training = w.kind == WorkloadKind::kTraining;
  const auto training_only = [&](bool has, const char* field) {
    if (has && !training) fail(n, field, "applies to TRAINING only");
  };
  training_only(in.has_distributed_optimizer(), "distributed_optimizer");
  training_only(in.has_recomputation(), "recomputation");
  training_only(in.has_gradients_in_dispatch_format(), "gradients_in_dispatch_format");
  training_only(in.has_overlap_grad_reduce(), "overlap_grad_reduce");
  w.options.overlap_grad_reduce = in.overlap_grad_reduce();
  w.options.distributed_optimizer = in.distributed_optimizer();
  w.options.gradients_in_dispatch_format = in.gradients_in_dispatch_format();
  if (in.has_recomputation()) {
    switch (in.recomputation()) {
      case proto::RECOMPUTATION_NONE:
        w.options.recomputation = Recomputation::kNone;
        break;
      case proto::RECOMPUTATION_SELECTIVE:
        w.options.recomputation = Recomputation::kSelective;
        break;
      case proto::RECOMPUTATION_FULL:
        w.options.recomputation = Recomputation::kFull;
        break;
      default:
        fail(n, "recomputation",
             "expected RECOMPUTATION_NONE, RECOMPUTATION_SELECTIVE or RECOMPUTATION_FULL");
    }
  }
  const auto gemm_dtype = [&](bool has, const std::string& text, const char* field) {
    std::optional<Dtype> d;
    if (!has) return d;
    d = dtype_from_name(text);
    if (!d || (*d != Dtype::kBf16 && *d != Dtype::kFp8)) {
      fail(n, field, "unknown GEMM precision '" + text + "', expected bf16 or fp8");
    }
    return d;
  };
  w.options.expert_gemm_dtype =
      gemm_dtype(in.has_expert_gemm_dtype(), in.expert_gemm_dtype(), "expert_gemm_dtype");
  w.options.dense_gemm_dtype =
      gemm_dtype(in.has_dense_gemm_dtype(), in.dense_gemm_dtype(), "dense_gemm_dtype");
  if (w.schedule == ScheduleKind::kOneFOneBEpOverlap && w.kind != WorkloadKind::kTraining) {
    fail(n, "schedule",
         "ONE_F_ONE_B_EP_OVERLAP pairs forwards with backwards: TRAINING only (serving: "
         "TWO_BATCH_OVERLAP)");
  }
  if (in.has_virtual_pipeline_stages()) {
    w.virtual_pipeline_stages =
        positive_int(n, "virtual_pipeline_stages", true, in.virtual_pipeline_stages());
  }
  if (w.schedule == ScheduleKind::kOneFOneBEpOverlap && plan.pp != 1 &&
      w.virtual_pipeline_stages == 1) {
    fail(n, "schedule",
         "ONE_F_ONE_B_EP_OVERLAP with pp > 1 needs virtual_pipeline_stages above 1 (a paired "
         "forward would wait for the next stage's gradient), got pp " +
             std::to_string(plan.pp));
  }
  if (w.virtual_pipeline_stages > 1) {
    const std::string v = std::to_string(w.virtual_pipeline_stages);
    if (w.schedule != ScheduleKind::kOneFOneB && w.schedule != ScheduleKind::kOneFOneBEpOverlap) {
      fail(n, "virtual_pipeline_stages",
           "interleaves ONE_F_ONE_B and ONE_F_ONE_B_EP_OVERLAP only, got schedule " +
               std::string(schedule_name(w.schedule)));
    }
    if (plan.pp < 2) {
      fail(n, "virtual_pipeline_stages", v + " virtual stages need pp > 1, got pp 1");
    }
    if (w.micro_batches % plan.pp != 0) {
      fail(n, "virtual_pipeline_stages",
           "interleaved 1F1B runs micro-batches in groups of pp (Megatron-LM): micro_batches " +
               std::to_string(w.micro_batches) + " is not a multiple of pp " +
               std::to_string(plan.pp));
    }
  }
  if (w.schedule == ScheduleKind::kDualPipe) {
    if (w.kind != WorkloadKind::kTraining) {
      fail(n, "schedule", "DUALPIPE pairs forwards with backwards: TRAINING only");
    }
    if (plan.pp < 2 || plan.pp % 2 != 0) {
      fail(n, "schedule",
           "DUALPIPE runs micro-batches from both ends of the pipeline, rank r holding stages r "
           "and pp - 1 - r: expected an even pp, got pp " +
               std::to_string(plan.pp));
    }
    if (w.micro_batches % 2 != 0 || w.micro_batches < 2 * plan.pp) {
      fail(n, "micro_batches",
           "DUALPIPE feeds half the micro-batches from each end and needs at least pp per "
           "direction: expected an even number of at least 2 x pp = " +
               std::to_string(2 * plan.pp) + ", got " + std::to_string(w.micro_batches));
    }
  }
  return w;
}

RouterSpec Resolver::router(const Node& n, const ModelSpec& model, const Workload& workload,
                            uint64_t seed) const {
  const auto& in = static_cast<const proto::Router&>(*n.message);
  RouterSpec r;
  r.experts = model.routed_experts;
  r.top_k = model.top_k;
  r.layers = model.moe_layer_count();
  r.groups = model.expert_groups;
  r.topk_group = model.topk_groups;
  r.shared_experts = model.shared_experts;
  r.scoring =
      model.scoring == Scoring::kSigmoid ? RouterScoring::kSigmoid : RouterScoring::kSoftmax;
  if (in.has_scoring()) {
    if (in.scoring() == proto::SCORING_UNSPECIFIED)
      fail(n, "scoring", "expected SOFTMAX or SIGMOID");
    r.scoring = in.scoring() == proto::SIGMOID ? RouterScoring::kSigmoid : RouterScoring::kSoftmax;
  }
  r.selection =
      model.expert_groups > 1 ? RouterSelection::kGroupLimitedTopK : RouterSelection::kTopK;
  if (in.expert_choice()) r.selection = RouterSelection::kExpertChoice;
  if (in.has_capacity_factor()) {
    if (!(in.capacity_factor() >= 0.0)) {
      fail(n, "capacity_factor", "must be >= 0 (0: no capacity limit)");
    }
    r.capacity_factor = in.capacity_factor();
  }
  if (in.has_drop_policy()) {
    if (in.drop_policy() == proto::DROP_POLICY_UNSPECIFIED) {
      fail(n, "drop_policy", "expected ARRIVAL_ORDER or LOWEST_SCORE");
    }
    r.drop_policy = in.drop_policy() == proto::LOWEST_SCORE ? DropPolicy::kByLowestScore
                                                            : DropPolicy::kByArrival;
  }
  r.renormalize = in.has_renormalize() ? in.renormalize() : model.normalize_topk;
  r.routed_scaling = model.routed_scaling_factor;
  if (in.has_routed_scaling_factor()) {
    if (!(in.routed_scaling_factor() > 0.0)) fail(n, "routed_scaling_factor", "must be positive");
    r.routed_scaling = in.routed_scaling_factor();
  }
  r.noisy = in.noisy();
  r.reuse_across_micro_batches = in.reuse_routing_across_micro_batches();
  r.selection_bias = in.aux_free_bias();
  if (in.has_bias_gamma()) {
    if (!in.aux_free_bias()) fail(n, "bias_gamma", "is set but aux_free_bias is not true");
    if (!(in.bias_gamma() > 0.0)) fail(n, "bias_gamma", "must be positive");
    r.bias_update_rate = in.bias_gamma();
  }
  if (in.has_token_source()) {
    switch (in.token_source()) {
      case proto::SYNTHETIC_HIDDEN:
        r.source = TokenSourceKind::kHiddenStates;
        break;
      case proto::LOGIT_SPACE:
        r.source = TokenSourceKind::kLogitSpace;
        break;
      case proto::NPY_FILE:
        r.source = TokenSourceKind::kHiddenStatesFile;
        break;
      default:
        fail(n, "token_source", "expected SYNTHETIC_HIDDEN, LOGIT_SPACE or NPY_FILE");
    }
  }
  if (r.source == TokenSourceKind::kHiddenStatesFile) {
    if (!in.has_token_file()) fail(n, "token_source", "NPY_FILE needs token_file");
    r.tokens_file = existing_file(n, "token_file", in.token_file()).string();
  } else if (in.has_token_file()) {
    fail(n, "token_file", "is only read with token_source: NPY_FILE");
  }
  TokenModel& t = r.tokens;
  t.hidden = model.hidden_size;
  // The router sees the tokens a step computes: each sequence's tokens after its cached prefix.
  t.sequence_tokens = workload.computed_sequence_length();
  if (in.has_clusters()) t.clusters = positive_int(n, "clusters", true, in.clusters());
  if (in.has_zipf_exponent()) {
    if (!(in.zipf_exponent() >= 0.0)) fail(n, "zipf_exponent", "must be >= 0");
    t.popularity_exponent = in.zipf_exponent();
  }
  if (in.has_spread()) {
    if (!(in.spread() >= 0.0)) fail(n, "spread", "must be >= 0");
    t.offset_scale = in.spread();
  }
  if (in.has_rank()) t.offset_rank = positive_int(n, "rank", true, in.rank());
  if (in.has_sequence_correlation()) {
    if (!(in.sequence_correlation() >= 0.0 && in.sequence_correlation() <= 1.0)) {
      fail(n, "sequence_correlation", "expected a probability in [0, 1]");
    }
    t.stay_probability = in.sequence_correlation();
  }
  if (in.has_centre_scale()) {
    if (!(in.centre_scale() >= 0.0)) fail(n, "centre_scale", "must be >= 0");
    t.centre_scale = in.centre_scale();
  }
  if (in.has_isotropic_scale()) {
    if (!(in.isotropic_scale() >= 0.0)) fail(n, "isotropic_scale", "must be >= 0");
    t.isotropic_scale = in.isotropic_scale();
  }
  if (in.has_common_centre_scale()) {
    if (!(in.common_centre_scale() >= 0.0)) fail(n, "common_centre_scale", "must be >= 0");
    t.common_scale = in.common_centre_scale();
  }
  if (in.has_offset_correlation()) {
    if (!(in.offset_correlation() >= 0.0 && in.offset_correlation() < 1.0)) {
      fail(n, "offset_correlation", "expected a value in [0, 1)");
    }
    t.offset_correlation = in.offset_correlation();
  }
  const bool token_fields = in.has_clusters() || in.has_zipf_exponent() || in.has_spread() ||
                            in.has_rank() || in.has_sequence_correlation() ||
                            in.has_centre_scale() || in.has_isotropic_scale() ||
                            in.has_offset_correlation() || in.has_common_centre_scale();
  r.token_model_origin = token_fields ? TokenModelOrigin::kScenario : TokenModelOrigin::kDefault;
  if (in.has_token_model_fitted_to()) {
    if (in.token_model_fitted_to().empty()) fail(n, "token_model_fitted_to", "is empty");
    if (!token_fields) {
      fail(n, "token_model_fitted_to", "is set but no token model field (clusters, ...) is");
    }
    r.token_model_origin = TokenModelOrigin::kFitted;
    r.token_model_fitted_to = in.token_model_fitted_to();
  }
  if (in.has_gate_weights_file()) {
    const std::filesystem::path p = existing_file(n, "gate_weights_file", in.gate_weights_file());
    const std::string ext = p.extension().string();
    if (ext == ".npy") {
      r.gate_source = GateSourceKind::kNpy;
    } else if (ext == ".safetensors") {
      r.gate_source = GateSourceKind::kSafetensors;
    } else {
      fail(n, "gate_weights_file", "expected a .npy or .safetensors file, got '" + ext + "'");
    }
    r.gate_file = p.string();
  }
  if (in.has_gate_tensor_pattern()) {
    if (r.gate_source != GateSourceKind::kSafetensors) {
      fail(n, "gate_tensor_pattern", "is only read for a .safetensors gate_weights_file");
    }
    if (in.gate_tensor_pattern().empty()) fail(n, "gate_tensor_pattern", "is empty");
    r.gate_tensor = in.gate_tensor_pattern();
  }
  if (in.has_gate_layout()) {
    if (r.gate_source == GateSourceKind::kRandom) {
      fail(n, "gate_layout", "is only read with a gate_weights_file");
    }
    switch (in.gate_layout()) {
      case proto::EXPERTS_BY_HIDDEN:
        r.gate_layout = GateLayout::kExpertsByHidden;
        break;
      case proto::HIDDEN_BY_EXPERTS:
        r.gate_layout = GateLayout::kHiddenByExperts;
        break;
      default:
        fail(n, "gate_layout", "expected EXPERTS_BY_HIDDEN or HIDDEN_BY_EXPERTS");
    }
  }
  r.seed = seed;
  try {
    r.validate();
  } catch (const std::invalid_argument& e) {
    fail(n, "", e.what());
  }
  return r;
}

Scenario Resolver::resolve(const proto::Scenario& in, bool derive_dp) const {
  const Node top = root(in);
  Scenario s;
  if (in.has_name()) {
    if (in.name().empty()) fail(top, "name", "is empty");
    s.name = in.name();
  } else {
    s.name = std::filesystem::path(file_).stem().string();
  }
  s.description = in.description();
  s.seed = in.has_seed() ? in.seed() : 1;
  if (!in.has_model()) fail(top, "", "model is required (a preset or explicit fields)");
  if (!in.has_cluster()) fail(top, "", "cluster is required");
  if (!in.has_workload()) fail(top, "", "workload is required");
  s.model = model(child(top, "model"));
  s.cluster = cluster(child(top, "cluster"));
  s.parallel = parallel(child(top, "parallelism"), s.model, s.cluster, derive_dp);
  s.workload = workload(child(top, "workload"), s.parallel);
  if (int64_t{s.workload.virtual_pipeline_stages} * s.parallel.pp > s.model.layers) {
    fail(child(top, "workload"), "virtual_pipeline_stages",
         std::to_string(s.workload.virtual_pipeline_stages) + " virtual stages of pp " +
             std::to_string(s.parallel.pp) + " cut the model into more stages than its " +
             std::to_string(s.model.layers) + " layers");
  }
  s.router = router(child(top, "router"), s.model, s.workload, s.seed);
  if (in.has_offload()) {
    s.offload = offload(child(top, "offload"), s.model, s.workload, s.router);
    if (s.router.reuse_across_micro_batches) {
      // Offloaded decoding routes its own batches one by one, not a step's micro-batches.
      fail(child(top, "router"), "reuse_routing_across_micro_batches",
           "is not read with an offload block (offloaded decoding has no micro-batches to reuse "
           "routing across)");
    }
    // The decoded tokens form one sequence: the router's sequence model runs along all of them.
    s.router.tokens.sequence_tokens = 0;
  }
  return s;
}

OffloadConfig Resolver::offload(const Node& n, const ModelSpec& model, const Workload& workload,
                                const RouterSpec& router) const {
  const auto& in = static_cast<const proto::Offload&>(*n.message);
  OffloadConfig c;
  if (workload.kind != WorkloadKind::kDecode || workload.tokens_per_gpu != 1) {
    fail(n, "", "needs workload kind DECODE with tokens_per_gpu 1 (one sequence)");
  }
  c.context_length = workload.kv_context_length;
  if (!in.has_host_link())
    fail(n, "", "host_link is required: " + preset_names(host_link_presets()));
  const HostLink* link = find_host_link_preset(in.host_link());
  if (link == nullptr) {
    fail(n, "host_link",
         "unknown host link '" + in.host_link() +
             "'; presets: " + preset_names(host_link_presets()));
  }
  c.host_link = *link;
  if (in.has_host_link_efficiency()) {
    if (!(in.host_link_efficiency() > 0.0 && in.host_link_efficiency() <= 1.0)) {
      fail(n, "host_link_efficiency", "expected a value in (0, 1]");
    }
    c.host_link.efficiency = in.host_link_efficiency();
  }
  auto precision = [&](std::string_view field, bool has, const std::string& name,
                       std::string_view fallback) {
    const auto p = weight_precision_from_name(has ? std::string_view(name) : fallback);
    if (!p) {
      fail(n, field,
           "unknown precision '" + name +
               "', expected bf16, fp16, fp8, int4, int3, int2 or int2-g16");
    }
    return *p;
  };
  const std::string model_weights(dtype_name(model.weights.dtype));
  c.expert_precision = precision("expert_precision", in.has_expert_precision(),
                                 in.expert_precision(), model_weights);
  c.attention_precision = precision("attention_precision", in.has_attention_precision(),
                                    in.attention_precision(), "bf16");
  if (!in.has_policy() || in.policy() == proto::CACHE_POLICY_UNSPECIFIED) {
    fail(n, "policy", "is required: LRU, LFU or STATIC");
  }
  c.policy = in.policy() == proto::LRU   ? CachePolicy::kLru
             : in.policy() == proto::LFU ? CachePolicy::kLfu
                                         : CachePolicy::kStatic;
  c.scope = in.scope() == proto::SHARED ? CacheScope::kShared : CacheScope::kPerLayer;
  if (!in.has_cache_experts()) fail(n, "", "cache_experts is required");
  if (in.cache_experts() < 0) fail(n, "cache_experts", "must be >= 0");
  c.cache_experts = in.cache_experts();
  const int32_t limit = c.scope == CacheScope::kShared
                            ? model.routed_experts * model.moe_layer_count()
                            : model.routed_experts;
  if (c.cache_experts > limit) {
    fail(n, "cache_experts",
         std::to_string(c.cache_experts) + " is more than the " + std::to_string(limit) +
             " experts there are");
  }
  const int32_t need =
      c.scope == CacheScope::kShared && in.prefetch() ? 2 * model.top_k : model.top_k;
  if (c.policy != CachePolicy::kStatic && c.cache_experts < need) {
    fail(n, "cache_experts",
         "expected >= " + std::to_string(need) + " (the top-k of a layer" +
             (need > model.top_k ? " and of the next" : "") + " must fit), got " +
             std::to_string(c.cache_experts));
  }
  c.prefetch = in.prefetch();
  if (c.prefetch && c.policy == CachePolicy::kStatic) {
    fail(n, "prefetch", "a STATIC cache admits no prefetched expert; use LRU or LFU");
  }
  if (in.has_residual_similarity()) {
    if (!(in.residual_similarity() >= 0.0 && in.residual_similarity() <= 1.0)) {
      fail(n, "residual_similarity", "expected a cosine similarity in [0, 1]");
    }
    if (router.source == TokenSourceKind::kLogitSpace) {
      fail(n, "residual_similarity",
           "needs hidden states: router token_source SYNTHETIC_HIDDEN or NPY_FILE (LOGIT_SPACE "
           "draws logits only)");
    }
    c.residual_similarity = in.residual_similarity();
  }
  if (in.prefetch_guess() == proto::GATE) {
    if (!in.prefetch()) fail(n, "prefetch_guess", "applies with prefetch: true only");
    if (!c.residual_similarity) {
      fail(n, "prefetch_guess",
           "GATE needs residual_similarity (and a hidden-state token source): the gate's guess "
           "reads the current layer's hidden state");
    }
    if (in.has_prefetch_accuracy()) {
      fail(n, "prefetch_accuracy", "not with prefetch_guess GATE (the router sets the accuracy)");
    }
    c.prefetch_guess = PrefetchGuess::kGate;
  } else if (c.prefetch) {
    if (!in.has_prefetch_accuracy()) fail(n, "", "prefetch_accuracy is required with prefetch");
    if (!(in.prefetch_accuracy() >= 0.0 && in.prefetch_accuracy() <= 1.0)) {
      fail(n, "prefetch_accuracy", "expected a probability in [0, 1]");
    }
    c.prefetch_accuracy = in.prefetch_accuracy();
  } else if (in.has_prefetch_accuracy()) {
    fail(n, "prefetch_accuracy", "applies with prefetch: true only");
  }
  if (in.has_cpu()) {
    const CpuSpec* cpu = find_cpu_preset(in.cpu());
    if (cpu == nullptr) {
      fail(n, "cpu", "unknown CPU '" + in.cpu() + "'; presets: " + preset_names(cpu_presets()));
    }
    c.cpu = *cpu;
  }
  if (in.copy_overlap() == proto::SERIAL) {
    c.copy_overlap = CopyOverlap::kSerial;
    if (c.cpu) fail(n, "cpu", "applies with copy_overlap COPY_STREAM only");
  }
  if (in.has_host_overhead_per_layer()) {
    try {
      c.host_overhead_per_layer = parse_time(in.host_overhead_per_layer());
    } catch (const std::invalid_argument& e) {
      fail(n, "host_overhead_per_layer", e.what());
    }
    if (c.host_overhead_per_layer < Time::zero()) {
      fail(n, "host_overhead_per_layer", "expected a duration >= 0");
    }
  }
  if (!in.has_decode_tokens()) fail(n, "", "decode_tokens is required");
  c.decode_tokens = positive_int(n, "decode_tokens", true, in.decode_tokens());
  return c;
}

// Parses `text` into `out`, throwing the parser's first error as file:line:column: message.
void parse_text(std::string_view text, const std::string& file, proto::Scenario& out,
                ParseInfoTree* tree) {
  SyntaxErrors errors(file);
  pb::TextFormat::Parser parser;
  parser.RecordErrorsTo(&errors);
  parser.WriteLocationsTo(tree);
  if (!parser.ParseFromString(std::string(text), &out)) {
    throw ScenarioError(errors.first().empty() ? file + ": cannot parse the scenario"
                                               : errors.first());
  }
}

template <typename T>
bool parse_number(std::string_view text, T& out) {
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, out);
  return ec == std::errc() && ptr == end;
}

// Sets one axis's (or other edit field's, see parse_scenario_edited) value on a copy of the
// scenario message. Returns whether dp must follow ep.
bool apply_axis(proto::Scenario& s, std::string_view axis, const std::string& value) {
  auto bad = [&](std::string_view expected) -> ScenarioError {
    return ScenarioError("value '" + value + "' of sweep axis '" + std::string(axis) +
                         "': expected " + std::string(expected));
  };
  int32_t i = 0;
  double d = 0.0;
  if (axis == "capacity_factor") {
    if (!parse_number(value, d)) throw bad("a number");
    s.mutable_router()->set_capacity_factor(d);
  } else if (axis == "zipf_exponent") {
    if (!parse_number(value, d)) throw bad("a number");
    s.mutable_router()->set_zipf_exponent(d);
  } else if (axis == "top_k") {
    if (!parse_number(value, i)) throw bad("an integer");
    s.mutable_model()->set_top_k(i);
  } else if (axis == "tokens_per_gpu") {
    if (!parse_number(value, i)) throw bad("an integer");
    s.mutable_workload()->set_tokens_per_gpu(i);
  } else if (axis == "ep") {
    if (!parse_number(value, i)) throw bad("an integer");
    s.mutable_parallelism()->set_ep(i);
    return true;
  } else if (axis == "topology") {
    s.mutable_cluster()->clear_topology_file();
    s.mutable_cluster()->set_topology(value);
  } else if (axis == "gpu") {
    s.mutable_cluster()->mutable_gpu()->Clear();
    s.mutable_cluster()->mutable_gpu()->set_preset(value);
  } else if (axis == "drop_policy") {
    proto::DropPolicy p{};
    if (!proto::DropPolicy_Parse(value, &p) || p == proto::DROP_POLICY_UNSPECIFIED) {
      throw bad("ARRIVAL_ORDER or LOWEST_SCORE");
    }
    s.mutable_router()->set_drop_policy(p);
  } else if (axis == "name") {
    s.set_name(value);
  } else if (axis == "sequence_length") {
    if (!parse_number(value, i)) throw bad("an integer");
    s.mutable_workload()->set_sequence_length(i);
  } else if (axis == "tp") {
    if (!parse_number(value, i)) throw bad("an integer");
    s.mutable_parallelism()->set_tp(i);
  } else if (axis == "placement") {
    proto::PlacementKind p{};
    if (!proto::PlacementKind_Parse(value, &p) ||
        (p != proto::CONTIGUOUS && p != proto::ROUND_ROBIN)) {
      throw bad("CONTIGUOUS or ROUND_ROBIN");
    }
    s.mutable_parallelism()->set_placement(p);
    s.mutable_parallelism()->clear_expert_ep_rank();
  } else if (axis == "model") {
    // A whole model preset in place of the scenario's model; the experts the parallelism block
    // names (hot experts, explicit placement) belonged to the old model, so they go too.
    s.mutable_model()->Clear();
    s.mutable_model()->set_preset(value);
    s.mutable_parallelism()->clear_hot_experts();
    s.mutable_parallelism()->clear_replicas();
    s.mutable_parallelism()->clear_expert_ep_rank();
    if (s.parallelism().placement() == proto::EXPLICIT) s.mutable_parallelism()->clear_placement();
  } else if (axis == "cluster") {
    proto::Cluster cluster;
    if (!pb::TextFormat::ParseFromString(value, &cluster)) throw bad("a cluster block's text");
    *s.mutable_cluster() = cluster;
  } else {
    throw ScenarioError("unknown sweep axis '" + std::string(axis) +
                        "'; axes: " + list_names(kSweepAxes));
  }
  return false;
}

std::filesystem::path folder_of(std::string_view file) {
  const std::filesystem::path parent = std::filesystem::path(file).parent_path();
  return parent.empty() ? std::filesystem::path(".") : parent;
}

}  // namespace

std::span<const std::string_view> sweep_axis_names() {
  return kSweepAxes;
}

Scenario parse_scenario(std::string_view text, std::string_view file_name_for_errors) {
  const std::string file(file_name_for_errors);
  proto::Scenario message;
  ParseInfoTree tree;
  parse_text(text, file, message, &tree);
  const Resolver resolver(file, folder_of(file), &tree);
  Scenario s = resolver.resolve(message, false);
  s.source_file = file;

  // Each axis value must give a valid scenario on its own; the message names the axis.
  const pb::FieldDescriptor* sweep_field = message.GetDescriptor()->FindFieldByName("sweep");
  std::vector<std::string> axis_names;
  for (int a = 0; a < message.sweep_size(); ++a) {
    const proto::SweepAxis& axis = message.sweep(a);
    const pb::TextFormat::ParseLocation loc = tree.GetLocation(sweep_field, a);
    const std::string where =
        file +
        (loc.line >= 0 ? ":" + std::to_string(loc.line + 1) + ":" + std::to_string(loc.column + 1)
                       : "") +
        ": sweep[" + std::to_string(a) + "]: ";
    if (!axis.has_name()) throw ScenarioError(where + "name is required");
    if (std::find(kSweepAxes.begin(), kSweepAxes.end(), axis.name()) == kSweepAxes.end()) {
      throw ScenarioError(where + "unknown axis '" + axis.name() +
                          "'; axes: " + list_names(kSweepAxes));
    }
    if (std::find(axis_names.begin(), axis_names.end(), axis.name()) != axis_names.end()) {
      throw ScenarioError(where + "axis '" + axis.name() + "' appears twice");
    }
    axis_names.push_back(axis.name());
    if (axis.values_size() == 0) throw ScenarioError(where + "values: at least one is required");
    SweepAxis resolved{axis.name(), {}};
    for (const std::string& value : axis.values()) {
      proto::Scenario point = message;
      try {
        const bool derive_dp = apply_axis(point, axis.name(), value);
        const Resolver point_resolver(file, folder_of(file), nullptr);
        (void)point_resolver.resolve(point, derive_dp);
      } catch (const ScenarioError& e) {
        throw ScenarioError(where + "value '" + value + "': " + e.what());
      }
      resolved.values.push_back(value);
    }
    s.sweep.push_back(std::move(resolved));
  }
  return s;
}

Scenario parse_scenario_edited(std::string_view text, std::string_view file_name_for_errors,
                               std::span<const std::pair<std::string, std::string>> edits) {
  const std::string file(file_name_for_errors);
  proto::Scenario message;
  ParseInfoTree tree;
  parse_text(text, file, message, &tree);
  bool derive_dp = false;
  for (const auto& [field, value] : edits) {
    derive_dp = apply_axis(message, field, value) || derive_dp;
  }
  message.clear_sweep();
  const Resolver resolver(file, folder_of(file), edits.empty() ? &tree : nullptr);
  Scenario s = resolver.resolve(message, derive_dp);
  s.source_file = file;
  return s;
}

Scenario parse_scenario_at(std::string_view text, std::string_view file_name_for_errors,
                           std::span<const std::pair<std::string, std::string>> axis_values) {
  std::string point;
  for (const auto& [axis, value] : axis_values) {
    point += (point.empty() ? "" : ", ") + axis + "=" + value;
  }
  try {
    return parse_scenario_edited(text, file_name_for_errors, axis_values);
  } catch (const ScenarioError& e) {
    throw ScenarioError("sweep point (" + point + "): " + e.what());
  }
}

Scenario load_scenario(const std::filesystem::path& file) {
  std::ifstream stream(file, std::ios::binary);
  if (!stream) throw ScenarioError(file.string() + ": cannot open the scenario file");
  std::ostringstream text;
  text << stream.rdbuf();
  if (stream.bad()) throw ScenarioError(file.string() + ": read error");
  return parse_scenario(text.str(), file.string());
}

std::string_view schedule_name(ScheduleKind kind) {
  switch (kind) {
    case ScheduleKind::kOneFOneB:
      return "1f1b";
    case ScheduleKind::kTwoBatchOverlap:
      return "two_batch_overlap";
    case ScheduleKind::kOneFOneBEpOverlap:
      return "1f1b_ep_overlap";
    case ScheduleKind::kDualPipe:
      return "dualpipe";
  }
  return "1f1b";
}

std::string_view recomputation_name(Recomputation r) {
  switch (r) {
    case Recomputation::kNone:
      return "none";
    case Recomputation::kSelective:
      return "selective";
    case Recomputation::kFull:
      return "full";
  }
  return "?";
}

std::string_view workload_kind_name(WorkloadKind kind) {
  switch (kind) {
    case WorkloadKind::kTraining:
      return "training";
    case WorkloadKind::kPrefill:
      return "prefill";
    case WorkloadKind::kDecode:
      return "decode";
  }
  return "?";
}

}  // namespace moesim
