// Strong types for simulated time (integer picoseconds), data sizes (bytes) and bandwidth.
// Unit strings such as "400Gbps" are parsed only at the input boundary (see units_parse.h).
#pragma once

#include <compare>
#include <cstdint>
#include <limits>

namespace moesim {

// Simulated time or duration as an integer count of picoseconds. Never a double: equal times
// compare equal exactly, so event order is deterministic.
class Time {
 public:
  constexpr Time() = default;
  static constexpr Time ps(int64_t v) { return Time(v); }
  static constexpr Time ns(int64_t v) { return Time(v * 1'000); }
  static constexpr Time us(int64_t v) { return Time(v * 1'000'000); }
  static constexpr Time ms(int64_t v) { return Time(v * 1'000'000'000); }
  static constexpr Time s(int64_t v) { return Time(v * 1'000'000'000'000); }
  static constexpr Time zero() { return Time(0); }
  static constexpr Time max() { return Time(std::numeric_limits<int64_t>::max()); }

  constexpr int64_t count_ps() const { return ps_; }
  // For reports only; simulation logic never converts time to floating point.
  constexpr double to_ns() const { return static_cast<double>(ps_) * 1e-3; }
  constexpr double to_us() const { return static_cast<double>(ps_) * 1e-6; }
  constexpr double to_ms() const { return static_cast<double>(ps_) * 1e-9; }
  constexpr double to_s() const { return static_cast<double>(ps_) * 1e-12; }

  constexpr Time operator+(Time o) const { return Time(ps_ + o.ps_); }
  constexpr Time operator-(Time o) const { return Time(ps_ - o.ps_); }
  constexpr Time operator*(int64_t k) const { return Time(ps_ * k); }
  constexpr Time operator/(int64_t k) const { return Time(ps_ / k); }
  constexpr Time& operator+=(Time o) {
    ps_ += o.ps_;
    return *this;
  }
  constexpr Time& operator-=(Time o) {
    ps_ -= o.ps_;
    return *this;
  }
  constexpr auto operator<=>(const Time&) const = default;

 private:
  constexpr explicit Time(int64_t ps) : ps_(ps) {}
  int64_t ps_ = 0;
};

// A data size in bytes.
class Bytes {
 public:
  constexpr Bytes() = default;
  constexpr explicit Bytes(int64_t n) : n_(n) {}
  static constexpr Bytes kib(int64_t v) { return Bytes(v << 10); }
  static constexpr Bytes mib(int64_t v) { return Bytes(v << 20); }
  static constexpr Bytes gib(int64_t v) { return Bytes(v << 30); }

  constexpr int64_t count() const { return n_; }
  constexpr Bytes operator+(Bytes o) const { return Bytes(n_ + o.n_); }
  constexpr Bytes operator-(Bytes o) const { return Bytes(n_ - o.n_); }
  constexpr Bytes operator*(int64_t k) const { return Bytes(n_ * k); }
  constexpr Bytes operator/(int64_t k) const { return Bytes(n_ / k); }
  constexpr Bytes& operator+=(Bytes o) {
    n_ += o.n_;
    return *this;
  }
  constexpr auto operator<=>(const Bytes&) const = default;

 private:
  int64_t n_ = 0;
};

// A data rate in bytes per second. A rate is not a time, so it may be fractional (a link shared
// three ways carries a third of its capacity); durations derived from it are rounded to integer ps.
class Bandwidth {
 public:
  constexpr Bandwidth() = default;
  static constexpr Bandwidth bytes_per_s(double v) { return Bandwidth(v); }
  static constexpr Bandwidth gbps(double gigabits) { return Bandwidth(gigabits * 1e9 / 8.0); }
  static constexpr Bandwidth gigabytes_per_s(double gb) { return Bandwidth(gb * 1e9); }

  constexpr double bytes_per_second() const { return bps_; }
  constexpr double gigabytes_per_second() const { return bps_ * 1e-9; }
  constexpr double gigabits_per_second() const { return bps_ * 8e-9; }
  constexpr Bandwidth operator*(double k) const { return Bandwidth(bps_ * k); }
  constexpr Bandwidth operator/(double k) const { return Bandwidth(bps_ / k); }
  constexpr auto operator<=>(const Bandwidth&) const = default;

 private:
  constexpr explicit Bandwidth(double v) : bps_(v) {}
  double bps_ = 0.0;
};

// The time to move `bytes` at `rate`, rounded up to whole picoseconds and never zero for a
// non-empty transfer (a zero-length event would let a transfer finish before it started).
Time transfer_time(Bytes bytes, Bandwidth rate);

// Bytes moved in `t` at `rate`, rounded down (for reporting achieved bandwidth).
double bytes_in(Time t, Bandwidth rate);

// Achieved bandwidth of `bytes` moved in `t` (t > 0); for reports.
Bandwidth achieved(Bytes bytes, Time t);

}  // namespace moesim
