// Tests of the event engine: FIFO order at equal times, cancellation and compaction, run_until,
// sequence renumbering and determinism, each against an independent reference or hand count.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <stdexcept>
#include <utility>
#include <vector>

#include "core/engine.h"

namespace moesim {
namespace {

// Records (time, tag) of every event it receives.
class Recorder final : public EventHandler {
 public:
  explicit Recorder(Engine& engine) : engine_(engine) {}
  void on_event(uint64_t tag) override { trace.emplace_back(engine_.now().count_ps(), tag); }
  std::vector<std::pair<int64_t, uint64_t>> trace;

 private:
  Engine& engine_;
};

std::vector<uint64_t> tags_of(const std::vector<std::pair<int64_t, uint64_t>>& trace) {
  std::vector<uint64_t> tags;
  for (const auto& [time, tag] : trace) tags.push_back(tag);
  return tags;
}

TEST_CASE("events at one time run in scheduling order", "[engine]") {
  Engine engine;
  Recorder recorder(engine);
  std::vector<uint64_t> expected;
  for (uint64_t i = 0; i < 1000; ++i) {
    engine.schedule_at(Time::ns(5), recorder, i);
    expected.push_back(i);
  }
  engine.run();
  CHECK(tags_of(recorder.trace) == expected);
  CHECK(engine.now() == Time::ns(5));
  CHECK(engine.events_run() == 1000);
  CHECK(engine.pending() == 0);
}

// Each event, when run, schedules `children` more at the same time; they must run after every
// event already scheduled for that time (breadth-first), like a FIFO queue.
class Spawner final : public EventHandler {
 public:
  explicit Spawner(Engine& engine) : engine_(engine) {}
  void on_event(uint64_t tag) override {
    order.push_back(tag);
    if (next_tag < limit) {
      for (int c = 0; c < 2 && next_tag < limit; ++c)
        engine_.schedule_after(Time::zero(), *this, next_tag++);
    }
  }
  std::vector<uint64_t> order;
  uint64_t next_tag = 0;
  uint64_t limit = 0;

 private:
  Engine& engine_;
};

TEST_CASE("events scheduled from handlers at the current time join the end of the line",
          "[engine]") {
  Engine engine;
  Spawner spawner(engine);
  spawner.limit = 5000;
  // Three roots at t = 7 ns; children are numbered in scheduling order, so a FIFO engine runs
  // tags in increasing order (a binary tree walked breadth-first).
  for (int i = 0; i < 3; ++i) engine.schedule_at(Time::ns(7), spawner, spawner.next_tag++);
  engine.run();
  std::vector<uint64_t> expected(spawner.limit);
  for (uint64_t i = 0; i < spawner.limit; ++i) expected[i] = i;
  CHECK(spawner.order == expected);
  CHECK(engine.now() == Time::ns(7));
}

TEST_CASE("events run in time order, FIFO among equal times", "[engine]") {
  Engine engine;
  Recorder recorder(engine);
  RandomStream random(42, "order");
  std::vector<std::pair<int64_t, uint64_t>> expected;
  for (uint64_t i = 0; i < 20000; ++i) {
    const auto t = static_cast<int64_t>(random.below(50));  // many ties
    engine.schedule_at(Time::ps(t), recorder, i);
    expected.emplace_back(t, i);
  }
  std::stable_sort(expected.begin(), expected.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  engine.run();
  CHECK(recorder.trace == expected);
}

TEST_CASE("a cancelled event never runs and its id goes stale", "[engine][cancel]") {
  Engine engine;
  Recorder recorder(engine);
  const EventId a = engine.schedule_at(Time::ns(1), recorder, 1);
  const EventId b = engine.schedule_at(Time::ns(2), recorder, 2);
  const EventId c = engine.schedule_at(Time::ns(3), recorder, 3);
  CHECK(engine.pending() == 3);
  CHECK(engine.cancel(b));
  CHECK_FALSE(engine.cancel(b));  // already cancelled
  CHECK(engine.pending() == 2);
  CHECK_FALSE(engine.cancel(EventId{}));  // names no event
  engine.run();
  CHECK(tags_of(recorder.trace) == std::vector<uint64_t>{1, 3});
  CHECK_FALSE(engine.cancel(a));  // ran
  CHECK_FALSE(engine.cancel(c));
  CHECK(engine.events_run() == 2);
}

TEST_CASE("a cancelled last event does not move the clock", "[engine][cancel]") {
  Engine engine;
  Recorder recorder(engine);
  engine.schedule_at(Time::ns(10), recorder, 1);
  const EventId late = engine.schedule_at(Time::ns(100), recorder, 2);
  CHECK(engine.cancel(late));
  engine.run();
  CHECK(engine.now() == Time::ns(10));
}

TEST_CASE("a stale id does not cancel the event that reused its slot", "[engine][cancel]") {
  Engine engine;
  Recorder recorder(engine);
  const EventId first = engine.schedule_at(Time::ns(1), recorder, 1);
  engine.run();
  // The freed slot is reused by the next event; the old id must not reach it.
  engine.schedule_at(Time::ns(2), recorder, 2);
  CHECK_FALSE(engine.cancel(first));
  engine.run();
  CHECK(tags_of(recorder.trace) == std::vector<uint64_t>{1, 2});
}

// A handler that schedules a follow-up (which reuses the running event's slot) and then tries
// to cancel its own, running, event: that must be a no-op and the follow-up must still run.
class SelfCanceller final : public EventHandler {
 public:
  explicit SelfCanceller(Engine& engine) : engine_(engine) {}
  void on_event(uint64_t tag) override {
    ran.push_back(tag);
    if (tag == 0) {
      engine_.schedule_after(Time::ns(1), *this, 1);
      cancel_own_result = engine_.cancel(own_id);
    }
  }
  EventId own_id;
  bool cancel_own_result = true;
  std::vector<uint64_t> ran;

 private:
  Engine& engine_;
};

TEST_CASE("cancelling the running event's id is a no-op", "[engine][cancel]") {
  Engine engine;
  SelfCanceller handler(engine);
  handler.own_id = engine.schedule_at(Time::ns(1), handler, 0);
  engine.run();
  CHECK_FALSE(handler.cancel_own_result);
  CHECK(handler.ran == std::vector<uint64_t>{0, 1});
  CHECK(engine.now() == Time::ns(2));
}

// Cancels a later event from inside a handler.
class Canceller final : public EventHandler {
 public:
  explicit Canceller(Engine& engine) : engine_(engine) {}
  void on_event(uint64_t tag) override {
    ran.push_back(tag);
    if (tag == 0) cancelled = engine_.cancel(victim);
  }
  EventId victim;
  bool cancelled = false;
  std::vector<uint64_t> ran;

 private:
  Engine& engine_;
};

TEST_CASE("a handler can cancel a later event", "[engine][cancel]") {
  Engine engine;
  Canceller handler(engine);
  engine.schedule_at(Time::ns(1), handler, 0);
  handler.victim = engine.schedule_at(Time::ns(1), handler, 1);  // same time, after tag 0
  engine.schedule_at(Time::ns(2), handler, 2);
  engine.run();
  CHECK(handler.cancelled);
  CHECK(handler.ran == std::vector<uint64_t>{0, 2});
}

TEST_CASE("mass cancellation compacts the queue and keeps the order", "[engine][cancel]") {
  Engine::Options options;
  options.near_events = GENERATE(as<size_t>{}, 7, 32768);
  Engine engine(options);
  Recorder recorder(engine);
  RandomStream random(7, "mass");
  constexpr uint64_t kEvents = 20000;
  std::vector<EventId> ids;
  std::vector<std::pair<int64_t, uint64_t>> scheduled;
  for (uint64_t i = 0; i < kEvents; ++i) {
    const auto t = static_cast<int64_t>(random.below(300));
    ids.push_back(engine.schedule_at(Time::ps(t), recorder, i));
    scheduled.emplace_back(t, i);
  }
  // Cancel three in four (enough to pass the compaction threshold several times over).
  std::vector<bool> cancelled(kEvents, false);
  size_t cancel_count = 0;
  for (uint64_t i = 0; i < kEvents; ++i) {
    if (i % 4 != 1) {
      REQUIRE(engine.cancel(ids[i]));
      cancelled[i] = true;
      ++cancel_count;
    }
  }
  CHECK(engine.pending() == kEvents - cancel_count);
  // Ids of cancelled events stay stale after compaction released their slots.
  for (uint64_t i = 0; i < kEvents; ++i) {
    if (cancelled[i]) CHECK_FALSE(engine.cancel(ids[i]));
  }
  // New events after compaction reuse released slots and still obey FIFO.
  for (uint64_t i = kEvents; i < kEvents + 1000; ++i) {
    const auto t = static_cast<int64_t>(random.below(300));
    ids.push_back(engine.schedule_at(Time::ps(t), recorder, i));
    scheduled.emplace_back(t, i);
    cancelled.push_back(false);
  }
  std::vector<std::pair<int64_t, uint64_t>> expected;
  for (const auto& entry : scheduled) {
    if (!cancelled[entry.second]) expected.push_back(entry);
  }
  std::stable_sort(expected.begin(), expected.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  engine.run();
  CHECK(recorder.trace == expected);
  CHECK(engine.events_run() == expected.size());
}

TEST_CASE("run_until runs events up to and including the time, then stops the clock there",
          "[engine]") {
  Engine engine;
  Recorder recorder(engine);
  engine.schedule_at(Time::ns(10), recorder, 1);
  engine.schedule_at(Time::ns(20), recorder, 2);
  engine.schedule_at(Time::ns(20), recorder, 3);
  engine.schedule_at(Time::ns(30), recorder, 4);
  engine.run_until(Time::ns(20));
  CHECK(tags_of(recorder.trace) == std::vector<uint64_t>{1, 2, 3});
  CHECK(engine.now() == Time::ns(20));
  CHECK(engine.pending() == 1);
  engine.run_until(Time::ns(25));
  CHECK(engine.now() == Time::ns(25));
  CHECK(engine.pending() == 1);
  CHECK_THROWS_AS(engine.run_until(Time::ns(24)), std::logic_error);
  // Scheduling at exactly now() is allowed; before it is not.
  engine.schedule_at(Time::ns(25), recorder, 5);
  CHECK_THROWS_AS(engine.schedule_at(Time::ns(25) - Time::ps(1), recorder, 6), std::logic_error);
  CHECK_THROWS_AS(engine.schedule_after(Time::ps(-1), recorder, 6), std::logic_error);
  CHECK_THROWS_AS(engine.call_at(Time::ns(1), [] {}), std::logic_error);
  engine.run();
  CHECK(tags_of(recorder.trace) == std::vector<uint64_t>{1, 2, 3, 5, 4});
  CHECK(engine.now() == Time::ns(30));
}

class Rerunner final : public EventHandler {
 public:
  explicit Rerunner(Engine& engine) : engine_(engine) {}
  void on_event(uint64_t) override {
    try {
      engine_.run();
    } catch (const std::logic_error&) {
      refused = true;
    }
  }
  bool refused = false;

 private:
  Engine& engine_;
};

TEST_CASE("running the engine from inside a handler is refused", "[engine]") {
  Engine engine;
  Rerunner handler(engine);
  Recorder recorder(engine);
  engine.schedule_at(Time::ns(1), handler);
  engine.schedule_at(Time::ns(2), recorder, 9);
  engine.run();
  CHECK(handler.refused);
  CHECK(tags_of(recorder.trace) == std::vector<uint64_t>{9});
}

TEST_CASE("call_at runs actions in order and can be cancelled", "[engine]") {
  Engine engine;
  std::vector<int> ran;
  engine.call_at(Time::ns(2), [&] { ran.push_back(2); });
  const EventId dropped = engine.call_at(Time::ns(1), [&] { ran.push_back(-1); });
  engine.call_at(Time::ns(1), [&] {
    ran.push_back(1);
    engine.call_after(Time::zero(), [&] { ran.push_back(11); });
  });
  CHECK(engine.cancel(dropped));
  engine.run();
  CHECK(ran == std::vector<int>{1, 11, 2});
}

// Each event schedules 0, 1 or 2 more at now + {0, 1, 2} ps and sometimes cancels a pending
// one; the trace is compared with a reference queue keyed by (time, global scheduling count).
class Churn final : public EventHandler {
 public:
  Churn(Engine& engine, uint64_t seed) : engine_(engine), random_(seed, "churn") {}
  void on_event(uint64_t tag) override {
    trace.emplace_back(engine_.now().count_ps(), tag);
    auto it = reference.begin();
    REQUIRE(it != reference.end());
    REQUIRE(it->first.first == engine_.now().count_ps());
    REQUIRE(it->second == tag);
    reference.erase(it);
    if (scheduled >= limit) return;
    const uint64_t children = engine_.pending() < 6 ? 1 + random_.below(2) : random_.below(2);
    for (uint64_t c = 0; c < children; ++c)
      add(engine_.now() + Time::ps(int64_t(random_.below(3))));
    if (random_.below(8) == 0 && !live.empty()) {
      const size_t pick = random_.below(live.size());
      const bool was_pending = reference.count(live[pick].second) != 0;
      CHECK(engine_.cancel(live[pick].first) == was_pending);
      reference.erase(live[pick].second);
      live.erase(live.begin() + static_cast<std::ptrdiff_t>(pick));
    }
  }
  void add(Time at) {
    const uint64_t tag = scheduled++;
    const EventId id = engine_.schedule_at(at, *this, tag);
    const std::pair<int64_t, uint64_t> key{at.count_ps(), tag};
    reference.emplace(key, tag);
    live.emplace_back(id, key);
    if (live.size() > 32) live.erase(live.begin());
  }
  std::vector<std::pair<int64_t, uint64_t>> trace;
  std::map<std::pair<int64_t, uint64_t>, uint64_t> reference;
  std::vector<std::pair<EventId, std::pair<int64_t, uint64_t>>> live;
  uint64_t scheduled = 0;
  uint64_t limit = 20000;

 private:
  Engine& engine_;
  RandomStream random_;
};

TEST_CASE("FIFO order survives many sequence renumberings", "[engine][renumber]") {
  // With a limit of 16 the sequence counter wraps about every dozen events: over a thousand
  // renumberings, many of them from inside handlers while the top entry is running.
  Engine::Options options;
  options.sequence_limit = 16;
  options.near_events = GENERATE(as<size_t>{}, 1, 3, 32768);
  Engine small(options);
  Churn churn(small, 3);
  churn.add(Time::zero());
  small.run();
  CHECK(churn.reference.empty());
  CHECK(churn.scheduled == churn.limit);

  // The same model with the default limit gives the same trace.
  Engine big;
  Churn churn_big(big, 3);
  churn_big.add(Time::zero());
  big.run();
  CHECK(churn_big.trace == churn.trace);
  CHECK(small.events_run() == big.events_run());
}

TEST_CASE("a sequence limit below the pending count is reported", "[engine][renumber]") {
  Engine::Options options;
  options.sequence_limit = 4;
  Engine engine(options);
  Recorder recorder(engine);
  for (int i = 0; i < 3; ++i) engine.schedule_at(Time::ns(1), recorder, 0);
  CHECK_THROWS_AS(
      [&] {
        for (int i = 0; i < 4; ++i) engine.schedule_at(Time::ns(1), recorder, 0);
      }(),
      std::length_error);
  options.sequence_limit = 1;
  CHECK_THROWS_AS(Engine(options), std::invalid_argument);
}

// The classic hold model: each event reschedules itself after an exponential delay and records
// (time, tag); the tag is a random draw, so the trace depends on every number drawn.
class Hold final : public EventHandler {
 public:
  explicit Hold(Engine& engine) : engine_(engine), random_(engine.random_stream("hold")) {}
  void on_event(uint64_t tag) override {
    trace.emplace_back(engine_.now().count_ps(), tag);
    if (trace.size() >= 5000) return;
    const auto delay_ps = static_cast<int64_t>(std::llround(random_.exponential(1000.0)));
    engine_.schedule_after(Time::ps(delay_ps), *this, random_.below(1u << 20));
  }
  std::vector<std::pair<int64_t, uint64_t>> trace;

 private:
  Engine& engine_;
  RandomStream random_;
};

std::vector<std::pair<int64_t, uint64_t>> hold_trace(uint64_t seed) {
  Engine engine(seed);
  Hold hold(engine);
  for (uint64_t i = 0; i < 64; ++i) engine.schedule_at(Time::zero(), hold, i);
  engine.run();
  return hold.trace;
}

TEST_CASE("the same seed gives the same trace, another seed another", "[engine][determinism]") {
  const auto a = hold_trace(11);
  const auto b = hold_trace(11);
  const auto c = hold_trace(12);
  REQUIRE(a.size() == 5000 + 63);
  CHECK(a == b);
  CHECK(a != c);
}

TEST_CASE("bytes_per_pending_event stays within the memory target", "[engine]") {
  STATIC_REQUIRE(Engine::bytes_per_pending_event() <= 48);
}

}  // namespace
}  // namespace moesim

namespace moesim {
namespace {

// Far more pending events than the queue's near heap holds (EventQueue::kNearMax), with ties,
// events at the current time, and cancellations anywhere in the queue; every event must come
// out in (time, scheduling order), checked against an ordered reference set.
class Crowd final : public EventHandler {
 public:
  explicit Crowd(Engine& engine) : engine_(engine), random_(9, "crowd") {}
  void on_event(uint64_t tag) override {
    REQUIRE(!reference.empty());
    const auto expected = *reference.begin();
    REQUIRE(expected.first == engine_.now().count_ps());
    REQUIRE(expected.second == tag);
    reference.erase(reference.begin());
    ++ran;
    if (scheduled < limit) {
      // Mostly far ahead, sometimes now (joins the end of this time's line).
      const uint64_t kind = random_.below(8);
      const int64_t delay = kind == 0 ? 0 : static_cast<int64_t>(random_.below(4'000'000));
      add(engine_.now() + Time::ps(delay));
      if (kind == 1) add(engine_.now() + Time::ps(delay));  // and keep the crowd from thinning
    }
    if (random_.below(4) == 0) {
      const size_t pick = random_.below(ids.size());
      const bool pending = reference.count(ids[pick].second) != 0;
      REQUIRE(engine_.cancel(ids[pick].first) == pending);
      reference.erase(ids[pick].second);
    }
  }
  void add(Time at) {
    const uint64_t tag = scheduled++;
    const std::pair<int64_t, uint64_t> key{at.count_ps(), tag};
    ids.emplace_back(engine_.schedule_at(at, *this, tag), key);
    reference.insert(key);
  }
  std::set<std::pair<int64_t, uint64_t>> reference;
  std::vector<std::pair<EventId, std::pair<int64_t, uint64_t>>> ids;
  uint64_t scheduled = 0;
  uint64_t ran = 0;
  uint64_t limit = 0;

 private:
  Engine& engine_;
  RandomStream random_;
};

void run_crowd(Engine& engine, int initial, uint64_t limit) {
  Crowd crowd(engine);
  RandomStream random(10, "crowd-start");
  crowd.limit = limit;
  for (int i = 0; i < initial; ++i) {
    // Coarse times make many ties; a block of cancellations up front compacts the queue.
    crowd.add(Time::ps(static_cast<int64_t>(random.below(2'000) * 1'000)));
  }
  for (int i = 0; i < initial; i += 3) {
    REQUIRE(engine.cancel(crowd.ids[static_cast<size_t>(i)].first));
    crowd.reference.erase(crowd.ids[static_cast<size_t>(i)].second);
  }
  engine.run();
  CHECK(crowd.reference.empty());
  CHECK(engine.pending() == 0);
  CHECK(crowd.ran == engine.events_run());
  CHECK(crowd.scheduled == crowd.limit);
}

TEST_CASE("order holds with far more pending events than the near heap", "[engine][queue]") {
  SECTION("default near heap, spilled and refilled a few times") {
    Engine engine;
    run_crowd(engine, 150'000, 400'000);
  }
  SECTION("tiny near heap, spilled and refilled thousands of times") {
    for (size_t near : {1, 2, 5, 16, 300}) {
      Engine::Options options;
      options.near_events = near;
      Engine engine(options);
      run_crowd(engine, 20'000, 60'000);
    }
  }
}

}  // namespace
}  // namespace moesim
