// Tests of scenario loading: every example loads as it is, presets resolve with overrides, and
// each semantic check and a syntax error report the file, line and field.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "models/moe/placement.h"
#include "scenarios/scenario.h"

namespace moesim {
namespace {

const std::filesystem::path kExamples =
    std::filesystem::path(MOESIM_SOURCE_DIR) / "scenarios" / "examples";

// A valid scenario in five lines (model, cluster, parallelism, workload, the rest), each part
// replaceable: Mixtral-8x7B on one 8-GPU H100 node, EP8. Line and column numbers matter to the
// tests: a field inside the model block starts at column 9, cluster 11, parallelism 15,
// workload 12.
struct Parts {
  std::string model = R"(preset: "mixtral-8x7b")";
  std::string cluster = R"(topology: "dgx-h100" gpu { preset: "h100-sxm" })";
  std::string parallelism = "ep: 8";
  std::string workload = "kind: TRAINING tokens_per_gpu: 4096";
  std::string rest;
};
std::string text_of(const Parts& p) {
  return "model { " + p.model + " }\ncluster { " + p.cluster + " }\nparallelism { " +
         p.parallelism + " }\nworkload { " + p.workload + " }\n" + p.rest;
}
const std::string kBase = text_of(Parts{});
Parts with_model(std::string model) {
  Parts p;
  p.model = std::move(model);
  return p;
}
Parts with_cluster(std::string cluster) {
  Parts p;
  p.cluster = std::move(cluster);
  return p;
}
Parts with_parallelism(std::string parallelism) {
  Parts p;
  p.parallelism = std::move(parallelism);
  return p;
}
Parts with_workload(std::string workload) {
  Parts p;
  p.workload = std::move(workload);
  return p;
}
Parts with_rest(std::string rest) {
  Parts p;
  p.rest = std::move(rest);
  return p;
}

// The error message of parsing `text`, or "" if it parses.
std::string error_of(const std::string& text) {
  try {
    parse_scenario(text, "t.pbtxt");
  } catch (const ScenarioError& e) {
    return e.what();
  }
  return "";
}
std::string error_of(const Parts& parts) {
  return error_of(text_of(parts));
}

TEST_CASE("Every example scenario loads as it is", "[scenarios]") {
  int loaded = 0;
  for (const auto& entry : std::filesystem::directory_iterator(kExamples)) {
    if (entry.path().extension() != ".pbtxt") continue;
    INFO(entry.path());
    CHECK_NOTHROW(load_scenario(entry.path()));
    ++loaded;
  }
  CHECK(loaded >= 5);
}

TEST_CASE("The default example is Mixtral-8x7B EP8 training on one H100 node", "[scenarios]") {
  const Scenario s = load_scenario(kExamples / "default.pbtxt");
  CHECK(s.name == "default");
  CHECK(s.model.name == "mixtral-8x7b");
  CHECK(s.model.routed_experts == 8);
  CHECK(s.cluster.topology_preset == "dgx-h100");
  CHECK(s.cluster.gpu_count == 8);
  CHECK(s.cluster.gpus_per_node == 8);
  CHECK(s.cluster.gpu.name == "h100-sxm");
  CHECK(s.parallel.ep == 8);
  CHECK(s.parallel.world_size() == 8);
  CHECK(s.workload.kind == WorkloadKind::kTraining);
  CHECK(s.workload.steps == 3);
  CHECK(s.workload.warmup_steps == 1);
  // The router gets the model's shape and the scenario's settings.
  CHECK(s.router.experts == 8);
  CHECK(s.router.top_k == 2);
  CHECK(s.router.layers == 32);
  CHECK(s.router.capacity_factor == 1.25);
  CHECK(s.router.tokens.hidden == 4096);
  CHECK(s.router.tokens.sequence_tokens == 4096);
  CHECK(s.router.seed == 1);
}

TEST_CASE("The DeepSeek-V3 example spans 4 H800 nodes with 400 Gb/s NICs", "[scenarios]") {
  const Scenario s = load_scenario(kExamples / "deepseek-v3-ep32-h800.pbtxt");
  CHECK(s.cluster.gpu_count == 32);
  CHECK(s.cluster.nodes == 4);
  REQUIRE(s.cluster.nic_gbps.has_value());
  CHECK(*s.cluster.nic_gbps == Approx(400.0));
  CHECK(s.parallel.ep == 32);
  CHECK(s.router.selection == RouterSelection::kGroupLimitedTopK);
  CHECK(s.router.scoring == RouterScoring::kSigmoid);
  CHECK(s.router.routed_scaling == 2.5);
  CHECK(s.router.selection_bias);
  CHECK(s.router.layers == 58);
  CHECK(s.model.dispatch.dtype == Dtype::kFp8);
}

// Routed experts per GPU, one count per EP rank, as the scenario's placement lays them out.
std::vector<size_t> experts_per_rank(const Scenario& s) {
  const Placement placement(s.parallel, s.model, s.cluster.gpus_per_node / s.parallel.tp);
  std::vector<size_t> counts;
  for (int32_t r = 0; r < s.parallel.ep; ++r) counts.push_back(placement.experts_on(r).size());
  return counts;
}

TEST_CASE("The DeepSeek-V3 serving pair has DeepSeek's published layout", "[scenarios]") {
  // Inference system overview: prefill units of 4 nodes, EP32, 9 routed experts per GPU (256 +
  // 32 redundant over 32); decode units of 18 nodes, EP144, 2 per GPU (288 over 144).
  const Scenario prefill = load_scenario(kExamples / "deepseek-v3-serving-prefill-h800.pbtxt");
  CHECK(prefill.cluster.nodes == 4);
  CHECK(prefill.parallel.ep == 32);
  CHECK(prefill.parallel.tp == 1);
  CHECK(experts_per_rank(prefill) == std::vector<size_t>(32, 9));
  CHECK(prefill.workload.kind == WorkloadKind::kPrefill);
  CHECK(prefill.workload.schedule == ScheduleKind::kTwoBatchOverlap);
  CHECK(prefill.workload.prefix_cache_hit_rate == 0.563);
  const Scenario decode = load_scenario(kExamples / "deepseek-v3-serving-decode-h800.pbtxt");
  CHECK(decode.cluster.nodes == 18);
  CHECK(decode.parallel.ep == 144);
  CHECK(experts_per_rank(decode) == std::vector<size_t>(144, 2));
  CHECK(decode.workload.kind == WorkloadKind::kDecode);
  CHECK(decode.workload.schedule == ScheduleKind::kTwoBatchOverlap);
}

TEST_CASE("The DeepSeek-V3 pre-training example routes each token to at most 4 nodes",
          "[scenarios]") {
  // Report 3.1-3.2: 2,048 H800 (256 nodes of 8), PP16, EP64 over 8 nodes, node-limited routing
  // to at most 4 nodes. With contiguous placement one expert group is exactly one node's
  // experts, so top-4 groups is top-4 nodes.
  const Scenario s = load_scenario(kExamples / "deepseek-v3-pretraining-2048-h800.pbtxt");
  CHECK(s.cluster.gpu_count == 2048);
  CHECK(s.parallel.pp == 16);
  CHECK(s.parallel.ep == 64);
  CHECK(s.parallel.tp == 1);
  CHECK(s.parallel.ep / s.cluster.gpus_per_node == 8);
  const Placement placement(s.parallel, s.model, s.cluster.gpus_per_node);
  const int32_t per_group = s.model.routed_experts / s.model.expert_groups;
  for (int32_t e = 0; e < s.model.routed_experts; ++e) {
    CHECK(placement.home_rank(e) / s.cluster.gpus_per_node == e / per_group);
  }
  CHECK(s.model.topk_groups == 4);
  CHECK(s.workload.options.distributed_optimizer);
  CHECK(s.workload.sequence_length == 4096);
  // Report 3.2.1: DualPipe, which needs an even micro-batch count of at least 2 x PP.
  CHECK(s.workload.schedule == ScheduleKind::kDualPipe);
  CHECK(s.workload.micro_batches % 2 == 0);
  CHECK(s.workload.micro_batches >= 2 * s.parallel.pp);
}

TEST_CASE("The capacity sweep example lists its axis values", "[scenarios]") {
  const Scenario s = load_scenario(kExamples / "capacity-sweep.pbtxt");
  REQUIRE(s.sweep.size() == 1);
  CHECK(s.sweep[0].name == "capacity_factor");
  CHECK(s.sweep[0].values == std::vector<std::string>{"0", "1.0", "1.25", "1.5", "2.0"});
}

TEST_CASE("A topology file sets the GPU count; preset-only options are refused", "[scenarios]") {
  const Scenario s = load_scenario(kExamples / "mixtral-8x7b-ep8-topology-file.pbtxt");
  CHECK(s.cluster.from_file());
  CHECK(s.cluster.topology_file ==
        (kExamples / ".." / "topologies" / "two-node-example.pbtxt").lexically_normal());
  CHECK(s.cluster.gpu_count == 8);
  CHECK(s.cluster.gpus_per_node == 4);
  CHECK(s.cluster.topology_preset.empty());
  const std::string file = (kExamples / "x.pbtxt").string();
  const std::string text = text_of(with_cluster(
      R"(topology_file: "../topologies/two-node-example.pbtxt" nodes: 2 gpu { preset: "h100-sxm" })"));
  CHECK_THROWS_WITH(parse_scenario(text, file),
                    Catch::Contains("cluster.nodes: applies to topology presets only"));
}

TEST_CASE("A preset with overrides changes only the overridden fields", "[scenarios]") {
  const Scenario s = parse_scenario(
      text_of(with_model(R"(preset: "mixtral-8x7b" top_k: 1 layers: 4)")), "t.pbtxt");
  CHECK(s.model.top_k == 1);
  CHECK(s.model.layers == 4);
  CHECK(s.model.hidden_size == 4096);
  CHECK(s.model.expert_ffn_size == 14336);
  CHECK(s.router.top_k == 1);
  CHECK(s.name == "t");  // the file's stem when no name is given
  CHECK(s.seed == 1);
  CHECK(s.workload.sequence_length == 4096);  // left out: tokens_per_gpu
  CHECK(s.router.capacity_factor == 0.0);
}

TEST_CASE("An explicit model and GPU resolve with their documented defaults", "[scenarios]") {
  const Scenario s = parse_scenario(R"(model {
  layers: 4 hidden_size: 1024 attention_heads: 16 expert_ffn_size: 2048
  routed_experts: 16 top_k: 2 vocab_size: 32000
}
cluster {
  topology: "dgx-h100"
  gpu { peak_tflops_bf16: 100 hbm_bandwidth: "2TB/s" hbm_capacity: "40GB" }
}
parallelism { ep: 8 }
workload { kind: PREFILL tokens_per_gpu: 2048 sequence_length: 1024 }
)",
                                    "t.pbtxt");
  CHECK(s.model.kv_heads == 16);
  CHECK(s.model.head_dim == 64);
  CHECK(s.model.dense_layers == 0);
  CHECK(s.model.weights.dtype == Dtype::kBf16);
  CHECK(s.cluster.gpu.peak_flops_bf16 == Approx(100e12));
  CHECK(s.cluster.gpu.peak_flops_fp8 == Approx(100e12));  // no FP8 given: the BF16 rate
  CHECK(s.cluster.gpu.hbm_bandwidth.bytes_per_second() == Approx(2e12));
  CHECK(s.cluster.gpu.hbm_capacity == Bytes(40'000'000'000));
  // The efficiency model left out: the values measured on an H100 (scenario.proto's comment).
  CHECK(s.cluster.gpu.gemm_efficiency_max == 0.70);
  CHECK(s.cluster.gpu.gemm_half_efficiency_rows == 32.0);
  CHECK(s.cluster.gpu.memory_efficiency == 0.80);
  CHECK(s.cluster.gpu.kernel_launch == Time::us(8));
  CHECK(s.cluster.gpu.attention_efficiency_max == 0.66);
  CHECK(s.cluster.gpu.attention_half_efficiency_length == 384.0);
}

TEST_CASE("The efficiency fields override a GPU preset's", "[scenarios]") {
  const Scenario s =
      parse_scenario(text_of(with_cluster(R"(topology: "dgx-h100" gpu { preset: "h100-sxm"
        attention_efficiency_max: 0.5 attention_half_efficiency_length: 1000 })")),
                     "t.pbtxt");
  CHECK(s.cluster.gpu.attention_efficiency_max == 0.5);
  CHECK(s.cluster.gpu.attention_half_efficiency_length == 1000.0);
  CHECK(s.cluster.gpu.gemm_efficiency_max == find_gpu_preset("h100-sxm")->gemm_efficiency_max);
}

TEST_CASE("The workload's schedule: 1F1B by default; two-batch overlap where it applies",
          "[scenarios]") {
  CHECK(parse_scenario(kBase, "t.pbtxt").workload.schedule == ScheduleKind::kOneFOneB);
  const Parts serving = with_workload(
      "kind: PREFILL tokens_per_gpu: 4096 micro_batches: 2 schedule: TWO_BATCH_OVERLAP");
  CHECK(parse_scenario(text_of(serving), "t.pbtxt").workload.schedule ==
        ScheduleKind::kTwoBatchOverlap);
  CHECK(schedule_name(ScheduleKind::kTwoBatchOverlap) == "two_batch_overlap");
  CHECK(parse_scenario(text_of(with_workload("kind: TRAINING tokens_per_gpu: 4096 "
                                             "schedule: ONE_F_ONE_B_EP_OVERLAP")),
                       "t.pbtxt")
            .workload.schedule == ScheduleKind::kOneFOneBEpOverlap);
  CHECK_THAT(error_of(with_workload("kind: PREFILL tokens_per_gpu: 4096 "
                                    "schedule: ONE_F_ONE_B_EP_OVERLAP")),
             Catch::Contains("workload.schedule: ONE_F_ONE_B_EP_OVERLAP pairs forwards with "
                             "backwards: TRAINING only"));
  CHECK(error_of(with_workload("kind: TRAINING tokens_per_gpu: 4096 micro_batches: 2 "
                               "schedule: TWO_BATCH_OVERLAP")) ==
        "t.pbtxt:4:65: workload.schedule: TWO_BATCH_OVERLAP is for serving (PREFILL or DECODE); "
        "training uses ONE_F_ONE_B");
  CHECK_THAT(error_of(with_workload("kind: PREFILL tokens_per_gpu: 4096 micro_batches: 3 "
                                    "schedule: TWO_BATCH_OVERLAP")),
             Catch::Contains("workload.schedule: TWO_BATCH_OVERLAP overlaps micro-batches in "
                             "pairs (2k, 2k+1): micro_batches 3 is odd"));
  Parts tp2 = serving;
  tp2.parallelism = "tp: 2 ep: 4";
  CHECK_THAT(error_of(tp2), Catch::Contains("lays out tp 1 and pp 1 (DeepSeek's serving "
                                            "layout), got tp 2 pp 1"));
  CHECK_THAT(error_of(with_workload("kind: PREFILL tokens_per_gpu: 4096 schedule: DUALPIPE_X")),
             Catch::Contains("DUALPIPE_X"));
}

TEST_CASE("virtual_pipeline_stages: ONE_F_ONE_B interleaved, pp > 1, groups of pp micro-batches",
          "[scenarios]") {
  Parts ok;
  ok.parallelism = "ep: 4 pp: 2";
  ok.workload = "kind: TRAINING tokens_per_gpu: 4096 micro_batches: 4 virtual_pipeline_stages: 4";
  CHECK(parse_scenario(text_of(ok), "t.pbtxt").workload.virtual_pipeline_stages == 4);
  CHECK(parse_scenario(kBase, "t.pbtxt").workload.virtual_pipeline_stages == 1);
  const auto error_with = [&](const std::string& parallelism, const std::string& workload) {
    Parts p = ok;
    p.parallelism = parallelism;
    p.workload = "kind: TRAINING tokens_per_gpu: 4096 " + workload;
    return error_of(p);
  };
  CHECK_THAT(error_with("ep: 4 pp: 2", "micro_batches: 3 virtual_pipeline_stages: 2"),
             Catch::Contains("workload.virtual_pipeline_stages: interleaved 1F1B runs "
                             "micro-batches in groups of pp (Megatron-LM): micro_batches 3 is "
                             "not a multiple of pp 2"));
  CHECK_THAT(error_with("ep: 8", "virtual_pipeline_stages: 2"),
             Catch::Contains("workload.virtual_pipeline_stages: 2 virtual stages need pp > 1"));
  CHECK_THAT(error_with("ep: 4 pp: 2", "micro_batches: 4 virtual_pipeline_stages: 0"),
             Catch::Contains("workload.virtual_pipeline_stages: must be positive, got 0"));
  CHECK_THAT(
      error_with("ep: 4 pp: 2", "micro_batches: 4 virtual_pipeline_stages: 2 schedule: DUALPIPE"),
      Catch::Contains("workload.virtual_pipeline_stages: interleaves ONE_F_ONE_B and "
                      "ONE_F_ONE_B_EP_OVERLAP only, got schedule dualpipe"));
  // Megatron-Core pairs forwards with backwards across virtual stages when pp > 1.
  Parts paired = ok;
  paired.workload += " schedule: ONE_F_ONE_B_EP_OVERLAP";
  CHECK(parse_scenario(text_of(paired), "t.pbtxt").workload.schedule ==
        ScheduleKind::kOneFOneBEpOverlap);
  CHECK_THAT(error_with("ep: 4 pp: 2", "micro_batches: 4 schedule: ONE_F_ONE_B_EP_OVERLAP"),
             Catch::Contains("workload.schedule: ONE_F_ONE_B_EP_OVERLAP with pp > 1 needs "
                             "virtual_pipeline_stages above 1"));
  // Mixtral's 32 layers: pp 2 x 17 stages is more than one layer each.
  CHECK_THAT(error_with("ep: 4 pp: 2", "micro_batches: 4 virtual_pipeline_stages: 17"),
             Catch::Contains("workload.virtual_pipeline_stages: 17 virtual stages of pp 2 cut "
                             "the model into more stages than its 32 layers"));
}

TEST_CASE("DUALPIPE: training, an even pp, and at least pp micro-batches from each end",
          "[scenarios]") {
  const auto parts = [](const std::string& parallelism, const std::string& workload) {
    Parts p;
    p.parallelism = parallelism;
    p.workload = workload;
    return p;
  };
  const Scenario s =
      parse_scenario(text_of(parts("ep: 4 pp: 2",
                                   "kind: TRAINING tokens_per_gpu: 4096 micro_batches: 4 "
                                   "schedule: DUALPIPE")),
                     "t.pbtxt");
  CHECK(s.workload.schedule == ScheduleKind::kDualPipe);
  CHECK(schedule_name(ScheduleKind::kDualPipe) == "dualpipe");
  CHECK_THAT(error_of(parts("ep: 4 pp: 2",
                            "kind: PREFILL tokens_per_gpu: 4096 micro_batches: 4 "
                            "schedule: DUALPIPE")),
             Catch::Contains("workload.schedule: DUALPIPE pairs forwards with backwards: "
                             "TRAINING only"));
  CHECK_THAT(error_of(parts("ep: 8",
                            "kind: TRAINING tokens_per_gpu: 4096 micro_batches: 4 "
                            "schedule: DUALPIPE")),
             Catch::Contains("workload.schedule: DUALPIPE runs micro-batches from both ends of "
                             "the pipeline, rank r holding stages r and pp - 1 - r: expected an "
                             "even pp, got pp 1"));
  for (const char* m : {"2", "3", "5"}) {
    CHECK_THAT(error_of(parts("ep: 4 pp: 2", std::string("kind: TRAINING tokens_per_gpu: 4096 "
                                                         "schedule: DUALPIPE micro_batches: ") +
                                                 m)),
               Catch::Contains("workload.micro_batches: DUALPIPE feeds half the micro-batches "
                               "from each end and needs at least pp per direction: expected an "
                               "even number of at least 2 x pp = 4, got " +
                               std::string(m)));
  }
}

TEST_CASE("A prefill's KV-cache hit rate caches a prefix of every sequence", "[scenarios]") {
  // 0.563 of 4096 tokens: round(2306.0) cached, 1790 computed per sequence, two sequences.
  const Workload w =
      parse_scenario(text_of(with_workload("kind: PREFILL tokens_per_gpu: 8192 "
                                           "sequence_length: 4096 prefix_cache_hit_rate: 0.563")),
                     "t.pbtxt")
          .workload;
  CHECK(w.cached_prefix_tokens == 2306);
  CHECK(w.computed_sequence_length() == 1790);
  CHECK(w.computed_tokens_per_gpu() == 2 * 1790);
  CHECK(w.tokens_per_gpu == 8192);  // the input tokens, hits included
  const Scenario none = parse_scenario(kBase, "t.pbtxt");
  CHECK(none.workload.computed_tokens_per_gpu() == 4096);
  CHECK(none.router.tokens.sequence_tokens == 4096);
  CHECK(parse_scenario(text_of(with_workload("kind: PREFILL tokens_per_gpu: 8192 "
                                             "sequence_length: 4096 prefix_cache_hit_rate: 0.5")),
                       "t.pbtxt")
            .router.tokens.sequence_tokens == 2048);  // the router sees the computed suffixes
  CHECK(error_of(with_workload("kind: DECODE tokens_per_gpu: 64 kv_context_length: 100 "
                               "prefix_cache_hit_rate: 0.5")) ==
        "t.pbtxt:4:67: workload.prefix_cache_hit_rate: applies to PREFILL only (input tokens "
        "found in a KV cache)");
  CHECK_THAT(error_of(with_workload("kind: PREFILL tokens_per_gpu: 4096 prefix_cache_hit_rate: 1")),
             Catch::Contains("workload.prefix_cache_hit_rate: expected a share in [0, 1)"));
  CHECK_THAT(error_of(with_workload("kind: PREFILL tokens_per_gpu: 4 prefix_cache_hit_rate: 0.9")),
             Catch::Contains("caches round(0.900000 x 4) tokens, the whole sequence"));
}

TEST_CASE("The network tier is read when given and left to the default rule otherwise",
          "[scenarios]") {
  const auto tier_of = [](const std::string& field) {
    return parse_scenario(text_of(with_cluster(R"(topology: "dgx-h100" )" + field +
                                               R"( gpu { preset: "h100-sxm" })")),
                          "t.pbtxt")
        .cluster.network_tier;
  };
  CHECK(tier_of("network_model: EXACT") == NetworkTier::kExact);
  CHECK(tier_of("network_model: FAST") == NetworkTier::kFast);
  CHECK(tier_of("") == std::nullopt);
}

TEST_CASE("A syntax error reports the parser's line and column", "[scenarios]") {
  const std::string text = "model { preset: \"mixtral-8x7b\" }\ncluster {\n  topolgy: \"x\"\n}\n";
  const std::string e = error_of(text);
  // "topolgy" is on line 3, at columns 3 to 9; the parser points just past the name.
  CHECK_THAT(e, Catch::StartsWith("t.pbtxt:3:10: "));
  CHECK_THAT(e, Catch::Contains("topolgy"));
  CHECK_THAT(error_of(with_workload("kind: TRAINNG")),
             Catch::StartsWith("t.pbtxt:4:") && Catch::Contains("TRAINNG"));
}

TEST_CASE("Semantic errors name the field, its line and what was expected", "[scenarios]") {
  SECTION("GPU count") {
    CHECK(error_of(with_parallelism("ep: 4 placement: ROUND_ROBIN")) ==
          "t.pbtxt:3:1: parallelism: tp*ep*dp*pp = 1*4*1*1 = 4 but the cluster has 8 GPUs");
  }
  SECTION("experts divisible by EP") {
    CHECK(error_of(with_model(R"(preset: "mixtral-8x7b" routed_experts: 12)")) ==
          "t.pbtxt:3:15: parallelism.ep: routed_experts 12 is not divisible by ep 8");
  }
  SECTION("top-k at most the experts") {
    CHECK(error_of(with_model(R"(preset: "mixtral-8x7b" top_k: 9)")) ==
          "t.pbtxt:1:32: model.top_k: top_k 9 exceeds routed_experts 8");
  }
  SECTION("top-k groups at most the groups") {
    CHECK_THAT(error_of(with_model(R"(preset: "deepseek-v3" topk_groups: 9)")),
               Catch::Contains("model.topk_groups: topk_groups 9 exceeds expert_groups 8"));
  }
  SECTION("experts divisible by groups") {
    CHECK_THAT(error_of(with_model(R"(preset: "deepseek-v3" expert_groups: 7)")),
               Catch::Contains("routed_experts 256 is not divisible by 7 expert groups"));
  }
  SECTION("unknown presets list the known ones") {
    const std::string model = error_of(with_model(R"(preset: "mixtral")"));
    CHECK_THAT(model, Catch::StartsWith("t.pbtxt:1:9: model.preset: unknown model preset "
                                        "'mixtral'; presets: mixtral-8x7b, "));
    CHECK_THAT(model, Catch::Contains("switch-base-128"));
    CHECK_THAT(error_of(with_cluster(R"(topology: "dgx-h100" gpu { preset: "h9000" })")),
               Catch::StartsWith("t.pbtxt:2:38: cluster.gpu.preset: unknown GPU preset 'h9000'") &&
                   Catch::Contains("a100-80gb"));
    CHECK_THAT(
        error_of(with_cluster(R"(topology: "dgx-h900" gpu { preset: "h100-sxm" })")),
        Catch::StartsWith("t.pbtxt:2:11: cluster.topology: ") && Catch::Contains("dgx-h800"));
  }
  SECTION("positive bandwidths and sizes") {
    CHECK_THAT(error_of(with_cluster(
                   R"(topology: "dgx-h100" gpu { preset: "h100-sxm" hbm_bandwidth: "0TB/s" })")),
               Catch::Contains("cluster.gpu.hbm_bandwidth: must be positive"));
    CHECK_THAT(error_of(with_cluster(
                   R"(topology: "dgx-h100" nic_bandwidth: "400Gbq" gpu { preset: "h100-sxm" })")),
               Catch::StartsWith("t.pbtxt:2:32: cluster.nic_bandwidth: "));
    CHECK(error_of(with_workload("kind: TRAINING tokens_per_gpu: 0")) ==
          "t.pbtxt:4:27: workload.tokens_per_gpu: must be positive, got 0");
  }
  SECTION("efficiencies are fractions, half-efficiency sizes not negative") {
    for (const char* field :
         {"gemm_efficiency_max", "attention_efficiency_max", "memory_efficiency"}) {
      CHECK_THAT(
          error_of(with_cluster(std::string(R"(topology: "dgx-h100" gpu { preset: "h100-sxm" )") +
                                field + ": 1.5 }")),
          Catch::Contains(std::string("cluster.gpu.") + field + ": expected a value in (0, 1]"));
    }
    for (const char* field : {"gemm_half_efficiency_rows", "attention_half_efficiency_length"}) {
      CHECK_THAT(
          error_of(with_cluster(std::string(R"(topology: "dgx-h100" gpu { preset: "h100-sxm" )") +
                                field + ": -1 }")),
          Catch::Contains(std::string("cluster.gpu.") + field + ": must be >= 0"));
    }
  }
  SECTION("the network's completion tolerance is a fraction below 1") {
    CHECK_THAT(
        error_of(with_cluster(
            R"(topology: "dgx-h100" completion_tolerance: 1.5 gpu { preset: "h100-sxm" })")),
        Catch::StartsWith("t.pbtxt:2:32: cluster.completion_tolerance: expected a fraction in "
                          "[0, 1)"));
  }
  SECTION("the fast network tier takes no completion tolerance") {
    CHECK_THAT(error_of(with_cluster(R"(topology: "dgx-h100" completion_tolerance: 0.01
        network_model: FAST gpu { preset: "h100-sxm" })")),
               Catch::Contains("cluster.network_model: FAST takes no completion_tolerance"));
  }
  SECTION("a cluster beyond the largest moesim simulates (found by the scenario fuzzer)") {
    // 1,666,666 nodes of 8 GPUs: refused before anything is built.
    CHECK_THAT(
        error_of(with_cluster(R"(topology: "dgx-h100" nodes: 1666666 gpu { preset: "h100-sxm" })")),
        Catch::Contains("cluster.topology: ") &&
            Catch::Contains("1666666 nodes of 8 GPUs exceed the 65536 GPUs"));
  }
  SECTION("capacity factor at least 0") {
    CHECK_THAT(error_of(with_rest("router { capacity_factor: -1 }\n")),
               Catch::StartsWith("t.pbtxt:5:10: router.capacity_factor: must be >= 0"));
  }
  SECTION("warm-up steps fewer than steps") {
    CHECK_THAT(error_of(with_workload("kind: TRAINING tokens_per_gpu: 4096 steps: 3 "
                                      "warmup_steps: 3")),
               Catch::Contains("workload.warmup_steps: 3 warm-up steps, expected 0..2"));
  }
  SECTION("an explicit placement covers each expert with valid ranks") {
    CHECK_THAT(error_of(with_parallelism("ep: 8 placement: EXPLICIT expert_ep_rank: [0, 1]")),
               Catch::Contains("expert_ep_rank: has 2 entries, expected one EP rank per routed "
                               "expert (8)"));
    CHECK_THAT(
        error_of(with_parallelism("ep: 8 placement: EXPLICIT expert_ep_rank: [0,1,2,3,4,5,6,8]")),
        Catch::Contains("expert 7 is placed on EP rank 8, expected 0..7"));
    CHECK_THAT(error_of(with_parallelism("ep: 8 expert_ep_rank: [0]")),
               Catch::Contains("is only read with placement: EXPLICIT"));
  }
  SECTION("hot experts and replicas") {
    CHECK_THAT(error_of(with_parallelism("ep: 8 hot_experts: [8]")),
               Catch::Contains("parallelism.hot_experts: expert 8 out of range 0..7"));
    CHECK_THAT(error_of(with_parallelism("ep: 8 hot_experts: [1, 1]")),
               Catch::Contains("expert 1 is listed twice"));
    CHECK_THAT(error_of(with_parallelism("ep: 8 hot_experts: [1] replicas: 8")),
               Catch::Contains("parallelism.replicas: 8 extra copies per hot expert, expected "
                               "1..7"));
    CHECK_THAT(error_of(with_parallelism("ep: 8 replicas: 2")),
               Catch::Contains("replicas: is set but hot_experts is empty"));
  }
  SECTION("required fields") {
    CHECK(error_of(with_model("layers: 2")) ==
          "t.pbtxt:1:1: model: hidden_size is required when no preset is named");
    CHECK_THAT(error_of(std::string(R"(model { preset: "mixtral-8x7b" })")),
               Catch::Contains("cluster is required"));
    CHECK_THAT(error_of(with_workload("kind: DECODE tokens_per_gpu: 64")),
               Catch::Contains("kv_context_length is required for DECODE"));
  }
  SECTION("a topology preset or a file, not both") {
    CHECK_THAT(error_of(with_cluster(
                   R"(topology: "dgx-h100" topology_file: "x.pbtxt" gpu { preset: "h100-sxm" })")),
               Catch::Contains("set exactly one of topology (a preset) and topology_file"));
  }
  SECTION("whole sequences per micro-batch") {
    CHECK_THAT(error_of(with_workload("kind: TRAINING tokens_per_gpu: 4096 sequence_length: 3000")),
               Catch::Contains("tokens_per_gpu 4096 is not a whole number of sequences of 3000"));
  }
  SECTION("TP divides the attention heads") {
    Parts p;
    p.model = R"(preset: "switch-base-128")";
    p.parallelism = "tp: 8";
    CHECK_THAT(error_of(p),
               Catch::Contains("parallelism.tp: attention_heads 12 is not divisible by tp 8"));
  }
  SECTION("sweep axes and values") {
    CHECK_THAT(error_of(with_rest("sweep { name: \"capacity\" values: \"1\" }\n")),
               Catch::StartsWith("t.pbtxt:5:1: sweep[0]: unknown axis 'capacity'") &&
                   Catch::Contains("capacity_factor"));
    CHECK_THAT(error_of(with_rest("sweep { name: \"ep\" values: [\"4\", \"3\"] }\n")),
               Catch::Contains("sweep[0]: value '3': ") &&
                   Catch::Contains("tp*ep*pp = 3 does not divide the cluster's 8 GPUs"));
    CHECK_THAT(error_of(with_rest("sweep { name: \"capacity_factor\" values: \"-0.5\" }\n")),
               Catch::Contains("router.capacity_factor: must be >= 0"));
    CHECK_THAT(error_of(with_rest("sweep { name: \"gpu\" values: \"h900\" }\n")),
               Catch::Contains("unknown GPU preset 'h900'"));
    CHECK_THAT(error_of(with_rest("sweep { name: \"top_k\" values: \"two\" }\n")),
               Catch::Contains("expected an integer"));
    CHECK_THAT(error_of(with_rest("sweep { name: \"top_k\" }\n")),
               Catch::Contains("at least one is required"));
  }
}

TEST_CASE("Data formats, MLA fields and decode workloads are checked", "[scenarios]") {
  CHECK(error_of(with_model(R"(preset: "mixtral-8x7b" dispatch { dtype: "int4" })")) ==
        "t.pbtxt:1:43: model.dispatch.dtype: unknown dtype 'int4', expected fp32, bf16, fp16 or "
        "fp8");
  CHECK_THAT(
      error_of(with_model(R"(preset: "mixtral-8x7b" dispatch { dtype: "fp8" scale_bytes: 4 })")),
      Catch::Contains("model.dispatch.scale_bytes: scale_bytes and scale_block_elements go "
                      "together"));
  CHECK_THAT(error_of(with_model(R"(preset: "mixtral-8x7b" weights { dtype: "fp32" })")),
             Catch::Contains("fp32 weights are not modelled"));
  CHECK_THAT(error_of(with_model(R"(preset: "mixtral-8x7b" kv_lora_rank: 512)")),
             Catch::Contains("model.qk_rope_head_dim: is required with kv_lora_rank (MLA)"));
  CHECK_THAT(error_of(with_model(R"(preset: "mixtral-8x7b" kv_heads: 5)")),
             Catch::Contains("attention_heads 32 is not divisible by kv_heads 5"));
  CHECK_THAT(error_of(with_workload("kind: PREFILL tokens_per_gpu: 4096 kv_context_length: 10")),
             Catch::Contains("workload.kv_context_length: applies to DECODE only"));

  const Scenario decode = parse_scenario(
      text_of(with_workload("kind: DECODE tokens_per_gpu: 128 kv_context_length: 8192")),
      "t.pbtxt");
  CHECK(decode.workload.kind == WorkloadKind::kDecode);
  CHECK(decode.workload.kv_context_length == 8192);
  CHECK(decode.workload.sequence_length == 1);
  // An FP8 dispatch with scales on a preset: 4096 bytes plus 32 scales of 4 bytes.
  const Scenario fp8 = parse_scenario(
      text_of(with_model(
          R"(preset: "mixtral-8x7b" dispatch { dtype: "fp8" scale_bytes: 4 scale_block_elements: 128 })")),
      "t.pbtxt");
  CHECK(fp8.model.dispatch_bytes_per_token() == Bytes(4096 + 32 * 4));
  CHECK(fp8.model.combine_bytes_per_token() == Bytes(4096 * 2));
}

TEST_CASE("A sweep point applies its values; an ep value keeps the GPU count", "[scenarios]") {
  const std::pair<std::string, std::string> point[] = {
      {"ep", "4"}, {"capacity_factor", "1.5"}, {"gpu", "h200"}};
  const Scenario s = parse_scenario_at(kBase, "t.pbtxt", point);
  CHECK(s.parallel.ep == 4);
  CHECK(s.parallel.dp == 2);
  CHECK(s.router.capacity_factor == 1.5);
  CHECK(s.cluster.gpu.name == "h200");
  const std::pair<std::string, std::string> bad[] = {{"top_k", "9"}};
  CHECK_THROWS_WITH(parse_scenario_at(kBase, "t.pbtxt", bad),
                    Catch::StartsWith("sweep point (top_k=9): ") && Catch::Contains("exceeds"));
}

TEST_CASE("Relative paths resolve against the scenario's folder", "[scenarios]") {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("moesim_scen_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir / "data");
  std::ofstream(dir / "data" / "tokens.npy") << "x";
  std::ofstream(dir / "s.pbtxt")
      << kBase << "router { token_source: NPY_FILE token_file: \"data/tokens.npy\" }\n";
  const Scenario s = load_scenario(dir / "s.pbtxt");
  CHECK(std::filesystem::path(s.router.tokens_file) == (dir / "data" / "tokens.npy"));
  CHECK(s.router.source == TokenSourceKind::kHiddenStatesFile);
  // A missing file names the resolved path.
  std::ofstream(dir / "m.pbtxt")
      << kBase << "router { token_source: NPY_FILE token_file: \"missing.npy\" }\n";
  CHECK_THROWS_WITH(
      load_scenario(dir / "m.pbtxt"),
      Catch::Contains("router.token_file: no such file: " + (dir / "missing.npy").string()));
  std::filesystem::remove_all(dir);
  CHECK_THROWS_WITH(load_scenario(dir / "s.pbtxt"), Catch::Contains("cannot open"));
}

// Mixtral decoding one sequence on one RTX 3060: the head of the offload scenarios below.
std::string offload_head() {
  const std::string topo =
      (std::filesystem::path(MOESIM_SOURCE_DIR) / "scenarios" / "topologies" / "single-gpu.pbtxt")
          .string();
  return "model { preset: \"mixtral-8x7b\" }\n"
         "cluster { topology_file: \"" +
         topo +
         "\" gpu { preset: \"rtx3060-12gb\" } }\n"
         "workload { kind: DECODE tokens_per_gpu: 1 kv_context_length: 64 }\n";
}

TEST_CASE("An offload block is resolved and its errors name the field", "[scenarios]") {
  const std::string head = offload_head();
  const Scenario s = parse_scenario(
      head +
          "offload { host_link: \"pcie3-x16\" expert_precision: \"int2\" policy: LFU "
          "cache_experts: 2 decode_tokens: 8 }\n",
      "o.pbtxt");
  REQUIRE(s.offload.has_value());
  CHECK(s.offload->host_link.nominal.gigabytes_per_second() == Approx(15.75));
  CHECK(s.offload->expert_precision.bits == 2);
  CHECK(s.offload->attention_precision.bits == 16);
  CHECK(s.offload->policy == CachePolicy::kLfu);
  CHECK(s.offload->context_length == 64);
  CHECK(s.router.tokens.sequence_tokens == 0);
  CHECK(s.offload->copy_overlap == CopyOverlap::kCopyStream);
  CHECK(s.offload->host_overhead_per_layer == Time::zero());
  const Scenario serial = parse_scenario(
      head +
          "offload { host_link: \"pcie4-x16\" expert_precision: \"int2-g16\" policy: LRU "
          "cache_experts: 2 copy_overlap: SERIAL host_overhead_per_layer: \"12.5ms\" "
          "decode_tokens: 8 }\n",
      "o.pbtxt");
  CHECK(serial.offload->copy_overlap == CopyOverlap::kSerial);
  CHECK(serial.offload->host_overhead_per_layer == Time::us(12500));
  CHECK(serial.offload->expert_precision.group_size == 16);
  CHECK(serial.offload->prefetch_guess == PrefetchGuess::kAccuracy);
  CHECK(!serial.offload->residual_similarity);
  const Scenario gate = parse_scenario(
      head +
          "router { token_source: SYNTHETIC_HIDDEN }\n"
          "offload { host_link: \"pcie4-x16\" policy: LRU cache_experts: 2 prefetch: true "
          "prefetch_guess: GATE residual_similarity: 0.95 decode_tokens: 8 }\n",
      "o.pbtxt");
  CHECK(gate.offload->prefetch_guess == PrefetchGuess::kGate);
  CHECK(*gate.offload->residual_similarity == 0.95);
  const std::pair<std::string, std::string> bad[] = {
      {"host_link: \"pcie4-x16\" policy: LRU cache_experts: 2 host_overhead_per_layer: \"12\" "
       "decode_tokens: 8",
       "offload.host_overhead_per_layer"},
      {"host_link: \"pcie4-x16\" policy: LRU cache_experts: 2 copy_overlap: SERIAL "
       "cpu: \"ryzen9-5950x\" decode_tokens: 8",
       "offload.cpu: applies with copy_overlap COPY_STREAM only"},
      {"host_link: \"pcie9\" policy: LRU cache_experts: 2 decode_tokens: 8",
       "offload.host_link: unknown host link 'pcie9'"},
      {"host_link: \"pcie4-x16\" policy: LRU cache_experts: 1 decode_tokens: 8",
       "offload.cache_experts: expected >= 2"},
      {"host_link: \"pcie4-x16\" policy: LRU cache_experts: 9 decode_tokens: 8",
       "offload.cache_experts: 9 is more than the 8"},
      {"host_link: \"pcie4-x16\" expert_precision: \"int5\" policy: LRU cache_experts: 2 "
       "decode_tokens: 8",
       "offload.expert_precision: unknown precision 'int5'"},
      {"host_link: \"pcie4-x16\" policy: STATIC cache_experts: 2 prefetch: true "
       "prefetch_accuracy: 0.5 decode_tokens: 8",
       "offload.prefetch: a STATIC cache"},
      {"host_link: \"pcie4-x16\" policy: LRU cache_experts: 2 prefetch: true decode_tokens: 8",
       "offload: prefetch_accuracy is required"},
      {"host_link: \"pcie4-x16\" policy: LRU cache_experts: 2 decode_tokens: 0",
       "offload.decode_tokens: must be positive"},
      // The router here is LOGIT_SPACE (left out): no hidden state for a residual stream.
      {"host_link: \"pcie4-x16\" policy: LRU cache_experts: 2 residual_similarity: 0.9 "
       "decode_tokens: 8",
       "offload.residual_similarity: needs hidden states"},
      {"host_link: \"pcie4-x16\" policy: LRU cache_experts: 2 prefetch: true "
       "prefetch_guess: GATE decode_tokens: 8",
       "offload.prefetch_guess: GATE needs residual_similarity"},
      {"host_link: \"pcie4-x16\" policy: LRU cache_experts: 2 prefetch_guess: GATE "
       "decode_tokens: 8",
       "offload.prefetch_guess: applies with prefetch: true only"},
  };
  for (const auto& [body, message] : bad) {
    INFO(body);
    CHECK_THROWS_WITH(parse_scenario(head + "offload { " + body + " }\n", "o.pbtxt"),
                      Catch::Contains(message));
  }
  const std::string hidden = head + "router { token_source: SYNTHETIC_HIDDEN }\n";
  CHECK_THROWS_WITH(
      parse_scenario(hidden + "offload { host_link: \"pcie4-x16\" policy: LRU cache_experts: 2 "
                              "residual_similarity: 1.5 decode_tokens: 8 }\n",
                     "o.pbtxt"),
      Catch::Contains("offload.residual_similarity: expected a cosine similarity in [0, 1]"));
  CHECK_THROWS_WITH(
      parse_scenario(hidden + "offload { host_link: \"pcie4-x16\" policy: LRU cache_experts: 2 "
                              "prefetch: true prefetch_guess: GATE residual_similarity: 0.9 "
                              "prefetch_accuracy: 0.8 decode_tokens: 8 }\n",
                     "o.pbtxt"),
      Catch::Contains("offload.prefetch_accuracy: not with prefetch_guess GATE"));
}

TEST_CASE("reuse_routing_across_micro_batches: off unless set, refused with offload",
          "[scenarios]") {
  const std::string head = offload_head();
  CHECK_FALSE(parse_scenario(head, "r.pbtxt").router.reuse_across_micro_batches);
  CHECK(parse_scenario(head + "router { reuse_routing_across_micro_batches: true }\n", "r.pbtxt")
            .router.reuse_across_micro_batches);
  CHECK_THROWS_WITH(
      parse_scenario(head + "router { reuse_routing_across_micro_batches: true }\n"
                            "offload { host_link: \"pcie3-x16\" policy: LFU cache_experts: 2 "
                            "decode_tokens: 8 }\n",
                     "r.pbtxt"),
      Catch::Contains("router.reuse_routing_across_micro_batches: is not read with an offload"));
}

}  // namespace
}  // namespace moesim
