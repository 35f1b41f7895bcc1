// Number formatting shared by moesim's text outputs (tables, CSV, JSON, HTML): fixed decimals
// for people, the shortest round-tripping form for files.
#pragma once

#include <string>

namespace moesim {

// `value` with `digits` decimals ("%.*f"); "-" for an infinity or NaN (a quantity with no value).
std::string fixed(double value, int digits);

// The shortest decimal form of `value` that reads back to the same double.
std::string format_double(double value);

}  // namespace moesim
