#include "cli/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace moesim::cli {

ProgressBar::ProgressBar(std::string label, bool enabled)
    : label_(std::move(label)), enabled_(enabled && isatty(STDERR_FILENO) != 0) {}

void ProgressBar::update(int64_t done, int64_t total) {
  if (!enabled_ || total <= 0) return;
  constexpr int kWidth = 30;
  const int filled = static_cast<int>(kWidth * done / total);
  std::fprintf(stderr, "\r%s [%.*s%*s] %lld/%lld", label_.c_str(), filled,
               "##############################", kWidth - filled, "", static_cast<long long>(done),
               static_cast<long long>(total));
  std::fflush(stderr);
  drawn_ = true;
}

void ProgressBar::update_step(int32_t step, int32_t steps, double fraction) {
  if (!enabled_ || steps <= 0) return;
  fraction = std::clamp(fraction, 0.0, 1.0);
  const auto permille = static_cast<int64_t>(1000.0 * (step + fraction) / steps);
  if (permille == last_permille_) return;
  last_permille_ = permille;
  constexpr int kWidth = 30;
  const int filled = static_cast<int>(kWidth * permille / 1000);
  std::fprintf(stderr, "\r%s [%.*s%*s] step %d/%d, %3d%%", label_.c_str(), filled,
               "##############################", kWidth - filled, "", step + 1, steps,
               static_cast<int>(100.0 * fraction));
  std::fflush(stderr);
  drawn_ = true;
}

void ProgressBar::finish() {
  if (drawn_) std::fputc('\n', stderr);
  drawn_ = false;
}

std::filesystem::path default_scenario_path() {
  return std::filesystem::path(MOESIM_SOURCE_DIR) / "scenarios" / "examples" / "default.pbtxt";
}

}  // namespace moesim::cli
