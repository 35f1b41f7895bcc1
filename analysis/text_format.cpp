#include "analysis/text_format.h"

#include <cmath>
#include <cstdio>

namespace moesim {

std::string fixed(double value, int digits) {
  if (!std::isfinite(value)) return "-";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, value);
  return buf;
}

}  // namespace moesim
