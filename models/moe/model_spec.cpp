// ModelSpec's parameter counts and the built-in model presets, each from its published
// config.json or paper.
#include "models/moe/model_spec.h"

#include <algorithm>
#include <array>
#include <stdexcept>

namespace moesim {

Bytes ElementFormat::bytes_for(int64_t elements) const {
  int64_t bytes = elements * dtype_bytes(dtype);
  if (scale_block_elements > 0) {
    const int64_t blocks = (elements + scale_block_elements - 1) / scale_block_elements;
    bytes += blocks * scale_bytes;
  }
  return Bytes(bytes);
}

bool ModelSpec::is_moe_layer(int32_t layer) const {
  if (is_dense() || layer < dense_layers || layer >= layers) return false;
  return (layer - dense_layers) % moe_layer_interval == moe_layer_interval - 1;
}

int32_t ModelSpec::moe_layer_count() const {
  if (is_dense() || layers <= dense_layers || moe_layer_interval <= 0) return 0;
  return (layers - dense_layers) / moe_layer_interval;
}

std::vector<int32_t> ModelSpec::moe_layer_indices() const {
  std::vector<int32_t> indices;
  indices.reserve(static_cast<size_t>(moe_layer_count()));
  for (int32_t layer = 0; layer < layers; ++layer) {
    if (is_moe_layer(layer)) indices.push_back(layer);
  }
  return indices;
}

int64_t ModelSpec::attention_params() const {
  const int64_t h = hidden_size;
  const int64_t heads = attention_heads;
  if (attention == AttentionKind::kMla) {
    // DeepSeek-V2 paper, section 2.1: W^DQ (h x q_lora), W^UQ and W^QR (q_lora x heads*(nope +
    // rope)), W^DKV and W^KR (h x (kv_lora + rope)), W^UK and W^UV (kv_lora x heads*(nope + v)),
    // W^O (heads*v x h). Without query compression, W^Q is h x heads*(nope + rope).
    const int64_t q_dim = heads * (head_dim + qk_rope_head_dim);
    const int64_t q = q_lora_rank > 0 ? h * q_lora_rank + int64_t{q_lora_rank} * q_dim : h * q_dim;
    const int64_t kv_down = h * (kv_lora_rank + qk_rope_head_dim);
    const int64_t kv_up = int64_t{kv_lora_rank} * heads * (head_dim + v_head_dim);
    const int64_t out = heads * v_head_dim * h;
    return q + kv_down + kv_up + out;
  }
  const int64_t q_and_out = 2 * h * heads * head_dim;
  const int64_t k_and_v = 2 * h * int64_t{kv_heads} * head_dim;
  return q_and_out + k_and_v;
}

int64_t ModelSpec::dense_ffn_params() const {
  return int64_t{ffn_matrices} * hidden_size * dense_ffn_size;
}

int64_t ModelSpec::expert_params() const {
  return int64_t{ffn_matrices} * hidden_size * expert_ffn_size;
}

int64_t ModelSpec::gate_params() const {
  return int64_t{hidden_size} * routed_experts;
}

int64_t ModelSpec::embedding_params() const {
  return 2 * int64_t{vocab_size} * hidden_size;
}

int64_t ModelSpec::total_params() const {
  const int64_t moe = moe_layer_count();
  const int64_t dense = layers - moe;
  return layers * attention_params() + dense * dense_ffn_params() +
         moe * ((routed_experts + shared_experts) * expert_params() + gate_params()) +
         embedding_params();
}

int64_t ModelSpec::active_params() const {
  const int64_t moe = moe_layer_count();
  const int64_t dense = layers - moe;
  return layers * attention_params() + dense * dense_ffn_params() +
         moe * ((top_k + shared_experts) * expert_params() + gate_params()) + embedding_params();
}

int64_t ModelSpec::kv_cache_elements_per_token() const {
  if (attention == AttentionKind::kMla) return int64_t{kv_lora_rank} + qk_rope_head_dim;
  return 2 * int64_t{kv_heads} * head_dim;
}

namespace {

ModelSpec gqa_model(std::string name) {
  ModelSpec m;
  m.name = std::move(name);
  return m;
}

// A dense decoder: every layer has a gated (SwiGLU) FFN of `ffn` and no experts.
ModelSpec dense_model(std::string name, int32_t layers, int32_t hidden, int32_t heads,
                      int32_t kv_heads, int32_t ffn, int32_t vocab) {
  ModelSpec m;
  m.name = std::move(name);
  m.layers = layers;
  m.hidden_size = hidden;
  m.attention_heads = heads;
  m.kv_heads = kv_heads;
  m.head_dim = hidden / heads;
  m.dense_ffn_size = ffn;
  m.vocab_size = vocab;
  return m;
}

constexpr size_t kPresetCount = 12;

std::array<ModelSpec, kPresetCount> make_presets() {
  std::array<ModelSpec, kPresetCount> p;

  // mistralai/Mixtral-8x7B-v0.1 config.json; Jiang et al. 2024, "Mixtral of Experts"
  // (46.7B total, 12.9B active parameters). Softmax over the top-2 logits = renormalised top-2.
  ModelSpec& mixtral7 = p[0] = gqa_model("mixtral-8x7b");
  mixtral7.layers = 32;
  mixtral7.hidden_size = 4096;
  mixtral7.attention_heads = 32;
  mixtral7.kv_heads = 8;
  mixtral7.head_dim = 128;
  mixtral7.expert_ffn_size = 14336;
  mixtral7.routed_experts = 8;
  mixtral7.top_k = 2;
  mixtral7.vocab_size = 32000;

  // mistralai/Mixtral-8x22B-v0.1 config.json (141B total, 39B active per Mistral's release).
  ModelSpec& mixtral22 = p[1] = gqa_model("mixtral-8x22b");
  mixtral22.layers = 56;
  mixtral22.hidden_size = 6144;
  mixtral22.attention_heads = 48;
  mixtral22.kv_heads = 8;
  mixtral22.head_dim = 128;
  mixtral22.expert_ffn_size = 16384;
  mixtral22.routed_experts = 8;
  mixtral22.top_k = 2;
  mixtral22.vocab_size = 32768;

  // deepseek-ai/DeepSeek-V3 config.json; DeepSeek-V3 Technical Report (arXiv 2412.19437): 671B
  // total, 37B active (the multi-token-prediction module is not modelled). FP8 weights with
  // 128x128 block scales (config's quantization_config); dispatch in FP8 with one scale per 128
  // elements and combine in BF16, as the report's section 3.3 and DeepEP do.
  ModelSpec& dsv3 = p[2] = gqa_model("deepseek-v3");
  dsv3.layers = 61;
  dsv3.dense_layers = 3;  // first_k_dense_replace
  dsv3.hidden_size = 7168;
  dsv3.attention_heads = 128;
  dsv3.kv_heads = 128;
  dsv3.head_dim = 128;  // qk_nope_head_dim
  dsv3.expert_ffn_size = 2048;
  dsv3.dense_ffn_size = 18432;
  dsv3.routed_experts = 256;
  dsv3.shared_experts = 1;
  dsv3.top_k = 8;
  dsv3.expert_groups = 8;
  dsv3.topk_groups = 4;
  dsv3.scoring = Scoring::kSigmoid;
  dsv3.routed_scaling_factor = 2.5;
  dsv3.vocab_size = 129280;
  dsv3.weights = {Dtype::kFp8, 4, 128 * 128};
  dsv3.dispatch = {Dtype::kFp8, 4, 128};
  dsv3.combine = {Dtype::kBf16, 0, 0};
  dsv3.attention = AttentionKind::kMla;
  dsv3.q_lora_rank = 1536;
  dsv3.kv_lora_rank = 512;
  dsv3.qk_rope_head_dim = 64;
  dsv3.v_head_dim = 128;

  // Qwen/Qwen3-30B-A3B config.json (30.5B total, 3.3B active per its model card); every layer
  // is MoE (decoder_sparse_step 1, no mlp_only_layers), untied embeddings.
  ModelSpec& qwen30 = p[3] = gqa_model("qwen3-30b-a3b");
  qwen30.layers = 48;
  qwen30.hidden_size = 2048;
  qwen30.attention_heads = 32;
  qwen30.kv_heads = 4;
  qwen30.head_dim = 128;
  qwen30.expert_ffn_size = 768;
  qwen30.routed_experts = 128;
  qwen30.top_k = 8;
  qwen30.vocab_size = 151936;

  // Qwen/Qwen3-235B-A22B config.json (235B total, 22B active per its model card).
  ModelSpec& qwen235 = p[4] = gqa_model("qwen3-235b-a22b");
  qwen235.layers = 94;
  qwen235.hidden_size = 4096;
  qwen235.attention_heads = 64;
  qwen235.kv_heads = 4;
  qwen235.head_dim = 128;
  qwen235.expert_ffn_size = 1536;
  qwen235.routed_experts = 128;
  qwen235.top_k = 8;
  qwen235.vocab_size = 151936;

  // databricks/dbrx-base config.json (d_model 6144, 48 heads, kv_n_heads 8, 40 layers,
  // ffn_hidden_size 10752, 16 experts, top-4, GLU experts, vocab 100352); 132B total and 36B
  // active per Databricks' announcement. moe_normalize_expert_weights 1: renormalised.
  ModelSpec& dbrx = p[5] = gqa_model("dbrx");
  dbrx.layers = 40;
  dbrx.hidden_size = 6144;
  dbrx.attention_heads = 48;
  dbrx.kv_heads = 8;
  dbrx.head_dim = 128;
  dbrx.expert_ffn_size = 10752;
  dbrx.routed_experts = 16;
  dbrx.top_k = 4;
  dbrx.vocab_size = 100352;

  // google/switch-base-128 config.json (T5 architecture: d_model 768, d_ff 3072, 12 heads of
  // d_kv 64, 12 encoder + 12 decoder layers, sparse every second layer, 128 experts, vocab
  // 32128); Fedus et al. 2022, "Switch Transformers": top-1, ReLU FFN experts (2 matrices), the
  // expert output scaled by its router probability (no renormalisation). Encoder and decoder
  // are modelled as one 24-layer stack; the decoder's cross-attention is not modelled.
  ModelSpec& sw = p[6] = gqa_model("switch-base-128");
  sw.layers = 24;
  sw.moe_layer_interval = 2;
  sw.ffn_matrices = 2;
  sw.normalize_topk = false;
  sw.hidden_size = 768;
  sw.attention_heads = 12;
  sw.kv_heads = 12;
  sw.head_dim = 64;
  sw.expert_ffn_size = 3072;
  sw.dense_ffn_size = 3072;
  sw.routed_experts = 128;
  sw.top_k = 1;
  sw.vocab_size = 32128;

  // Dense models (no routed experts: every layer's FFN is dense), for `moesim compare` against
  // the MoE ones. Untied embedding and LM head in each (tie_word_embeddings false); Qwen2.5's
  // q/k/v biases (10,240 per layer) and every model's norms are neglected, as for the MoE presets.
  //
  // meta-llama/Llama-2-13b-hf config.json (hidden 5120, 40 heads without GQA, 40 layers,
  // intermediate 13824, vocab 32000); Touvron et al. 2023, "Llama 2" (13B; the checkpoint holds
  // 13,015,864,320 parameters). About Mixtral-8x7B's active count (12.9B).
  p[7] = dense_model("llama-2-13b", 40, 5120, 40, 40, 13824, 32000);
  // meta-llama/Llama-2-70b-hf config.json (hidden 8192, 64 heads, 8 KV heads, 80 layers,
  // intermediate 28672, vocab 32000); Llama 2 paper, table 1 (70B, GQA); the checkpoint holds
  // 68,976,648,192 parameters. The Mixtral paper (Jiang et al. 2024, section 3) reports
  // Mixtral-8x7B matching or outperforming it on most benchmarks.
  p[8] = dense_model("llama-2-70b", 80, 8192, 64, 8, 28672, 32000);
  // meta-llama/Llama-3.1-70B config.json (as Llama 2 70B but vocab 128256); Dubey et al. 2024,
  // "The Llama 3 Herd of Models", table 3 (80 layers, model dimension 8192, FFN 28672, 64
  // heads, 8 KV heads; 70.6B parameters per the model card).
  p[9] = dense_model("llama-3.1-70b", 80, 8192, 64, 8, 28672, 128256);
  // meta-llama/Llama-3.1-405B config.json (hidden 16384, 128 heads, 8 KV heads, 126 layers,
  // intermediate 53248, vocab 128256); Llama 3 Herd paper, table 3 (405B).
  p[10] = dense_model("llama-3.1-405b", 126, 16384, 128, 8, 53248, 128256);
  // Qwen/Qwen2.5-72B config.json (hidden 8192, 64 heads, 8 KV heads, 80 layers, intermediate
  // 29568, vocab 152064, untied); Qwen2.5 technical report (arXiv 2412.15115), table 1, and the
  // model card: 72.7B parameters, 70.0B without embeddings.
  p[11] = dense_model("qwen2.5-72b", 80, 8192, 64, 8, 29568, 152064);

  return p;
}

}  // namespace

std::span<const ModelSpec> model_presets() {
  static const std::array<ModelSpec, kPresetCount> presets = make_presets();
  return presets;
}

const ModelSpec* find_model_preset(std::string_view name) {
  for (const ModelSpec& m : model_presets()) {
    if (m.name == name) return &m;
  }
  return nullptr;
}

AttentionShape attention_shape(const ModelSpec& model, int32_t tp, bool decode) {
  if (tp <= 0) throw std::invalid_argument("attention_shape: tp must be positive");
  AttentionShape s;
  s.heads = std::max(1, model.attention_heads / tp);
  if (model.attention == AttentionKind::kMla) {
    if (decode) {
      s.qk_head_dim = model.kv_lora_rank + model.qk_rope_head_dim;
      s.v_head_dim = model.kv_lora_rank;
      s.kv_elements_per_token = model.kv_cache_elements_per_token();
    } else {
      s.qk_head_dim = model.head_dim + model.qk_rope_head_dim;
      s.v_head_dim = model.v_head_dim;
      s.kv_elements_per_token = int64_t{s.heads} * (s.qk_head_dim + s.v_head_dim);
    }
    return s;
  }
  s.qk_head_dim = model.head_dim;
  s.v_head_dim = model.head_dim;
  const int64_t kv_heads = std::max(1, model.kv_heads / tp);
  s.kv_elements_per_token = 2 * kv_heads * model.head_dim;
  return s;
}

}  // namespace moesim
