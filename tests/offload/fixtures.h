// What the offload tests decode with: a small MoE model (hidden 256, 4 heads of 64, experts of
// 1024; layers, experts and top-k set by each test) and an LRU cache over PCIe 4.0 in BF16.
#pragma once

#include <cstdint>

#include "models/moe/expert_cache.h"
#include "models/moe/model_spec.h"
#include "sim/offload.h"

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

// `cache` experts per layer under LRU, `tokens` decoded after 16 of context, no prefetch.
inline OffloadConfig lru_offload_config(int32_t cache, int32_t tokens) {
  OffloadConfig c;
  c.host_link = *find_host_link_preset("pcie4-x16");
  c.expert_precision = *weight_precision_from_name("bf16");
  c.attention_precision = *weight_precision_from_name("bf16");
  c.policy = CachePolicy::kLru;
  c.cache_experts = cache;
  c.decode_tokens = tokens;
  c.context_length = 16;
  return c;
}

}  // namespace moesim::test
