// The network's timing parts on their own, with no engine: the drain schedule, the latency
// wires and the bookkeeping of flows in pieces.
#include <catch2/catch.hpp>
#include <cstdint>
#include <vector>

#include "models/network/drain_schedule.h"
#include "models/network/flow_pieces.h"
#include "models/network/latency_wires.h"

namespace moesim {
namespace {

std::vector<uint32_t> take_at(DrainSchedule& schedule, int64_t now_ps) {
  std::vector<uint32_t> taken;
  schedule.take_due(
      now_ps, [](int64_t, uint32_t) { return false; },
      [&](uint32_t flow) { taken.push_back(flow); });
  return taken;
}

TEST_CASE("drain schedule takes due flows in (time, flow id) order", "[drain_schedule]") {
  DrainSchedule schedule;
  schedule.resize_flows(8);
  CHECK(schedule.next_ps() == -1);
  schedule.set(5, 300);
  schedule.set(2, 100);
  schedule.set(7, 100);
  schedule.set(1, 200);
  CHECK(schedule.next_ps() == 100);
  schedule.set(7, 50);   // earlier
  schedule.set(2, 400);  // later
  CHECK(schedule.next_ps() == 50);
  CHECK(take_at(schedule, 50) == std::vector<uint32_t>{7});
  CHECK(take_at(schedule, 99).empty());
  CHECK(take_at(schedule, 300) == (std::vector<uint32_t>{1, 5}));
  CHECK(schedule.scheduled(2));
  CHECK_FALSE(schedule.scheduled(5));
  CHECK(schedule.size() == 1);
}

TEST_CASE("drain schedule takes a large simultaneous batch in flow id order", "[drain_schedule]") {
  // 3000 flows, 2000 of them (every id not divisible by 3) due at 1000 ps, the others later:
  // enough for the batch take. The result is what popping one by one gives.
  DrainSchedule schedule;
  schedule.resize_flows(3000);
  for (uint32_t f = 3000; f-- > 0;) schedule.set(f, f % 3 == 0 ? 2000 + f : 1000);
  std::vector<uint32_t> expected;
  for (uint32_t f = 0; f < 3000; ++f) {
    if (f % 3 != 0) expected.push_back(f);
  }
  // A taken flow may be scheduled again while the batch is taken.
  std::vector<uint32_t> taken;
  schedule.take_due(
      1000, [](int64_t, uint32_t) { return false; },
      [&](uint32_t flow) {
        taken.push_back(flow);
        if (flow == 1) schedule.set(flow, 1500);
      });
  CHECK(taken == expected);
  CHECK(schedule.size() == 1001);
  CHECK(schedule.next_ps() == 1500);
  CHECK(take_at(schedule, 1500) == std::vector<uint32_t>{1});
  CHECK(take_at(schedule, 2003) == (std::vector<uint32_t>{0, 3}));
}

TEST_CASE("drain schedule takes flows a tolerance accepts", "[drain_schedule]") {
  DrainSchedule schedule;
  schedule.resize_flows(3);
  schedule.set(0, 100);
  schedule.set(1, 105);
  schedule.set(2, 200);
  std::vector<uint32_t> taken;
  schedule.take_due(
      100, [](int64_t at_ps, uint32_t) { return at_ps - 100 <= 10; },
      [&](uint32_t flow) { taken.push_back(flow); });
  CHECK(taken == (std::vector<uint32_t>{0, 1}));
  CHECK(schedule.next_ps() == 200);
}

TEST_CASE("latency wires: one FIFO per latency, whole flows and pieces", "[wires]") {
  LatencyWires wires;
  const uint32_t a = wires.wire_for(1000);
  const uint32_t b = wires.wire_for(500);
  CHECK(a != b);
  CHECK(wires.wire_for(1000) == a);
  CHECK(wires.wire_count() == 2);
  CHECK(wires.latency_ps(b) == 500);
  std::vector<int64_t> left_ps = {0, 10, 20};  // the owner's record of when each flow left
  const auto left = [&](uint32_t flow) { return left_ps[flow]; };
  CHECK(wires.head_arrival_ps(a, left) == -1);
  CHECK(wires.push_flow(a, 1));  // the head changed
  CHECK_FALSE(wires.push_piece(a, 2, 15));
  CHECK_FALSE(wires.push_flow(a, 0));  // left at 0, but behind the others
  CHECK(wires.head_arrival_ps(a, left) == 1010);
  LatencyWires::Arrival arrival{};
  CHECK_FALSE(wires.pop_arrived(a, 1009, left, arrival));
  REQUIRE(wires.pop_arrived(a, 1015, left, arrival));
  CHECK(arrival.flow == 1);
  CHECK_FALSE(arrival.piece);
  REQUIRE(wires.pop_arrived(a, 1015, left, arrival));
  CHECK(arrival.flow == 2);
  CHECK(arrival.piece);
  REQUIRE(wires.pop_arrived(a, 1015, left, arrival));
  CHECK(arrival.flow == 0);
  CHECK(wires.empty(a));
  CHECK(wires.empty(b));
}

TEST_CASE("flow pieces: bytes behind each boundary, and the counts", "[pieces]") {
  // 10 bytes in 3 pieces are 4, 3 and 3 bytes: 6 bytes follow piece 0, 3 follow piece 1.
  CHECK(FlowPieces::bytes_after_piece(10, 3, 0) == 6);
  CHECK(FlowPieces::bytes_after_piece(10, 3, 1) == 3);
  CHECK(FlowPieces::bytes_after_piece(10, 3, 2) == 0);
  CHECK(FlowPieces::bytes_after_piece(2, 4, 0) == 1);  // pieces of 1, 1, 0, 0 bytes
  FlowPieces pieces;
  pieces.resize_flows(2);
  pieces.start(0, 1, 2);
  CHECK_FALSE(pieces.has_pieces(0));  // nothing kept until a flow has pieces
  pieces.start(1, 3, 2);
  CHECK(pieces.has_pieces(1));
  CHECK_FALSE(pieces.has_pieces(0));
  CHECK(pieces.bytes_after_leaving_piece(1, 10) == 6);
  CHECK(pieces.more_to_leave(1));
  CHECK(pieces.note_left(1) == 0);
  CHECK(pieces.note_left(1) == 1);
  CHECK_FALSE(pieces.more_to_leave(1));
  CHECK(pieces.more_to_arrive(1));
  CHECK(pieces.note_arrived(1) == 0);
  CHECK(pieces.note_arrived(1) == 1);
  CHECK_FALSE(pieces.more_to_arrive(1));
  pieces.resize_flows(3);
  CHECK_FALSE(pieces.has_pieces(2));
}

}  // namespace
}  // namespace moesim
