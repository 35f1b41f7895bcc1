// Seeded random streams: each component draws from its own stream derived from
// (scenario seed, component name), so adding a component never changes another's numbers.
#pragma once

#include <cstdint>
#include <limits>
#include <string_view>

namespace moesim {

// xoshiro256** (Blackman & Vigna), seeded through SplitMix64. Satisfies
// UniformRandomBitGenerator; the draw helpers below are our own so results do not depend on
// the standard library's distribution implementations.
class RandomStream {
 public:
  using result_type = uint64_t;
  RandomStream(uint64_t seed, std::string_view component);
  explicit RandomStream(uint64_t raw_seed);

  static constexpr result_type min() { return 0; }
  static constexpr result_type max() { return std::numeric_limits<uint64_t>::max(); }
  result_type operator()() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }

  // Uniform in [0, 1), 53 random bits.
  double uniform01() { return static_cast<double>((*this)() >> 11) * 0x1.0p-53; }
  // Uniform integer in [0, n), without modulo bias (Lemire's method).
  uint64_t below(uint64_t n);
  // Exponential with the given mean.
  double exponential(double mean);
  // Standard normal (Marsaglia polar method; the spare value is kept).
  double normal();
  // An independent child stream, e.g. one per layer or per GPU.
  RandomStream fork(std::string_view child) const;

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
  uint64_t identity_;
  double spare_normal_ = 0.0;
  bool has_spare_ = false;
};

// FNV-1a of a name, the component half of a stream's seed.
uint64_t stream_name_hash(std::string_view name);

}  // namespace moesim
