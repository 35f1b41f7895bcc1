// Trace replay throughput: TraceRoutingSource::route() streaming a trace file from disk, in
// token-expert pairs per second (target: 50 million per second on one core).
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <filesystem>

#include "models/trace/trace_routing_source.h"
#include "models/trace/trace_writer.h"
#include "core/random.h"

namespace {

constexpr int32_t kTokens = 4096;
constexpr int32_t kTopK = 8;
constexpr int32_t kLayers = 16;
constexpr int32_t kBatches = 16;

std::filesystem::path trace_path(int32_t experts, bool weights) {
  return std::filesystem::temp_directory_path() /
         ("moesim_bench_trace_" + std::to_string(::getpid()) + "_" + std::to_string(experts) +
          (weights ? "_w" : "") + ".trace");
}

// A trace of kBatches x kLayers records of kTokens x kTopK random ids, written once per process.
std::filesystem::path trace_file(int32_t experts, bool weights) {
  const auto path = trace_path(experts, weights);
  if (std::filesystem::exists(path)) return path;
  moesim::TraceHeader h;
  h.layers = kLayers;
  h.experts = experts;
  h.top_k = kTopK;
  h.tokens_per_batch = kTokens;
  h.has_weights = weights;
  h.source = "bench_trace: uniform random ids";
  moesim::TraceWriter writer(path, h);
  moesim::RandomStream rng(42, "bench_trace");
  moesim::TraceRecord r;
  for (int32_t b = 0; b < kBatches; ++b) {
    for (int32_t l = 0; l < kLayers; ++l) {
      r.batch = b;
      r.layer = l;
      r.tokens = kTokens;
      r.expert_ids.resize(static_cast<size_t>(kTokens) * kTopK);
      for (auto& id : r.expert_ids) id = static_cast<int32_t>(rng.below(experts));
      r.weights.assign(weights ? r.expert_ids.size() : 0, 0.125f);
      writer.append(r);
    }
  }
  writer.close();
  return path;
}

// Args: experts, ranks, weights (0/1). One iteration replays every record once (plus the
// wrap back to the start), asking each record for all its ranks as the step does.
void BM_TraceReplay(benchmark::State& state) {
  const auto experts = static_cast<int32_t>(state.range(0));
  const auto ranks = static_cast<int32_t>(state.range(1));
  const bool weights = state.range(2) != 0;
  const auto path = trace_file(experts, weights);
  moesim::TraceRoutingSource source(path);
  moesim::RoutingDecision out;
  moesim::RoutingRequest q;
  q.ranks = ranks;
  int64_t micro_batch = 0;
  int64_t pairs = 0;
  for (auto _ : state) {
    for (int32_t b = 0; b < kBatches; ++b, ++micro_batch) {
      for (int32_t l = 0; l < kLayers; ++l) {
        for (int32_t r = 0; r < ranks; ++r) {
          q.micro_batch = micro_batch;
          q.layer = l;
          q.rank = r;
          source.route(q, out);
          pairs += static_cast<int64_t>(out.tokens) * kTopK;
          benchmark::DoNotOptimize(out.tokens_per_expert.data());
        }
      }
    }
  }
  state.SetItemsProcessed(pairs);
  state.counters["pairs_per_s"] =
      benchmark::Counter(static_cast<double>(pairs), benchmark::Counter::kIsRate);
  state.counters["file_MiB"] = static_cast<double>(std::filesystem::file_size(path)) / (1 << 20);
}
BENCHMARK(BM_TraceReplay)
    ->ArgNames({"experts", "ranks", "weights"})
    ->Args({64, 1, 0})
    ->Args({64, 8, 0})
    ->Args({256, 8, 0})
    ->Args({256, 8, 1})
    ->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  for (int32_t experts : {64, 256}) {
    for (bool w : {false, true}) {
      std::error_code ec;
      std::filesystem::remove(trace_path(experts, w), ec);
    }
  }
  return 0;
}
