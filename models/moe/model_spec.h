// An MoE (or dense) transformer's shape (layers, attention, experts, routing, data formats) with
// the parameter counts and message sizes the step needs; plus the built-in model presets.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/units.h"
#include "models/gpu/gpu_model.h"
#include "models/gpu/gpu_spec.h"

namespace moesim {

enum class Scoring : uint8_t { kSoftmax, kSigmoid };

// How a tensor is stored or sent: a dtype, optionally with one scale of `scale_bytes` per
// `scale_block_elements` elements (block-quantised FP8). Both scale fields 0: no scales.
struct ElementFormat {
  Dtype dtype = Dtype::kBf16;
  int32_t scale_bytes = 0;
  int32_t scale_block_elements = 0;

  // Bytes of `elements` elements, counting one scale per started block.
  Bytes bytes_for(int64_t elements) const;
};

enum class AttentionKind : uint8_t {
  kGqa,  // multi-head / grouped-query attention: kv_heads keys and values of head_dim
  kMla,  // multi-head latent attention (DeepSeek-V2/V3): a compressed KV latent is cached
};

// A dense model is one with no routed experts (routed_experts == 0, top_k == 0): it has no MoE
// layer, every layer's FFN is dense (dense_ffn_size), and the step runs it with the same
// attention and dense-FFN kernels as an MoE model's dense layers, with no routing or all-to-all.
struct ModelSpec {
  std::string name;
  int32_t layers = 0;
  int32_t dense_layers = 0;  // the first dense_layers layers have a dense FFN, not experts
  // After those, every moe_layer_interval-th layer is MoE (layers dense_layers + i * interval +
  // interval - 1), the others dense: Switch Transformer's "every other layer" is 2.
  int32_t moe_layer_interval = 1;
  int32_t ffn_matrices = 3;  // 3: gated FFN (SwiGLU); 2: plain (ReLU/GELU)
  bool normalize_topk = true;
  int32_t hidden_size = 0;
  int32_t attention_heads = 0;
  int32_t kv_heads = 0;
  int32_t head_dim = 0;  // MLA: the no-RoPE part of a query/key head (qk_nope_head_dim)
  int32_t expert_ffn_size = 0;
  int32_t dense_ffn_size = 0;
  int32_t routed_experts = 0;
  int32_t shared_experts = 0;
  int32_t top_k = 0;
  int32_t expert_groups = 1;
  int32_t topk_groups = 1;
  Scoring scoring = Scoring::kSoftmax;
  double routed_scaling_factor = 1.0;
  int32_t vocab_size = 0;
  ElementFormat weights;   // dtype of the GEMMs too
  ElementFormat dispatch;  // hidden states sent to experts
  ElementFormat combine;   // expert outputs sent back

  AttentionKind attention = AttentionKind::kGqa;
  // MLA only.
  int32_t q_lora_rank = 0;  // 0: queries are not compressed
  int32_t kv_lora_rank = 0;
  int32_t qk_rope_head_dim = 0;
  int32_t v_head_dim = 0;

  // No routed experts, so no MoE layer (whatever dense_layers and moe_layer_interval say).
  bool is_dense() const { return routed_experts == 0; }
  int32_t moe_layer_count() const;
  // Indices (among all layers) of the MoE layers, ascending.
  std::vector<int32_t> moe_layer_indices() const;
  bool is_moe_layer(int32_t layer) const;

  // Weights of one layer's attention block (projections; norms neglected).
  int64_t attention_params() const;
  // Weights of one dense layer's FFN: ffn_matrices * hidden * dense_ffn.
  int64_t dense_ffn_params() const;
  // Weights of one expert (routed or shared): ffn_matrices * hidden * expert_ffn.
  int64_t expert_params() const;
  // Weights of one MoE layer's router gate: hidden * routed_experts.
  int64_t gate_params() const;
  // Embedding and LM head (untied): 2 * vocab * hidden.
  int64_t embedding_params() const;
  // Every weight in the model.
  int64_t total_params() const;
  // Weights one token passes through (top_k routed and all shared experts per MoE layer).
  int64_t active_params() const;
  // Weights one token multiplies by: active_params() without the input embedding (a lookup).
  // A token's forward pass takes 2 FLOPs per such weight, beside attention's QK^T and PV, which
  // grow with the context; its training step three times that (backward twice the forward).
  int64_t active_matmul_params() const { return active_params() - embedding_params() / 2; }

  // One token's hidden state as sent to an expert, and as an expert's output sent back.
  Bytes dispatch_bytes_per_token() const { return dispatch.bytes_for(hidden_size); }
  Bytes combine_bytes_per_token() const { return combine.bytes_for(hidden_size); }
  // Elements one token adds to one layer's KV cache: 2 * kv_heads * head_dim (GQA) or
  // kv_lora_rank + qk_rope_head_dim (MLA).
  int64_t kv_cache_elements_per_token() const;
  // Width of a query/key head as it enters QK^T, and of a value head.
  int32_t qk_head_dim() const { return head_dim + qk_rope_head_dim; }
  int32_t value_head_dim() const {
    return attention == AttentionKind::kMla ? v_head_dim : head_dim;
  }
};

// The built-in models: MoE mixtral-8x7b, mixtral-8x22b, deepseek-v3, qwen3-30b-a3b,
// qwen3-235b-a22b, dbrx, switch-base-128; dense llama-2-13b, llama-2-70b, llama-3.1-70b,
// llama-3.1-405b, qwen2.5-72b. Token model: no preset sets one; every MoE preset routes
// synthetic tokens with the router's default TokenModel (models/router/router_spec.h), which is
// calibrated to no routing data of any of these models (the run's output says so). `moesim fit`
// fits one to a trace of the model.
std::span<const ModelSpec> model_presets();
// nullptr when `name` is not a preset.
const ModelSpec* find_model_preset(std::string_view name);

// The attention shape of `model` on one of `tp` tensor-parallel GPUs. Heads split over TP; a
// KV head is replicated when kv_heads < tp. MLA prefill attends per head with the decompressed
// K (nope + rope) and V; MLA decode attends in the latent space with the up-projections
// absorbed (DeepSeek-V2 section 2.1.2): K = latent + rope (kv_lora + rope wide), V = latent,
// and every TP rank reads the whole latent cache.
AttentionShape attention_shape(const ModelSpec& model, int32_t tp, bool decode);

}  // namespace moesim
