// The max-min solver on its own, with no engine: hand-worked systems with closed forms, and the
// incremental solve against an independent from-scratch progressive filling.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "models/network/maxmin_solver.h"

namespace moesim {
namespace {

// Progressive filling from scratch, written as the textbook states it: raise every unfrozen
// flow's rate together; when a link fills, freeze its flows. O(links x flows) per step.
std::vector<double> reference_rates(const std::vector<double>& capacity,
                                    const std::vector<std::vector<uint32_t>>& paths) {
  const size_t n = paths.size();
  std::vector<double> rate(n, 0.0);
  std::vector<bool> frozen(n, false);
  size_t left = n;
  while (left > 0) {
    double best = std::numeric_limits<double>::infinity();
    size_t best_link = 0;
    for (size_t l = 0; l < capacity.size(); ++l) {
      double used = 0.0;
      int unfrozen = 0;
      for (size_t f = 0; f < n; ++f) {
        if (std::find(paths[f].begin(), paths[f].end(), l) == paths[f].end()) continue;
        if (frozen[f]) {
          used += rate[f];
        } else {
          ++unfrozen;
        }
      }
      if (unfrozen == 0) continue;
      const double share = (capacity[l] - used) / unfrozen;
      if (share < best) {
        best = share;
        best_link = l;
      }
    }
    for (size_t f = 0; f < n; ++f) {
      if (frozen[f]) continue;
      if (std::find(paths[f].begin(), paths[f].end(), best_link) == paths[f].end()) continue;
      rate[f] = best;
      frozen[f] = true;
      --left;
    }
  }
  return rate;
}

MaxMinSolver solver_with(const std::vector<double>& capacity,
                         const std::vector<std::vector<uint32_t>>& paths) {
  MaxMinSolver solver(capacity);
  solver.resize_flows(paths.size());
  for (size_t f = 0; f < paths.size(); ++f) solver.add_flow(static_cast<uint32_t>(f), paths[f]);
  return solver;
}

TEST_CASE("two flows on one link get half of it each", "[maxmin]") {
  MaxMinSolver solver = solver_with({10e9}, {{0}, {0}});
  const auto changed = solver.recompute();
  CHECK(changed.size() == 2);
  CHECK(solver.rate(0) == 5e9);
  CHECK(solver.rate(1) == 5e9);
  CHECK(solver.load(0) == 10e9);
  CHECK(solver.active_flows() == 2);
}

TEST_CASE("a flow bottlenecked elsewhere leaves its share to the others", "[maxmin]") {
  // Three links in a row of capacities 1, 2 and 3; one long flow crosses all three, one short
  // flow crosses each. Link 0 binds first at 1/2 (the long flow and short flow 0); the long
  // flow's 1/2 then leaves 2 - 1/2 on link 1 and 3 - 1/2 on link 2 to their short flows.
  MaxMinSolver solver = solver_with({1.0, 2.0, 3.0}, {{0, 1, 2}, {0}, {1}, {2}});
  solver.recompute();
  CHECK(solver.rate(0) == 0.5);
  CHECK(solver.rate(1) == 0.5);
  CHECK(solver.rate(2) == 1.5);
  CHECK(solver.rate(3) == 2.5);
}

TEST_CASE("three flows bound by one link give the rest of the others' links away", "[maxmin]") {
  // Link 1 (capacity 4) carries flows 0, 2 and 3: each gets 4/3. Flow 1 alone with flow 0 on
  // link 0 (capacity 10) gets 10 - 4/3; flow 4 with flow 3 on link 2 (capacity 100) 100 - 4/3.
  MaxMinSolver solver = solver_with({10.0, 4.0, 100.0}, {{0, 1}, {0}, {1}, {1, 2}, {2}});
  solver.recompute();
  CHECK(solver.rate(0) == Approx(4.0 / 3));
  CHECK(solver.rate(2) == Approx(4.0 / 3));
  CHECK(solver.rate(3) == Approx(4.0 / 3));
  CHECK(solver.rate(1) == Approx(10.0 - 4.0 / 3));
  CHECK(solver.rate(4) == Approx(100.0 - 4.0 / 3));
}

TEST_CASE("removing a flow hands its share on; its rate is zero at once", "[maxmin]") {
  MaxMinSolver solver = solver_with({9.0}, {{0}, {0}, {0}});
  solver.recompute();
  CHECK(solver.rate(0) == 3.0);
  solver.remove_flow(1);
  CHECK(solver.rate(1) == 0.0);
  CHECK_FALSE(solver.on_links(1));
  CHECK(solver.pending());
  const auto changed = solver.recompute();
  CHECK(changed.size() == 2);
  CHECK(solver.rate(0) == 4.5);
  CHECK(solver.rate(2) == 4.5);
  // The freed id can be put on other links.
  solver.add_flow(1, std::vector<uint32_t>{0});
  solver.recompute();
  CHECK(solver.rate(1) == 3.0);
}

TEST_CASE("a change re-derives only what it can reach", "[maxmin]") {
  // Two groups of links with no flow in common: a flow added to the first changes none of the
  // second's rates, which are not even looked at.
  std::vector<double> capacity = {4.0, 6.0, 5.0, 7.0};
  MaxMinSolver solver = solver_with(capacity, {{0}, {0, 1}, {1}, {2}, {2, 3}, {3}});
  solver.recompute();
  std::vector<double> before;
  for (uint32_t f = 0; f < 6; ++f) before.push_back(solver.rate(f));
  const uint64_t region_before = solver.stats().region_flows;
  solver.resize_flows(7);
  solver.add_flow(6, std::vector<uint32_t>{1});
  const auto changed = solver.recompute();
  for (const uint32_t f : changed) CHECK(f != 3);
  for (const uint32_t f : changed) CHECK(f != 4);
  for (const uint32_t f : changed) CHECK(f != 5);
  for (uint32_t f = 3; f < 6; ++f) CHECK(solver.rate(f) == before[f]);
  CHECK(solver.stats().region_flows - region_before <= 4);  // flows 0, 1, 2 and 6
  // Link 0: 4 shared by flows 0 and 1 -> 2 each; link 1: 6 - 2 = 4 for flows 2 and 6.
  CHECK(solver.rate(0) == 2.0);
  CHECK(solver.rate(1) == 2.0);
  CHECK(solver.rate(2) == 2.0);
  CHECK(solver.rate(6) == 2.0);
  const auto ref = reference_rates(capacity, {{0}, {0, 1}, {1}, {2}, {2, 3}, {3}, {1}});
  for (uint32_t f = 0; f < 7; ++f) CHECK(solver.rate(f) == Approx(ref[f]).epsilon(1e-12));
}

// Random flows over `links` links, added and removed in batches; after each batch the solver's
// rates must equal a from-scratch reference.
void check_random_batches(uint32_t links, uint32_t flows, uint32_t max_hops, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<double> capacity(links);
  for (double& c : capacity) c = std::uniform_real_distribution<double>(1.0, 10.0)(rng);
  MaxMinSolver solver(capacity);
  solver.resize_flows(flows);
  std::vector<std::vector<uint32_t>> path(flows);
  std::vector<bool> on(flows, false);
  auto random_path = [&]() {
    const uint32_t hops = std::uniform_int_distribution<uint32_t>(1, max_hops)(rng);
    std::vector<uint32_t> p;
    while (p.size() < hops) {
      const uint32_t l = std::uniform_int_distribution<uint32_t>(0, links - 1)(rng);
      if (std::find(p.begin(), p.end(), l) == p.end()) p.push_back(l);
    }
    return p;
  };
  for (int batch = 0; batch < 30; ++batch) {
    const int changes = batch == 0 ? static_cast<int>(flows) / 2 : 1 + static_cast<int>(rng() % 5);
    for (int c = 0; c < changes; ++c) {
      const auto f = static_cast<uint32_t>(rng() % flows);
      if (on[f]) {
        solver.remove_flow(f);
        on[f] = false;
      } else {
        path[f] = random_path();
        solver.add_flow(f, path[f]);
        on[f] = true;
      }
    }
    std::vector<double> before(flows);
    for (uint32_t f = 0; f < flows; ++f) before[f] = solver.rate(f);
    const auto changed = solver.recompute();
    // Exactly the reported flows changed rate.
    std::vector<bool> reported(flows, false);
    for (const uint32_t f : changed) reported[f] = true;
    for (uint32_t f = 0; f < flows; ++f) {
      if (!reported[f]) CHECK(solver.rate(f) == before[f]);
    }
    std::vector<std::vector<uint32_t>> active;
    std::vector<uint32_t> ids;
    for (uint32_t f = 0; f < flows; ++f) {
      if (!on[f]) continue;
      active.push_back(path[f]);
      ids.push_back(f);
    }
    const auto ref = reference_rates(capacity, active);
    for (size_t i = 0; i < ids.size(); ++i) {
      INFO("batch " << batch << " flow " << ids[i]);
      CHECK(solver.rate(ids[i]) == Approx(ref[i]).epsilon(1e-9));
    }
    for (uint32_t l = 0; l < links; ++l) CHECK(solver.load(l) <= capacity[l] * (1 + 1e-9));
  }
}

TEST_CASE("incremental solves equal a from-scratch solve: small regions (scan)", "[maxmin]") {
  for (uint64_t seed = 1; seed <= 5; ++seed) check_random_batches(12, 40, 3, seed);
}

TEST_CASE("incremental solves equal a from-scratch solve: large regions (heap)", "[maxmin]") {
  for (uint64_t seed = 1; seed <= 3; ++seed) check_random_batches(200, 400, 4, seed);
  // The region spans far more than 64 links, so it is ordered by the heap.
  std::vector<double> capacity(200, 1.0);
  std::vector<std::vector<uint32_t>> paths;
  for (uint32_t l = 0; l + 1 < 200; ++l) paths.push_back({l, l + 1});
  MaxMinSolver solver = solver_with(capacity, paths);
  solver.recompute();
  CHECK(solver.stats().heap_fills >= 1);
  const auto ref = reference_rates(capacity, paths);
  for (uint32_t f = 0; f < paths.size(); ++f) CHECK(solver.rate(f) == Approx(ref[f]));
  // Flow f crosses links f and f + 1 of a chain of unit links: every link but the two ends
  // carries two flows, so every flow gets 1/2.
  for (uint32_t f = 0; f < paths.size(); ++f) CHECK(solver.rate(f) == 0.5);
}

TEST_CASE("small regions are filled by a scan", "[maxmin]") {
  MaxMinSolver solver = solver_with({1.0, 2.0, 3.0}, {{0, 1, 2}, {0}, {1}, {2}});
  solver.recompute();
  CHECK(solver.stats().heap_fills == 0);
  CHECK(solver.stats().fill_passes >= 1);
}

}  // namespace
}  // namespace moesim
