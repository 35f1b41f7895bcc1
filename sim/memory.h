// Memory one GPU needs for a model under a parallel plan and workload: weights, gradients and
// Adam state in training, stored activations, KV cache in serving; against the GPU's HBM.
#pragma once

#include <cstdint>

#include "core/units.h"
#include "models/moe/model_spec.h"
#include "models/moe/parallel_plan.h"
#include "scenarios/scenario.h"

namespace moesim {

// The fullest GPU's memory (the pipeline stage and EP rank holding the most), by part.
//
// Parameters on a GPU: gpu_parameter_count (models/moe/parameter_count.h) for its stage's
// layers (split as stage_first_layers does) and the most routed experts any EP rank holds.
//
// Training: bf16 weights (2 bytes/param), bf16 gradients (2), Adam (fp32 master weights and two
// fp32 moments: 12 bytes/param). With the distributed optimizer (ZeRO-1, StepOptions) Adam's 12
// bytes are sharded over the ranks holding the parameter: ceil(12 * dense / (dp * ep)) +
// ceil(12 * routed expert params / dp): 4 + 12/d bytes per parameter for d ranks (Megatron-LM's
// docs/source/distrib_optimizer.md counts 4 + 16/d for fp16 parameters and gradients, its
// optimizer keeping an fp32 gradient copy too, which this count does not have). Serving: weights
// in the model's weight format (block scales counted), nothing else per parameter.
//
// Activations, 2 bytes per element (bf16), per token a GPU holds (tokens_per_gpu, its
// sequence-parallel share; TP-sharded tensors hold tp times the tokens at 1/tp the width, so the
// same count): per layer 2 hidden (norm inputs) + queries, keys, values and attention output
// (GQA: 2*heads*head_dim + 2*kv_heads*head_dim; MLA: 2*heads*(qk + v head dims) plus the q and
// kv latents; flash attention, so no score matrix); a dense FFN's input
// plus ffn_matrices * dense_ffn; an MoE layer's input, the router logits (fp32, 4 bytes each),
// tp*top_k dispatched rows of hidden (each TP rank receives its group's tokens whole) plus
// top_k * ffn_matrices * expert_ffn (balanced load), and shared experts' ffn_matrices *
// expert_ffn each. Training keeps them for min(pp - stage, micro_batches) micro-batches in
// flight (1F1B), the first stage the most. Full recomputation keeps instead each layer's input
// (hidden elements per token per layer, per micro-batch in flight) plus the largest layer's
// activations once (rebuilt for its backward, one layer at a time); selective recomputation
// keeps the same as none (the flash attention assumed already keeps no score matrix).
// DualPipe (ScheduleKind::kDualPipe): pipeline rank r holds the parameters of stages r and
// pp - 1 - r (twice 1F1B's in all; ZeRO-1 shards them over both ranks' groups) and keeps each
// micro-batch's chunk activations from its forward to its backward in DualPipe's order, whose
// peak is pp + 1 chunks (the report's Table 2). Interleaved 1F1B (virtual_pipeline_stages v):
// rank r holds stages r, r + pp, ... of pp x v, and keeps each chunk's activations from its
// forward to its backward in Megatron's interleaved order (its peak replaces 1F1B's count).
// Serving keeps one layer's.
//
// KV cache (serving), 2 bytes per element: per sequence token kv_cache_elements_per_token() per
// layer of the stage; the TP group's tp*tokens_per_gpu sequences (decode) or tokens (prefill)
// split over min(tp, kv_heads) shards (GQA) or replicated (MLA); decode holds
// kv_context_length + 1 tokens per sequence; every micro-batch's sequences stay resident.
struct MemoryPerGpu {
  int64_t params = 0;  // parameters on the fullest GPU
  Bytes weights;
  Bytes gradients;
  Bytes optimizer_state;
  Bytes activations;
  Bytes kv_cache;
  Bytes capacity;  // the GPU's HBM

  Bytes total() const { return weights + gradients + optimizer_state + activations + kv_cache; }
  bool fits() const { return total() <= capacity; }
};

// `gpus_per_node` sets the EP ranks per node for hot-expert copies (see Placement).
MemoryPerGpu memory_per_gpu(const ModelSpec& model, const ParallelPlan& plan,
                            const Workload& workload, int32_t gpus_per_node, Bytes hbm_capacity);
inline MemoryPerGpu memory_per_gpu(const Scenario& scenario) {
  return memory_per_gpu(scenario.model, scenario.parallel, scenario.workload,
                        scenario.cluster.gpus_per_node, scenario.cluster.gpu.hbm_capacity);
}

}  // namespace moesim
