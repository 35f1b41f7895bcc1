// Parameters one GPU holds under a parallel plan (one pipeline stage's layers, one EP rank's
// experts, one TP shard): the one count memory per GPU and the step's gradient sync use.
#pragma once

#include <cstdint>

#include "models/moe/model_spec.h"
#include "models/moe/parallel_plan.h"

namespace moesim {

// What one GPU holds, split by how the step reduces its gradients.
struct GpuParameterCount {
  // Held alike by every EP rank of the stage, so gradients reduce over EP x DP: per layer the
  // attention / tp and a dense FFN / tp, or per MoE layer the router gate (whole) and the shared
  // experts / tp; the embedding table / tp on the first stage and the LM head / tp on the last
  // (both on a single stage).
  int64_t dense = 0;
  // The GPU's routed experts / tp over the stage's MoE layers; gradients reduce over DP only.
  int64_t routed_experts = 0;

  int64_t total() const { return dense + routed_experts; }
};

// The count for a GPU of pipeline stage `stage` (0-based) holding layers [first_layer,
// end_layer) and `local_experts` routed experts per MoE layer (its EP rank's homes and hot
// copies). Each tensor is split over TP separately (integer shares, as each TP rank stores
// its own shard).
//
// The router gate is replicated over TP, not split: Megatron-Core's TopKRouter keeps its
// weight as one plain (num_experts x hidden) Parameter on every TP rank, and DeepSeek-V3's
// reference model.py keeps Gate.weight (n_routed_experts x dim) whole on every rank, while
// attention and shared experts use column/row-parallel linears.
//
// Embedding and LM head are untied, as ModelSpec::embedding_params() counts them (every preset
// but Switch's T5 stack unties them; Switch is modelled untied too): two vocab x hidden tables,
// each split over TP by vocabulary (Megatron's VocabParallelEmbedding and column-parallel
// output layer). With pp == 1 one GPU holds both.
GpuParameterCount gpu_parameter_count(const ModelSpec& model, const ParallelPlan& plan,
                                      int32_t stage, int32_t first_layer, int32_t end_layer,
                                      int64_t local_experts);

}  // namespace moesim
