// Tests of the HTML reports: every figure drawn, linked from index.html, with its CSV and script;
// CSV contents against hand-worked inputs; gnuplot and process errors; a headless-browser check.
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "analysis/exchange_output.h"
#include "analysis/html_report.h"
#include "analysis/plots.h"
#include "scenarios/scenario.h"
#include "sim/simulation.h"

namespace fs = std::filesystem;
using namespace moesim;

namespace {

// A fresh folder under the system temp directory, removed at scope exit.
struct TempDir {
  fs::path path;
  TempDir() {
    static int counter = 0;
    path = fs::temp_directory_path() /
           ("moesim_report_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

std::string read_file(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// A CSV of plain cells (no quoting), header first.
std::vector<std::vector<std::string>> read_csv(const fs::path& file) {
  std::vector<std::vector<std::string>> rows;
  std::istringstream in(read_file(file));
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> cells;
    std::string cell;
    std::istringstream fields(line);
    while (std::getline(fields, cell, ',')) cells.push_back(cell);
    if (!line.empty() && line.back() == ',') cells.push_back("");
    rows.push_back(cells);
  }
  return rows;
}

std::vector<std::string> header_of(const fs::path& file) {
  return read_csv(file).at(0);
}
size_t data_rows(const fs::path& file) {
  return read_csv(file).size() - 1;
}
double cell(const fs::path& file, size_t row, size_t column) {
  return std::stod(read_csv(file).at(row + 1).at(column));
}

Scenario small_scenario() {
  Scenario s;
  s.name = "hand <made> & 'quoted'";
  s.description = "a hand-made result";
  s.model.name = "tiny";
  s.parallel.ep = 2;
  s.workload.tokens_per_gpu = 4;
  return s;
}

// Two GPUs, two measured steps, three MoE layers of four experts.
SimulationResult hand_result() {
  SimulationResult r;
  r.scenario_name = "hand";
  r.gpus = 2;
  r.measured_steps = 2;
  r.step_time_us = {100.0, 300.0};
  r.dispatch_us = {10.0, 20.0, 20.0, 40.0};
  r.expert_compute_us = {5.0, 7.0};
  r.attention_us = {3.0, 3.0};
  r.gpu_phase_us.assign(2, {});
  auto set = [&](int gpu, Phase p, double us) { r.gpu_phase_us[gpu][static_cast<int>(p)] = us; };
  set(0, Phase::kAttention, 10.0);
  set(0, Phase::kDispatch, 5.0);
  set(0, Phase::kExpertCompute, 20.0);
  set(1, Phase::kAttention, 10.0);
  set(1, Phase::kDispatch, 5.0);
  set(1, Phase::kExpertCompute, 10.0);
  set(1, Phase::kIdle, 10.0);
  // GPU 0 hid 3 of its 5 us of dispatch behind computation.
  r.gpu_hidden_us.assign(2, {});
  r.gpu_hidden_us[0][static_cast<int>(Phase::kDispatch)] = 3.0;
  r.tokens_per_expert_by_layer = {{1, 1, 1, 1}, {4, 0, 0, 0}, {2, 2, 0, 0}};
  r.tokens_per_expert = {7, 3, 1, 1};
  r.gpu_tokens = {5, 3};
  r.dispatch_matrix_bytes = {0, 100, 200, 0};
  r.routed_pairs = 12;
  return r;
}

// Every figure has its SVG, script and CSVs, non-empty, each linked from index.html.
void check_linked(const fs::path& dir, const ReportOutput& out) {
  const std::string html = read_file(dir / "index.html");
  REQUIRE(out.index_html == dir / "index.html");
  for (const std::string& svg : out.figures) {
    INFO(svg);
    REQUIRE(fs::file_size(dir / svg) > 0);
    CHECK(read_file(dir / svg).find("<svg") != std::string::npos);
    CHECK(html.find("src=\"" + svg + "\"") != std::string::npos);
    const std::string gp = svg.substr(0, svg.size() - 4) + ".gp";
    CHECK(fs::file_size(dir / gp) > 0);
    CHECK(html.find("href=\"" + gp + "\"") != std::string::npos);
  }
  for (const std::string& csv : out.csv_files) {
    INFO(csv);
    CHECK(fs::file_size(dir / csv) > 0);
    CHECK(html.find("href=\"" + csv + "\"") != std::string::npos);
  }
  // Self-contained: nothing fetched from a network.
  CHECK(html.find("http://") == std::string::npos);
  CHECK(html.find("https://") == std::string::npos);
  CHECK(out.warnings.empty());
}

}  // namespace

TEST_CASE("A run report draws every figure and links it with its data", "[report]") {
  TempDir tmp;
  const ReportOutput out = write_run_report(tmp.path, small_scenario(), hand_result());
  check_linked(tmp.path, out);
  CHECK(std::set<std::string>(out.figures.begin(), out.figures.end()) ==
        std::set<std::string>{"phase_time_by_gpu.svg", "tokens_per_expert.svg",
                              "expert_load_by_layer.svg", "expert_rows_by_gpu.svg",
                              "dispatch_matrix.svg", "latency_step.svg", "latency_dispatch.svg",
                              "communication_by_gpu.svg"});
  // No combine samples: a note instead of a figure; no exchanges: no straggler figure.
  CHECK_FALSE(fs::exists(tmp.path / "latency_combine.svg"));
  const std::string html = read_file(tmp.path / "index.html");
  CHECK(html.find("no straggler to attribute") != std::string::npos);
  CHECK(html.find("No combine (forward) samples") != std::string::npos);
  // The scenario's name is escaped.
  CHECK(html.find("hand &lt;made&gt; &amp; &#39;quoted&#39;") != std::string::npos);
  // The broken-image marker script is on the page.
  CHECK(html.find("data-broken-images") != std::string::npos);
}

TEST_CASE("Run report CSVs hold the hand-worked numbers", "[report]") {
  TempDir tmp;
  write_run_report(tmp.path, small_scenario(), hand_result());
  const fs::path& d = tmp.path;

  // Phase time: one row per GPU and a mean row; a column per phase.
  const auto phase_header = header_of(d / "phase_time_by_gpu.csv");
  REQUIRE(phase_header.size() == 1 + kPhaseCount);
  CHECK(phase_header[0] == "gpu");
  CHECK(phase_header[1] == "attention_us");
  CHECK(phase_header[5] == "expert_compute_us");
  CHECK(phase_header[10] == "idle_us");
  REQUIRE(data_rows(d / "phase_time_by_gpu.csv") == 3);
  CHECK(read_csv(d / "phase_time_by_gpu.csv")[3][0] == "mean");
  CHECK(cell(d / "phase_time_by_gpu.csv", 1, 5) == 10.0);  // GPU 1 expert compute
  CHECK(cell(d / "phase_time_by_gpu.csv", 2, 5) == 15.0);  // mean of 20 and 10
  CHECK(cell(d / "phase_time_by_gpu.csv", 2, 10) == 5.0);  // mean idle: (0 + 10) / 2
  // Only the phases with time are drawn: attention, dispatch, expert_compute, idle.
  const std::string phase_gp = read_file(d / "phase_time_by_gpu.gp");
  CHECK(phase_gp.find("'dispatch'") != std::string::npos);
  CHECK(phase_gp.find("'combine'") == std::string::npos);

  // Communication per GPU: exposed and hidden columns per communication phase and idle.
  const fs::path comm = d / "communication_by_gpu.csv";
  const auto comm_header = header_of(comm);
  REQUIRE(comm_header.size() == 13);
  CHECK(comm_header[3] == "dispatch_exposed_us");
  CHECK(comm_header[4] == "dispatch_hidden_us");
  CHECK(comm_header[11] == "idle_exposed_us");
  REQUIRE(data_rows(comm) == 3);
  CHECK(cell(comm, 0, 3) == 2.0);  // GPU 0: 5 - 3
  CHECK(cell(comm, 0, 4) == 3.0);
  CHECK(cell(comm, 1, 3) == 5.0);  // GPU 1: nothing hidden
  CHECK(cell(comm, 2, 3) == 3.5);  // mean exposed (2 + 5) / 2
  CHECK(cell(comm, 2, 4) == 1.5);
  CHECK(cell(comm, 1, 11) == 10.0);  // GPU 1's idle, exposed

  // Tokens per expert: 3 layers x 4 experts, long format.
  CHECK(header_of(d / "tokens_per_expert.csv") ==
        std::vector<std::string>{"expert", "moe_layer", "tokens"});
  REQUIRE(data_rows(d / "tokens_per_expert.csv") == 12);
  CHECK(cell(d / "tokens_per_expert.csv", 4, 2) == 4.0);  // layer 1, expert 0
  // Max over mean per layer: {1,1,1,1} -> 1, {4,0,0,0} -> 4, {2,2,0,0} -> 2.
  CHECK(header_of(d / "expert_load_by_layer.csv") ==
        std::vector<std::string>{"moe_layer", "max_tokens", "mean_tokens", "max_over_mean"});
  REQUIRE(data_rows(d / "expert_load_by_layer.csv") == 3);
  CHECK(cell(d / "expert_load_by_layer.csv", 0, 3) == 1.0);
  CHECK(cell(d / "expert_load_by_layer.csv", 1, 3) == 4.0);
  CHECK(cell(d / "expert_load_by_layer.csv", 2, 3) == 2.0);
  CHECK(cell(d / "expert_load_by_layer.csv", 2, 2) == 1.0);

  CHECK(data_rows(d / "expert_rows_by_gpu.csv") == 2);
  CHECK(cell(d / "expert_rows_by_gpu.csv", 1, 1) == 3.0);

  // Dispatch matrix: 2 x 2 cells; GPU 1 sends 200 bytes to GPU 0.
  CHECK(header_of(d / "dispatch_matrix.csv") ==
        std::vector<std::string>{"dst_gpu", "src_gpu", "bytes"});
  const auto matrix = read_csv(d / "dispatch_matrix.csv");
  REQUIRE(matrix.size() == 5);
  CHECK(matrix[3] == std::vector<std::string>{"0", "1", "200"});
  // Shown per step: 2 measured steps, MB.
  CHECK(read_file(d / "dispatch_matrix.gp").find("($3/2000000)") != std::string::npos);

  // Step distribution: 2 samples -> 5 bins, 2 CDF points; p50 = 200, p99 = 100 + 0.99 * 200.
  CHECK(header_of(d / "latency_step_histogram.csv") ==
        std::vector<std::string>{"bin_lo_us", "bin_hi_us", "count"});
  CHECK(data_rows(d / "latency_step_histogram.csv") == 5);
  CHECK(header_of(d / "latency_step_cdf.csv") == std::vector<std::string>{"value_us", "fraction"});
  CHECK(data_rows(d / "latency_step_cdf.csv") == 2);
  const std::string step_gp = read_file(d / "latency_step.gp");
  CHECK(step_gp.find("p50 = 200\n") != std::string::npos);
  CHECK(step_gp.find("p99 = 298\n") != std::string::npos);

  // Dispatch {10, 20, 20, 40}: bins of width 6 over [10, 40] hold 1, 2, 0, 0, 1; CDF at the
  // three distinct values 0.25, 0.75, 1.
  const auto hist = read_csv(d / "latency_dispatch_histogram.csv");
  REQUIRE(hist.size() == 6);
  const std::vector<std::string> counts = {hist[1][2], hist[2][2], hist[3][2], hist[4][2],
                                           hist[5][2]};
  CHECK(counts == std::vector<std::string>{"1", "2", "0", "0", "1"});
  CHECK(std::stod(hist[2][0]) == Approx(16.0));
  const auto cdf = read_csv(d / "latency_dispatch_cdf.csv");
  REQUIRE(cdf.size() == 4);
  CHECK(cdf[1] == std::vector<std::string>{"10", "0.25"});
  CHECK(cdf[2] == std::vector<std::string>{"20", "0.75"});
  CHECK(cdf[3] == std::vector<std::string>{"40", "1"});

  // Summary: one row per quantity; combine has none.
  const auto summary = read_csv(d / "latency_summary.csv");
  REQUIRE(summary.size() == 6);
  CHECK(summary[1][0] == "step");
  CHECK(std::stod(summary[1][2]) == 200.0);  // mean
  CHECK(summary[3][0] == "combine");
  CHECK(summary[3][1] == "0");
}

TEST_CASE("Stragglers: exchange time against imbalance, and the slowest exchanges", "[report]") {
  SimulationResult r = hand_result();
  // Two exchanges: 40 us with 10 us of all-to-all (GPU max/mean 1.5, GPU 1 last with 6 rows of
  // a mean 4), then 20 us with 15 us of all-to-all (balanced, GPU 0 last).
  for (const auto& [time_us, alltoall_us, gpu, rows, ratio] :
       {std::tuple{40, 10, 1, 6, 1.5}, std::tuple{20, 15, 0, 4, 1.0}}) {
    ExchangeRecord e;
    e.step = 1;
    e.load.gpu_max_over_mean = ratio;
    e.load.busiest_gpu_rows = rows;
    e.load.mean_gpu_rows = 4.0;
    e.straggler.micro_batch = 0;
    e.straggler.moe_layer = static_cast<int32_t>(r.exchanges.size());
    e.straggler.replica = 0;
    e.straggler.gpu = gpu;
    e.straggler.rows = rows;
    e.straggler.hottest_expert = 2 * gpu;
    e.straggler.hottest_expert_rows = rows;
    e.straggler.time = Time::us(time_us);
    e.straggler.alltoall_time = Time::us(alltoall_us);
    r.exchanges.push_back(e);
  }
  TempDir tmp;
  const ReportOutput out = write_run_report(tmp.path, small_scenario(), r);
  check_linked(tmp.path, out);
  const fs::path& d = tmp.path;
  CHECK(std::count(out.figures.begin(), out.figures.end(), "exchange_time_vs_imbalance.svg") == 1);
  std::vector<std::string> header;
  for (const ExchangeFieldName& f : kExchangeFields) header.emplace_back(f.key);
  header.emplace_back("alltoall_fraction");
  CHECK(header_of(d / "exchange_time_vs_imbalance.csv") == header);
  REQUIRE(data_rows(d / "exchange_time_vs_imbalance.csv") == 2);
  const size_t time = static_cast<size_t>(ExchangeField::kTimeUs);
  const size_t ratio = static_cast<size_t>(ExchangeField::kGpuMaxOverMean);
  CHECK(cell(d / "exchange_time_vs_imbalance.csv", 0, time) == 40.0);
  CHECK(cell(d / "exchange_time_vs_imbalance.csv", 0, ratio) == 1.5);
  CHECK(cell(d / "exchange_time_vs_imbalance.csv", 0, kExchangeFieldCount) == 0.25);  // 10 / 40
  CHECK(cell(d / "exchange_time_vs_imbalance.csv", 1, kExchangeFieldCount) == 0.75);  // 15 / 20
  // The script plots GPU max/mean against time, coloured by the all-to-all share.
  CHECK(read_file(d / "exchange_time_vs_imbalance.gp").find("using 8:($5 * 1):14") !=
        std::string::npos);
  // The slowest first; the page shows the fields' labels.
  CHECK(header_of(d / "slowest_exchanges.csv") ==
        std::vector<std::string>(header.begin(), header.end() - 1));
  REQUIRE(data_rows(d / "slowest_exchanges.csv") == 2);
  CHECK(cell(d / "slowest_exchanges.csv", 0, time) == 40.0);
  CHECK(cell(d / "slowest_exchanges.csv", 1, time) == 20.0);
  const std::string html = read_file(d / "index.html");
  CHECK(html.find("<th>last GPU</th>") != std::string::npos);
  CHECK(html.find("most rows of its replica in 2 of 2 exchanges") != std::string::npos);
}

TEST_CASE("A run without the traffic matrix notes it instead of drawing it", "[report]") {
  TempDir tmp;
  SimulationResult r = hand_result();
  r.dispatch_matrix_bytes.clear();
  const ReportOutput out = write_run_report(tmp.path, small_scenario(), r);
  check_linked(tmp.path, out);
  CHECK_FALSE(fs::exists(tmp.path / "dispatch_matrix.svg"));
  CHECK(read_file(tmp.path / "index.html").find("keep_traffic_matrix") != std::string::npos);

  r.dispatch_matrix_bytes = {1, 2, 3};  // not gpus x gpus
  CHECK_THROWS_WITH(write_run_report(tmp.path, small_scenario(), r),
                    Catch::Contains("expected 4 for 2 GPUs"));
}

TEST_CASE("Large times are plotted in milliseconds, the CSV stays in microseconds", "[report]") {
  TempDir tmp;
  SimulationResult r = hand_result();
  r.step_time_us = {50000.0, 70000.0};
  write_run_report(tmp.path, small_scenario(), r);
  const std::string gp = read_file(tmp.path / "latency_step.gp");
  CHECK(gp.find("step time (ms)") != std::string::npos);
  CHECK(gp.find("p50 = 60\n") != std::string::npos);
  CHECK(header_of(tmp.path / "latency_step_cdf.csv")[0] == "value_us");
  CHECK(cell(tmp.path / "latency_step_cdf.csv", 0, 0) == 50000.0);
  CHECK(std::string(time_unit_for(9999.0).name) == "us");
  CHECK(std::string(time_unit_for(10000.0).name) == "ms");
  CHECK(time_unit_for(2e7).scale == 1e-6);
}

TEST_CASE("A report of a simulated scenario matches the result's own totals", "[report]") {
  Scenario scenario = parse_scenario(R"(model {
  layers: 2 hidden_size: 256 attention_heads: 4 expert_ffn_size: 512
  routed_experts: 8 top_k: 2 vocab_size: 1000
}
cluster { topology: "dgx-h100" gpu { preset: "h100-sxm" } }
parallelism { ep: 8 }
workload { kind: PREFILL tokens_per_gpu: 64 sequence_length: 64 steps: 3 warmup_steps: 1 }
)",
                                     "tiny.pbtxt");
  SimulationOptions options;
  options.keep_traffic_matrix = true;
  const SimulationResult r = simulate(scenario, options);
  TempDir tmp;
  const ReportOutput out = write_run_report(tmp.path, scenario, r);
  check_linked(tmp.path, out);
  const fs::path& d = tmp.path;
  CHECK(data_rows(d / "phase_time_by_gpu.csv") == static_cast<size_t>(r.gpus) + 1);
  const size_t layers = r.tokens_per_expert_by_layer.size();
  REQUIRE(layers == 2);
  CHECK(data_rows(d / "tokens_per_expert.csv") == layers * 8);
  CHECK(data_rows(d / "expert_load_by_layer.csv") == layers);
  CHECK(data_rows(d / "dispatch_matrix.csv") == static_cast<size_t>(r.gpus * r.gpus));
  CHECK(data_rows(d / "latency_step_cdf.csv") <= 2);
  // One point per forward exchange: 2 measured steps x 2 MoE layers.
  REQUIRE(r.exchanges.size() == 4);
  CHECK(data_rows(d / "exchange_time_vs_imbalance.csv") == r.exchanges.size());
  // Kept token-expert pairs in the heat map's data: routed minus dropped.
  double kept = 0.0;
  for (size_t row = 0; row < layers * 8; ++row) kept += cell(d / "tokens_per_expert.csv", row, 2);
  CHECK(kept == static_cast<double>(r.routed_pairs - r.dropped_pairs));
}

TEST_CASE("A sweep report draws each metric against each axis", "[report]") {
  SweepReportTable t;
  t.axis_names = {"capacity_factor", "dispatch"};
  t.metric_names = {"step_p99_us", "dropped_token_fraction"};
  const std::vector<std::string> factors = {"0", "1.25", "2"};
  for (const std::string& f : factors) {
    for (const std::string& d : {std::string("direct"), std::string("hierarchical")}) {
      const double step = 100.0 * std::stod(f) + (d == "direct" ? 0.0 : 7.0);
      t.rows.push_back({{f, d}, {step, f == "0" ? 0.0 : 0.5 / std::stod(f)}});
    }
  }
  TempDir tmp;
  const ReportOutput out = write_sweep_report(tmp.path, small_scenario(), t);
  check_linked(tmp.path, out);
  CHECK(out.figures.size() == 4);  // 2 metrics x 2 axes

  CHECK(data_rows(tmp.path / "sweep.csv") == 6);
  CHECK(header_of(tmp.path / "sweep.csv") == std::vector<std::string>{"point", "capacity_factor",
                                                                      "dispatch", "step_p99_us",
                                                                      "dropped_token_fraction"});

  const fs::path by_factor = tmp.path / "sweep_step_p99_us_vs_capacity_factor.csv";
  CHECK(header_of(by_factor) ==
        std::vector<std::string>{"capacity_factor", "dispatch=direct", "dispatch=hierarchical"});
  REQUIRE(data_rows(by_factor) == 3);
  CHECK(cell(by_factor, 1, 0) == 1.25);
  CHECK(cell(by_factor, 1, 1) == 125.0);
  CHECK(cell(by_factor, 2, 2) == 207.0);
  // Numeric ascending values are drawn to scale; names as categories.
  CHECK(read_file(tmp.path / "sweep_step_p99_us_vs_capacity_factor.gp").find("using 1:2") !=
        std::string::npos);

  const fs::path by_dispatch = tmp.path / "sweep_dropped_token_fraction_vs_dispatch.csv";
  CHECK(header_of(by_dispatch) == std::vector<std::string>{"dispatch", "capacity_factor=0",
                                                           "capacity_factor=1.25",
                                                           "capacity_factor=2"});
  REQUIRE(data_rows(by_dispatch) == 2);
  CHECK(cell(by_dispatch, 1, 3) == 0.25);
  CHECK(read_file(tmp.path / "sweep_dropped_token_fraction_vs_dispatch.gp").find("xtic(1)") !=
        std::string::npos);

  SweepReportTable dup = t;
  dup.rows.push_back(dup.rows[2]);
  CHECK_THROWS_WITH(write_sweep_report(tmp.path, small_scenario(), dup),
                    Catch::Contains("rows 2 and 6 are the same point"));
  SweepReportTable narrow = t;
  narrow.rows[1].metrics.pop_back();
  CHECK_THROWS_WITH(write_sweep_report(tmp.path, small_scenario(), narrow),
                    Catch::Contains("row 1 has 2 axis values and 1 metrics"));
}

TEST_CASE("Sweep metrics of a result follow their names", "[report]") {
  const SimulationResult r = hand_result();
  SweepRow row;
  row.axis_values = {"a"};
  row.metrics = sweep_metrics(r);
  const std::string axis = "axis";
  const SweepReportTable table = sweep_report_table({&axis, 1}, {&row, 1});
  const std::vector<std::string>& names = table.metric_names;
  const std::vector<double>& values = table.rows.at(0).metrics;
  REQUIRE(names.size() == values.size());
  auto value = [&](const std::string& name) {
    for (size_t i = 0; i < names.size(); ++i) {
      if (names[i] == name) return values[i];
    }
    FAIL("no metric " << name);
    return 0.0;
  };
  CHECK(value("step_time_mean_us") == 200.0);
  CHECK(value("step_time_p99_us") == Approx(298.0));
  CHECK(value("dispatch_mean_us") == 22.5);
  CHECK(value("combine_p99_us") == 0.0);  // no samples
  CHECK(value("expert_compute_mean_us") == 6.0);
}

TEST_CASE("A compare report shows the plans side by side", "[report]") {
  std::vector<ComparePlanEntry> plans;
  for (int i = 0; i < 3; ++i) {
    ComparePlanEntry p;
    p.cluster = i < 2 ? "dgx-h100:nodes=1" : "nvl72";
    p.plan = "TP" + std::to_string(1 << i) + " x EP" + std::to_string(8 >> i);
    p.result = hand_result();
    p.result.step_time_us = {100.0 * (i + 1), 110.0 * (i + 1)};
    p.result.tokens_per_s_per_gpu = 1000.0 / (i + 1);
    p.memory_bytes_per_gpu = 30e9 * (i + 1);
    p.hbm_bytes_per_gpu = 80e9;
    plans.push_back(p);
  }
  TempDir tmp;
  const ReportOutput out = write_compare_report(tmp.path, small_scenario(), plans);
  check_linked(tmp.path, out);
  CHECK(std::set<std::string>(out.figures.begin(), out.figures.end()) ==
        std::set<std::string>{"compare_phase_time.svg", "compare_step_time.svg",
                              "compare_throughput.svg", "compare_memory.svg"});
  const auto table = read_csv(tmp.path / "compare.csv");
  REQUIRE(table.size() == 4);
  CHECK(table[0][1] == "plan");
  CHECK(table[0].back() == "fits_hbm");
  CHECK(table[1].back() == "yes");         // 30 GB of 80
  CHECK(table[3].back() == "no");          // 90 GB of 80
  CHECK(std::stod(table[2][3]) == 210.0);  // p50 of {200, 220}
  // Two clusters: bars are labelled cluster / plan.
  const auto step = read_csv(tmp.path / "compare_step_time.csv");
  REQUIRE(step.size() == 4);
  CHECK(step[3][0] == "nvl72 / TP4 x EP2");
  CHECK(std::stod(read_csv(tmp.path / "compare_memory.csv")[3][1]) == 90.0);
}

TEST_CASE("Gnuplot problems are reported clearly", "[report]") {
  TempDir tmp;
  ReportOptions options;
  options.gnuplot = "moesim-no-such-gnuplot";
  CHECK_THROWS_WITH(write_run_report(tmp.path, small_scenario(), hand_result(), options),
                    Catch::Contains("moesim-no-such-gnuplot") && Catch::Contains("gnuplot-nox"));

  Figure bad{"bad", "bad", "", {}, "plot 'missing-data.csv' using 1:2\n"};
  CHECK_THROWS_WITH(render_figure(tmp.path, bad),
                    Catch::Contains("gnuplot failed") && Catch::Contains("missing-data.csv"));
  Figure escaping{"../x", "", "", {}, ""};
  CHECK_THROWS_AS(render_figure(tmp.path, escaping), ReportError);
}

TEST_CASE("Child processes: exit status and both outputs come back", "[report]") {
  TempDir tmp;
  const std::vector<std::string> argv = {"sh", "-c", "pwd; echo oops >&2; exit 3"};
  const ProcessResult r = run_program(argv, tmp.path);
  CHECK(r.exit_code == 3);
  CHECK(fs::equivalent(r.stdout_text.substr(0, r.stdout_text.size() - 1), tmp.path));
  CHECK(r.stderr_text == "oops\n");
  const std::vector<std::string> missing = {"/nonexistent/program"};
  CHECK_THROWS_WITH(run_program(missing, tmp.path), Catch::Contains("/nonexistent/program"));
}

TEST_CASE("CSV cells are quoted when they need it", "[report]") {
  TempDir tmp;
  write_csv(tmp.path / "q.csv", CsvTable{{"a", "b"}, {{"x,y", "say \"hi\""}}});
  CHECK(read_file(tmp.path / "q.csv") == "a,b\n\"x,y\",\"say \"\"hi\"\"\"\n");
  CHECK_THROWS_WITH(write_csv(tmp.path / "r.csv", CsvTable{{"a", "b"}, {{"1"}}}),
                    Catch::Contains("row 1 has 1 cells, the header 2"));
  CHECK(csv_number(0.1) == "0.1");
  CHECK(csv_number(1.0 / 0.0) == "NaN");
  CHECK(gnuplot_quote("it's") == "'it''s'");
}

// Hidden: run by CTest as report/browser when MOESIM_BROWSER_TESTS is on and chromium exists
// (its path in MOESIM_CHROMIUM).
TEST_CASE("Headless Chromium finds no broken image in a report", "[.browser]") {
  const char* env = std::getenv("MOESIM_CHROMIUM");
  const std::string chromium = env && *env ? env : "chromium";
  TempDir tmp;
  const fs::path dir = tmp.path / "report";
  const ReportOutput out = write_run_report(dir, small_scenario(), hand_result());
  auto dump = [&](const fs::path& profile) {
    fs::create_directories(profile);
    const std::vector<std::string> argv = {chromium,
                                           "--headless",
                                           "--no-sandbox",
                                           "--disable-gpu",
                                           "--disable-quic",
                                           "--no-first-run",
                                           "--disable-background-networking",
                                           "--disable-component-update",
                                           "--disable-sync",
                                           "--user-data-dir=" + profile.string(),
                                           "--dump-dom",
                                           "--virtual-time-budget=5000",
                                           "file://" + (dir / "index.html").string()};
    const ProcessResult r = run_program(argv, tmp.path);
    INFO(r.stderr_text);
    REQUIRE(r.exit_code == 0);
    return r.stdout_text;
  };
  const std::string images = std::to_string(out.figures.size());
  const std::string dom = dump(tmp.path / "profile1");
  CHECK(dom.find("data-images-checked=\"" + images + "\"") != std::string::npos);
  CHECK(dom.find("data-broken-images=\"0\"") != std::string::npos);

  // The check can fail: with one figure gone, the page marks it.
  fs::remove(dir / "latency_step.svg");
  const std::string broken = dump(tmp.path / "profile2");
  CHECK(broken.find("data-broken-images=\"1\"") != std::string::npos);
  CHECK(broken.find("figure failed to load: latency_step.svg") != std::string::npos);
}
