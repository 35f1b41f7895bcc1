// Tests of the unit types and the unit-string parser: hand-worked conversions, rounding of
// transfer times, exact integer parsing and the error messages for bad text.
#include <catch2/catch.hpp>

#include <stdexcept>
#include <string>

#include "scenarios/units_parse.h"
#include "core/units.h"

namespace moesim {
namespace {

TEST_CASE("time helpers count picoseconds", "[units]") {
  CHECK(Time::ns(1).count_ps() == 1'000);
  CHECK(Time::us(1).count_ps() == 1'000'000);
  CHECK(Time::ms(3).count_ps() == 3'000'000'000);
  CHECK(Time::s(2).count_ps() == 2'000'000'000'000);
  CHECK(Time::us(1) + Time::ns(500) == Time::ps(1'500'000));
  CHECK(Time::ms(1) / 4 == Time::us(250));
  CHECK(Time::us(1).to_ns() == 1000.0);
  CHECK(Bytes::kib(1).count() == 1024);
  CHECK(Bytes::gib(1).count() == 1073741824);
}

TEST_CASE("transfer_time rounds up and is never zero for a non-empty transfer", "[units]") {
  // Exact cases: 1000 B at 1 GB/s is 1 us; 1 B at 400 Gbit/s (50 GB/s) is 20 ps.
  CHECK(transfer_time(Bytes(1000), Bandwidth::gigabytes_per_s(1)) == Time::us(1));
  CHECK(transfer_time(Bytes(1), Bandwidth::gbps(400)) == Time::ps(20));
  CHECK(transfer_time(Bytes::mib(1), Bandwidth::bytes_per_s(1048576)) == Time::s(1));
  // 1 B at 3 B/s is 333333333333.33 ps: rounded up.
  CHECK(transfer_time(Bytes(1), Bandwidth::bytes_per_s(3)) == Time::ps(333'333'333'334));
  // 1 B at 1 PB/s would be 0.001 ps: still one picosecond.
  CHECK(transfer_time(Bytes(1), Bandwidth::bytes_per_s(1e15)) == Time::ps(1));
  CHECK(transfer_time(Bytes(0), Bandwidth::gbps(100)) == Time::zero());
  CHECK_THROWS_AS(transfer_time(Bytes(-1), Bandwidth::gbps(100)), std::invalid_argument);
  CHECK_THROWS_AS(transfer_time(Bytes(1), Bandwidth::bytes_per_s(0)), std::invalid_argument);
}

TEST_CASE("parse_time reads each unit exactly", "[units][parse]") {
  CHECK(parse_time("2us") == Time::us(2));
  CHECK(parse_time("1.5ms") == Time::us(1500));
  CHECK(parse_time("800ns") == Time::ns(800));
  CHECK(parse_time("10ps") == Time::ps(10));
  CHECK(parse_time("3s") == Time::s(3));
  CHECK(parse_time(" 0.1 ms ") == Time::ps(100'000'000));
  CHECK(parse_time("0.000001s") == Time::us(1));
  CHECK(parse_time("1.5ps") == Time::ps(2));  // nearest, halves up
  CHECK(parse_time("1.49ps") == Time::ps(1));
  CHECK(parse_time("9223372s") == Time::s(9223372));
}

TEST_CASE("parse_bytes reads binary and decimal sizes", "[units][parse]") {
  CHECK(parse_bytes("4096").count() == 4096);
  CHECK(parse_bytes("17B").count() == 17);
  CHECK(parse_bytes("1K").count() == 1024);
  CHECK(parse_bytes("1KiB").count() == 1024);
  CHECK(parse_bytes("1KB").count() == 1000);
  CHECK(parse_bytes("1kB").count() == 1000);
  CHECK(parse_bytes("64MiB").count() == 64 * 1048576);
  CHECK(parse_bytes("64M").count() == 64 * 1048576);
  CHECK(parse_bytes("1G").count() == 1073741824);  // nccl-tests' -e 1G
  CHECK(parse_bytes("8GB").count() == 8'000'000'000);
  CHECK(parse_bytes("1.5GiB").count() == 1610612736);
  CHECK(parse_bytes("2T").count() == int64_t{2} << 40);
  CHECK(parse_bytes("3TB").count() == 3'000'000'000'000);
  // 0.3 KiB = 307.2 B -> 307; 0.5 B -> 1 (halves up).
  CHECK(parse_bytes("0.3KiB").count() == 307);
  CHECK(parse_bytes("0.5").count() == 1);
  // Exact beyond double precision: 2^53 + 1 would round in a double.
  CHECK(parse_bytes("9007199254740993").count() == 9007199254740993);
}

TEST_CASE("parse_bandwidth reads bit and byte rates", "[units][parse]") {
  CHECK(parse_bandwidth("400Gbps").bytes_per_second() == 50e9);
  CHECK(parse_bandwidth("400Gb/s").bytes_per_second() == 50e9);
  CHECK(parse_bandwidth("400Gbit/s").bytes_per_second() == 50e9);
  CHECK(parse_bandwidth("50GB/s").bytes_per_second() == 50e9);
  CHECK(parse_bandwidth("450GBps").bytes_per_second() == 450e9);
  CHECK(parse_bandwidth("100Mbps").bytes_per_second() == 12.5e6);
  CHECK(parse_bandwidth("25 kbps").bytes_per_second() == 3125.0);
  CHECK(parse_bandwidth("1GiB/s").bytes_per_second() == 1073741824.0);
  CHECK(parse_bandwidth("12.5GB/s").bytes_per_second() == 12.5e9);
  CHECK(parse_bandwidth("1bps").bytes_per_second() == 0.125);
  CHECK(parse_bandwidth("3.2Tbps").bytes_per_second() == 400e9);
}

std::string error_of(void (*parse)(std::string_view), std::string_view text) {
  try {
    parse(text);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "no error";
}

void time_of(std::string_view t) {
  parse_time(t);
}
void bytes_of(std::string_view t) {
  parse_bytes(t);
}
void bandwidth_of(std::string_view t) {
  parse_bandwidth(t);
}

TEST_CASE("bad unit strings are refused with the text and the accepted units", "[units][parse]") {
  using Catch::Matchers::Contains;
  CHECK_THAT(error_of(time_of, "2xs"), Contains("\"2xs\"") && Contains("unknown unit \"xs\"") &&
                                           Contains("ps, ns, us, ms, s"));
  CHECK_THAT(error_of(time_of, "5"), Contains("no unit"));
  CHECK_THAT(error_of(time_of, "-5us"), Contains("negative"));
  CHECK_THAT(error_of(time_of, "us"), Contains("no number"));
  CHECK_THAT(error_of(time_of, ""), Contains("no number"));
  CHECK_THAT(error_of(time_of, "1.us"), Contains("after the decimal point"));
  CHECK_THAT(error_of(time_of, "1.2.3us"), Contains("unknown unit \".3us\""));
  CHECK_THAT(error_of(time_of, "1e3ns"), Contains("unknown unit"));
  CHECK_THAT(error_of(time_of, "10000000s"), Contains("too large"));
  CHECK_THAT(error_of(bytes_of, "1Gb"), Contains("\"1Gb\"") && Contains("KiB") && Contains("GB"));
  CHECK_THAT(error_of(bytes_of, "1PiB"), Contains("unknown unit"));
  CHECK_THAT(error_of(bytes_of, "9000000000000000000000B"), Contains("too large"));
  CHECK_THAT(error_of(bytes_of, "1234567890123456789012345"), Contains("too many digits"));
  CHECK_THAT(error_of(bandwidth_of, "400G"), Contains("unknown unit \"G\"") && Contains("Gbps"));
  CHECK_THAT(error_of(bandwidth_of, "400"), Contains("no unit"));
  CHECK_THAT(error_of(bandwidth_of, "1Gibps"), Contains("unknown unit"));
  CHECK_THAT(error_of(bandwidth_of, "100 Gbps extra"), Contains("unknown unit"));
}

}  // namespace
}  // namespace moesim
