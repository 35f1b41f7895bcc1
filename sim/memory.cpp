#include "sim/memory.h"

#include <algorithm>
#include <vector>

#include "models/moe/parameter_count.h"
#include "models/moe/placement.h"
#include "sim/pipeline_order.h"
#include "sim/step_driver.h"

namespace moesim {
namespace {

constexpr int64_t kActivationBytes = 2;  // bf16
constexpr int64_t kLogitBytes = 4;       // fp32 router logits
constexpr int64_t kKvBytes = 2;          // bf16 KV cache
constexpr int64_t kAdamBytes = 12;       // fp32 master weight and two fp32 moments

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

// Elements one token stores in one layer's attention block (see memory.h).
int64_t attention_elements(const ModelSpec& m) {
  const int64_t h = m.hidden_size;
  const int64_t heads = m.attention_heads;
  if (m.attention == AttentionKind::kMla) {
    return 2 * h + heads * m.qk_head_dim() * 2 + heads * m.value_head_dim() * 2 + m.q_lora_rank +
           m.kv_lora_rank + m.qk_rope_head_dim;
  }
  return 2 * h + heads * m.head_dim * 2 + int64_t{m.kv_heads} * m.head_dim * 2;
}

// Bytes one token stores in one layer (attention plus FFN or MoE block).
int64_t layer_token_bytes(const ModelSpec& m, const ParallelPlan& plan, int32_t layer) {
  const int64_t h = m.hidden_size;
  int64_t elements = attention_elements(m);
  int64_t extra_bytes = 0;
  if (m.is_moe_layer(layer)) {
    elements += h + int64_t{plan.tp} * m.top_k * h +
                int64_t{m.top_k} * m.ffn_matrices * m.expert_ffn_size +
                int64_t{m.shared_experts} * m.ffn_matrices * m.expert_ffn_size;
    extra_bytes = int64_t{m.routed_experts} * kLogitBytes;
  } else {
    elements += h + int64_t{m.ffn_matrices} * m.dense_ffn_size;
  }
  return elements * kActivationBytes + extra_bytes;
}

}  // namespace

MemoryPerGpu memory_per_gpu(const ModelSpec& model, const ParallelPlan& plan,
                            const Workload& workload, int32_t gpus_per_node, Bytes hbm_capacity) {
  const Placement placement(plan, model, std::max(1, gpus_per_node / plan.tp));
  int64_t local_experts = 0;
  for (int32_t r = 0; r < plan.ep; ++r) {
    local_experts = std::max<int64_t>(local_experts, placement.experts_on(r).size());
  }
  const bool training = workload.kind == WorkloadKind::kTraining;
  // Interleaved 1F1B: pp x v model stages, rank r holding r, r + pp, ...
  const int32_t chunks = workload.virtual_pipeline_stages;
  const int32_t stages = plan.pp * chunks;
  const std::vector<int32_t> first = stage_first_layers(model.layers, stages);
  ParallelPlan staged = plan;  // for the embedding on stage 0 and the LM head on the last
  staged.pp = stages;
  // Activations are of the tokens computed; the prefill KV cache holds every input token's.
  const int64_t tokens = workload.computed_tokens_per_gpu();
  const int64_t kv_tokens = workload.tokens_per_gpu;
  const int64_t kv_shards =
      model.attention == AttentionKind::kMla ? 1 : std::min<int64_t>(plan.tp, model.kv_heads);
  const int64_t kv_tokens_per_sequence =
      workload.kind == WorkloadKind::kDecode ? int64_t{workload.kv_context_length} + 1 : 1;

  const StepOptions& options = workload.options;
  // DualPipe: each pipeline rank holds two stages, each stage's parameters on two ranks.
  const bool dualpipe = training && workload.schedule == ScheduleKind::kDualPipe;
  const int64_t copies = dualpipe ? 2 : 1;
  // ZeRO-1: the optimizer state of each parameter split over the ranks holding it.
  const int64_t dense_group =
      options.distributed_optimizer ? int64_t{plan.ep} * plan.dp * copies : 1;
  const int64_t expert_group = options.distributed_optimizer ? plan.dp * copies : 1;

  MemoryPerGpu best;
  for (int32_t stage = 0; stage < plan.pp; ++stage) {  // the pipeline rank
    std::vector<int32_t> held;
    for (int32_t st = stage; st < stages; st += plan.pp) held.push_back(st);
    if (dualpipe) held.push_back(plan.pp - 1 - stage);
    int64_t layers = 0;  // on this rank
    GpuParameterCount count;
    int64_t layer_peak_bytes = 0;  // the largest single layer, per token
    // Per held stage, bytes per token kept for one micro-batch in flight.
    std::vector<int64_t> chunk_bytes;
    for (const int32_t st : held) {
      const GpuParameterCount c =
          gpu_parameter_count(model, staged, st, first[st], first[st + 1], local_experts);
      layers += first[st + 1] - first[st];
      count.dense += c.dense;
      count.routed_experts += c.routed_experts;
      int64_t bytes = 0;
      for (int32_t layer = first[st]; layer < first[st + 1]; ++layer) {
        const int64_t b = layer_token_bytes(model, plan, layer);
        // Full recomputation keeps each layer's input only.
        bytes += options.recomputation == Recomputation::kFull
                     ? model.hidden_size * kActivationBytes
                     : b;
        layer_peak_bytes = std::max(layer_peak_bytes, b);
      }
      chunk_bytes.push_back(bytes);
    }
    const int64_t params = count.total();

    MemoryPerGpu m;
    m.params = params;
    m.capacity = hbm_capacity;
    if (training) {
      m.weights = Bytes(params * 2);
      m.gradients = Bytes(params * 2);
      m.optimizer_state = Bytes(ceil_div(count.dense * kAdamBytes, dense_group) +
                                ceil_div(count.routed_experts * kAdamBytes, expert_group));
      // The most bytes per token in flight over the rank's order: a forward keeps its chunk's
      // activations until its backward (1F1B: pp - stage micro-batches, one more with EP
      // overlap's extra warm-up forward; DualPipe: pp + 1 chunks at the peak, the report's
      // Table 2), plus, under full recomputation, one layer rebuilt.
      const bool ep_overlap = workload.schedule == ScheduleKind::kOneFOneBEpOverlap;
      const std::vector<PipelineWork> order =
          dualpipe ? dualpipe_order(stage, plan.pp, workload.micro_batches, true)
                   : one_f_one_b_rank_order(stage, plan.pp, chunks, workload.micro_batches, true,
                                            ep_overlap);
      int64_t live = 0, peak = 0;
      for (const PipelineWork& w : order) {
        // A chunk's activations are freed by its backward's input part; what a deferred weight
        // chunk still needs (the wgrad GEMMs' inputs and output gradients) is not counted.
        if (w.grad == GradPart::kWeight) continue;
        const auto at = std::find(held.begin(), held.end(), w.stage) - held.begin();
        const int64_t b = chunk_bytes[static_cast<size_t>(at)];
        live += w.backward ? -b : b;
        peak = std::max(peak, live);
      }
      const bool full = options.recomputation == Recomputation::kFull;
      m.activations = Bytes(tokens * (peak + (full ? layer_peak_bytes : 0)));
    } else {
      m.weights = model.weights.bytes_for(params);
      m.activations = Bytes(tokens * layer_peak_bytes);
      m.kv_cache = Bytes(int64_t{plan.tp} * kv_tokens * kv_tokens_per_sequence * layers *
                         model.kv_cache_elements_per_token() * kKvBytes / kv_shards *
                         workload.micro_batches);
    }
    if (stage == 0 || m.total() > best.total()) best = m;
  }
  return best;
}

}  // namespace moesim
