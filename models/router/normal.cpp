#include "models/router/normal.h"

#include <array>
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

double draw(RandomStream& stream, const Ziggurat& z) {
  for (;;) {
    const uint64_t bits = stream();
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
  }
}

}  // namespace

void fill_standard_normal(RandomStream& stream, std::span<float> out) {
  const Ziggurat& z = tables();
  for (float& v : out) v = static_cast<float>(draw(stream, z));
}

float standard_normal(RandomStream& stream) {
  return static_cast<float>(draw(stream, tables()));
}

}  // namespace moesim
