#include "core/units.h"

#include <cmath>
#include <stdexcept>

namespace moesim {

Time transfer_time(Bytes bytes, Bandwidth rate) {
  if (bytes.count() < 0) throw std::invalid_argument("transfer_time: negative byte count");
  if (bytes.count() == 0) return Time::zero();
  if (!(rate.bytes_per_second() > 0.0)) {
    throw std::invalid_argument("transfer_time: bandwidth must be positive");
  }
  // long double keeps 64 bits of mantissa: exact for any byte count below 2^64 / 1e12.
  const long double ps = std::ceil(static_cast<long double>(bytes.count()) * 1e12L /
                                   static_cast<long double>(rate.bytes_per_second()));
  if (ps >= static_cast<long double>(Time::max().count_ps())) return Time::max();
  const auto whole = static_cast<int64_t>(ps);
  return Time::ps(whole < 1 ? 1 : whole);
}

double bytes_in(Time t, Bandwidth rate) {
  return std::floor(static_cast<double>(t.count_ps()) * 1e-12 * rate.bytes_per_second());
}

Bandwidth achieved(Bytes bytes, Time t) {
  if (t.count_ps() <= 0) throw std::invalid_argument("achieved: time must be positive");
  return Bandwidth::bytes_per_s(static_cast<double>(bytes.count()) /
                                (static_cast<double>(t.count_ps()) * 1e-12));
}

}  // namespace moesim
