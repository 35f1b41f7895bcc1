// Fast standard normal draws (Marsaglia and Tsang's ziggurat, 256 layers) on a RandomStream,
// for the millions of Gaussian numbers the token models need per batch.
#pragma once

#include <span>

#include "core/random.h"

namespace moesim {

// Fills `out` with independent N(0, 1) draws. Exact in distribution (the ziggurat's rejection
// steps and tail sampling are kept); one 64-bit draw per value ~99% of the time.
void fill_standard_normal(RandomStream& stream, std::span<float> out);

// One N(0, 1) draw by the same method.
float standard_normal(RandomStream& stream);

}  // namespace moesim
