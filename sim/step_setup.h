// What one training or inference step is, for the schedule that lays it out and the cost model
// that prices it: the model, its parallel plan and placement, the GPU, the workload's size.
#pragma once

#include <cstdint>
#include <vector>

#include "models/gpu/gpu_model.h"
#include "models/moe/model_spec.h"
#include "models/moe/parallel_plan.h"
#include "models/moe/placement.h"
#include "scenarios/scenario.h"

namespace moesim {

// Everything a step needs besides its traffic; the pointers must outlive whoever holds it.
struct StepSetup {
  const ModelSpec* model = nullptr;
  const ParallelPlan* plan = nullptr;
  const Placement* placement = nullptr;
  const GpuModel* gpu = nullptr;
  WorkloadKind kind = WorkloadKind::kTraining;
  // Tokens a GPU computes per micro-batch, and per sequence (prefill: after the cached prefix).
  int32_t tokens_per_gpu = 0;
  int32_t sequence_length = 0;
  // Prefill: tokens of each sequence already in the KV cache, before the computed ones; their
  // keys and values are attended over, nothing else is done for them.
  int32_t cached_prefix_tokens = 0;
  int32_t kv_context_length = 0;
  int32_t micro_batches = 1;
  // Model stages (chunks) per pipeline rank: interleaved 1F1B when above 1 (Workload's).
  int32_t virtual_stages = 1;
  StepOptions options;  // the workload's: recomputation, ZeRO-1, GEMM precisions
};

// The first layer of each pipeline stage, plus the end: layers split as evenly as possible,
// the first stages taking one more when the stages do not divide the layers.
std::vector<int32_t> stage_first_layers(int32_t layers, int32_t stages);

}  // namespace moesim
