#include "cli/progress.h"

#include <unistd.h>

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

void ProgressBar::finish() {
  if (drawn_) std::fputc('\n', stderr);
  drawn_ = false;
}

std::filesystem::path default_scenario_path() {
  return std::filesystem::path(MOESIM_SOURCE_DIR) / "scenarios" / "examples" / "default.pbtxt";
}

}  // namespace moesim::cli
