#include "models/router/normal.h"

#include <array>
#include <bit>
#include <cmath>
#include <cstdint>

namespace moesim {
namespace {

constexpr int kLayers = 256;
// Marsaglia and Tsang (2000), 256 layers: the rightmost layer edge r and the common layer area.
constexpr double kR = 3.6541528853610088;
constexpr double kArea = 0.00492867323399;

double density(double x) {
  return std::exp(-0.5 * x * x);
}

struct Ziggurat {
  // x[i] is the right edge of layer i (x[0] the base layer's equivalent width, x[256] = 0);
  // f[i] = density(x[i]).
  std::array<double, kLayers + 1> x;
  std::array<double, kLayers + 1> f;
  Ziggurat() {
    x[0] = kArea / density(kR);
    x[1] = kR;
    for (int i = 1; i < kLayers - 1; ++i) {
      x[i + 1] = std::sqrt(-2.0 * std::log(kArea / x[i] + density(x[i])));
    }
    x[kLayers] = 0.0;
    for (int i = 0; i <= kLayers; ++i) f[i] = density(x[i]);
  }
};

const Ziggurat& tables() {
  static const Ziggurat z;
  return z;
}

// The rare rest of a draw whose first word `bits` missed the layer's rectangle: the tail or
// the wedge test, then fresh draws until one is accepted. Kept out of line so that the fast
// path of fill_standard_normal stays small.
[[gnu::noinline]] double draw_rest(RandomStream& stream, const Ziggurat& z, uint64_t bits) {
  for (;;) {
    const int i = static_cast<int>(bits & 0xff);
    const double sign = (bits & 0x100) ? -1.0 : 1.0;
    const double u = static_cast<double>(bits >> 11) * 0x1.0p-53;
    const double x = u * z.x[i];
    if (x < z.x[i + 1]) return sign * x;
    if (i == 0) {
      // The tail beyond r (Marsaglia 1964).
      double a, b;
      do {
        a = -std::log(1.0 - stream.uniform01()) / kR;
        b = -std::log(1.0 - stream.uniform01());
      } while (2.0 * b < a * a);
      return sign * (kR + a);
    }
    // The wedge between the layer's rectangle and the density.
    const double y = z.f[i] + stream.uniform01() * (z.f[i + 1] - z.f[i]);
    if (y < density(x)) return sign * x;
    bits = stream();
  }
}

double draw(RandomStream& stream, const Ziggurat& z) {
  return draw_rest(stream, z, stream());
}

}  // namespace

void fill_standard_normal(RandomStream& stream, std::span<float> out) {
  const Ziggurat& z = tables();
  // A local copy of the stream keeps its state in registers; the fast path (~99%) is branch
  // free apart from the rectangle test, the sign set by flipping the float's sign bit (exactly
  // what multiplying by -1 gives).
  RandomStream local = stream;
  for (float& v : out) {
    const uint64_t bits = local();
    const int i = static_cast<int>(bits & 0xff);
    const double x = static_cast<double>(bits >> 11) * 0x1.0p-53 * z.x[i];
    if (x < z.x[i + 1]) [[likely]] {
      const auto magnitude = std::bit_cast<uint32_t>(static_cast<float>(x));
      v = std::bit_cast<float>(magnitude | static_cast<uint32_t>((bits & 0x100) << 23));
    } else {
      v = static_cast<float>(draw_rest(local, z, bits));
    }
  }
  stream = local;
}

float standard_normal(RandomStream& stream) {
  return static_cast<float>(draw(stream, tables()));
}

}  // namespace moesim
