// Costs of the per-layer helpers the step calls most: Placement::serving_rank per token-expert
// pair, GpuModel::grouped_expert_ffn per GPU and layer, and resolving a scenario file.
#include <benchmark/benchmark.h>

#include <filesystem>
#include <vector>

#include "models/gpu/gpu_model.h"
#include "models/moe/placement.h"
#include "scenarios/scenario.h"
#include "core/random.h"

namespace moesim {
namespace {

// DeepSeek-V3 on EP32 (256 experts, 8 per rank, 8 ranks per node) with 32 hot experts copied
// twice; one iteration routes 4096 tokens x 8 experts from one source rank.
void BM_ServingRank(benchmark::State& state) {
  ParallelPlan plan;
  plan.ep = 32;
  for (int32_t e = 0; e < 256; e += 8) plan.hot_experts.push_back(e);
  plan.replicas = static_cast<int32_t>(state.range(0));
  if (plan.replicas == 0) plan.hot_experts.clear();
  const Placement placement(plan, 256, 8);
  RandomStream rng(1, "bench");
  std::vector<int32_t> experts(4096 * 8);
  for (int32_t& e : experts) e = static_cast<int32_t>(rng.below(256));
  for (auto _ : state) {
    int64_t sum = 0;
    for (size_t i = 0; i < experts.size(); ++i) {
      sum += placement.serving_rank(experts[i], 5, static_cast<int64_t>(i / 8));
    }
    benchmark::DoNotOptimize(sum);
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(experts.size()));
}
BENCHMARK(BM_ServingRank)->Arg(0)->Arg(2);

// One GPU's grouped expert FFN time for a layer with `range(0)` local experts.
void BM_GroupedExpertFfn(benchmark::State& state) {
  const GpuModel gpu(*find_gpu_preset("h800"));
  RandomStream rng(1, "bench");
  std::vector<int32_t> rows(static_cast<size_t>(state.range(0)));
  for (int32_t& r : rows) r = static_cast<int32_t>(rng.below(1024));
  for (auto _ : state) {
    benchmark::DoNotOptimize(gpu.grouped_expert_ffn(rows, 7168, 2048, Dtype::kFp8, 1));
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_GroupedExpertFfn)->Arg(8)->Arg(256);

// Loading and resolving the DeepSeek-V3 example (parse, presets, a 32-GPU topology built to
// count its GPUs, router validation).
void BM_LoadScenario(benchmark::State& state) {
  // CMake compiles this file by its absolute path: the repository is two folders up.
  const std::filesystem::path file = std::filesystem::path(__FILE__).parent_path().parent_path() /
                                     "scenarios/examples/deepseek-v3-ep32-h800.pbtxt";
  for (auto _ : state) benchmark::DoNotOptimize(load_scenario(file));
}
BENCHMARK(BM_LoadScenario)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace moesim

BENCHMARK_MAIN();
