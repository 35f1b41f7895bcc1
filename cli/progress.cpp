#include "cli/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "analysis/text_format.h"

namespace moesim::cli {

ProgressBar::ProgressBar(std::string label, bool enabled)
    : label_(std::move(label)), enabled_(enabled && isatty(STDERR_FILENO) != 0) {}

void ProgressBar::draw(int filled, const std::string& text, double fraction_done) {
  filled = std::clamp(filled, 0, kWidth);
  const double elapsed_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  const std::string eta = format_eta(elapsed_s, fraction_done);
  // "\033[K" clears what a longer earlier line left to the right.
  std::fprintf(stderr, "\r%s [%.*s%*s] %s%s%s\033[K", label_.c_str(), filled,
               "##############################", kWidth - filled, "", text.c_str(),
               eta.empty() ? "" : ", ", eta.c_str());
  std::fflush(stderr);
  drawn_ = true;
}

void ProgressBar::update(int64_t done, int64_t total) {
  if (!enabled_ || total <= 0) return;
  draw(static_cast<int>(kWidth * done / total), std::to_string(done) + "/" + std::to_string(total),
       static_cast<double>(done) / static_cast<double>(total));
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
  draw(static_cast<int>(kWidth * permille / 1000), text, (step + fraction) / steps);
}

void ProgressBar::finish() {
  if (drawn_) std::fputc('\n', stderr);
  drawn_ = false;
}

std::filesystem::path default_scenario_path() {
  return std::filesystem::path(MOESIM_SOURCE_DIR) / "scenarios" / "examples" / "default.pbtxt";
}

}  // namespace moesim::cli
