// Long runs: a stop request ends a run between steps with the steps played so far, a sweep
// between points; `moesim sweep --out` writes rows as they finish and `--resume` completes a
// stopped or killed sweep into the file an uninterrupted run writes; the ETA text; and the
// command's handling of a real SIGINT and SIGKILL (the built binary run as a child process).
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "analysis/sweep_output.h"
#include "analysis/text_format.h"
#include "scenarios/scenario.h"
#include "sim/simulation.h"
#include "sim/sweep.h"
#include "tests/commands/commands_test_util.h"

using namespace moesim;
using moesim::test::tiny_scenario;

namespace {

const std::string kSweepText = test::two_axis_sweep_scenario();
const std::vector<std::string> kAxes = {"capacity_factor", "top_k"};

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

void write_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

// The CSV a sweep writes row by row through on_row (as `moesim sweep --out` does), after
// `skip` resumed points whose text is `prefix` (empty: a fresh run writes the header).
std::string sweep_csv_streamed(SweepOptions options, const std::string& prefix) {
  std::ostringstream out;
  out << (prefix.empty() ? sweep_csv_header_line(kAxes) + "\n" : prefix);
  options.on_row = [&out](const SweepRow& row) { out << sweep_csv_row_line(row, 6) << "\n"; };
  run_sweep(kSweepText, "sweep.pbtxt", options);
  return out.str();
}

// Runs the built moesim with `args`, stdout and stderr to files; returns the child's pid.
pid_t spawn_moesim(const std::vector<std::string>& args, const std::filesystem::path& out,
                   const std::filesystem::path& err) {
  const std::string binary = std::string(MOESIM_BUILD_DIR) + "/cli/moesim";
  std::vector<std::string> all = {binary};
  all.insert(all.end(), args.begin(), args.end());
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const int out_fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int err_fd = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out_fd < 0 || err_fd < 0) _exit(127);
    dup2(out_fd, STDOUT_FILENO);
    dup2(err_fd, STDERR_FILENO);
    std::vector<char*> argv;
    for (std::string& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(binary.c_str(), argv.data());
    _exit(127);
  }
  return pid;
}

int wait_status(pid_t pid) {
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  return status;
}

int count_lines(const std::string& text) {
  return static_cast<int>(std::count(text.begin(), text.end(), '\n'));
}

}  // namespace

TEST_CASE("ETA: the elapsed time scaled by what is left, from 1% done", "[commands]") {
  // 30 s for a quarter: 90 s for the other three quarters.
  CHECK(format_eta(30.0, 0.25) == "ETA 1m30s");
  CHECK(format_eta(10.0, 0.5) == "ETA 10s");
  // 1 s for 30%: 2.33 s left, rounded up.
  CHECK(format_eta(1.0, 0.3) == "ETA 3s");
  // 3600 s for half: an hour left; 3000 s for 40%: 4500 s = 1h15m.
  CHECK(format_eta(3600.0, 0.5) == "ETA 1h00m");
  CHECK(format_eta(3000.0, 0.4) == "ETA 1h15m");
  // 59.5 s left rounds up to a minute.
  CHECK(format_eta(59.5, 0.5) == "ETA 1m00s");
  // Too little done to extrapolate, or done.
  CHECK(format_eta(5.0, 0.005).empty());
  CHECK(format_eta(5.0, 1.0).empty());
  CHECK(!format_eta(5.0, kEtaMinFraction).empty());
}

TEST_CASE("a run stopped after its first step holds that step as the full run measured it",
          "[commands]") {
  const Scenario scenario = parse_scenario(
      tiny_scenario("ep: 8", "kind: TRAINING tokens_per_gpu: 64 steps: 3", ""), "three.pbtxt");
  const SimulationResult full = simulate(scenario);
  REQUIRE(full.step_time_us.size() == 3);
  CHECK(!full.partial);
  CHECK(full.steps_run == 3);

  std::atomic<bool> stop{false};
  SimulationOptions options;
  options.stop_requested = &stop;
  options.progress = [&stop](int32_t done, int32_t) {
    if (done == 1) stop.store(true);
  };
  const SimulationResult part = simulate(scenario, options);
  CHECK(part.partial);
  CHECK(part.steps_run == 1);
  CHECK(part.measured_steps == 1);
  REQUIRE(part.step_time_us.size() == 1);
  CHECK(part.step_time_us[0] == full.step_time_us[0]);
  // Per-exchange samples: the full run's first step's are its first ones.
  REQUIRE(part.dispatch_us.size() * 3 == full.dispatch_us.size());
  for (size_t i = 0; i < part.dispatch_us.size(); ++i) {
    CHECK(part.dispatch_us[i] == full.dispatch_us[i]);
    CHECK(part.combine_us[i] == full.combine_us[i]);
  }
  // The same as a run of one step.
  Scenario one = scenario;
  one.workload.steps = 1;
  const SimulationResult single = simulate(one);
  CHECK(part.tokens_per_expert == single.tokens_per_expert);
  CHECK(part.gpu_tokens == single.gpu_tokens);
  CHECK(part.idle_fraction == single.idle_fraction);
  CHECK(part.routed_pairs == single.routed_pairs);
}

TEST_CASE("a sweep stopped after K points and resumed writes the uninterrupted CSV", "[commands]") {
  SweepOptions options;
  options.threads = 2;
  const std::string uninterrupted = sweep_csv_streamed(options, "");
  {
    std::ostringstream all;
    write_sweep_csv(all, kAxes, 6, run_sweep(kSweepText, "sweep.pbtxt", options));
    REQUIRE(uninterrupted == all.str());  // streaming writes what write_sweep_csv writes
  }
  const Scenario base = parse_scenario(kSweepText, "sweep.pbtxt");
  const std::vector<SweepPoint> points = sweep_points(base.sweep);
  for (int64_t k : {1, 3}) {
    std::atomic<bool> stop{false};
    SweepOptions stopping = options;
    stopping.threads = 1;
    stopping.stop_requested = &stop;
    std::ostringstream out;
    out << sweep_csv_header_line(kAxes) << "\n";
    stopping.on_row = [&](const SweepRow& row) {
      out << sweep_csv_row_line(row, 6) << "\n";
      if (row.point + 1 == k) stop.store(true);
    };
    const std::vector<SweepRow> rows = run_sweep(kSweepText, "sweep.pbtxt", stopping);
    // One thread: the stop lands between point k-1 and point k.
    CHECK(static_cast<int64_t>(rows.size()) == k);
    const std::string prefix = out.str();
    CHECK(uninterrupted.compare(0, prefix.size(), prefix) == 0);

    const SweepResume resume = read_sweep_resume(prefix, "part.csv", kAxes, 6, points);
    CHECK(resume.complete_text == prefix);
    REQUIRE(resume.rows.size() == rows.size());
    for (size_t i = 0; i < rows.size(); ++i) {
      CHECK(resume.rows[i].axis_values == rows[i].axis_values);
      CHECK(resume.rows[i].metrics.values == rows[i].metrics.values);  // numbers round-trip
    }
    SweepOptions resumed = options;
    resumed.skip_points = static_cast<int64_t>(resume.rows.size());
    CHECK(sweep_csv_streamed(resumed, resume.complete_text) == uninterrupted);
  }
}

TEST_CASE("resume drops a line cut by a kill and refuses another sweep's file", "[commands]") {
  const Scenario base = parse_scenario(kSweepText, "sweep.pbtxt");
  const std::vector<SweepPoint> points = sweep_points(base.sweep);
  SweepOptions options;
  options.threads = 1;
  const std::string full = sweep_csv_streamed(options, "");
  const size_t second_row_end = full.find('\n', full.find('\n', full.find('\n') + 1) + 1);
  const std::string cut = full.substr(0, second_row_end - 5);  // row 1 cut short
  const SweepResume resume = read_sweep_resume(cut, "cut.csv", kAxes, 6, points);
  CHECK(resume.rows.size() == 1);
  CHECK(resume.complete_text == full.substr(0, full.find('\n', full.find('\n') + 1) + 1));
  CHECK(read_sweep_resume("", "empty.csv", kAxes, 6, points).rows.empty());

  const std::vector<std::string> other_axes = {"capacity_factor", "top_k_other"};
  try {
    read_sweep_resume(full, "other.csv", other_axes, 6, points);
    FAIL("expected a header mismatch");
  } catch (const SweepError& e) {
    const std::string what = e.what();
    CHECK(what.find("other.csv") != std::string::npos);
    CHECK(what.find("[capacity_factor, top_k]") != std::string::npos);
    CHECK(what.find("[capacity_factor, top_k_other]") != std::string::npos);
  }
  CHECK_THROWS_AS(read_sweep_resume(full, "f.csv", kAxes, 12, points), SweepError);
}

TEST_CASE("moesim run: a SIGINT ends the run with valid partial JSON and exit code 130",
          "[commands]") {
  const test::ScratchDir dir("long_run_sigint");
  const auto scenario = dir.path() / "many_steps.pbtxt";
  write_file(scenario, tiny_scenario("ep: 8", "kind: TRAINING tokens_per_gpu: 64 steps: 1000000"));
  const pid_t pid = spawn_moesim({"run", scenario.string(), "--format", "json", "--no-progress"},
                                 dir.path() / "out.json", dir.path() / "err.txt");
  // Time for the command to start and install its handler (it does so before the first step).
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  REQUIRE(kill(pid, SIGINT) == 0);
  const int status = wait_status(pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 130);
  const std::string json = read_file(dir.path() / "out.json");
  CHECK(json.find("\"partial\": true") != std::string::npos);
  CHECK(json.find("\"steps\": 1000000") != std::string::npos);
  CHECK(json.size() > 2);
  CHECK(json.substr(json.size() - 2) == "}\n");  // the document is complete
  CHECK(read_file(dir.path() / "err.txt").find("interrupted") != std::string::npos);
}

TEST_CASE("moesim sweep --out killed by SIGKILL after a row, then --resume: the same file",
          "[commands]") {
  const test::ScratchDir dir("long_run_sigkill");
  const auto scenario = dir.path() / "sweep.pbtxt";
  // Points long enough (a few hundred steps each) that the kill lands before the last one.
  write_file(scenario,
             tiny_scenario("ep: 8", "kind: TRAINING tokens_per_gpu: 64 steps: 300",
                           "router { capacity_factor: 1.0 }\n"
                           "sweep { name: \"capacity_factor\" values: [\"0\", \"1.0\"] }\n"
                           "sweep { name: \"top_k\" values: [\"1\", \"2\", \"4\"] }"));
  const auto whole = dir.path() / "whole.csv";
  const auto killed = dir.path() / "killed.csv";
  const auto log = dir.path() / "log.txt";
  REQUIRE(wait_status(spawn_moesim({"sweep", scenario.string(), "--out", whole.string(),
                                    "--threads", "2", "--no-progress"},
                                   dir.path() / "whole.txt", log)) == 0);
  const pid_t pid = spawn_moesim(
      {"sweep", scenario.string(), "--out", killed.string(), "--threads", "2", "--no-progress"},
      dir.path() / "killed.txt", log);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (count_lines(read_file(killed)) < 2 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  REQUIRE(kill(pid, SIGKILL) == 0);
  const int status = wait_status(pid);
  CHECK(WIFSIGNALED(status));
  const std::string prefix = read_file(killed);
  INFO("rows on disk at the kill: " << count_lines(prefix) - 1);
  CHECK(count_lines(prefix) >= 2);
  CHECK(read_file(whole).compare(0, prefix.size(), prefix) == 0);

  REQUIRE(wait_status(spawn_moesim({"sweep", scenario.string(), "--out", killed.string(),
                                    "--resume", "--threads", "2", "--no-progress"},
                                   dir.path() / "resumed.txt", log)) == 0);
  CHECK(read_file(killed) == read_file(whole));
}
