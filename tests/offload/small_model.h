// The small MoE model the offload tests decode with (hidden 256, 4 heads of 64, experts of
// 1024): its layers, experts and top-k set by each test.
#pragma once

#include <cstdint>

#include "models/moe/model_spec.h"

namespace moesim::test {

inline ModelSpec small_offload_model(int32_t layers, int32_t experts, int32_t top_k) {
  ModelSpec m;
  m.name = "small";
  m.layers = layers;
  m.hidden_size = 256;
  m.attention_heads = 4;
  m.kv_heads = 4;
  m.head_dim = 64;
  m.expert_ffn_size = 1024;
  m.routed_experts = experts;
  m.top_k = top_k;
  m.vocab_size = 1000;
  return m;
}

}  // namespace moesim::test
