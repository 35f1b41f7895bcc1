// A progress line on stderr for long runs (steps, sweep points) with an ETA, shown only when
// stderr is a terminal so logs and pipes stay clean; and where the default scenario lives.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>

namespace moesim::cli {

// The ETA extrapolates the wall time since the bar was made at its average rate so far
// (format_eta: shown from 1% done).
class ProgressBar {
 public:
  ProgressBar(std::string label, bool enabled);
  void update(int64_t done, int64_t total);
  // Within step `step` (from 0) of `steps`, `fraction` of it done: the bar covers the whole
  // run, the text names the step and how far into it; redrawn only when a per-mille changes.
  void update_step(int32_t step, int32_t steps, double fraction);
  void finish();

 private:
  static constexpr int kWidth = 30;  // characters of the bar
  void draw(int filled, const std::string& text, double fraction_done);

  std::string label_;
  bool enabled_;
  bool drawn_ = false;
  int64_t last_permille_ = -1;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
};

// scenarios/examples/default.pbtxt of the source tree this binary was built from.
std::filesystem::path default_scenario_path();

}  // namespace moesim::cli
