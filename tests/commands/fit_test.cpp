// `moesim fit`: a log is fitted and the block it writes loads in a scenario as a fitted token
// model; bad input is named; replay --grow-with-fit runs the fitted model only when it must.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "models/router/token_model_fit.h"
#include "scenarios/scenario.h"
#include "sim/simulation.h"
#include "sim/trace_replay.h"
#include "tests/commands/commands_test_util.h"

using namespace moesim;
using moesim::test::ScratchDir;
using moesim::test::tiny_scenario;

namespace {

struct Outcome {
  int status = -1;
  std::string out;
  std::string err;
};

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Runs `moesim fit ARGS` in `dir`, stdout and stderr to files there.
Outcome run_fit(const ScratchDir& dir, const std::string& args) {
  const std::string command = std::string(MOESIM_BUILD_DIR) + "/cli/moesim fit " + args + " >" +
                              (dir / "out.txt").string() + " 2>" + (dir / "err.txt").string();
  const int raw = std::system(command.c_str());
  Outcome o;
  o.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  o.out = slurp(dir / "out.txt");
  o.err = slurp(dir / "err.txt");
  return o;
}

// A CSV routing log (layer,token,expert_ids) of synthetic routing: 8 experts, top-2, 2 layers.
void write_log(const std::filesystem::path& path) {
  TokenModel m;
  m.hidden = 256;
  m.clusters = 4;
  m.stay_probability = 0.5;
  const RoutingSample s = synthesize_routing(m, 8, 2, 2, 32, 8, 11);
  std::ofstream out(path);
  out << "layer,token,expert_ids\n";
  for (int32_t l = 0; l < 2; ++l) {
    for (int64_t t = 0; t < s.tokens(); ++t) {
      out << l << "," << t << "," << s.ids[l][t * 2] << " " << s.ids[l][t * 2 + 1] << "\n";
    }
  }
}

const char* kDecode = "kind: DECODE tokens_per_gpu: 8 kv_context_length: 64 steps: 3";

}  // namespace

TEST_CASE("fit: the block it writes loads as a fitted token model", "[commands]") {
  ScratchDir dir("fit_block");
  write_log(dir / "log.csv");
  const Outcome o =
      run_fit(dir, (dir / "log.csv").string() + " --out " + (dir / "fit.pbtxt").string() +
                       " --tokens-per-batch 32 --evaluations 10");
  INFO(o.err);
  REQUIRE(o.status == 0);
  CHECK(o.out.find("max/mean, mean over batches") != std::string::npos);
  const std::string block = slurp(dir / "fit.pbtxt");
  CHECK(block.find("router {") != std::string::npos);
  // Pasted into a scenario of the same shape, it is a fitted token model.
  const Scenario s = parse_scenario(tiny_scenario("ep: 8", kDecode, block), "tiny.pbtxt");
  CHECK(s.router.token_model_origin == TokenModelOrigin::kFitted);
  CHECK(s.router.token_model_fitted_to.find("log.csv") != std::string::npos);
  CHECK(token_model_summary(s.router).rfind("fitted to ", 0) == 0);
  // Without token model fields: the uncalibrated default, and the summary says so.
  const Scenario d = parse_scenario(tiny_scenario("ep: 8", kDecode), "tiny.pbtxt");
  CHECK(d.router.token_model_origin == TokenModelOrigin::kDefault);
  CHECK(token_model_summary(d.router).find("calibrated to no routing data") != std::string::npos);
  CHECK_THROWS_WITH(
      parse_scenario(tiny_scenario("ep: 8", kDecode, "router { token_model_fitted_to: \"x\" }"),
                     "tiny.pbtxt"),
      Catch::Contains("token_model_fitted_to") && Catch::Contains("no token model"));
}

TEST_CASE("fit: missing --out, bad traces and logs are named", "[commands]") {
  ScratchDir dir("fit_errors");
  write_log(dir / "log.csv");
  Outcome o = run_fit(dir, (dir / "log.csv").string() + " --tokens-per-batch 32");
  CHECK(o.status == 1);
  CHECK(o.err.find("--out FILE is required") != std::string::npos);

  o = run_fit(dir, (dir / "missing.trace").string() + " --out x");
  CHECK(o.status == 1);
  CHECK(o.err.find("missing.trace") != std::string::npos);

  {
    std::ofstream bad(dir / "bad.trace");
    bad << "not a trace at all";
  }
  o = run_fit(dir, (dir / "bad.trace").string() + " --out x");
  CHECK(o.status == 1);
  CHECK(o.err.find("bad.trace") != std::string::npos);

  {
    std::ofstream bad(dir / "bad.jsonl");
    bad << "{\"layer\": 0, \"token_idx\": 0, \"topk_ids\": [1, 2]}\n{\"layer\": 0, \"topk_ids\": "
           "[1\n";
  }
  o = run_fit(dir, (dir / "bad.jsonl").string() + " --out x --tokens-per-batch 1");
  CHECK(o.status == 1);
  CHECK(o.err.find("bad.jsonl") != std::string::npos);
  CHECK(o.err.find("bad.jsonl:2:") != std::string::npos);

  // One batch and no --tokens-per-batch: the batch is asked for.
  o = run_fit(dir, (dir / "log.csv").string() + " --out x");
  CHECK(o.status == 1);
  CHECK(o.err.find("--tokens-per-batch") != std::string::npos);
}

TEST_CASE("replay --grow-with-fit fits only a trace smaller than the micro-batch", "[commands]") {
  ScratchDir dir("fit_grow");
  // Recorded at 2 tokens per GPU x 8 ranks = 16-token batches, 6 batches.
  const Scenario small = parse_scenario(
      tiny_scenario("ep: 8", "kind: DECODE tokens_per_gpu: 2 kv_context_length: 64 steps: 6"),
      "small.pbtxt");
  record_trace(small, dir / "small.trace");
  const Scenario large = parse_scenario(tiny_scenario("ep: 8", kDecode), "large.pbtxt");
  const ReplayResult grown = replay_trace(large, dir / "small.trace", {}, true);
  CHECK(grown.scenario.router.token_model_origin == TokenModelOrigin::kFitted);
  CHECK(grown.scenario.router.token_model_fitted_to.find("16 tokens") != std::string::npos);
  // It is the scenario's own router on the fitted model: a direct run of the scenario as
  // simulated gives the same counts.
  CHECK(simulate(grown.scenario).tokens_per_expert == grown.result.tokens_per_expert);
  // Without the option, or at the trace's own size, the trace itself routes.
  CHECK(replay_trace(large, dir / "small.trace").scenario.router.token_model_origin ==
        TokenModelOrigin::kTrace);
  CHECK(replay_trace(small, dir / "small.trace", {}, true).scenario.router.token_model_origin ==
        TokenModelOrigin::kTrace);
}
