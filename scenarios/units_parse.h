// Parsing of unit strings ("2us", "64MiB", "400Gbps") into Time, Bytes and Bandwidth: the only
// place unit text is read. Callers add the file, line and field to the error they rethrow.
#pragma once

#include <string_view>

#include "core/units.h"

namespace moesim {

// Every parser takes a non-negative decimal number (digits, an optional fraction, no exponent),
// optional spaces, then a unit suffix; the arithmetic is exact on the decimal digits, so "1G"
// is exactly 2^30 and "0.1ms" exactly 10^8 ps. Bad text throws std::invalid_argument naming the
// text and listing the accepted suffixes.

// A duration. Suffixes: ps, ns, us, ms, s (a unit is required). Rounded to the nearest
// picosecond, halves up ("1.5ps" is 2 ps).
Time parse_time(std::string_view text);

// A size. No suffix or "B": bytes. Binary, as nccl-tests uses them: K, KiB, M, MiB, G, GiB, T,
// TiB (powers of 1024). Decimal: KB (or kB), MB, GB, TB (powers of 1000). Rounded to the
// nearest byte, halves up ("1.5GiB" is 1610612736).
Bytes parse_bytes(std::string_view text);

// A rate. Bits per second: bps, Kbps, Mbps, Gbps, Tbps, also written b/s, Gb/s, Gbit/s.
// Bytes per second: B/s, KB/s, MB/s, GB/s, TB/s, also written Bps, GBps; binary KiB/s, MiB/s,
// GiB/s, TiB/s. Prefixes of rates are decimal (400Gbps = 4e11 bit/s = 5e10 B/s); "k" is
// accepted for "K".
Bandwidth parse_bandwidth(std::string_view text);

}  // namespace moesim
