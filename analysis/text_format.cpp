#include "analysis/text_format.h"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>

namespace moesim {

std::string fixed(double value, int digits) {
  if (!std::isfinite(value)) return "-";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, value);
  return buf;
}

std::string format_double(double value) {
  char buf[64];
  const auto [ptr, ec] = std::to_chars(buf, buf + sizeof(buf), value);
  return std::string(buf, ptr);
}

std::string format_eta(double elapsed_s, double fraction_done) {
  if (!(fraction_done >= kEtaMinFraction) || fraction_done >= 1.0 || !(elapsed_s >= 0.0)) {
    return "";
  }
  const double left_s = elapsed_s * (1.0 - fraction_done) / fraction_done;
  if (!std::isfinite(left_s) || left_s > 1e9) return "";
  const auto seconds = static_cast<int64_t>(std::ceil(left_s));
  char buf[64];
  if (seconds < 60) {
    std::snprintf(buf, sizeof buf, "ETA %llds", static_cast<long long>(seconds));
  } else if (seconds < 3600) {
    std::snprintf(buf, sizeof buf, "ETA %lldm%02llds", static_cast<long long>(seconds / 60),
                  static_cast<long long>(seconds % 60));
  } else {
    const int64_t minutes = (seconds + 59) / 60;
    std::snprintf(buf, sizeof buf, "ETA %lldh%02lldm", static_cast<long long>(minutes / 60),
                  static_cast<long long>(minutes % 60));
  }
  return buf;
}

}  // namespace moesim
