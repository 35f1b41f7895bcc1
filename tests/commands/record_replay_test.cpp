// Record then replay gives the direct run's numbers; a one-expert trace gives the closed-form
// overload; trace and scenario mismatches are named; real vLLM traces replay to their counts.
#include <catch2/catch.hpp>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "models/trace/import_jsonl.h"
#include "models/trace/trace_writer.h"
#include "scenarios/scenario.h"
#include "sim/simulation.h"
#include "sim/trace_replay.h"
#include "tests/commands/commands_test_util.h"

using namespace moesim;
using moesim::test::ScratchDir;
using moesim::test::tiny_scenario;

namespace {

const char* kTraining =
    "kind: TRAINING tokens_per_gpu: 64 sequence_length: 64 micro_batches: 2 steps: 3 "
    "warmup_steps: 1";

void check_same_run(const SimulationResult& direct, const SimulationResult& replayed) {
  CHECK(replayed.step_time_us == direct.step_time_us);
  CHECK(replayed.dispatch_us == direct.dispatch_us);
  CHECK(replayed.combine_us == direct.combine_us);
  CHECK(replayed.tokens_per_expert == direct.tokens_per_expert);
  CHECK(replayed.tokens_per_expert_by_layer == direct.tokens_per_expert_by_layer);
  CHECK(replayed.gpu_tokens == direct.gpu_tokens);
  CHECK(replayed.expert_max_over_mean == direct.expert_max_over_mean);
}

// Counts of every id in the "topk_ids" arrays of a vLLM route log, read independently of the
// trace importer.
std::vector<int64_t> count_jsonl_ids(const std::string& path, int32_t experts, int64_t& rows) {
  std::ifstream in(path);
  REQUIRE(in);
  std::vector<int64_t> counts(static_cast<size_t>(experts), 0);
  rows = 0;
  std::string line;
  while (std::getline(in, line)) {
    const size_t key = line.find("\"topk_ids\"");
    if (key == std::string::npos) continue;
    ++rows;
    const size_t open = line.find('[', key);
    const size_t close = line.find(']', open);
    std::stringstream ids(line.substr(open + 1, close - open - 1));
    std::string id;
    while (std::getline(ids, id, ',')) ++counts.at(static_cast<size_t>(std::stoi(id)));
  }
  return counts;
}

}  // namespace

TEST_CASE("record then replay reproduces the direct run, drops included", "[commands]") {
  ScratchDir dir("record");
  const std::string extra = GENERATE(
      std::string("router { capacity_factor: 1.0 }"),
      std::string("router { capacity_factor: 1.25 aux_free_bias: true bias_gamma: 0.05 }"));
  const Scenario s = parse_scenario(tiny_scenario("ep: 4 dp: 2", kTraining, extra), "tiny.pbtxt");
  const SimulationResult direct = simulate(s);
  REQUIRE(direct.dropped_pairs > 0);  // the capacity bites, so dropped pairs are exercised

  const RecordSummary rec = record_trace(s, dir / "tiny.trace");
  CHECK(rec.batches == 3 * 2);
  CHECK(rec.records == 3 * 2 * 2);
  CHECK(rec.header.tokens_per_batch == 8 * 64);
  // Every step is recorded, warm-up too: kept + dropped = all pairs.
  CHECK(rec.pairs + rec.dropped == int64_t{3} * 2 * 2 * 8 * 64 * 2);

  const ReplayResult replayed = replay_trace(s, dir / "tiny.trace");
  CHECK(replayed.wraps == 0);
  check_same_run(direct, replayed.result);
  CHECK(replayed.result.dropped_pairs == 0);  // drops are baked into the trace as empty slots
}

TEST_CASE("a trace recorded at EP4 replays at EP8 with the same per-expert counts", "[commands]") {
  ScratchDir dir("ep");
  const Scenario ep4 = parse_scenario(tiny_scenario("ep: 4 dp: 2", kTraining), "ep4.pbtxt");
  const Scenario ep8 = parse_scenario(tiny_scenario("ep: 8", kTraining), "ep8.pbtxt");
  record_trace(ep4, dir / "ep4.trace");
  const ReplayResult r = replay_trace(ep8, dir / "ep4.trace");
  const SimulationResult direct = simulate(ep4);
  CHECK(r.result.tokens_per_expert == direct.tokens_per_expert);
  // EP8 holds one expert per GPU: GPU g computes exactly expert g's rows.
  for (int32_t g = 0; g < 8; ++g) CHECK(r.result.gpu_tokens[g] == direct.tokens_per_expert[g]);
}

TEST_CASE("a trace sending every token to one expert replays to the closed-form overload",
          "[commands]") {
  ScratchDir dir("hot");
  const Scenario s =
      parse_scenario(tiny_scenario("ep: 8", "kind: TRAINING tokens_per_gpu: 32 steps: 2", "",
                                   R"(preset: "h100-sxm")", "layers: 2 routed_experts: 8 top_k: 1"),
                     "hot.pbtxt");
  TraceHeader h;
  h.layers = 2;
  h.experts = 8;
  h.top_k = 1;
  h.tokens_per_batch = 8 * 32;
  {
    TraceWriter w(dir / "hot.trace", h);
    for (int64_t batch = 0; batch < 2; ++batch) {
      for (int32_t layer = 0; layer < 2; ++layer) {
        TraceRecord r;
        r.batch = batch;
        r.layer = layer;
        r.tokens = h.tokens_per_batch;
        r.expert_ids.assign(static_cast<size_t>(r.tokens), 5);
        w.append(r);
      }
    }
    w.close();
  }
  const ReplayResult r = replay_trace(s, dir / "hot.trace");
  // k = 1, all N pairs on one of E = 8 experts: max / mean = N / (N / E) = E.
  CHECK(r.result.expert_max_over_mean == 8.0);
  const int64_t rows = int64_t{2} * 2 * 8 * 32;  // steps x layers x tokens per batch
  CHECK(r.result.tokens_per_expert[5] == rows);
  // Contiguous EP8: expert 5 lives on GPU 5, which computes every row; the others none.
  for (int32_t g = 0; g < 8; ++g) CHECK(r.result.gpu_tokens[g] == (g == 5 ? rows : 0));
  CHECK(r.result.gpu_max_over_mean == 8.0);
}

TEST_CASE("replay names both numbers when the trace does not fit the model", "[commands]") {
  ScratchDir dir("mismatch");
  const Scenario s = parse_scenario(tiny_scenario("ep: 8", kTraining), "tiny.pbtxt");
  TraceHeader h;
  h.layers = 3;
  h.experts = 8;
  h.top_k = 2;
  TraceWriter(dir / "layers.trace", h).close();
  CHECK_THROWS_WITH(replay_trace(s, dir / "layers.trace"),
                    Catch::Contains("3 MoE layers") && Catch::Contains("has 2"));
  h.layers = 2;
  h.experts = 16;
  TraceWriter(dir / "experts.trace", h).close();
  CHECK_THROWS_WITH(replay_trace(s, dir / "experts.trace"),
                    Catch::Contains("16 routed experts") && Catch::Contains("has 8"));
}

TEST_CASE("real vLLM traces replay to the counts in their files", "[commands]") {
  ScratchDir dir("real");
  struct Case {
    std::string file;
    int32_t experts, top_k;
    std::string parallelism;
  };
  const Case c = GENERATE(Case{"olmoe-1b-7b-layer0.jsonl", 64, 8, "ep: 8"},
                          Case{"qwen15-moe-a27b-layer0.jsonl", 60, 4, "ep: 4 dp: 2"});
  const std::string path = MOESIM_SOURCE_DIR "/../shared/traces/" + c.file;
  int64_t rows = 0;
  const std::vector<int64_t> expected = count_jsonl_ids(path, c.experts, rows);

  ImportOptions options;
  options.experts = c.experts;
  import_jsonl(path, options, dir / "real.trace");
  const int64_t per_gpu = (rows + 7) / 8;
  const std::string model = "top_k: " + std::to_string(c.top_k) +
                            " routed_experts: " + std::to_string(c.experts) + " layers: 1";
  const Scenario s = parse_scenario(
      tiny_scenario(c.parallelism,
                    "kind: PREFILL tokens_per_gpu: " + std::to_string(per_gpu) + " steps: 1", "",
                    R"(preset: "h100-sxm")", model),
      "real.pbtxt");
  REQUIRE(s.model.routed_experts == c.experts);
  const ReplayResult r = replay_trace(s, dir / "real.trace");
  CHECK(r.result.tokens_per_expert == expected);
  int64_t pairs = 0;
  for (int64_t n : r.result.tokens_per_expert) pairs += n;
  CHECK(pairs == rows * c.top_k);
}

TEST_CASE("record refuses expert-choice routing, whose rows vary in width", "[commands]") {
  ScratchDir dir("choice");
  const Scenario s = parse_scenario(
      tiny_scenario("ep: 8", kTraining, "router { expert_choice: true }"), "choice.pbtxt");
  CHECK_THROWS_WITH(record_trace(s, dir / "choice.trace"), Catch::Contains("expert-choice"));
}
