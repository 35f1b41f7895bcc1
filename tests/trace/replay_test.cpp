// TraceRoutingSource: rank split, wrap-around, count-only apportioning, layer checks, and the
// closed form of a trace that sends every token to one expert.
#include <catch2/catch.hpp>
#include <numeric>

#include "models/trace/trace_routing_source.h"
#include "models/trace/trace_writer.h"
#include "tests/trace/trace_test_util.h"

using namespace moesim;

namespace {

// Batch b, layer l, token t goes to experts (b + l + t) % E and (b + l + t + 1) % E.
std::filesystem::path write_pattern_trace(const test::ScratchDir& dir, int32_t batches,
                                          int32_t layers, int32_t tokens, int32_t experts) {
  const auto path = dir / "pattern.trace";
  TraceHeader h;
  h.layers = layers;
  h.experts = experts;
  h.top_k = 2;
  h.tokens_per_batch = tokens;
  h.has_weights = true;
  TraceWriter writer(path, h);
  TraceRecord r;
  for (int32_t b = 0; b < batches; ++b) {
    for (int32_t l = 0; l < layers; ++l) {
      r.batch = b;
      r.layer = l;
      r.tokens = tokens;
      r.expert_ids.clear();
      r.weights.clear();
      for (int32_t t = 0; t < tokens; ++t) {
        r.expert_ids.push_back((b + l + t) % experts);
        r.expert_ids.push_back((b + l + t + 1) % experts);
        r.weights.push_back(0.75f);
        r.weights.push_back(0.25f);
      }
      writer.append(r);
    }
  }
  writer.close();
  return path;
}

RoutingRequest request(int64_t micro_batch, int32_t layer, int32_t rank, int32_t ranks) {
  RoutingRequest q;
  q.micro_batch = micro_batch;
  q.layer = layer;
  q.rank = rank;
  q.ranks = ranks;
  q.tokens = 999;  // what the step would like; a trace answers with what it recorded
  return q;
}

}  // namespace

TEST_CASE("rank r of R gets the recorded batch's tokens r*T/R up to (r+1)*T/R") {
  test::ScratchDir dir("split");
  TraceRoutingSource source(write_pattern_trace(dir, 2, 3, 10, 8));
  CHECK(source.layers() == 3);
  CHECK(source.experts() == 8);
  CHECK(source.top_k() == 2);
  RoutingDecision out;
  // T = 10, R = 3: ranks hold tokens [0,3), [3,6), [6,10).
  const int32_t first[] = {0, 3, 6};
  const int32_t count[] = {3, 3, 4};
  for (int32_t r = 0; r < 3; ++r) {
    source.route(request(1, 2, r, 3), out);
    REQUIRE(out.tokens == count[r]);
    CHECK_FALSE(out.counts_only);
    CHECK(out.slots_per_token == 2);
    CHECK(out.weights.size() == static_cast<size_t>(2 * count[r]));
    CHECK(out.dropped_pairs == 0);
    for (int32_t t = 0; t < out.tokens; ++t) {
      const int32_t token = first[r] + t;
      CHECK(out.experts_of(t)[0] == (1 + 2 + token) % 8);
      CHECK(out.experts_of(t)[1] == (1 + 2 + token + 1) % 8);
    }
    CHECK(std::accumulate(out.tokens_per_expert.begin(), out.tokens_per_expert.end(), 0) ==
          2 * count[r]);
  }
}

TEST_CASE("a trace shorter than the run wraps around and says so") {
  test::ScratchDir dir("wrap");
  TraceRoutingSource source(write_pattern_trace(dir, 3, 2, 4, 8));
  RoutingDecision out;
  CHECK(source.trace_batches() == -1);
  for (int64_t m = 0; m < 8; ++m) {
    for (int32_t l = 0; l < 2; ++l) {
      source.route(request(m, l, 0, 1), out);
      // Micro-batch m replays trace batch m mod 3: token 0's first expert is (b + l) % 8.
      CHECK(out.experts_of(0)[0] == (m % 3 + l) % 8);
    }
    CHECK(source.wraps() == (m < 3 ? 0 : m / 3));
  }
  CHECK(source.trace_batches() == 3);
}

TEST_CASE("the same request twice gives the same decision, in any order") {
  test::ScratchDir dir("order");
  TraceRoutingSource source(write_pattern_trace(dir, 4, 3, 6, 5));
  RoutingDecision a, b;
  source.route(request(2, 1, 1, 2), a);
  source.route(request(0, 2, 0, 2), b);
  source.route(request(3, 0, 1, 2), b);
  source.route(request(2, 1, 1, 2), b);
  CHECK(a.expert_ids == b.expert_ids);
  CHECK(a.tokens_per_expert == b.tokens_per_expert);
  CHECK(a.weights == b.weights);
}

TEST_CASE("all tokens on one expert give that expert all the load") {
  test::ScratchDir dir("hot");
  const auto path = dir / "hot.trace";
  TraceHeader h;
  h.layers = 1;
  h.experts = 16;
  h.top_k = 1;
  TraceWriter writer(path, h);
  TraceRecord r;
  r.tokens = 1000;
  r.expert_ids.assign(1000, 11);
  writer.append(r);
  writer.close();
  TraceRoutingSource source(path);
  RoutingDecision out;
  for (int32_t rank = 0; rank < 4; ++rank) {
    source.route(request(0, 0, rank, 4), out);
    CHECK(out.tokens == 250);
    for (int32_t e = 0; e < 16; ++e) CHECK(out.tokens_per_expert[e] == (e == 11 ? 250 : 0));
  }
}

TEST_CASE("count-only records are apportioned to ranks by largest remainder") {
  test::ScratchDir dir("counts");
  const auto path = dir / "counts.trace";
  TraceHeader h;
  h.layers = 1;
  h.experts = 4;
  h.top_k = 2;
  TraceWriter writer(path, h);
  TraceRecord r;
  r.tokens = 10;
  r.expert_counts = {7, 5, 0, 8};
  writer.append(r);
  writer.close();
  TraceRoutingSource source(path);
  RoutingDecision out;
  // Ranks hold 3, 3, 4 of the 10 tokens. Worked by hand, per expert c: quotas c*3/10, c*3/10,
  // c*4/10; floors, then the leftover to the largest remainders (lower rank on ties):
  //   c=7: 2.1, 2.1, 2.8 -> 2,2,2 + 1 to rank 2          -> 2, 2, 3
  //   c=5: 1.5, 1.5, 2.0 -> 1,1,2 + 1 to rank 0 (tie)    -> 2, 1, 2
  //   c=8: 2.4, 2.4, 3.2 -> 2,2,3 + 1 to rank 0 (tie)    -> 3, 2, 3
  const std::vector<std::vector<int32_t>> want = {{2, 2, 0, 3}, {2, 1, 0, 2}, {3, 2, 0, 3}};
  std::vector<int32_t> sum(4, 0);
  for (int32_t rank = 0; rank < 3; ++rank) {
    source.route(request(0, 0, rank, 3), out);
    CHECK(out.counts_only);
    CHECK(out.expert_ids.empty());
    CHECK(out.tokens == (rank == 2 ? 4 : 3));
    CHECK(out.tokens_per_expert == want[rank]);
    for (int32_t e = 0; e < 4; ++e) sum[e] += out.tokens_per_expert[e];
  }
  CHECK(sum == std::vector<int32_t>{7, 5, 0, 8});
}

TEST_CASE("asking for a layer the trace does not hold names both layer counts") {
  test::ScratchDir dir("layers");
  TraceRoutingSource source(write_pattern_trace(dir, 1, 2, 4, 8));
  RoutingDecision out;
  CHECK_THROWS_WITH(source.route(request(0, 2, 0, 1), out),
                    Catch::Contains("MoE layer 2") && Catch::Contains("records 2 MoE layers"));
  CHECK_THROWS_WITH(source.route(request(0, 0, 2, 2), out), Catch::Contains("rank 2 of 2"));
}
