// Helpers shared by the command tests: a tiny MoE scenario as text (fast to simulate) and a
// scratch folder per test.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>

#include "tests/scratch_dir.h"

namespace moesim::test {

// A 2-layer model of 8 experts (hidden 256, 4 heads) on one 8-GPU DGX H100 node.
// `parallelism`, `workload` and `extra` (router, sweep, ...) are pasted into the text;
// `model_shape` sets layers, routed_experts and top_k.
inline std::string tiny_scenario(
    const std::string& parallelism, const std::string& workload, const std::string& extra = "",
    const std::string& gpu = R"(preset: "h100-sxm")",
    const std::string& model_shape = "layers: 2 routed_experts: 8 top_k: 2") {
  return "name: \"tiny\"\n"
         "model { hidden_size: 256 attention_heads: 4 expert_ffn_size: 512 vocab_size: 1000\n"
         "        " +
         model_shape +
         " }\n"
         "cluster { topology: \"dgx-h100\" nodes: 1 gpu { " +
         gpu + " } }\nparallelism { " + parallelism + " }\nworkload { " + workload + " }\n" +
         extra + "\nseed: 7\n";
}

// A six-point sweep (capacity factor 0 and 1.0, top-k 1, 2 and 4) of a tiny EP8 training
// scenario: the sweep and long-run tests' common case.
inline std::string two_axis_sweep_scenario() {
  return tiny_scenario("ep: 8", "kind: TRAINING tokens_per_gpu: 64 steps: 2",
                       "router { capacity_factor: 1.0 }\n"
                       "sweep { name: \"capacity_factor\" values: [\"0\", \"1.0\"] }\n"
                       "sweep { name: \"top_k\" values: [\"1\", \"2\", \"4\"] }");
}

}  // namespace moesim::test
