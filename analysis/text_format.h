// Number formatting shared by moesim's text outputs (tables, CSV, JSON, HTML): fixed decimals
// for people, the shortest round-tripping form for files.
#pragma once

#include <string>

namespace moesim {

// `value` with `digits` decimals ("%.*f"); "-" for an infinity or NaN (a quantity with no value).
std::string fixed(double value, int digits);

// The shortest decimal form of `value` that reads back to the same double.
std::string format_double(double value);

// The time a task has left when `fraction_done` of it took `elapsed_s` seconds, at the same
// average rate from here: elapsed_s * (1 - fraction) / fraction, rounded up to whole seconds,
// as "ETA 42s", "ETA 3m05s", or from an hour on "ETA 2h07m" (minutes rounded up). Empty below
// kEtaMinFraction done (too little to extrapolate from) and once done.
inline constexpr double kEtaMinFraction = 0.01;
std::string format_eta(double elapsed_s, double fraction_done);

}  // namespace moesim
