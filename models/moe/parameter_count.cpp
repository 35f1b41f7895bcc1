#include "models/moe/parameter_count.h"

#include <stdexcept>
#include <string>

namespace moesim {

GpuParameterCount gpu_parameter_count(const ModelSpec& model, const ParallelPlan& plan,
                                      int32_t stage, int32_t first_layer, int32_t end_layer,
                                      int64_t local_experts) {
  if (plan.tp < 1 || plan.pp < 1 || stage < 0 || stage >= plan.pp || first_layer < 0 ||
      end_layer < first_layer || end_layer > model.layers || local_experts < 0) {
    throw std::invalid_argument("gpu_parameter_count: stage " + std::to_string(stage) +
                                " layers [" + std::to_string(first_layer) + ", " +
                                std::to_string(end_layer) + ") does not fit the plan and model");
  }
  const int64_t tp = plan.tp;
  GpuParameterCount count;
  for (int32_t layer = first_layer; layer < end_layer; ++layer) {
    count.dense += model.attention_params() / tp;
    if (model.is_moe_layer(layer)) {
      count.dense += model.gate_params() + model.shared_experts * model.expert_params() / tp;
      count.routed_experts += local_experts * model.expert_params() / tp;
    } else {
      count.dense += model.dense_ffn_params() / tp;
    }
  }
  const int64_t table = int64_t{model.vocab_size} * model.hidden_size / tp;  // one of two
  if (stage == 0) count.dense += table;                                      // embedding
  if (stage == plan.pp - 1) count.dense += table;                            // LM head
  return count;
}

}  // namespace moesim
