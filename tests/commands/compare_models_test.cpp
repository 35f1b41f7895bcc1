// Compare with several models (MoE against dense): each model's plans are its own (a dense
// model's only EP1), a dense plan equals `moesim run` of the scenario with that model, the cost
// per million tokens follows a hand computation from the step times, the verdict names the
// model with the most tokens/s per GPU, and the command's errors for a bad --model or price.
#include <stdio.h>

#include <array>
#include <catch2/catch.hpp>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "analysis/compare_output.h"
#include "scenarios/scenario.h"
#include "sim/compare.h"
#include "sim/simulation.h"
#include "tests/scratch_dir.h"

using namespace moesim;

namespace {

// Mixtral-8x7B decoding 4 sequences per GPU of 256 cached tokens on one DGX H100 node: the
// real presets, few tokens, so that it runs in seconds.
const std::string kText =
    "name: \"pair\"\n"
    "model { preset: \"mixtral-8x7b\" }\n"
    "cluster { topology: \"dgx-h100\" nodes: 1 gpu { preset: \"h100-sxm\" } }\n"
    "parallelism { ep: 8 }\n"
    "workload { kind: DECODE tokens_per_gpu: 4 kv_context_length: 256 steps: 2 "
    "warmup_steps: 1 }\n"
    "seed: 5\n";

double mean(const std::vector<double>& v) {
  double s = 0.0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
}

// Runs the built moesim with `args`; returns (exit status, stdout and stderr together).
std::pair<int, std::string> run_moesim(const std::string& args) {
  const std::string command = std::string(MOESIM_BUILD_DIR) + "/cli/moesim " + args + " 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::string out;
  std::array<char, 4096> buffer{};
  size_t n = 0;
  while ((n = fread(buffer.data(), 1, buffer.size(), pipe)) > 0) out.append(buffer.data(), n);
  const int status = ::pclose(pipe);
  return {WEXITSTATUS(status), out};
}

}  // namespace

TEST_CASE("compare runs each model's own plans; a dense plan is `moesim run` of that model",
          "[commands]") {
  CompareOptions options;
  options.models = {"mixtral-8x7b", "llama-2-13b"};
  const std::vector<ClusterComparison> result = compare_plans(kText, "pair.pbtxt", {}, options);
  REQUIRE(result.size() == 2);
  CHECK(result[0].model.name == "mixtral-8x7b");
  CHECK(result[1].model.name == "llama-2-13b");
  // Mixtral: TP in {1, 2, 4, 8} (32 heads) times EP dividing 8 experts within 8 GPUs: 10 plans.
  CHECK(result[0].plans.size() == 10);
  // Llama-2-13B (40 heads): TP 1, 2, 4, 8, EP 1 only, DP the rest.
  REQUIRE(result[1].plans.size() == 4);
  for (const PlanOutcome& p : result[1].plans) {
    CHECK(p.plan.ep == 1);
    CHECK(p.plan.tp * p.plan.dp == 8);
    CHECK(p.alltoall_us == 0.0);
    CHECK(p.result.tokens_per_expert.empty());
    if (p.plan.tp == 1) {
      // The same scenario with the model swapped, run as a file would be.
      std::string text = kText;
      text.replace(text.find("mixtral-8x7b"), 12, "llama-2-13b");
      text.replace(text.find("ep: 8"), 5, "dp: 8");
      const Scenario s = parse_scenario(text, "pair.pbtxt");
      CHECK(p.result.step_time_us == simulate(s).step_time_us);
    }
  }
  for (const PlanOutcome& p : result[0].plans) CHECK(p.alltoall_us > 0.0);
}

TEST_CASE("the cost per million tokens follows the step times by hand", "[commands]") {
  // $2 per GPU-hour at 1000 tokens/s per GPU: a million tokens take 1000 GPU-seconds, $0.5556.
  CHECK(usd_per_million_tokens(2.0, 1000.0) == Approx(2.0 / 3.6));
  CHECK(usd_per_million_tokens(3.6, 1.0) == Approx(1e6 / 1000.0));
  CHECK(std::isinf(usd_per_million_tokens(2.0, 0.0)));

  CompareOptions options;
  options.models = {"mixtral-8x7b", "llama-2-70b"};
  const std::vector<ClusterComparison> result = compare_plans(kText, "pair.pbtxt", {}, options);
  const double price = 2.5;
  std::vector<ModelOutcome> outcomes;
  for (const ClusterComparison& c : result) {
    const ModelOutcome o = model_outcome(c, WorkloadKind::kDecode, price);
    REQUIRE(o.best != nullptr);
    REQUIRE(o.usd_per_million_tokens);
    // By hand: 4 sequences on each of 8 GPUs decode 32 tokens per step; over the mean measured
    // step that is tokens/s for 8 GPUs; $2.5 per GPU-hour buys 3600 GPU-seconds.
    const double step_s = mean(o.best->result.step_time_us) * 1e-6;
    const double tokens_per_s_per_gpu = 32.0 / step_s / 8.0;
    CHECK(o.best->result.tokens_per_s_per_gpu == Approx(tokens_per_s_per_gpu));
    CHECK(*o.usd_per_million_tokens == Approx(2.5 / 3600.0 / tokens_per_s_per_gpu * 1e6));
    // The best plan is the fastest that fits: no faster plan fits.
    CHECK(o.fits);
    for (const PlanOutcome& p : c.plans) {
      if (p.step_p50_us < o.best->step_p50_us) CHECK_FALSE(p.memory.fits());
    }
    // Compute per token: 2 FLOPs per active weight a token multiplies by.
    CHECK(o.gflop_per_token ==
          Approx(2.0 * static_cast<double>(c.model.active_matmul_params()) / 1e9));
    outcomes.push_back(o);
  }
  // The CSV's cost column: the same figure per plan.
  std::ostringstream csv;
  write_compare_csv(csv, result, price);
  std::string header;
  std::istringstream lines(csv.str());
  std::getline(lines, header);
  CHECK_THAT(header, Catch::StartsWith("model,cluster,") &&
                         Catch::EndsWith(",fits,usd_per_million_tokens"));
  std::string row;
  std::getline(lines, row);  // mixtral's fastest plan
  const double first_tps = result[0].plans[0].result.tokens_per_s_per_gpu;
  CHECK(std::stod(row.substr(row.rfind(',') + 1)) ==
        Approx(2.5 / 3600.0 / first_tps * 1e6).epsilon(1e-5));

  // The verdict names the model that fits with the most tokens/s per GPU, and how much ahead.
  const bool mixtral_wins =
      outcomes[0].best->result.tokens_per_s_per_gpu > outcomes[1].best->result.tokens_per_s_per_gpu;
  const std::string verdict = model_verdict(result, WorkloadKind::kDecode, price);
  CHECK_THAT(verdict,
             Catch::StartsWith(std::string("decode: ") +
                               (mixtral_wins ? "mixtral-8x7b" : "llama-2-70b") + " wins with "));
  CHECK_THAT(verdict, Catch::Contains("per million tokens") && Catch::Contains("compute"));
  std::ostringstream table;
  print_compare_table(table, parse_scenario(kText, "pair.pbtxt"), result, price);
  CHECK_THAT(table.str(), Catch::Contains("$/M tok") && Catch::Contains("llama-2-70b") &&
                              Catch::Contains("dense") && Catch::Contains("MoE 8x top-2"));
}

TEST_CASE("moesim compare rejects an unknown --model and a bad --gpu-hour-price", "[commands]") {
  const test::ScratchDir dir("compare_models_test");
  const auto path = dir / "pair.pbtxt";
  std::ofstream(path) << kText;
  const std::string file = path.string();
  auto [status, out] = run_moesim("compare " + file + " --no-progress --model llama-2-7b");
  CHECK(status == 1);
  CHECK_THAT(out, Catch::Contains("--model 'llama-2-7b': unknown model preset; presets: ") &&
                      Catch::Contains("llama-2-13b"));
  std::tie(status, out) =
      run_moesim("compare " + file + " --no-progress --model llama-2-13b --model llama-2-13b");
  CHECK(status == 1);
  CHECK_THAT(out, Catch::Contains("--model 'llama-2-13b' is given twice"));
  for (const std::string price : {"0", "-1", "abc", "2x", "inf"}) {
    std::tie(status, out) =
        run_moesim("compare " + file + " --no-progress --gpu-hour-price=" + price);
    INFO(price);
    CHECK(status == 1);
    CHECK_THAT(out, Catch::Contains("--gpu-hour-price '" + price +
                                    "': expected a positive number of US dollars per GPU-hour"));
  }
}

TEST_CASE("the model edit swaps the preset and drops what named the old model's experts",
          "[commands]") {
  std::string text = kText;
  text.replace(text.find("ep: 8"), 5, "ep: 8 hot_experts: 0 replicas: 1");
  (void)parse_scenario(text, "pair.pbtxt");  // valid for Mixtral as it stands
  const std::pair<std::string, std::string> edits[] = {{"model", "llama-2-13b"}, {"ep", "1"}};
  const Scenario s = parse_scenario_edited(text, "pair.pbtxt", edits);
  CHECK(s.model.name == "llama-2-13b");
  CHECK(s.model.is_dense());
  CHECK(s.parallel.hot_experts.empty());
  CHECK(s.parallel.dp == 8);
  // Kept at ep 8, the dense model is refused by name.
  const std::pair<std::string, std::string> keep_ep[] = {{"model", "llama-2-13b"}};
  CHECK_THROWS_WITH(parse_scenario_edited(text, "pair.pbtxt", keep_ep),
                    Catch::Contains("must be 1 for a dense model (llama-2-13b"));
}
