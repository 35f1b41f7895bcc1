#include "scenarios/units_parse.h"

#include <array>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

namespace moesim {
namespace {

using u128 = unsigned __int128;

// More digits than this could overflow 128 bits once scaled; no real quantity needs them.
constexpr int kMaxDigits = 24;

struct Unit {
  std::string_view suffix;
  u128 numerator;    // the unit in the base unit (ps, bytes, bytes or bits per second) ...
  u128 denominator;  // ... as an exact fraction (8 for bits)
};

struct Decimal {
  u128 digits = 0;  // the number without its decimal point
  u128 scale = 1;   // 10^(digits after the point)
  std::string_view suffix;
};

[[noreturn]] void fail(std::string_view what, std::string_view text, std::string_view problem,
                       std::string_view expected) {
  throw std::invalid_argument(std::string(what) + " \"" + std::string(text) +
                              "\": " + std::string(problem) +
                              "; expected a non-negative number and " + std::string(expected));
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

Decimal parse_decimal(std::string_view text, std::string_view what, std::string_view expected) {
  const std::string_view s = trim(text);
  Decimal d;
  size_t i = 0;
  int digit_count = 0;
  bool seen_point = false;
  bool fraction_digit = false;
  for (; i < s.size(); ++i) {
    const char c = s[i];
    if (is_digit(c)) {
      if (++digit_count > kMaxDigits) fail(what, text, "too many digits", expected);
      d.digits = d.digits * 10 + static_cast<u128>(c - '0');
      if (seen_point) {
        d.scale *= 10;
        fraction_digit = true;
      }
    } else if (c == '.' && !seen_point) {
      seen_point = true;
    } else {
      break;
    }
  }
  if (digit_count == 0) {
    fail(what, text, s.empty() || s[0] != '-' ? "no number" : "negative number", expected);
  }
  if (seen_point && !fraction_digit) fail(what, text, "no digit after the decimal point", expected);
  d.suffix = trim(s.substr(i));
  return d;
}

template <size_t N>
const Unit& find_unit(const std::array<Unit, N>& units, const Decimal& d, std::string_view text,
                      std::string_view what, std::string_view expected) {
  for (const Unit& unit : units) {
    if (unit.suffix == d.suffix) return unit;
  }
  fail(what, text, d.suffix.empty() ? "no unit" : "unknown unit \"" + std::string(d.suffix) + "\"",
       expected);
}

// digits * numerator / (scale * denominator), rounded to the nearest integer, halves up.
int64_t scaled(const Decimal& d, const Unit& unit, std::string_view text, std::string_view what,
               std::string_view expected) {
  u128 top = 0;
  u128 bottom = 0;
  if (__builtin_mul_overflow(d.digits, unit.numerator, &top) ||
      __builtin_mul_overflow(d.scale, unit.denominator, &bottom)) {
    fail(what, text, "too large", expected);
  }
  const u128 rounded = (top + bottom / 2) / bottom;
  if (rounded > static_cast<u128>(std::numeric_limits<int64_t>::max())) {
    fail(what, text, "too large", expected);
  }
  return static_cast<int64_t>(rounded);
}

constexpr u128 pow10(int n) {
  u128 v = 1;
  for (int i = 0; i < n; ++i) v *= 10;
  return v;
}

constexpr std::string_view kTimeExpected = "one of the units ps, ns, us, ms, s (e.g. \"1.5us\")";
constexpr std::array<Unit, 5> kTimeUnits{{
    {"ps", 1, 1},
    {"ns", pow10(3), 1},
    {"us", pow10(6), 1},
    {"ms", pow10(9), 1},
    {"s", pow10(12), 1},
}};

constexpr std::string_view kBytesExpected =
    "an optional unit: B; binary K, KiB, M, MiB, G, GiB, T, TiB; decimal KB, kB, MB, GB, TB "
    "(e.g. \"64MiB\")";
constexpr std::array<Unit, 15> kByteUnits{{
    {"", 1, 1},
    {"B", 1, 1},
    {"K", u128{1} << 10, 1},
    {"KiB", u128{1} << 10, 1},
    {"M", u128{1} << 20, 1},
    {"MiB", u128{1} << 20, 1},
    {"G", u128{1} << 30, 1},
    {"GiB", u128{1} << 30, 1},
    {"T", u128{1} << 40, 1},
    {"TiB", u128{1} << 40, 1},
    {"KB", pow10(3), 1},
    {"kB", pow10(3), 1},
    {"MB", pow10(6), 1},
    {"GB", pow10(9), 1},
    {"TB", pow10(12), 1},
}};

constexpr std::string_view kBandwidthExpected =
    "a rate unit: bits per second bps, Kbps, Mbps, Gbps, Tbps (or b/s, Gb/s, Gbit/s ...); bytes "
    "per second B/s, KB/s, MB/s, GB/s, TB/s (or Bps, GBps ...), KiB/s, MiB/s, GiB/s, TiB/s "
    "(e.g. \"400Gbps\", \"50GB/s\")";

// Splits a rate unit into its prefix multiplier and whether it counts bits; false if unknown.
bool rate_unit(std::string_view suffix, Unit& unit) {
  struct Prefix {
    std::string_view text;
    u128 factor;
  };
  static constexpr std::array<Prefix, 10> kPrefixes{{
      {"", 1},
      {"K", pow10(3)},
      {"k", pow10(3)},
      {"M", pow10(6)},
      {"G", pow10(9)},
      {"T", pow10(12)},
      {"Ki", u128{1} << 10},
      {"Mi", u128{1} << 20},
      {"Gi", u128{1} << 30},
      {"Ti", u128{1} << 40},
  }};
  static constexpr std::array<std::string_view, 3> kBitSuffixes{"bps", "b/s", "bit/s"};
  static constexpr std::array<std::string_view, 2> kByteSuffixes{"B/s", "Bps"};
  for (const Prefix& prefix : kPrefixes) {
    if (suffix.substr(0, prefix.text.size()) != prefix.text) continue;
    const std::string_view rest = suffix.substr(prefix.text.size());
    const bool binary = prefix.text.size() == 2;
    for (std::string_view bits : kBitSuffixes) {
      // Binary prefixes are for byte rates only; "Gibps" is not a unit anyone writes.
      if (rest == bits && !binary) {
        unit = Unit{suffix, prefix.factor, 8};
        return true;
      }
    }
    for (std::string_view bytes : kByteSuffixes) {
      if (rest == bytes) {
        unit = Unit{suffix, prefix.factor, 1};
        return true;
      }
    }
  }
  return false;
}

}  // namespace

Time parse_time(std::string_view text) {
  constexpr std::string_view what = "time";
  const Decimal d = parse_decimal(text, what, kTimeExpected);
  const Unit& unit = find_unit(kTimeUnits, d, text, what, kTimeExpected);
  return Time::ps(scaled(d, unit, text, what, kTimeExpected));
}

Bytes parse_bytes(std::string_view text) {
  constexpr std::string_view what = "size";
  const Decimal d = parse_decimal(text, what, kBytesExpected);
  const Unit& unit = find_unit(kByteUnits, d, text, what, kBytesExpected);
  return Bytes(scaled(d, unit, text, what, kBytesExpected));
}

Bandwidth parse_bandwidth(std::string_view text) {
  constexpr std::string_view what = "bandwidth";
  const Decimal d = parse_decimal(text, what, kBandwidthExpected);
  Unit unit;
  if (!rate_unit(d.suffix, unit)) {
    fail(what, text,
         d.suffix.empty() ? "no unit" : "unknown unit \"" + std::string(d.suffix) + "\"",
         kBandwidthExpected);
  }
  u128 top = 0;
  u128 bottom = 0;
  if (__builtin_mul_overflow(d.digits, unit.numerator, &top) ||
      __builtin_mul_overflow(d.scale, unit.denominator, &bottom)) {
    fail(what, text, "too large", kBandwidthExpected);
  }
  // A rate may be fractional; the one rounding is the division, done in long double.
  return Bandwidth::bytes_per_s(
      static_cast<double>(static_cast<long double>(top) / static_cast<long double>(bottom)));
}

}  // namespace moesim
