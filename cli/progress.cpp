#include "cli/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace moesim::cli {

ProgressBar::ProgressBar(std::string label, bool enabled)
    : label_(std::move(label)), enabled_(enabled && isatty(STDERR_FILENO) != 0) {}

void ProgressBar::draw(int filled, const std::string& text) {
  filled = std::clamp(filled, 0, kWidth);
  std::fprintf(stderr, "\r%s [%.*s%*s] %s", label_.c_str(), filled,
               "##############################", kWidth - filled, "", text.c_str());
  std::fflush(stderr);
  drawn_ = true;
}

void ProgressBar::update(int64_t done, int64_t total) {
  if (!enabled_ || total <= 0) return;
  draw(static_cast<int>(kWidth * done / total), std::to_string(done) + "/" + std::to_string(total));
}

void ProgressBar::update_step(int32_t step, int32_t steps, double fraction) {
  if (!enabled_ || steps <= 0) return;
  fraction = std::clamp(fraction, 0.0, 1.0);
  const auto permille = static_cast<int64_t>(1000.0 * (step + fraction) / steps);
  if (permille == last_permille_) return;
  last_permille_ = permille;
  char text[64];
  std::snprintf(text, sizeof text, "step %d/%d, %3d%%", step + 1, steps,
                static_cast<int>(100.0 * fraction));
  draw(static_cast<int>(kWidth * permille / 1000), text);
}

void ProgressBar::finish() {
  if (drawn_) std::fputc('\n', stderr);
  drawn_ = false;
}

std::filesystem::path default_scenario_path() {
  return std::filesystem::path(MOESIM_SOURCE_DIR) / "scenarios" / "examples" / "default.pbtxt";
}

}  // namespace moesim::cli
